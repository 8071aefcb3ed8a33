//! `service.unit`: is a systemd user unit or a launchd agent installed, enabled, listening, and
//! does it run this binary on this state directory? Also the command that starts the daemon
//! when it is down, which depends on who owns it.
//!
//! Read-only: `systemctl --user is-enabled` / `is-active`, `launchctl print`, and the unit files
//! compared with what this binary would render for them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::check::{Check, Inputs, Level, quote};
use crate::service::{Detected, Launchd, ServiceSpec, SystemdUser, render_launchd, render_systemd};
use mesh_client::unit::{LAUNCHD_LABEL, ServiceUnit};

const SOCKET_UNIT: &str = "mesh.socket";
const SERVICE_UNIT: &str = "mesh.service";

/// What the service manager says, read before the daemon is contacted (connecting may start
/// it through socket activation).
#[derive(Debug, Clone)]
pub(super) enum Facts {
    /// No usable service manager; `stray` is a unit file found anyway.
    None {
        reason: String,
        stray: Option<PathBuf>,
    },
    Systemd(SystemdFacts),
    Launchd(LaunchdFacts),
}

#[derive(Debug, Clone)]
pub(super) struct SystemdFacts {
    socket_unit: PathBuf,
    installed: bool,
    /// `systemctl --user is-enabled mesh.socket`: enabled, disabled, …
    enabled: String,
    /// `systemctl --user is-active`: active, inactive, failed, activating, …
    socket_state: String,
    service_state: String,
    /// The program `ExecStart=` of the installed mesh.service runs.
    exec: Option<PathBuf>,
    /// `ListenStream=` of the installed mesh.socket.
    listen: Option<PathBuf>,
    /// The installed files equal what this binary renders for this state directory.
    current: Option<bool>,
}

#[derive(Debug, Clone)]
pub(super) struct LaunchdFacts {
    plist: PathBuf,
    installed: bool,
    loaded: bool,
    running: bool,
    target: String,
    exec: Option<PathBuf>,
    current: Option<bool>,
}

/// Ask the service manager; quick read-only calls.
pub(super) fn probe(inputs: &Inputs) -> Facts {
    match &inputs.service {
        Detected::None(reason) => Facts::None {
            reason: reason.clone(),
            stray: ServiceUnit::installed().map(|u| u.path),
        },
        Detected::Systemd(s) => Facts::Systemd(systemd(s, inputs)),
        Detected::Launchd(l) => Facts::Launchd(launchd(l, inputs)),
    }
}

fn systemd(s: &SystemdUser, inputs: &Inputs) -> SystemdFacts {
    let installed = s.is_installed();
    let mut f = SystemdFacts {
        socket_unit: s.socket_unit_path(),
        installed,
        enabled: String::new(),
        socket_state: String::new(),
        service_state: String::new(),
        exec: None,
        listen: None,
        current: None,
    };
    if !installed {
        return f;
    }
    f.enabled = quick("systemctl", &["--user", "is-enabled", SOCKET_UNIT]);
    f.socket_state = s.state(SOCKET_UNIT).unwrap_or_else(|e| e.to_string());
    f.service_state = s.state(SERVICE_UNIT).unwrap_or_else(|e| e.to_string());
    let socket_text = read_unit(&s.socket_unit_path());
    let service_text = read_unit(&s.service_unit_path());
    f.exec = service_text.as_deref().and_then(exec_start);
    f.listen = socket_text.as_deref().and_then(listen_stream);
    f.current = inputs.mesh_bin.as_ref().and_then(|bin| {
        let units = render_systemd(&ServiceSpec::new(bin, inputs.state.clone())).ok()?;
        Some(
            socket_text.as_deref() == Some(units.socket.as_str())
                && service_text.as_deref() == Some(units.service.as_str()),
        )
    });
    f
}

