//! Rendering the templates of `packaging/` (embedded here, so that directory is the single
//! source of the service definitions).
//!
//! Every path is absolute and rendered verbatim, quoted by the rules of the target format:
//! systemd's (`%` → `%%` everywhere, specifiers being expanded; ExecStart= and Environment=
//! words double-quoted with `\\` and `\"` escaped; `$` → `$$` in ExecStart=, which expands
//! variables) or XML's for the plist. Characters no format can carry (control characters,
//! NUL) are refused rather than mangled.

use std::path::{Path, PathBuf};

use mesh_daemon::paths::StateDir;

/// `packaging/mesh.socket`.
pub const SYSTEMD_SOCKET_TEMPLATE: &str = include_str!("../../../packaging/mesh.socket");
/// `packaging/mesh.service`.
pub const SYSTEMD_SERVICE_TEMPLATE: &str = include_str!("../../../packaging/mesh.service");
/// `packaging/com.claude-mesh.daemon.plist`.
pub const LAUNCHD_TEMPLATE: &str = include_str!("../../../packaging/com.claude-mesh.daemon.plist");

/// File name of the systemd socket unit.
pub const SOCKET_UNIT: &str = "mesh.socket";
/// File name of the systemd service unit.
pub const SERVICE_UNIT: &str = "mesh.service";

/// Longest socket path `bind(2)` accepts: `sun_path` minus the NUL (108 on Linux, 104 on
/// macOS).
const SUN_PATH_LINUX: usize = 107;
const SUN_PATH_MACOS: usize = 103;

/// What the service runs: the installed binary, the state directory, extra environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Absolute path of the installed `mesh` binary (ExecStart= / ProgramArguments).
    pub mesh_bin: PathBuf,
    /// The state directory; its `mesh.sock` is the listening socket.
    pub state: StateDir,
    /// Extra environment for the daemon (e.g. `CLAUDE_MESH_IDLE_TIMEOUT`, `CLAUDE_MESH_LOG`).
    /// `CLAUDE_MESH_HOME` is always set from `state`.
    pub env: Vec<(String, String)>,
}

impl ServiceSpec {
    pub fn new(mesh_bin: impl Into<PathBuf>, state: StateDir) -> Self {
        Self {
            mesh_bin: mesh_bin.into(),
            state,
            env: Vec::new(),
        }
    }

    /// Add one environment variable for the daemon.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The daemon's environment: `CLAUDE_MESH_HOME` first, then [`Self::env`]. It is always
    /// set, even for the default `~/.claude-mesh`: the socket path in the unit is absolute, and
    /// the daemon then serves exactly that directory whatever HOME the manager passes.
    fn environment(&self) -> Result<Vec<(String, String)>, RenderError> {
        let home = text(self.state.root(), "state directory")?;
        let mut all = vec![("CLAUDE_MESH_HOME".to_owned(), home)];
        for (name, value) in &self.env {
            let name_ok = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok {
                return Err(RenderError::BadEnvName(name.clone()));
            }
            no_control(value, "environment value")?;
            all.push((name.clone(), value.clone()));
        }
        Ok(all)
    }

    fn checked(&self, sun_path_max: usize) -> Result<Checked, RenderError> {
        if !self.mesh_bin.is_absolute() {
            return Err(RenderError::NotAbsolute(self.mesh_bin.clone()));
        }
        if !self.state.root().is_absolute() {
            return Err(RenderError::NotAbsolute(self.state.root().to_owned()));
        }
        let socket = text(&self.state.socket(), "socket path")?;
        if socket.len() > sun_path_max {
            return Err(RenderError::SocketTooLong {
                path: self.state.socket(),
                max: sun_path_max,
            });
        }
        Ok(Checked {
            bin: text(&self.mesh_bin, "binary path")?,
            socket,
            log: text(&self.state.log(), "log path")?,
            env: self.environment()?,
        })
    }
}

struct Checked {
    bin: String,
    socket: String,
    log: String,
    env: Vec<(String, String)>,
}

/// Why a service definition cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0} is not an absolute path")]
    NotAbsolute(PathBuf),
    #[error("the {what} {value:?} is not valid UTF-8 or contains control characters")]
    Unrepresentable { what: &'static str, value: String },
    #[error("{0:?} is not a valid environment variable name")]
    BadEnvName(String),
    #[error(
        "the socket path {} is longer than {max} bytes, the limit of a Unix socket; \
         set CLAUDE_MESH_HOME to a shorter directory", path.display()
    )]
    SocketTooLong { path: PathBuf, max: usize },
    #[error(
        "the {what} {value:?} cannot be written in a systemd unit (a socket path with leading or trailing space or a trailing backslash, or a binary path with a quote or a backslash: systemd refuses those)"
    )]
    SystemdPath { what: &'static str, value: String },
}

/// The two systemd user units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemdUnits {
    /// Contents of `mesh.socket`.
    pub socket: String,
    /// Contents of `mesh.service`.
    pub service: String,
}

/// Render `mesh.socket` and `mesh.service` for `spec`.
pub fn render_systemd(spec: &ServiceSpec) -> Result<SystemdUnits, RenderError> {
    let c = spec.checked(SUN_PATH_LINUX)?;
    let exec_start = format!("{} daemon", systemd_exec_path(&c.bin)?);
    let environment = c
        .env
        .iter()
        .map(|(k, v)| format!("Environment={}", systemd_word(&format!("{k}={v}"))))
        .collect::<Vec<_>>()
        .join("\n");
    let socket = SYSTEMD_SOCKET_TEMPLATE
        .replace("{{SOCKET_PATH}}", &systemd_path(&c.socket, "socket path")?);
    let service = SYSTEMD_SERVICE_TEMPLATE
        .replace("{{EXEC_START}}", &exec_start)
        .replace("{{ENVIRONMENT}}", &environment);
    Ok(SystemdUnits { socket, service })
}

