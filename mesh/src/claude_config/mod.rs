//! Registering claude-mesh with Claude Code (`mesh install`) and undoing exactly that
//! (`mesh uninstall`): the five hooks and the status line in `~/.claude/settings.json`, the
//! `claude-mesh` MCP server at the top level of `~/.claude.json`.
//!
//! ```no_run
//! use std::path::Path;
//! use mesh::claude_config::Plan;
//!
//! let plan = Plan::install(Path::new("/home/me"), Path::new("/home/me/.cargo/bin/mesh"))?;
//! print!("{}", plan.diff()); // --dry-run stops here
//! let applied = plan.apply()?;
//! # Ok::<(), mesh::claude_config::ConfigError>(())
//! ```
//!
//! Decisions:
//! - **Textual edits, not re-serialisation** (`jsontext.rs`): both files are validated with
//!   serde_json, then only the bytes of our own members and items are inserted or removed.
//!   Every other byte (key order, formatting, number spelling, unicode escapes) stays as it was.
//!   New values are indented like the file (its first indented line gives the unit, default two
//!   spaces) and appended at the end of their container.
//! - **Exact undo**: uninstall removes our elements together with the separator install added,
//!   and any array or object that became empty by that removal, so install-then-uninstall gives
//!   back the original bytes. An empty container that existed *before* install (e.g. a bare
//!   `"mcpServers": {}`) cannot be told apart from one we created and is removed too.
//! - **Ours** means: hooks whose command's first word is a program named `mesh` followed by
//!   exactly `hook <event>`; a status line `<mesh> statusline`; the `mcpServers` entry
//!   `claude-mesh`, whatever it holds. Uninstall removes these whatever path of `mesh` they
//!   name (a moved binary, or a hand-made registration following the README); install
//!   rewrites such a stale command in place rather than adding a second one.
//! - **Status line**: set only when none is; someone else's is left alone and
//!   [`Plan::notes`] says how to add the badge to it.
//! - **Files we leave empty are deleted**: when uninstall leaves a file holding only `{}`
//!   (e.g. a HOME that had no files before install), the file is removed, since Claude Code
//!   reads a missing file and `{}` alike. `~/.claude/` itself is left in place.
//! - **Safety**: a file that is not valid JSON (or whose `hooks`/`mcpServers` has the wrong
//!   type) fails planning, before anything is written to either file. Applying checks that
//!   no file changed since planning, backs each existing file up to
//!   `<file>.mesh-backup-<YYYYmmddTHHMMSS>` (UTC), writes via temp file + fsync + rename
//!   keeping the file's mode (new files get 0600), writes through symlinks to their target,
//!   and puts the first file back if the second cannot be written.
//! - **Idempotent**: a plan with nothing to do has no [`Plan::changes`]; applying it writes
//!   nothing and makes no backup.

mod check;
mod command;
mod diff;
mod edit;
mod error;
mod jsontext;
mod paths;
mod write;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use check::{Registration, Status, StatusLineState, check};
pub use command::{hook_command, shell_quote, statusline_command};
pub use edit::MCP_SERVER_NAME;
pub use error::ConfigError;
pub use paths::{claude_json_path, settings_path};
pub(crate) use write::newest_backup;

use crate::service::Created;
use edit::Editor;
use jsontext::{Doc, Style};

/// One file's planned change. `None` text: the file does not exist (old) or is deleted (new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: PathBuf,
    pub old: Option<String>,
    pub new: Option<String>,
    /// What changes, one line each, e.g. "added hook SessionStart: /usr/bin/mesh hook session-start".
    pub summary: Vec<String>,
}

impl FileChange {
    /// Unified-style diff of this change.
    pub fn diff(&self) -> String {
        let name = self.path.display().to_string();
        let (a, b) = match (&self.old, &self.new) {
            (None, _) => ("/dev/null".to_owned(), name),
            (_, None) => (name, "/dev/null".to_owned()),
            _ => (name.clone(), name),
        };
        diff::unified(
            &a,
            &b,
            self.old.as_deref().unwrap_or(""),
            self.new.as_deref().unwrap_or(""),
        )
    }
}

/// What [`Plan::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Files written or removed.
    pub changed: Vec<PathBuf>,
    /// Backups made, one per existing file changed.
    pub backups: Vec<PathBuf>,
    /// Folders removed: created by install (as recorded, [`Plan::recording`]), empty now.
    pub removed_folders: Vec<PathBuf>,
}

/// The edits install or uninstall would make; nothing is written until [`Plan::apply`].
#[derive(Debug, Clone)]
pub struct Plan {
    changes: Vec<FileChange>,
    notes: Vec<String>,
    /// Where the folders [`Plan::apply`] creates are recorded; `None`: not recorded.
    created: Option<Created>,
}

#[derive(Clone, Copy)]
enum Action {
    Install,
    Uninstall,
}

/// A file read and validated, ready for editing.
struct Loaded {
    path: PathBuf,
    old: Option<String>,
    doc: Doc,
}

