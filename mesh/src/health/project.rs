//! `project.config`: the `.claude-mesh.json` a session started here would be named by, read
//! as the daemon's naming reads it ([`mesh_daemon::naming::configs`]): a file that naming
//! ignores (not JSON, no usable `name`, another user's) or whose name is cut to the length
//! limit is said here and by `mesh whoami`, not only in mesh.log. Read on a thread and
//! bounded like naming, so a hung mount cannot hang the command.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use mesh_daemon::naming::{self, Config, MAX_NAME_CHARS, RESOLVE_TIMEOUT};
use mesh_proto::sanitize::terminal_line;

use super::check::Check;

/// What [`config_problems`] found.
#[derive(Debug, Default)]
pub struct ConfigReport {
    /// What is wrong, one terminal-safe sentence each.
    pub problems: Vec<String>,
    /// The file that names the session and the name it gives, if one does.
    pub named: Option<(PathBuf, String)>,
}

/// What is wrong with the `.claude-mesh.json` files naming looks at for a session started in
/// `cwd` (with `CLAUDE_PROJECT_DIR` = `project_dir`). `None` when the look-up did not finish
/// in time.
pub fn config_problems(cwd: &Path, project_dir: Option<&Path>) -> Option<ConfigReport> {
    let (cwd, project_dir) = (cwd.to_path_buf(), project_dir.map(Path::to_path_buf));
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("mesh-naming".into())
        .spawn(move || {
            let _ = tx.send(naming::configs(&cwd, project_dir.as_deref()));
        })
        .ok()?;
    let found = rx.recv_timeout(RESOLVE_TIMEOUT).ok()?;
    let mut problems = Vec::new();
    let mut named = None;
    for (path, config) in found {
        let shown = terminal_line(&path.display().to_string());
        match config {
            Config::Missing => {}
            Config::Ignored(why) => {
                problems.push(format!("{shown} is ignored: {}", terminal_line(&why)));
            }
            Config::Named { name, cut } => {
                if cut {
                    problems.push(format!(
                        "{shown}: `name` is longer than {MAX_NAME_CHARS} characters, cut to `{}`",
                        terminal_line(&name)
                    ));
                }
                if named.is_none() {
                    named = Some((path, name));
                }
            }
        }
    }
    Some(ConfigReport { problems, named })
}

/// `project.config` for a session started in `cwd`.
pub(super) fn check(cwd: Option<&Path>, project_dir: Option<&Path>) -> Check {
    const NAME: &str = "project.config";
    let Some(cwd) = cwd else {
        return Check::ok(NAME, "no current directory to look at");
    };
    let here = terminal_line(&project_dir.unwrap_or(cwd).display().to_string());
    match config_problems(cwd, project_dir) {
        None => Check::warn(
            NAME,
            format!("reading the .claude-mesh.json of {here} took too long (a hung mount?)"),
            "check the mount of this folder: findmnt -T .",
        ),
        Some(r) if !r.problems.is_empty() => Check::warn(
            NAME,
            format!(
                "{}; sessions started here are not named as it intends",
                r.problems.join("; ")
            ),
            format!(
                "write it as {{\"name\": \"<at most {MAX_NAME_CHARS} characters>\"}}, then start the session again"
            ),
        ),
        Some(ConfigReport {
            named: Some((path, name)),
            ..
        }) => Check::ok(
            NAME,
            format!(
                "sessions started in {here} are named `{}` by {}",
                terminal_line(&name),
                terminal_line(&path.display().to_string())
            ),
        ),
        Some(_) => Check::ok(
            NAME,
            format!(
                "no .claude-mesh.json for {here}: sessions are named after the repository or folder"
            ),
        ),
    }
}
