//! `mesh install` / `mesh uninstall`.
//!
//! Install, in this order, so that a refusal changes nothing:
//! 1. plan the Claude Code registration ([`claude_config::Plan`]): both files are read and
//!    validated first, and an invalid one stops everything here;
//! 2. the service unit: systemd user units or a launchd agent, rendered from `packaging/` with
//!    the absolute path of this binary, written, enabled and started (socket only: the first
//!    client starts the daemon); with `--no-service`, or where no service manager is usable (a
//!    container, WSL without systemd), none, and clients start the daemon on demand;
//! 3. write the registration (atomic writes, timestamped backups);
//! 4. make sure a daemon of this version answers (a daemon left running by an older binary is
//!    restarted; queued mail is in the database and survives), then run `mesh health`.
//!
//! `--dry-run` prints the diff of every file it would write and changes nothing. Uninstall
//! stops and removes the units (whatever manager state they are in), stops an on-demand
//! daemon, and removes exactly our entries from the Claude Code files; the state directory
//! with its mail stays, and the output says how to remove it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use mesh::claude_config::{FileChange, Plan};
use mesh::health::{self, Report};
use mesh::service::{self, Changes, Created, Detected, Launchd, ServiceSpec, SystemdUser};
use mesh_client::{ConnectOptions, connect_or_start};
use mesh_daemon::paths::StateDir;
use serde::Serialize;

use super::{JsonFlag, emit, emit_json};

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Print what would change (a diff of each file) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Install no service unit; clients start the daemon on demand
    #[arg(long)]
    pub no_service: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Print what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

/// The service part of the outcome.
#[derive(Debug, Default, Serialize)]
struct ServiceOutcome {
    /// "systemd", "launchd" or "none".
    manager: &'static str,
    /// Why there is no unit (no manager, or `--no-service`).
    reason: Option<String>,
    written: Vec<PathBuf>,
    removed: Vec<PathBuf>,
    commands: Vec<String>,
    warnings: Vec<String>,
}

impl ServiceOutcome {
    fn none(reason: String) -> Self {
        Self {
            manager: "none",
            reason: Some(reason),
            ..Self::default()
        }
    }

    fn from_changes(manager: &'static str, c: Changes) -> Self {
        Self {
            manager,
            reason: None,
            written: c.written,
            removed: c.removed,
            commands: c.commands,
            warnings: c.warnings,
        }
    }
}

/// A Claude Code file changed (or that would change).
#[derive(Debug, Serialize)]
struct FileOutcome {
    path: PathBuf,
    summary: Vec<String>,
    /// The backup of the previous contents, when there were any.
    backup: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct InstallJson {
    dry_run: bool,
    mesh_bin: PathBuf,
    service: ServiceOutcome,
    claude_code: Vec<FileOutcome>,
    notes: Vec<String>,
    /// The daemon answering after install: pid and version.
    daemon: Option<DaemonJson>,
    /// `mesh health` after install (absent on a dry run).
    health: Option<Report>,
    /// The unified diff of every file (dry run only).
    diff: Option<String>,
}

#[derive(Debug, Serialize)]
struct DaemonJson {
    pid: u32,
    version: String,
    restarted: bool,
}

#[derive(Debug, Serialize)]
struct UninstallJson {
    dry_run: bool,
    service: ServiceOutcome,
    claude_code: Vec<FileOutcome>,
    /// The pid of an on-demand daemon that was stopped.
    stopped_daemon: Option<u32>,
    state_dir: PathBuf,
    diff: Option<String>,
}

/// One step of a real (not dry) install or uninstall, said on stderr as it starts, on a
/// terminal only (a script reads the summary on stdout, or `--json`).
fn step(what: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!("--- {what}");
    }
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set: cannot find Claude Code's settings")
}

/// This binary's absolute path, which the unit and the registration will run.
fn this_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the path of this mesh binary")?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

/// The service manager to use, or why there is none.
fn manager(no_service: bool) -> Result<Detected, String> {
    if no_service {
        return Err("--no-service: no unit; clients start the daemon on demand".into());
    }
    match service::detect() {
        Detected::None(why) => Err(format!("{why}; clients start the daemon on demand")),
        d => Ok(d),
    }
}

