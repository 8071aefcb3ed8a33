//! The service definitions of `mesh install` and their management: systemd user units
//! (`mesh.socket` + `mesh.service`) or a launchd LaunchAgent with `Sockets`.
//!
//! - [`render`]: fill the templates of `packaging/` (embedded with `include_str!`, so that
//!   directory is the single source) with the absolute paths of the installed binary and the
//!   state directory, quoted by systemd's rules or XML-escaped.
//! - [`systemd`]: write/remove the units and drive `systemctl --user` (daemon-reload,
//!   `enable --now mesh.socket`, stop, `disable --now`).
//! - [`launchd`]: write/remove the plist and drive `launchctl bootstrap` / `bootout`.
//! - [`detect`]: which of the two is usable here, if any (containers and WSL often have no
//!   systemd user session: then clients start the daemon on demand).
//!
//! Why not the `service-manager` crate (0.11): it writes only a `.service` (no `.socket` unit)
//! and a plist without `Sockets`, so neither manager could hold the socket; it never runs
//! `systemctl --user daemon-reload`, and uses legacy `launchctl load` instead of
//! `bootstrap`/`bootout`; it joins ExecStart arguments without quoting (a binary under a path
//! with a space breaks); and its launchd KeepAlive setup (`Disabled=true` + KeepAlive) fights
//! socket activation, where an idle exit must not be restarted. What remains of its job here is
//! a few `Command`s, so it is not used anywhere.

pub mod created;
pub mod launchd;
pub mod render;
pub mod systemd;

mod changes;
mod run;

pub use changes::{Changes, ServiceError};
pub use created::Created;
pub use launchd::Launchd;
pub use render::{RenderError, ServiceSpec, SystemdUnits, render_launchd, render_systemd};
pub use systemd::SystemdUser;

/// The service manager found on this machine.
#[derive(Debug, Clone)]
pub enum Detected {
    /// A systemd user manager answers `systemctl --user`.
    Systemd(SystemdUser),
    /// launchd (macOS) answers `launchctl print gui/$UID`.
    Launchd(Launchd),
    /// None usable; the reason says why (install with `--no-service`: on-demand start).
    None(String),
}

/// Detect the service manager for `mesh install`, from `HOME` / `XDG_CONFIG_HOME`: on Linux a
/// systemd user session that answers (`systemctl --user show-environment`), on macOS launchd;
/// elsewhere none.
pub fn detect() -> Detected {
    if cfg!(target_os = "macos") {
        match Launchd::from_env() {
            Some(l) => match l.usable() {
                Ok(()) => Detected::Launchd(l),
                Err(e) => Detected::None(e.to_string()),
            },
            None => Detected::None("HOME is not set".into()),
        }
    } else if cfg!(target_os = "linux") {
        match SystemdUser::from_env() {
            Some(s) => match s.usable() {
                Ok(()) => Detected::Systemd(s),
                Err(e) => Detected::None(e.to_string()),
            },
            None => Detected::None("neither XDG_CONFIG_HOME nor HOME is set".into()),
        }
    } else {
        Detected::None("no supported service manager on this platform".into())
    }
}
