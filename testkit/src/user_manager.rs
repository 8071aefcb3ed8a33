//! A private systemd user manager for tests: `/lib/systemd/systemd --user` with HOME and
//! XDG_RUNTIME_DIR in a temp dir (it runs in these containers, see CRATES.md).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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
    pub env: Vec<(OsString, OsString)>,
    /// This test created `/run/systemd/system`: remove it again (rmdir, so only if empty).
    made_marker: bool,
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

    pub fn start(home: &Path) -> Result<Self, String> {
        if !Path::new("/lib/systemd/systemd").exists() {
            return Err("/lib/systemd/systemd is not installed".into());
        }
        // The "booted with systemd" marker; without it the manager refuses to start.
        let made_marker = !Path::new("/run/systemd/system").exists();
        if let Err(e) = fs::create_dir_all("/run/systemd/system") {
            return Err(format!("cannot create /run/systemd/system: {e}"));
        }
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
            made_marker,
        };
        let mut ready = false;
        for _ in 0..100 {
            if manager.child.try_wait().unwrap().is_some() {
                break;
            }
            if manager.systemctl(&["show-environment"]).status.success() {
                ready = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if ready {
            Ok(manager)
        } else {
            Err(format!(
                "the user manager did not answer: {}",
                fs::read_to_string(home.join("manager.log")).unwrap_or_default()
            ))
        }
    }

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
        if self.made_marker {
            let _ = fs::remove_dir("/run/systemd/system");
        }
    }
}

impl UserManager {
    pub fn stop(&mut self) {
        // SIGTERM stops the units (and so a running daemon) before the manager exits.
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