/// What writing `text` to `path` would change, as a [`FileChange`] (for the dry-run diff).
fn unit_change(path: PathBuf, text: Option<String>) -> Option<FileChange> {
    let old = mesh_daemon::paths::read_regular(&path, true, mesh::service::created::MAX_FILE).ok();
    (old != text).then(|| FileChange {
        summary: vec![match &text {
            Some(_) if old.is_none() => "new service unit".to_owned(),
            Some(_) => "service unit updated".to_owned(),
            None => "service unit removed".to_owned(),
        }],
        path,
        old,
        new: text,
    })
}

/// The unit files install would write, with their rendered contents.
fn rendered_units(
    detected: &Detected,
    mesh_bin: &Path,
    state: &StateDir,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let spec = ServiceSpec::new(mesh_bin, state.clone());
    Ok(match detected {
        Detected::Systemd(s) => {
            let units = service::render_systemd(&spec)?;
            vec![
                (s.socket_unit_path(), units.socket),
                (s.service_unit_path(), units.service),
            ]
        }
        Detected::Launchd(l) => vec![(l.plist_path().to_owned(), service::render_launchd(&spec)?)],
        Detected::None(_) => Vec::new(),
    })
}

fn install_unit(
    detected: &Detected,
    mesh_bin: &Path,
    state: &StateDir,
) -> anyhow::Result<ServiceOutcome> {
    let spec = ServiceSpec::new(mesh_bin, state.clone());
    Ok(match detected {
        Detected::Systemd(s) => {
            let changes = s
                .install(&service::render_systemd(&spec)?)
                .context("cannot install the systemd user units")?;
            ServiceOutcome::from_changes("systemd", changes)
        }
        Detected::Launchd(l) => {
            let changes = l
                .install(&service::render_launchd(&spec)?, state)
                .context("cannot install the launchd agent")?;
            ServiceOutcome::from_changes("launchd", changes)
        }
        Detected::None(why) => ServiceOutcome::none(why.clone()),
    })
}

fn file_outcomes(plan: &Plan, backups: &[PathBuf]) -> Vec<FileOutcome> {
    plan.changes()
        .iter()
        .map(|c| FileOutcome {
            path: c.path.clone(),
            summary: c.summary.clone(),
            backup: c.old.as_ref().and_then(|_| {
                let name = c.path.file_name()?.to_string_lossy().into_owned();
                backups
                    .iter()
                    .find(|b| {
                        b.file_name()
                            .is_some_and(|f| f.to_string_lossy().starts_with(&name))
                    })
                    .cloned()
            }),
        })
        .collect()
}

/// Make sure a daemon of this version answers: start it (socket activation or on demand), and
/// restart one that an older (or newer) binary left running.
fn ensure_daemon(state: &StateDir) -> anyhow::Result<DaemonJson> {
    let opts = ConnectOptions::default();
    let ours = env!("CARGO_PKG_VERSION");
    match connect_or_start(state, &opts) {
        Ok(conn) if conn.daemon_version() == ours => {
            return Ok(DaemonJson {
                pid: conn.daemon_pid(),
                version: ours.to_owned(),
                restarted: false,
            });
        }
        Ok(conn) => drop(conn),
        Err(e) if e.is_version_mismatch() => {}
        Err(e) => return Err(e).context("the daemon does not start"),
    }
    super::stop::stop_daemon(state).context("cannot stop the daemon of another version")?;
    let conn = connect_or_start(state, &opts).context("the daemon does not start")?;
    Ok(DaemonJson {
        pid: conn.daemon_pid(),
        version: conn.daemon_version().to_owned(),
        restarted: true,
    })
}