fn launchd(l: &Launchd, inputs: &Inputs) -> LaunchdFacts {
    let installed = l.is_installed();
    let target = l.service_target();
    let mut f = LaunchdFacts {
        plist: l.plist_path().to_owned(),
        installed,
        loaded: false,
        running: false,
        target: target.clone(),
        exec: None,
        current: None,
    };
    if !installed {
        return f;
    }
    if let Some(out) = quick_output("launchctl", &["print", &target]) {
        f.loaded = true;
        f.running = out.lines().any(|l| l.trim() == "state = running");
    }
    let text = read_unit(l.plist_path());
    f.exec = text.as_deref().and_then(program_arguments);
    f.current = inputs.mesh_bin.as_ref().and_then(|bin| {
        let plist = render_launchd(&ServiceSpec::new(bin, inputs.state.clone())).ok()?;
        Some(text.as_deref() == Some(plist.as_str()))
    });
    f
}

/// A unit file's or plist's text, if it is a readable regular file (a FIFO there must not hang
/// `mesh health`).
fn read_unit(path: &Path) -> Option<String> {
    mesh_daemon::paths::read_regular(path, true, crate::service::created::MAX_FILE).ok()
}

/// Trimmed stdout of a quick command, whatever its exit status; empty if it cannot run.
fn quick(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Stdout of a quick command that succeeded.
fn quick_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The program of `ExecStart=` (first word, unquoted, `%%` → `%`).
fn exec_start(unit: &str) -> Option<PathBuf> {
    let value = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))?
        .trim();
    let word = match value.strip_prefix('"') {
        Some(rest) => rest.split('"').next()?,
        None => value.split_whitespace().next()?,
    };
    Some(PathBuf::from(word.replace("%%", "%")))
}

/// `ListenStream=` of a socket unit (`%%` → `%`).
fn listen_stream(unit: &str) -> Option<PathBuf> {
    let value = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("ListenStream="))?
        .trim();
    Some(PathBuf::from(value.replace("%%", "%")))
}

/// The first `ProgramArguments` string of a plist, XML-unescaped.
fn program_arguments(plist: &str) -> Option<PathBuf> {
    let rest = &plist[plist.find("<key>ProgramArguments</key>")?..];
    let start = rest.find("<string>")? + "<string>".len();
    let end = start + rest[start..].find("</string>")?;
    let raw = &rest[start..end];
    Some(PathBuf::from(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    ))
}

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The command that brings a daemon up when none answers on the socket.
pub(super) fn start_fix(facts: &Facts, socket: &Path) -> String {
    match facts {
        Facts::Systemd(f) if f.installed => {
            if f.listen.as_deref().is_some_and(|l| l != socket) {
                "mesh install".to_owned()
            } else if f.socket_state == "failed" || f.service_state == "failed" {
                format!(
                    "systemctl --user reset-failed {SOCKET_UNIT} {SERVICE_UNIT} && systemctl --user start {SOCKET_UNIT}"
                )
            } else if f.socket_state != "active" {
                if f.enabled == "enabled" {
                    format!("systemctl --user start {SOCKET_UNIT}")
                } else {
                    format!("systemctl --user enable --now {SOCKET_UNIT}")
                }
            } else {
                format!(
                    "systemctl --user restart {SOCKET_UNIT} && journalctl --user -u {SERVICE_UNIT} -n 50 --no-pager"
                )
            }
        }
        Facts::Launchd(f) if f.installed => {
            if f.loaded {
                format!("launchctl kickstart -k {}", f.target)
            } else {
                format!("launchctl bootstrap gui/{} {}", uid(), quote(&f.plist))
            }
        }
        Facts::None { stray: Some(_), .. } => "mesh uninstall && mesh install --no-service".into(),
        _ => "mesh start".to_owned(),
    }
}

/// No service manager owns the daemon (none exists, or `mesh install --no-service`): it
/// starts on demand, so one that is not running yet is the normal state.
pub(super) fn on_demand(facts: &Facts) -> bool {
    match facts {
        Facts::None { stray, .. } => stray.is_none(),
        Facts::Systemd(f) => !f.installed,
        Facts::Launchd(f) => !f.installed,
    }
}

