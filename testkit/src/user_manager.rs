//! A private systemd user manager for tests: `/lib/systemd/systemd --user` with HOME and
//! XDG_RUNTIME_DIR in a temp dir (it runs in these containers: docs/testing.md, "systemd:
//! socket activation and a real user manager").

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::{poll, wait_exit};

/// A private 0700 directory for XDG_RUNTIME_DIR.
pub fn runtime_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("run");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A private systemd user manager (HOME and XDG_RUNTIME_DIR in a temp dir); stopped on drop.
#[derive(Debug)]
pub struct UserManager {
    child: Child,
    /// The manager's environment (XDG_RUNTIME_DIR, HOME, XDG_CONFIG_HOME): give it to every
    /// command that talks to this manager (as [`UserManager::systemctl`] does).
    pub env: Vec<(OsString, OsString)>,
    /// Declared after `child`: released after the manager stopped (see [`Drop`]).
    _marker: Marker,
}

/// The "booted with systemd" marker `/run/systemd/system`, without which a user manager refuses
/// to start, and the right to run a manager: one at a time in this process. Tests of one test
/// binary run in parallel, and two user managers of the same user at once interfere (a unit's
/// main pid read as 0, a start that times out), so a second test's manager waits until the
/// first one stopped. The marker is made if missing and removed again (rmdir, so only if
/// empty) when the manager stops, if this process made it.
#[derive(Debug)]
struct Marker;

/// Whether a [`Marker`] is held, and whether this process made the directory.
static MARKER: Mutex<(bool, bool)> = Mutex::new((false, false));
static MARKER_FREED: Condvar = Condvar::new();

const MARKER_DIR: &str = "/run/systemd/system";

impl Marker {
    fn acquire() -> Result<Self, String> {
        let mut marker = MARKER.lock().unwrap_or_else(|e| e.into_inner());
        while marker.0 {
            marker = MARKER_FREED.wait(marker).unwrap_or_else(|e| e.into_inner());
        }
        if !Path::new(MARKER_DIR).exists() {
            fs::create_dir_all(MARKER_DIR)
                .map_err(|e| format!("cannot create {MARKER_DIR}: {e}"))?;
            marker.1 = true;
        }
        marker.0 = true;
        Ok(Self)
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let mut marker = MARKER.lock().unwrap_or_else(|e| e.into_inner());
        if marker.1 {
            let _ = fs::remove_dir(MARKER_DIR);
            marker.1 = false;
        }
        marker.0 = false;
        MARKER_FREED.notify_one();
    }
}

impl UserManager {
    /// [`UserManager::start`], or `None` after printing why the calling test is SKIPPED.
    pub fn start_or_skip(home: &Path) -> Option<Self> {
        match Self::start(home) {
            Ok(m) => Some(m),
            Err(reason) => {
                eprintln!("SKIPPED: no systemd user manager here: {reason}");
                None
            }
        }
    }

    /// Start a manager with HOME `home` and XDG_RUNTIME_DIR `home/run`, and wait (10 s at
    /// most) until it answers `systemctl --user`; why not, as an error.
    pub fn start(home: &Path) -> Result<Self, String> {
        if !Path::new("/lib/systemd/systemd").exists() {
            return Err("/lib/systemd/systemd is not installed".into());
        }
        let marker = Marker::acquire()?;
        let runtime = runtime_dir(home);
        let env: Vec<(OsString, OsString)> = vec![
            ("XDG_RUNTIME_DIR".into(), runtime.into()),
            ("HOME".into(), home.into()),
            ("XDG_CONFIG_HOME".into(), home.join(".config").into()),
        ];
        let child = Command::new("/lib/systemd/systemd")
            .arg("--user")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(home.join("manager.log")).unwrap())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut manager = Self {
            child,
            env,
            _marker: marker,
        };
        // Answering, or exited: either ends the wait.
        let ready = poll(Duration::from_secs(10), || {
            if manager.child.try_wait().unwrap().is_some() {
                return Some(false);
            }
            manager
                .systemctl(&["show-environment"])
                .status
                .success()
                .then_some(true)
        })
        .unwrap_or(false);
        if ready {
            Ok(manager)
        } else {
            Err(format!(
                "the user manager did not answer: {}",
                fs::read_to_string(home.join("manager.log")).unwrap_or_default()
            ))
        }
    }

    /// `systemctl --user <args>` against this manager.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        Command::new("systemctl")
            .arg("--user")
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        self.stop();
    }
}

impl UserManager {
    /// Stop the manager (SIGTERM, then SIGKILL after 10 s); dropping it does this too.
    pub fn stop(&mut self) {
        // SIGTERM stops the units (and so a running daemon) before the manager exits.
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if wait_exit(&mut self.child, Duration::from_secs(10)).is_some() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
