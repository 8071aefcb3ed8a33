//! launchd LaunchAgent: `~/Library/LaunchAgents/com.claude-mesh.daemon.plist`, loaded with
//! `launchctl bootstrap gui/$UID <plist>` and unloaded with `launchctl bootout
//! gui/$UID/<label>` (not the legacy `load`/`unload`).
//!
//! Only `Command`s and files, so it compiles (and is type-checked) on every Unix; only
//! [`super::detect`] picks it, on macOS. Not exercised by the Linux test suite.

use std::fs;
use std::path::{Path, PathBuf};

use mesh_daemon::paths::StateDir;

use super::changes::{Changes, ServiceError};
use super::created::Created;
use super::run;
use super::systemd::write_if_changed;
use mesh_client::unit::{LAUNCHD_LABEL, ServiceManager, ServiceUnit};

/// The user's launchd domain and the agent's plist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launchd {
    plist: PathBuf,
    domain: String,
    /// Where the folders install creates are recorded (see [`Created`]).
    created: Option<Created>,
}

impl Launchd {
    /// `~/Library/LaunchAgents/com.claude-mesh.daemon.plist` in domain `gui/<uid>`.
    pub fn from_env() -> Option<Self> {
        let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
        let plist =
            ServiceUnit::expected_path(ServiceManager::Launchd, Some(Path::new(&home)), None)?;
        let uid = rustix::process::getuid().as_raw();
        Some(Self {
            plist,
            domain: format!("gui/{uid}"),
            created: Created::from_env(),
        })
    }

    pub fn plist_path(&self) -> &Path {
        &self.plist
    }

    /// `gui/<uid>/com.claude-mesh.daemon`.
    pub fn service_target(&self) -> String {
        format!("{}/{LAUNCHD_LABEL}", self.domain)
    }

    pub fn is_installed(&self) -> bool {
        self.plist.exists()
    }

    /// Whether the user's GUI domain answers (it does not over plain ssh without a login).
    pub fn usable(&self) -> Result<(), ServiceError> {
        run::check("launchctl", &["print", &self.domain], &[])
            .map(drop)
            .map_err(|e| ServiceError::Unavailable(format!("launchd domain {}: {e}", self.domain)))
    }

    fn loaded(&self) -> bool {
        run::run("launchctl", &["print", &self.service_target()], &[]).is_ok_and(|o| o.success)
    }

    /// Write the plist and bootstrap it. The state directory must exist first: launchd does
    /// not create the socket's directory, and the log goes there.
    pub fn install(&self, plist: &str, state: &StateDir) -> Result<Changes, ServiceError> {
        let mut changes = Changes::default();
        state.ensure().map_err(|source| ServiceError::Io {
            path: state.root().to_owned(),
            source,
        })?;
        if let Some(dir) = self.plist.parent() {
            match &self.created {
                Some(c) => c.create_dir_all(dir),
                None => fs::create_dir_all(dir),
            }
            .map_err(|source| ServiceError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let changed = write_if_changed(&self.plist, plist)?;
        if changed {
            changes.written.push(self.plist.clone());
        }
        let loaded = self.loaded();
        if loaded && !changed {
            return Ok(changes);
        }
        if loaded {
            self.step(&mut changes, &["bootout", &self.service_target()])?;
        }
        let path = self.plist.to_string_lossy().into_owned();
        self.step(&mut changes, &["bootstrap", &self.domain, &path])?;
        Ok(changes)
    }

    /// Stop the daemon with SIGTERM: a clean exit (status 0) is not restarted under
    /// `KeepAlive {SuccessfulExit: false}`, and the socket starts it again on demand.
    pub fn stop(&self) -> Result<Changes, ServiceError> {
        let mut changes = Changes::default();
        self.step(&mut changes, &["kill", "SIGTERM", &self.service_target()])?;
        Ok(changes)
    }

    /// Restart the daemon now.
    pub fn restart(&self) -> Result<Changes, ServiceError> {
        let mut changes = Changes::default();
        self.step(&mut changes, &["kickstart", "-k", &self.service_target()])?;
        Ok(changes)
    }

    /// Boot the agent out and remove the plist (best effort for launchctl).
    pub fn uninstall(&self) -> Result<Changes, ServiceError> {
        let mut changes = Changes::default();
        if self.loaded()
            && let Err(e) = self.step(&mut changes, &["bootout", &self.service_target()])
        {
            changes.warnings.push(e.to_string());
        }
        match fs::remove_file(&self.plist) {
            Ok(()) => changes.removed.push(self.plist.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ServiceError::Io {
                    path: self.plist.clone(),
                    source,
                });
            }
        }
        // `~/Library/LaunchAgents`, if install created it and it is empty now.
        if let Some(c) = &self.created {
            changes.removed.extend(c.remove_empty());
        }
        Ok(changes)
    }

    fn step(&self, changes: &mut Changes, args: &[&str]) -> Result<(), ServiceError> {
        changes.commands.push(run::shown("launchctl", args));
        run::check("launchctl", args, &[]).map(drop)
    }
}