/// Render the LaunchAgent plist for `spec`.
pub fn render_launchd(spec: &ServiceSpec) -> Result<String, RenderError> {
    let c = spec.checked(SUN_PATH_MACOS)?;
    let environment = c
        .env
        .iter()
        .map(|(k, v)| {
            format!(
                "\t\t<key>{}</key>\n\t\t<string>{}</string>",
                xml_escape(k),
                xml_escape(v)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(LAUNCHD_TEMPLATE
        .replace("{{MESH_BIN}}", &xml_escape(&c.bin))
        .replace("{{SOCKET_PATH}}", &xml_escape(&c.socket))
        .replace("{{LOG_PATH}}", &xml_escape(&c.log))
        .replace("{{ENVIRONMENT}}", &environment))
}

/// A path as UTF-8 text without control characters.
fn text(path: &Path, what: &'static str) -> Result<String, RenderError> {
    let s = path.to_str().ok_or_else(|| RenderError::Unrepresentable {
        what,
        value: path.to_string_lossy().into_owned(),
    })?;
    no_control(s, what)?;
    Ok(s.to_owned())
}

fn no_control(s: &str, what: &'static str) -> Result<(), RenderError> {
    if s.chars().any(char::is_control) {
        return Err(RenderError::Unrepresentable {
            what,
            value: s.to_owned(),
        });
    }
    Ok(())
}

/// One double-quoted Environment= word: `\\` and `\"` escaped (it is C-unescaped), specifiers
/// (`%x`) doubled. No variable expansion happens there, so `$` stays.
pub fn systemd_word(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            _ => out.push(ch),
        }
    }
    out.push('"');
    out
}

/// The executable of ExecStart=, double-quoted (spaces). systemd (252 checked) takes it
/// literally apart from specifiers (`%%`); `$` is not expanded in the executable name, and it
/// refuses names containing quotes or backslashes ("Executable name contains special
/// characters"), so those are refused here with a clearer message.
fn systemd_exec_path(s: &str) -> Result<String, RenderError> {
    if s.contains(['"', '\'', '\\']) {
        return Err(RenderError::SystemdPath {
            what: "binary path",
            value: s.to_owned(),
        });
    }
    Ok(format!("\"{}\"", s.replace('%', "%%")))
}

/// A path setting taken verbatim to the end of the line (ListenStream=): no quoting exists
/// there, only specifiers (`%%`); surrounding whitespace would be trimmed and a trailing
/// backslash continues the line, so those are refused.
fn systemd_path(s: &str, what: &'static str) -> Result<String, RenderError> {
    if s.trim() != s || s.ends_with('\\') {
        return Err(RenderError::SystemdPath {
            what,
            value: s.to_owned(),
        });
    }
    Ok(s.replace('%', "%%"))
}

/// Escape text for an XML element.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bin: &str, home: &str) -> ServiceSpec {
        ServiceSpec::new(bin, StateDir::new(home))
    }

    #[test]
    fn systemd_quoting() {
        assert_eq!(systemd_word(r#"A=$x%"\"#), r#""A=$x%%\"\\""#);
        assert_eq!(systemd_exec_path("/a b/%h$H").unwrap(), "\"/a b/%%h$H\"");
        assert!(systemd_exec_path("/a'b").is_err());
        assert!(systemd_exec_path("/a\\b").is_err());
        assert_eq!(systemd_path("/a %h/b", "p").unwrap(), "/a %%h/b");
        assert!(systemd_path("/a/b ", "p").is_err());
        assert!(systemd_path("/a/b\\", "p").is_err());
    }

    #[test]
    fn renders_every_placeholder() {
        let s =
            spec("/opt/my bin/mesh", "/home/u/.claude-mesh").env("CLAUDE_MESH_IDLE_TIMEOUT", "5");
        let u = render_systemd(&s).unwrap();
        assert!(!u.socket.contains("{{") && !u.service.contains("{{"));
        assert!(
            u.socket
                .contains("\nListenStream=/home/u/.claude-mesh/mesh.sock\n")
        );
        assert!(
            u.service
                .contains("\nExecStart=\"/opt/my bin/mesh\" daemon\n")
        );
        assert!(
            u.service
                .contains("\nEnvironment=\"CLAUDE_MESH_HOME=/home/u/.claude-mesh\"\n")
        );
        assert!(
            u.service
                .contains("\nEnvironment=\"CLAUDE_MESH_IDLE_TIMEOUT=5\"\n")
        );
        let p = render_launchd(&spec("/a&b/mesh", "/h/.claude-mesh")).unwrap();
        assert!(!p.contains("{{"));
        assert!(p.contains("<string>/a&amp;b/mesh</string>"));
        assert!(p.contains("<string>/h/.claude-mesh/mesh.log</string>"));
    }

    #[test]
    fn refuses_what_cannot_be_written() {
        assert!(matches!(
            render_systemd(&spec("mesh", "/h")),
            Err(RenderError::NotAbsolute(_))
        ));
        assert!(matches!(
            render_systemd(&spec("/bin/me\nsh", "/h")),
            Err(RenderError::Unrepresentable { .. })
        ));
        assert!(matches!(
            render_systemd(&spec("/m", "/h").env("1X", "v")),
            Err(RenderError::BadEnvName(_))
        ));
        let long = format!("/{}", "d".repeat(120));
        assert!(matches!(
            render_launchd(&spec("/m", &long)),
            Err(RenderError::SocketTooLong { .. })
        ));
    }
}