/// Whether connecting will start the daemon through socket activation (it was not running).
pub(super) fn activation_pending(facts: &Facts) -> bool {
    match facts {
        Facts::Systemd(f) => {
            f.installed && f.socket_state == "active" && f.service_state != "active"
        }
        Facts::Launchd(f) => f.loaded && !f.running,
        Facts::None { .. } => false,
    }
}

/// Problems found, worst first decides the level; the detail lists them all.
struct Findings {
    items: Vec<(Level, String, Option<String>)>,
}

impl Findings {
    fn new() -> Self {
        Self { items: Vec::new() }
    }

    fn add(&mut self, level: Level, text: String, fix: Option<String>) {
        self.items.push((level, text, fix));
    }

    fn check(self, ok_detail: String) -> Check {
        const NAME: &str = "service.unit";
        let worst = self.items.iter().map(|(l, ..)| *l).max_by_key(|l| rank(*l));
        match worst {
            None => Check::ok(NAME, ok_detail),
            Some(level) => {
                let fix = self
                    .items
                    .iter()
                    .find(|(l, _, f)| *l == level && f.is_some())
                    .and_then(|(.., f)| f.clone());
                let detail = self
                    .items
                    .into_iter()
                    .map(|(_, t, _)| t)
                    .collect::<Vec<_>>()
                    .join("; ");
                Check {
                    name: NAME.to_owned(),
                    level,
                    detail,
                    fix: fix.or_else(|| Some("mesh install".to_owned())),
                }
            }
        }
    }
}

fn rank(level: Level) -> u8 {
    match level {
        Level::Ok => 0,
        Level::Warn => 1,
        Level::Fail => 2,
    }
}

