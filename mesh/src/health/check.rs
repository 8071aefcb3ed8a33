//! What every check is made of: [`Check`] and its [`Level`], the [`Inputs`] the checks look
//! at, and the small formatting helpers they share.

use std::io;
use std::path::{Path, PathBuf};

use mesh_daemon::paths::StateDir;
use serde::Serialize;

use crate::service::Detected;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    /// `ok`, `warn` or `fail`, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One check: one line of `mesh health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable identifier, e.g. `daemon.reachable`.
    pub name: String,
    pub level: Level,
    /// What was found, for a human.
    pub detail: String,
    /// The command (or step) that fixes it; set on every warn and fail.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            level: Level::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            level: Level::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the checks look at. [`Inputs::from_env`] is what `mesh health` uses; the fields are
/// public so a caller (e.g. `mesh install`, which has detected the service manager already)
/// can adjust them.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The state directory (`$CLAUDE_MESH_HOME`, default `~/.claude-mesh`).
    pub state: StateDir,
    /// The state directory came from `CLAUDE_MESH_HOME` (said in the output).
    pub state_from_env: bool,
    /// The user's home, where Claude Code keeps its settings; `None` when HOME is unset.
    pub home: Option<PathBuf>,
    /// This binary (`current_exe`), which the hooks, MCP server and units should run.
    pub mesh_bin: Option<PathBuf>,
    /// This binary's version.
    pub version: String,
    /// The service manager, from [`crate::service::detect`].
    pub service: Detected,
    /// The current directory and `CLAUDE_PROJECT_DIR`: where `project.config` looks.
    pub cwd: Option<PathBuf>,
    pub project_dir: Option<PathBuf>,
}

impl Inputs {
    /// From the environment: `CLAUDE_MESH_HOME` / `HOME`, `current_exe`, this crate's version,
    /// and [`crate::service::detect`] (one quick `systemctl --user` / `launchctl` call).
    pub fn from_env() -> io::Result<Self> {
        let state = StateDir::from_env()?;
        let state_from_env = std::env::var_os("CLAUDE_MESH_HOME").is_some_and(|v| !v.is_empty());
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(Self {
            state,
            state_from_env,
            home,
            mesh_bin: std::env::current_exe().ok(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            service: crate::service::detect(),
            cwd: std::env::current_dir().ok(),
            project_dir: std::env::var_os("CLAUDE_PROJECT_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// A path for a shell command line, quoted when needed.
pub(super) fn quote(path: &Path) -> String {
    crate::claude_config::shell_quote(&path.to_string_lossy()).into_owned()
}

/// `950 B`, `12.3 KiB`, `4.0 MiB`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `850 ms`, `42s`, `3m 5s`, `5h 12m`, `2d 3h`.
pub(super) fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms} ms"),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(900), "900 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
        assert_eq!(human_duration(250), "250 ms");
        assert_eq!(human_duration(3_725_000), "1h 2m");
    }
}