pub fn install(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let home = home()?;
    let mesh_bin = this_binary()?;
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    // 1. Validate and plan the registration before touching anything.
    if !args.dry_run {
        step(&format!("installing {}", mesh_bin.display()));
        step("reading Claude Code's settings");
    }
    let plan = Plan::install(&home, &mesh_bin)?.recording(Created::in_state_dir(state.root()));
    let detected = manager(args.no_service);

    if args.dry_run {
        let mut diff = String::new();
        if let Ok(d) = &detected {
            for (path, text) in rendered_units(d, &mesh_bin, &state)? {
                if let Some(change) = unit_change(path, Some(text)) {
                    diff.push_str(&change.diff());
                }
            }
        }
        diff.push_str(&plan.diff());
        let service = match &detected {
            Ok(d) => ServiceOutcome {
                manager: manager_name(d),
                ..ServiceOutcome::default()
            },
            Err(why) => ServiceOutcome::none(why.clone()),
        };
        let out = InstallJson {
            dry_run: true,
            mesh_bin,
            service,
            claude_code: file_outcomes(&plan, &[]),
            notes: plan.notes().to_vec(),
            daemon: None,
            health: None,
            diff: Some(diff),
        };
        if args.out.json {
            emit_json(&out)?;
        } else {
            emit(&render_install(&out))?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    // 2. The service unit.
    let service = match &detected {
        Ok(d) => {
            step(match d {
                Detected::Systemd(_) => {
                    "installing the systemd user units (mesh.socket, mesh.service) and starting mesh.socket"
                }
                Detected::Launchd(_) => "installing and loading the launchd agent",
                Detected::None(_) => "no service unit",
            });
            install_unit(d, &mesh_bin, &state)?
        }
        Err(why) => {
            step(&format!("no service unit: {why}"));
            ServiceOutcome::none(why.clone())
        }
    };
    // 3. The registration.
    step("registering the hooks, the MCP server and the status line with Claude Code");
    let applied = plan
        .apply()
        .context("cannot register with Claude Code (nothing was changed in its files)")?;
    // 4. A daemon of this version, then the health checks.
    step("starting the daemon");
    let daemon = {
        let _wait = super::progress::waiting("waiting for the daemon to answer");
        ensure_daemon(&state)?
    };
    step("checking the installation (mesh health)");
    let health =
        health::run(&health::Inputs::from_env().context("cannot locate the mesh state directory")?);
    let failed = health.failed();
    let out = InstallJson {
        dry_run: false,
        mesh_bin,
        service,
        claude_code: file_outcomes(&plan, &applied.backups),
        notes: plan.notes().to_vec(),
        daemon: Some(daemon),
        health: Some(health),
        diff: None,
    };
    if args.out.json {
        emit_json(&out)?;
    } else {
        emit(&render_install(&out))?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn manager_name(d: &Detected) -> &'static str {
    match d {
        Detected::Systemd(_) => "systemd",
        Detected::Launchd(_) => "launchd",
        Detected::None(_) => "none",
    }
}

fn render_service(s: &ServiceOutcome, dry_run: bool, out: &mut String) {
    use std::fmt::Write;
    match (&s.reason, dry_run) {
        (Some(why), _) => {
            let _ = writeln!(out, "service: none ({why})");
        }
        (None, true) => {
            let _ = writeln!(
                out,
                "service: {} (unit changes, if any, in the diff below)",
                s.manager
            );
        }
        (None, false) => {
            if s.written.is_empty() && s.removed.is_empty() {
                let _ = writeln!(out, "service: {} units already up to date", s.manager);
            } else {
                let _ = writeln!(out, "service: {}", s.manager);
            }
            for p in &s.written {
                let _ = writeln!(out, "  wrote   {}", p.display());
            }
            for p in &s.removed {
                let _ = writeln!(out, "  removed {}", p.display());
            }
            for c in &s.commands {
                let _ = writeln!(out, "  ran     {c}");
            }
        }
    }
    for w in &s.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
}

/// A change as a dry run tells it: "added hook …" becomes "would add hook …".
fn future(line: &str) -> String {
    if line == "removed the file, now empty" {
        return "would remove the file, as nothing else would be left in it".to_owned();
    }
    for (past, would) in [
        ("added ", "would add "),
        ("updated ", "would update "),
        ("removed ", "would remove "),
    ] {
        if let Some(rest) = line.strip_prefix(past) {
            return format!("{would}{rest}");
        }
    }
    format!("would: {line}")
}

fn render_files(files: &[FileOutcome], dry_run: bool, out: &mut String) {
    use std::fmt::Write;
    if files.is_empty() {
        let _ = writeln!(
            out,
            "claude code: nothing {}",
            if dry_run { "would change" } else { "to change" }
        );
    }
    for f in files {
        let _ = writeln!(out, "claude code: {}", f.path.display());
        for s in &f.summary {
            if dry_run {
                let _ = writeln!(out, "  {}", future(s));
            } else {
                let _ = writeln!(out, "  {s}");
            }
        }
        if let Some(b) = &f.backup {
            let _ = writeln!(out, "  backup: {}", b.display());
        }
    }
}

fn render_install(o: &InstallJson) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if o.dry_run {
        let _ = writeln!(
            out,
            "dry run: nothing is changed. `mesh install` would register {}",
            o.mesh_bin.display()
        );
    } else {
        let _ = writeln!(out, "installed {}", o.mesh_bin.display());
    }
    render_service(&o.service, o.dry_run, &mut out);
    render_files(&o.claude_code, o.dry_run, &mut out);
    for n in &o.notes {
        let _ = writeln!(out, "note: {n}");
    }
    if let Some(diff) = &o.diff {
        if diff.is_empty() {
            let _ = writeln!(out, "\nnothing to change: already installed");
        } else {
            let _ = write!(out, "\n{diff}");
        }
    }
    if let Some(d) = &o.daemon {
        let how = if d.restarted {
            "restarted: the running daemon was another version"
        } else {
            "running"
        };
        let _ = writeln!(out, "daemon: {} (pid {}) {how}", d.version, d.pid);
    }
    if let Some(h) = &o.health {
        let _ = writeln!(out, "\nmesh health:");
        out.push_str(&health::render(h));
        let _ = writeln!(out);
        if h.failed() {
            let _ = writeln!(
                out,
                "Some checks failed: run the fix shown for each, then `mesh health` again."
            );
        } else {
            let _ = writeln!(
                out,
                "Next: start Claude Code in two project folders (sessions that were already running\n\
                 pick up the hooks when restarted). Each sees the other with `mesh list`, and the\n\
                 model gets the claude-mesh tools (list_peers, send_message, ask_peer, …).\n\
                 Undo everything with `mesh uninstall`."
            );
        }
    }
    out
}

pub fn uninstall(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    let home = home()?;
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    let plan = Plan::uninstall(&home)?.recording(Created::in_state_dir(state.root()));
    // Units are removed whatever state their manager is in: look for the files themselves.
    let systemd = cfg!(target_os = "linux")
        .then(SystemdUser::from_env)
        .flatten()
        .filter(SystemdUser::is_installed);
    let launchd = cfg!(target_os = "macos")
        .then(Launchd::from_env)
        .flatten()
        .filter(Launchd::is_installed);

    if args.dry_run {
        let mut diff = String::new();
        let mut removed = Vec::new();
        if let Some(s) = &systemd {
            removed.extend([s.socket_unit_path(), s.service_unit_path()]);
        }
        if let Some(l) = &launchd {
            removed.push(l.plist_path().to_owned());
        }
        removed.retain(|p| p.exists());
        for p in &removed {
            if let Some(change) = unit_change(p.clone(), None) {
                diff.push_str(&change.diff());
            }
        }
        diff.push_str(&plan.diff());
        let out = UninstallJson {
            dry_run: true,
            service: ServiceOutcome {
                manager: match (&systemd, &launchd) {
                    (Some(_), _) => "systemd",
                    (_, Some(_)) => "launchd",
                    _ => "none",
                },
                removed,
                ..ServiceOutcome::default()
            },
            claude_code: file_outcomes(&plan, &[]),
            stopped_daemon: None,
            state_dir: state.root().to_owned(),
            diff: Some(diff),
        };
        emit_uninstall(&out, args.out.json)?;
        return Ok(ExitCode::SUCCESS);
    }

    if systemd.is_some() || launchd.is_some() {
        step("stopping and removing the service unit");
    }
    let service = match (&systemd, &launchd) {
        (Some(s), _) => ServiceOutcome::from_changes(
            "systemd",
            s.uninstall()
                .context("cannot remove the systemd user units")?,
        ),
        (_, Some(l)) => ServiceOutcome::from_changes(
            "launchd",
            l.uninstall().context("cannot remove the launchd agent")?,
        ),
        _ => ServiceOutcome::none("no unit installed".into()),
    };
    if !plan.changes().is_empty() {
        step("removing the hooks, the MCP server and the status line from Claude Code's settings");
    }
    let applied = plan
        .apply()
        .context("cannot remove the registration from Claude Code's files")?;
    // A daemon started on demand (or one the manager did not stop) would keep serving.
    let stopped_daemon =
        super::stop::stop_daemon(&state).context("cannot stop the running daemon")?;
    let out = UninstallJson {
        dry_run: false,
        service,
        claude_code: file_outcomes(&plan, &applied.backups),
        stopped_daemon,
        state_dir: state.root().to_owned(),
        diff: None,
    };
    emit_uninstall(&out, args.out.json)?;
    Ok(ExitCode::SUCCESS)
}

fn emit_uninstall(o: &UninstallJson, json: bool) -> anyhow::Result<()> {
    use std::fmt::Write;
    if json {
        return emit_json(o);
    }
    let mut out = String::new();
    if o.dry_run {
        let _ = writeln!(out, "dry run: nothing is changed. `mesh uninstall` would:");
    }
    match (&o.service.reason, o.dry_run) {
        (Some(why), _) => {
            let _ = writeln!(out, "service: {why}");
        }
        (None, _) if o.service.removed.is_empty() && o.service.commands.is_empty() => {
            let _ = writeln!(out, "service: no unit installed");
        }
        (None, _) => {
            let _ = writeln!(out, "service: {}", o.service.manager);
            for p in &o.service.removed {
                let verb = if o.dry_run { "remove " } else { "removed" };
                let _ = writeln!(out, "  {verb} {}", p.display());
            }
            for c in &o.service.commands {
                let _ = writeln!(out, "  ran     {c}");
            }
            for w in &o.service.warnings {
                let _ = writeln!(out, "  warning: {w}");
            }
        }
    }
    let nothing = o.service.removed.is_empty()
        && o.service.commands.is_empty()
        && o.claude_code.is_empty()
        && o.stopped_daemon.is_none();
    if nothing {
        // Nothing of ours was there: say so once, and no advice about hooks never loaded.
        out.clear();
        if o.dry_run {
            let _ = writeln!(out, "dry run: nothing is changed.");
        }
        let _ = writeln!(
            out,
            "nothing to remove: mesh is not installed here (no service unit, and no hooks, MCP \
             server or status line in Claude Code's settings)"
        );
        for w in &o.service.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        if o.state_dir.exists() {
            let _ = writeln!(
                out,
                "Messages and session history stay in {}; remove that directory to delete them.",
                o.state_dir.display()
            );
        }
        return emit(&out);
    }
    render_files(&o.claude_code, o.dry_run, &mut out);
    if let Some(diff) = &o.diff
        && !diff.is_empty()
    {
        let _ = write!(out, "\n{diff}");
    }
    if let Some(pid) = o.stopped_daemon {
        let _ = writeln!(out, "stopped the daemon (pid {pid})");
    }
    if !o.dry_run {
        let _ = writeln!(
            out,
            "Messages and session history stay in {}; remove that directory to delete them.\n\
             Restart running Claude Code sessions to drop the hooks they loaded.",
            o.state_dir.display()
        );
    }
    emit(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_service_is_a_reason_not_a_manager() {
        let why = manager(true).unwrap_err();
        assert!(why.contains("--no-service"), "{why}");
    }

    #[test]
    fn unit_change_is_none_when_the_file_is_already_right() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mesh.socket");
        std::fs::write(&p, "x\n").unwrap();
        assert!(unit_change(p.clone(), Some("x\n".into())).is_none());
        let c = unit_change(p.clone(), Some("y\n".into())).unwrap();
        assert!(
            c.diff().contains("-x") && c.diff().contains("+y"),
            "{}",
            c.diff()
        );
        let gone = unit_change(p, None).unwrap();
        assert!(gone.diff().contains("+++ /dev/null"), "{}", gone.diff());
    }
}
