//! The daemon's service unit as the client sees it: which service manager owns the daemon and
//! where its unit file lives. Below both [`crate::autostart`] (which never spawns a competitor
//! to an installed unit) and [`crate::error`] (whose messages name the unit's status command);
//! the app's installer writes the files these paths point to.

use std::path::{Path, PathBuf};

/// Name of the systemd user socket unit that `mesh install` writes.
pub const SYSTEMD_SOCKET_UNIT: &str = "mesh.socket";
/// Label of the launchd agent that `mesh install` writes.
pub const LAUNCHD_LABEL: &str = "com.claude-mesh.daemon";

/// Which service manager a unit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceManager {
    Systemd,
    Launchd,
}

impl ServiceManager {
    /// The service manager `mesh install` uses on this platform, if any.
    pub fn native() -> Option<Self> {
        if cfg!(target_os = "macos") {
            Some(Self::Launchd)
        } else if cfg!(target_os = "linux") {
            Some(Self::Systemd)
        } else {
            None
        }
    }
}

/// An installed service unit for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUnit {
    pub manager: ServiceManager,
    /// The unit file (`mesh.socket`) or the LaunchAgent plist.
    pub path: PathBuf,
}

impl ServiceUnit {
    /// Where the unit file lives: `$XDG_CONFIG_HOME/systemd/user/mesh.socket` (default
    /// `~/.config/...`) or `~/Library/LaunchAgents/com.claude-mesh.daemon.plist`. A relative
    /// `XDG_CONFIG_HOME` is ignored, as the XDG spec says.
    pub fn expected_path(
        manager: ServiceManager,
        home: Option<&Path>,
        xdg_config_home: Option<&Path>,
    ) -> Option<PathBuf> {
        match manager {
            ServiceManager::Systemd => {
                let config = match xdg_config_home.filter(|p| p.is_absolute()) {
                    Some(dir) => dir.to_owned(),
                    None => home?.join(".config"),
                };
                Some(config.join("systemd/user").join(SYSTEMD_SOCKET_UNIT))
            }
            ServiceManager::Launchd => Some(
                home?
                    .join("Library/LaunchAgents")
                    .join(format!("{LAUNCHD_LABEL}.plist")),
            ),
        }
    }

    /// The unit of `manager`, if its file exists under these directories.
    pub fn find(
        manager: ServiceManager,
        home: Option<&Path>,
        xdg_config_home: Option<&Path>,
    ) -> Option<Self> {
        let path = Self::expected_path(manager, home, xdg_config_home)?;
        path.exists().then_some(Self { manager, path })
    }

    /// The unit installed for this platform's service manager, from `HOME` and
    /// `XDG_CONFIG_HOME`.
    pub fn installed() -> Option<Self> {
        let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
        let xdg = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty());
        Self::find(
            ServiceManager::native()?,
            home.as_deref().map(Path::new),
            xdg.as_deref().map(Path::new),
        )
    }

    /// The command that shows why the service is not running.
    pub fn status_command(&self) -> String {
        match self.manager {
            ServiceManager::Systemd => format!("systemctl --user status {SYSTEMD_SOCKET_UNIT}"),
            ServiceManager::Launchd => {
                let uid = rustix::process::getuid().as_raw();
                format!("launchctl print gui/{uid}/{LAUNCHD_LABEL}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_unit_path_honours_xdg_config_home() {
        let home = Path::new("/home/u");
        assert_eq!(
            ServiceUnit::expected_path(ServiceManager::Systemd, Some(home), None),
            Some(PathBuf::from("/home/u/.config/systemd/user/mesh.socket"))
        );
        assert_eq!(
            ServiceUnit::expected_path(
                ServiceManager::Systemd,
                Some(home),
                Some(Path::new("/cfg"))
            ),
            Some(PathBuf::from("/cfg/systemd/user/mesh.socket"))
        );
        // Relative XDG_CONFIG_HOME is invalid and ignored.
        assert_eq!(
            ServiceUnit::expected_path(ServiceManager::Systemd, Some(home), Some(Path::new("cfg"))),
            Some(PathBuf::from("/home/u/.config/systemd/user/mesh.socket"))
        );
        assert_eq!(
            ServiceUnit::expected_path(ServiceManager::Launchd, Some(home), None),
            Some(PathBuf::from(
                "/home/u/Library/LaunchAgents/com.claude-mesh.daemon.plist"
            ))
        );
        assert_eq!(
            ServiceUnit::expected_path(ServiceManager::Launchd, None, None),
            None
        );
    }

    #[test]
    fn detects_installed_units_in_a_temp_home() {
        let home = tempfile::tempdir().unwrap();
        let xdg = tempfile::tempdir().unwrap();
        let h = Some(home.path());
        assert_eq!(ServiceUnit::find(ServiceManager::Systemd, h, None), None);
        assert_eq!(ServiceUnit::find(ServiceManager::Launchd, h, None), None);

        let unit_dir = home.path().join(".config/systemd/user");
        std::fs::create_dir_all(&unit_dir).unwrap();
        std::fs::write(unit_dir.join("mesh.socket"), "[Socket]\n").unwrap();
        let found = ServiceUnit::find(ServiceManager::Systemd, h, None).unwrap();
        assert_eq!(found.path, unit_dir.join("mesh.socket"));
        assert_eq!(
            found.status_command(),
            "systemctl --user status mesh.socket"
        );
        // With XDG_CONFIG_HOME elsewhere, the unit under ~/.config is not the one in use.
        assert_eq!(
            ServiceUnit::find(ServiceManager::Systemd, h, Some(xdg.path())),
            None
        );

        let agents = home.path().join("Library/LaunchAgents");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(agents.join("com.claude-mesh.daemon.plist"), "<plist/>").unwrap();
        let found = ServiceUnit::find(ServiceManager::Launchd, h, None).unwrap();
        assert!(
            found.status_command().starts_with("launchctl print gui/")
                && found.status_command().ends_with("/com.claude-mesh.daemon")
        );
    }
}
