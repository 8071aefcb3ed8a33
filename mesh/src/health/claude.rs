//! `claude.*`: the registration with Claude Code (hooks and status line in
//! `~/.claude/settings.json`, the MCP server in `~/.claude.json`), read through
//! [`crate::claude_config::check`].

use std::path::{Path, PathBuf};

use super::check::{Check, Inputs, quote};
use crate::claude_config::{
    self, ConfigError, MCP_SERVER_NAME, Registration, StatusLineState, claude_json_path,
    settings_path,
};

/// Every `claude.*` check.
pub(super) fn checks(inputs: &Inputs) -> Vec<Check> {
    let Some(home) = inputs.home.as_deref() else {
        return vec![Check::warn(
            "claude.config",
            "HOME is not set, so Claude Code's settings cannot be found",
            r#"HOME="$(getent passwd "$(id -un)" | cut -d: -f6)" mesh health"#,
        )];
    };
    // An unknown binary matches nothing, so every registration is checked for existence only.
    let unknown = PathBuf::new();
    let mesh_bin = inputs.mesh_bin.as_deref().unwrap_or(&unknown);
    let status = match claude_config::check(home, mesh_bin) {
        Ok(s) => s,
        Err(e) => return vec![config_error(&e)],
    };
    let settings = settings_path(home);
    let claude_json = claude_json_path(home);
    let this = inputs.mesh_bin.as_deref();

    let mut out = Vec::new();
    let hooks = &status.hooks;
    let missing: Vec<&str> = hooks
        .iter()
        .filter(|(_, r)| *r == Registration::Missing)
        .map(|(e, _)| *e)
        .collect();
    let gone: Vec<String> = hooks
        .iter()
        .filter_map(|(e, r)| match r {
            Registration::Registered {
                program,
                exists: false,
                ..
            } => Some(format!("{e} runs {program}")),
            _ => None,
        })
        .collect();
    let others: Vec<String> = programs(hooks.iter().map(|(_, r)| r))
        .into_iter()
        .filter(|p| !same_binary(p, this))
        .collect();
    out.push(if !missing.is_empty() {
        Check::fail(
            "claude.hooks",
            format!(
                "{} of {} hooks missing from {}: {}; sessions will not register or receive mail",
                missing.len(),
                hooks.len(),
                settings.display(),
                missing.join(", ")
            ),
            "mesh install",
        )
    } else if !gone.is_empty() {
        Check::fail(
            "claude.hooks",
            format!(
                "hooks run a binary that does not exist: {} (in {})",
                gone.join(", "),
                settings.display()
            ),
            "mesh install",
        )
    } else if !others.is_empty() && this.is_some() {
        Check::warn(
            "claude.hooks",
            format!(
                "all {} hooks registered, but they run {}, not this binary ({})",
                hooks.len(),
                others.join(", "),
                shown(this)
            ),
            "mesh install",
        )
    } else {
        Check::ok(
            "claude.hooks",
            format!(
                "all {} hooks in {} run {}",
                hooks.len(),
                settings.display(),
                programs(hooks.iter().map(|(_, r)| r)).join(", ")
            ),
        )
    });

    out.push(registration_check(
        "claude.mcp",
        &format!(
            "MCP server `{MCP_SERVER_NAME}` in {}",
            claude_json.display()
        ),
        &status.mcp,
        this,
        "the model gets no mesh tools",
    ));

    out.push(match &status.status_line {
        StatusLineState::Ours(reg) => registration_check(
            "claude.statusline",
            &format!("status line in {}", settings.display()),
            reg,
            this,
            "the status line shows an error",
        ),
        StatusLineState::Other(command) => {
            let theirs = command
                .as_deref()
                .map_or_else(|| "one without a command".to_owned(), |c| format!("`{c}`"));
            let ours = claude_config::statusline_command(
                &this.map_or_else(|| "mesh".to_owned(), |p| p.to_string_lossy().into_owned()),
            );
            Check::ok(
                "claude.statusline",
                format!(
                    "another status line is set ({theirs}), left alone; to show the mesh badge in it, have it also print the output of `{ours}` (it reads the same JSON on stdin)"
                ),
            )
        }
        StatusLineState::None => Check::warn(
            "claude.statusline",
            format!(
                "no status line in {}: the mesh badge (name, peers, mail) is not shown",
                settings.display()
            ),
            "mesh install",
        ),
    });
    out
}

/// The fix for a settings file that is not valid JSON: put the newest backup `mesh install`
/// made of it back (keeping the broken file next to it as `<file>.broken`) and install again;
/// without a backup, only the user can repair it.
fn invalid_json_fix(path: &Path) -> String {
    match claude_config::newest_backup(path) {
        Some(backup) => format!(
            "mv {file} {broken} && cp {backup} {file} && mesh install",
            file = quote(path),
            broken = quote(&path.with_file_name(format!(
                "{}.broken",
                path.file_name().unwrap_or_default().to_string_lossy()
            ))),
            backup = quote(&backup),
        ),
        None => format!(
            "repair {} by hand (it has no backup from mesh install), then run `mesh install`",
            path.display()
        ),
    }
}

fn config_error(e: &ConfigError) -> Check {
    match e {
        ConfigError::InvalidJson { path, source } => Check::fail(
            "claude.config",
            format!(
                "{} is not valid JSON ({source}); Claude Code cannot read it either, so nothing of mesh is active",
                path.display()
            ),
            invalid_json_fix(path),
        ),
        other => Check::fail(
            "claude.config",
            format!("cannot read Claude Code's settings: {other}"),
            "check the owner and permissions of ~/.claude/settings.json and ~/.claude.json",
        ),
    }
}

fn registration_check(
    name: &str,
    what: &str,
    reg: &Registration,
    this: Option<&Path>,
    consequence: &str,
) -> Check {
    match reg {
        Registration::Missing => Check::fail(
            name,
            format!("{what} is not registered: {consequence}"),
            "mesh install",
        ),
        Registration::Registered { program, .. } if program.is_empty() => Check::fail(
            name,
            format!("{what} has no command: {consequence}"),
            "mesh install",
        ),
        Registration::Registered {
            program,
            exists: false,
            ..
        } => Check::fail(
            name,
            format!("{what} runs {program}, which does not exist: {consequence}"),
            "mesh install",
        ),
        Registration::Registered { program, .. }
            if this.is_some() && !same_binary(program, this) =>
        {
            Check::warn(
                name,
                format!("{what} runs {program}, not this binary ({})", shown(this)),
                "mesh install",
            )
        }
        Registration::Registered { program, .. } => {
            Check::ok(name, format!("{what} runs {program}"))
        }
    }
}

/// The distinct programs of these registrations, in order.
fn programs<'a>(regs: impl Iterator<Item = &'a Registration>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in regs {
        if let Registration::Registered { program, .. } = r
            && !out.contains(program)
        {
            out.push(program.clone());
        }
    }
    out
}

/// Whether `program` (absolute, or a bare name looked up on PATH) is the file `this`.
fn same_binary(program: &str, this: Option<&Path>) -> bool {
    let Some(this) = this else { return false };
    let path = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    path.is_some_and(|p| canonical(&p) == canonical(this))
}

fn shown(p: Option<&Path>) -> String {
    p.map_or_else(|| "unknown".to_owned(), |p| p.display().to_string())
}