/// `service.unit`.
pub(super) fn check(facts: &Facts, inputs: &Inputs) -> Check {
    let socket = inputs.state.socket();
    let this_bin = inputs
        .mesh_bin
        .as_deref()
        .map_or_else(|| "this binary".to_owned(), |p| p.display().to_string());
    let mut found = Findings::new();
    match facts {
        Facts::None { reason, stray } => {
            if let Some(unit) = stray {
                found.add(
                    Level::Fail,
                    format!(
                        "a service unit is installed ({}) but no service manager answers ({reason}); clients then wait for the service and never start the daemon themselves",
                        unit.display()
                    ),
                    Some(start_fix(facts, &socket)),
                );
                return found.check(String::new());
            }
            let reason = reason
                .strip_prefix("no usable service manager: ")
                .unwrap_or(reason);
            found.check(format!(
                "no service manager ({reason}); fine: the daemon starts on demand when a mesh command, a hook or the MCP server needs it"
            ))
        }
        Facts::Systemd(f) if !f.installed => {
            found.add(
                Level::Warn,
                format!(
                    "a systemd user manager runs, but no mesh unit is installed ({}): the daemon starts on demand and nothing restarts it after a crash",
                    f.socket_unit.display()
                ),
                Some("mesh install".to_owned()),
            );
            found.check(String::new())
        }
        Facts::Systemd(f) => {
            if let Some(exec) = f.exec.as_deref().filter(|p| !p.is_file()) {
                found.add(
                    Level::Fail,
                    format!(
                        "{SERVICE_UNIT} runs {}, which does not exist: the daemon cannot start",
                        exec.display()
                    ),
                    Some("mesh install".to_owned()),
                );
            }
            if let Some(listen) = f.listen.as_deref().filter(|l| *l != socket) {
                found.add(
                    Level::Fail,
                    format!(
                        "{SOCKET_UNIT} listens on {}, but this mesh uses {} (was CLAUDE_MESH_HOME changed?)",
                        listen.display(),
                        socket.display()
                    ),
                    Some("mesh install".to_owned()),
                );
            }
            if f.socket_state != "active" {
                found.add(
                    Level::Fail,
                    format!(
                        "{SOCKET_UNIT} is {}: nothing listens to start the daemon",
                        or_unknown(&f.socket_state)
                    ),
                    Some(start_fix(facts, &socket)),
                );
            }
            if f.service_state == "failed" {
                found.add(
                    Level::Fail,
                    format!(
                        "{SERVICE_UNIT} failed (`journalctl --user -u {SERVICE_UNIT} -n 50` shows why)"
                    ),
                    Some(start_fix(facts, &socket)),
                );
            }
            if f.enabled != "enabled" {
                found.add(
                    Level::Warn,
                    format!(
                        "{SOCKET_UNIT} is {}, so it will not listen after your next login",
                        or_unknown(&f.enabled)
                    ),
                    Some(format!("systemctl --user enable --now {SOCKET_UNIT}")),
                );
            }
            if f.current == Some(false) {
                let what = match f.exec.as_deref() {
                    Some(exec) if Some(exec) != inputs.mesh_bin.as_deref() => {
                        format!("the units run {}, not {this_bin}", exec.display())
                    }
                    _ => "the installed units differ from what this mesh writes".to_owned(),
                };
                found.add(Level::Warn, what, Some("mesh install".to_owned()));
            }
            let daemon = match f.service_state.as_str() {
                "active" => "mesh.service running".to_owned(),
                "inactive" => "mesh.service idle (the first connection starts it)".to_owned(),
                other => format!("mesh.service {}", or_unknown(other)),
            };
            found.check(format!(
                "systemd user units installed ({}): {SOCKET_UNIT} enabled and listening on {} (socket-activated); {daemon}",
                f.socket_unit.display(),
                socket.display()
            ))
        }
        Facts::Launchd(f) if !f.installed => {
            found.add(
                Level::Warn,
                format!(
                    "no launchd agent is installed ({}): the daemon starts on demand and nothing restarts it after a crash",
                    f.plist.display()
                ),
                Some("mesh install".to_owned()),
            );
            found.check(String::new())
        }
        Facts::Launchd(f) => {
            if let Some(exec) = f.exec.as_deref().filter(|p| !p.is_file()) {
                found.add(
                    Level::Fail,
                    format!(
                        "the agent runs {}, which does not exist: the daemon cannot start",
                        exec.display()
                    ),
                    Some("mesh install".to_owned()),
                );
            }
            if !f.loaded {
                found.add(
                    Level::Fail,
                    format!("{LAUNCHD_LABEL} is installed but not loaded: nothing listens"),
                    Some(start_fix(facts, &socket)),
                );
            }
            if f.current == Some(false) {
                found.add(
                    Level::Warn,
                    format!(
                        "the installed agent differs from what this mesh writes (another binary than {this_bin}, or another state directory)"
                    ),
                    Some("mesh install".to_owned()),
                );
            }
            found.check(format!(
                "launchd agent {LAUNCHD_LABEL} installed ({}) and loaded, socket-activated; daemon {}",
                f.plist.display(),
                if f.running {
                    "running"
                } else {
                    "idle (the first connection starts it)"
                }
            ))
        }
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "in an unknown state"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unit_settings_back() {
        let spec = ServiceSpec::new(
            "/opt/my 100%/mesh",
            mesh_daemon::paths::StateDir::new("/s/x%y"),
        );
        let units = render_systemd(&spec).unwrap();
        assert_eq!(
            exec_start(&units.service),
            Some(PathBuf::from("/opt/my 100%/mesh"))
        );
        assert_eq!(
            listen_stream(&units.socket),
            Some(PathBuf::from("/s/x%y/mesh.sock"))
        );
        let plist = render_launchd(&ServiceSpec::new(
            "/opt/a&b/mesh",
            mesh_daemon::paths::StateDir::new("/s"),
        ))
        .unwrap();
        assert_eq!(
            program_arguments(&plist),
            Some(PathBuf::from("/opt/a&b/mesh"))
        );
    }
}