fn load(path: PathBuf) -> Result<Loaded, ConfigError> {
    let old = write::read_optional(&path)?;
    // An empty (0-byte or whitespace-only) file holds no settings: read as `{}`.
    let blank = old.as_deref().is_some_and(|t| t.trim().is_empty());
    let text = match &old {
        Some(t) if !blank => t.clone(),
        _ => "{}\n".to_owned(),
    };
    if let Err(source) = serde_json::from_str::<serde_json::Value>(&text) {
        return Err(ConfigError::InvalidJson { path, source });
    }
    let style = Style::detect(&text, old.is_none() || blank);
    let shape = |key: &str, expected| ConfigError::UnexpectedShape {
        path: path.clone(),
        key: key.to_owned(),
        expected,
    };
    let doc = Doc::new(text, style).map_err(|_| shape("(document)", "JSON this tool can edit"))?;
    if doc.root.members().is_none() {
        return Err(shape("(top level)", "an object"));
    }
    Ok(Loaded { path, old, doc })
}

fn mesh_str(mesh_bin: &Path) -> Result<&str, ConfigError> {
    let bad = || ConfigError::BadMeshPath {
        path: mesh_bin.to_path_buf(),
    };
    if !mesh_bin.is_absolute() {
        return Err(bad());
    }
    mesh_bin.to_str().ok_or_else(bad)
}

impl Plan {
    /// Plans registering `mesh_bin` (absolute) in the Claude Code files under `home`.
    pub fn install(home: &Path, mesh_bin: &Path) -> Result<Plan, ConfigError> {
        let mesh = mesh_str(mesh_bin)?;
        Plan::make(home, Action::Install, mesh)
    }

    /// Plans removing every registration of ours (whatever `mesh` path it names).
    pub fn uninstall(home: &Path) -> Result<Plan, ConfigError> {
        Plan::make(home, Action::Uninstall, "")
    }

    /// Record the folders [`Plan::apply`] creates (`~/.claude` on a fresh HOME) in `created`;
    /// after applying, every recorded folder left empty is removed (so an uninstall takes away
    /// the folders install made, and only those).
    pub fn recording(mut self, created: Created) -> Self {
        self.created = Some(created);
        self
    }

    fn make(home: &Path, action: Action, mesh: &str) -> Result<Plan, ConfigError> {
        // Load and validate both files before editing either.
        let files = [load(settings_path(home))?, load(claude_json_path(home))?];
        let mut plan = Plan {
            changes: Vec::new(),
            notes: Vec::new(),
            created: None,
        };
        for (k, file) in files.into_iter().enumerate() {
            let mut ed = Editor {
                path: &file.path,
                doc: file.doc,
                summary: Vec::new(),
                notes: Vec::new(),
            };
            match (k, action) {
                (0, Action::Install) => {
                    ed.install_hooks(mesh)?;
                    ed.install_statusline(mesh)?;
                }
                (0, Action::Uninstall) => {
                    ed.uninstall_hooks()?;
                    ed.uninstall_statusline()?;
                }
                (_, Action::Install) => ed.install_mcp(mesh)?,
                (_, Action::Uninstall) => ed.uninstall_mcp()?,
            }
            plan.notes.append(&mut ed.notes);
            let mut new = Some(ed.doc.text);
            if new.as_deref() == Some("{}\n")
                && file.old.as_deref().is_none_or(|t| t.trim().is_empty())
            {
                // Nothing to write into a file that does not exist, or that is empty.
                new = file.old.clone();
            }
            if matches!(action, Action::Uninstall)
                && ed.doc.root.members().is_some_and(<[_]>::is_empty)
                && !ed.summary.is_empty()
            {
                new = None;
                ed.summary.push("removed the file, now empty".to_owned());
            }
            if new != file.old {
                plan.changes.push(FileChange {
                    path: file.path.clone(),
                    old: file.old,
                    new,
                    summary: ed.summary,
                });
            }
        }
        Ok(plan)
    }

    /// The files that would change; empty when there is nothing to do.
    pub fn changes(&self) -> &[FileChange] {
        &self.changes
    }

    /// Advice that is not a change, e.g. how to add the badge to an existing status line.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// True when applying would write nothing.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }

    /// Unified-style diff of every change (what `--dry-run` prints).
    pub fn diff(&self) -> String {
        self.changes.iter().map(FileChange::diff).collect()
    }

    /// Writes the planned changes: fails without writing if a file changed since planning;
    /// backs up each existing file first; restores already-written files if a later one fails.
    pub fn apply(&self) -> Result<Applied, ConfigError> {
        for change in &self.changes {
            if write::read_optional(&change.path)? != change.old {
                return Err(ConfigError::ChangedMeanwhile {
                    path: change.path.clone(),
                });
            }
        }
        let stamp = mesh_daemon::paths::utc_stamp(SystemTime::now());
        let mut applied = Applied::default();
        for (k, change) in self.changes.iter().enumerate() {
            if let Err(e) = apply_one(change, &stamp, self.created.as_ref(), &mut applied) {
                for done in self.changes[..k].iter().rev() {
                    let target = write::resolve(&done.path);
                    let _ = match &done.old {
                        Some(old) => write::atomic_write(&target, old, self.created.as_ref()),
                        None => write::remove(&target),
                    };
                }
                return Err(e);
            }
        }
        if let Some(c) = &self.created {
            applied.removed_folders = c.remove_empty();
        }
        Ok(applied)
    }
}

fn apply_one(
    change: &FileChange,
    stamp: &str,
    created: Option<&Created>,
    applied: &mut Applied,
) -> Result<(), ConfigError> {
    let target = write::resolve(&change.path);
    if change.old.is_some() {
        applied.backups.push(write::backup(&target, stamp)?);
    }
    match &change.new {
        Some(text) => write::atomic_write(&target, text, created)?,
        None => write::remove(&target)?,
    }
    applied.changed.push(change.path.clone());
    Ok(())
}
