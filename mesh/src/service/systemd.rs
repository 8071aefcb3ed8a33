//! systemd user units: write them under `$XDG_CONFIG_HOME/systemd/user` and drive
//! `systemctl --user`.
//!
//! Install: write `mesh.socket` + `mesh.service` (atomically, only when changed),
//! `daemon-reload`, stop both units if they changed (so a new socket path or binary takes
//! effect; queued mail is in SQLite and survives), then `enable --now mesh.socket`. The service
//! has no `[Install]`: only the socket starts it. Uninstall: `disable --now` both, remove the
//! files, `daemon-reload` — best effort, so a broken manager never blocks removing the files.
//! The folders install created for the units (recorded, [`super::created`]) are removed when
//! uninstall leaves them empty.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::changes::{Changes, ServiceError};
use super::created::Created;
use super::render::{SERVICE_UNIT, SOCKET_UNIT, SystemdUnits};
use super::run::{self, Output};
use mesh_client::unit::{ServiceManager, ServiceUnit};

/// A systemd user manager and its unit directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdUser {
    unit_dir: PathBuf,
    env: Vec<(OsString, OsString)>,
    /// Where the folders install creates are recorded (see [`Created`]); `None`: not recorded.
    created: Option<Created>,
}

impl SystemdUser {
    /// The user's manager, with units in `$XDG_CONFIG_HOME/systemd/user` (default
    /// `~/.config/systemd/user`), where [`mesh_client::autostart`] looks for them.
    pub fn from_env() -> Option<Self> {
        let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
        let xdg = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty());
        let socket = ServiceUnit::expected_path(
            ServiceManager::Systemd,
            home.as_deref().map(Path::new),
            xdg.as_deref().map(Path::new),
        )?;
        let mut s = Self::new(socket.parent()?, Vec::new());
        s.created = Created::from_env();
        Some(s)
    }

    /// Units in `unit_dir`; every `systemctl` call gets `env` added (tests point
    /// `XDG_RUNTIME_DIR` and `HOME` at a private manager).
    pub fn new(unit_dir: impl Into<PathBuf>, env: Vec<(OsString, OsString)>) -> Self {
        Self {
            unit_dir: unit_dir.into(),
            env,
            created: None,
        }
    }

    /// Record the folders [`SystemdUser::install`] creates in `created`, so that
    /// [`SystemdUser::uninstall`] removes them when they are left empty.
    pub fn recording(mut self, created: Created) -> Self {
        self.created = Some(created);
        self
    }

    pub fn unit_dir(&self) -> &Path {
        &self.unit_dir
    }

    /// Path of `mesh.socket` (the file whose presence means "installed").
    pub fn socket_unit_path(&self) -> PathBuf {
        self.unit_dir.join(SOCKET_UNIT)
    }

    pub fn service_unit_path(&self) -> PathBuf {
        self.unit_dir.join(SERVICE_UNIT)
    }

    pub fn is_installed(&self) -> bool {
        self.socket_unit_path().exists() || self.service_unit_path().exists()
    }

    /// Whether a user manager answers. `show-environment` rather than `is-system-running`,
    /// which exits non-zero for the common "degraded" state.
    pub fn usable(&self) -> Result<(), ServiceError> {
        match self.systemctl(&["show-environment"]) {
            Ok(_) => Ok(()),
            Err(e) => Err(ServiceError::Unavailable(format!(
                "no systemd user session ({e}); containers and WSL often have none"
            ))),
        }
    }

    /// Write the units and start listening (see the module docs). Idempotent.
    pub fn install(&self, units: &SystemdUnits) -> Result<Changes, ServiceError> {
        let mut changes = Changes::default();
        match &self.created {
            Some(c) => c.create_dir_all(&self.unit_dir),
            None => fs::create_dir_all(&self.unit_dir),
        }
        .map_err(|source| ServiceError::Io {
            path: self.unit_dir.clone(),
            source,
        })?;
        for (path, contents) in [
            (self.socket_unit_path(), &units.socket),
            (self.service_unit_path(), &units.service),
        ] {
            if write_if_changed(&path, contents)? {
                changes.written.push(path);
            }
        }
        self.step(&mut changes, &["daemon-reload"])?;
        if !changes.written.is_empty() {
            // Rebind the socket and restart the daemon with the new definitions.
            self.step(&mut changes, &["stop", SOCKET_UNIT, SERVICE_UNIT])?;
        }
        self.step(&mut changes, &["enable", "--now", SOCKET_UNIT])?;
        Ok(changes)
    }

    /// Stop the daemon; the socket keeps listening, so the next client starts it again.
    pub fn stop(&self) -> Result<Changes, ServiceError> {
        let mut changes = Changes::default();
        self.step(&mut changes, &["stop", SERVICE_UNIT])?;
        Ok(changes)
    }

    /// Restart the daemon (started right away, not on the next connection).
    pub fn restart(&self) -> Result<Changes, ServiceError> {
        let mut changes = Changes::default();
        self.step(&mut changes, &["restart", SERVICE_UNIT])?;
        Ok(changes)
    }

    /// `systemctl --user is-active <unit>`: "active", "inactive", "failed", ….
    pub fn state(&self, unit: &str) -> Result<String, ServiceError> {
        let out = run::run("systemctl", &["--user", "is-active", unit], &self.env)?;
        Ok(out.stdout.trim().to_owned())
    }

    /// The daemon's pid while it runs (`MainPID`), else `None`.
    pub fn main_pid(&self) -> Result<Option<u32>, ServiceError> {
        let out = self.systemctl(&["show", "--property=MainPID", "--value", SERVICE_UNIT])?;
        Ok(out.stdout.trim().parse::<u32>().ok().filter(|p| *p != 0))
    }

    /// Stop and disable the units, remove their files, reload. Best effort: failures of the
    /// manager are warnings, only a file that cannot be removed is an error.
    pub fn uninstall(&self) -> Result<Changes, ServiceError> {
        let mut changes = Changes::default();
        let manager = self.usable();
        if let Err(e) = &manager {
            changes.warnings.push(e.to_string());
        }
        if manager.is_ok()
            && let Err(e) = self.step(
                &mut changes,
                &["disable", "--now", SOCKET_UNIT, SERVICE_UNIT],
            )
        {
            changes.warnings.push(e.to_string());
        }
        for path in [self.socket_unit_path(), self.service_unit_path()] {
            match fs::remove_file(&path) {
                Ok(()) => changes.removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ServiceError::Io { path, source }),
            }
        }
        // The unit folder and its parents, if install created them and they are empty now.
        if let Some(c) = &self.created {
            changes.removed.extend(c.remove_empty());
        }
        if manager.is_ok() {
            if let Err(e) = self.step(&mut changes, &["daemon-reload"]) {
                changes.warnings.push(e.to_string());
            }
            // Forget a failed state so a later install starts clean; absent units are fine.
            let _ = run::run(
                "systemctl",
                &["--user", "reset-failed", SOCKET_UNIT, SERVICE_UNIT],
                &self.env,
            );
        }
        Ok(changes)
    }

    fn systemctl(&self, args: &[&str]) -> Result<Output, ServiceError> {
        let mut all = vec!["--user"];
        all.extend_from_slice(args);
        run::check("systemctl", &all, &self.env)
    }

    fn step(&self, changes: &mut Changes, args: &[&str]) -> Result<(), ServiceError> {
        let mut all = vec!["--user"];
        all.extend_from_slice(args);
        changes.commands.push(run::shown("systemctl", &all));
        self.systemctl(args).map(drop)
    }
}

/// Write `contents` to `path` atomically (mode 0644) unless it already holds them; returns
/// whether it wrote.
pub(super) fn write_if_changed(path: &Path, contents: &str) -> Result<bool, ServiceError> {
    let io = |source| ServiceError::Io {
        path: path.to_owned(),
        source,
    };
    let current = mesh_daemon::paths::read_regular(path, true, super::created::MAX_FILE);
    if current.is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut file = mesh_daemon::paths::open_regular(
        &tmp,
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644),
        false,
    )
    .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(true)
}
