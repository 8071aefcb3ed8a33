//! What `mesh health` needs to know about the registration: are our hooks, MCP server and status
//! line there, and do they run an existing `mesh` (this one, or another)?

use std::path::{Path, PathBuf};

use super::command::{ours_hook, ours_statusline};
use super::edit::MCP_SERVER_NAME;
use super::error::ConfigError;
use super::paths::{claude_json_path, settings_path};
use super::write;
use crate::hook_event::HookEvent;

/// One registration of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    Missing,
    Registered {
        /// The program the command runs, unquoted, as written (may be a bare `mesh`).
        program: String,
        /// It is the `mesh_bin` given to [`check`].
        current: bool,
        /// The program exists (looked up on `PATH` when it is a bare name).
        exists: bool,
    },
}

/// The status line setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusLineState {
    None,
    Ours(Registration),
    /// Someone else's; its command if it has one.
    Other(Option<String>),
}

/// The whole registration, see [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// One per event of [`HookEvent::ALL`], in that order, by Claude Code's name.
    pub hooks: Vec<(&'static str, Registration)>,
    pub mcp: Registration,
    pub status_line: StatusLineState,
}

impl Status {
    /// Problems, each with its fix; empty when all is well. Someone else's status line is not
    /// a problem.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut describe = |what: String, reg: &Registration| match reg {
            Registration::Missing => {
                out.push(format!("{what} is not registered; run `mesh install`"))
            }
            Registration::Registered {
                program,
                exists: false,
                ..
            } => out.push(format!(
                "{what} runs {program}, which does not exist; run `mesh install`"
            )),
            Registration::Registered { .. } => {}
        };
        for (event, reg) in &self.hooks {
            describe(format!("hook {event}"), reg);
        }
        describe(format!("MCP server {MCP_SERVER_NAME}"), &self.mcp);
        if let StatusLineState::Ours(reg) = &self.status_line {
            describe("status line".to_owned(), reg);
        }
        out
    }
}

fn registration(program: String, mesh_bin: &Path) -> Registration {
    let current = Path::new(&program) == mesh_bin;
    let exists = if program.contains('/') {
        Path::new(&program).is_file()
    } else {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|d: PathBuf| d.join(&program).is_file())
        })
    };
    Registration::Registered {
        program,
        current,
        exists,
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, ConfigError> {
    match write::read_optional(path)? {
        None => Ok(serde_json::Value::Null),
        // An empty file holds no settings, as install reads it.
        Some(text) if text.trim().is_empty() => Ok(serde_json::Value::Null),
        Some(text) => serde_json::from_str(&text).map_err(|source| ConfigError::InvalidJson {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads the registration under `home`; `mesh_bin` is the binary it should point at.
pub fn check(home: &Path, mesh_bin: &Path) -> Result<Status, ConfigError> {
    let settings = read_json(&settings_path(home))?;
    let claude = read_json(&claude_json_path(home))?;
    let hooks = HookEvent::ALL
        .iter()
        .map(|ev| {
            let (event, arg) = (ev.claude_name(), ev.arg());
            let commands = settings["hooks"][event]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|group| {
                    group["hooks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|h| h["command"].as_str())
                });
            let mut found: Vec<String> = commands.filter_map(|c| ours_hook(c, arg)).collect();
            // Prefer the registration of this binary when there are several.
            found.sort_by_key(|p| Path::new(p) != mesh_bin);
            let reg = found
                .into_iter()
                .next()
                .map_or(Registration::Missing, |p| registration(p, mesh_bin));
            (event, reg)
        })
        .collect();
    let server = &claude["mcpServers"][MCP_SERVER_NAME];
    let mcp = match server["command"].as_str() {
        _ if server.is_null() => Registration::Missing,
        Some(cmd) => registration(cmd.to_owned(), mesh_bin),
        None => Registration::Registered {
            program: String::new(),
            current: false,
            exists: false,
        },
    };
    let line = &settings["statusLine"];
    let status_line = match line["command"].as_str() {
        _ if line.is_null() => StatusLineState::None,
        Some(cmd) => match ours_statusline(cmd) {
            Some(program) => StatusLineState::Ours(registration(program, mesh_bin)),
            None => StatusLineState::Other(Some(cmd.to_owned())),
        },
        None => StatusLineState::Other(None),
    };

    Ok(Status {
        hooks,
        mcp,
        status_line,
    })
}
