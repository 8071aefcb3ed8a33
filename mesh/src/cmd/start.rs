//! `mesh start`: start the daemon now, rather than on the next command that needs it. With a
//! systemd unit installed through `systemctl --user start mesh.socket mesh.service`, with a
//! launchd agent through `launchctl kickstart` (or `bootstrap` when it is not loaded), else
//! the way any command starts it on demand. A daemon already running is success.

use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use mesh::service::Launchd;
use mesh_client::ConnectOptions;
use mesh_client::autostart::connect_or_start;
use mesh_daemon::paths::StateDir;
use serde::Serialize;

use super::progress::waiting;
use super::stop::Args;
use super::{emit, emit_json};

#[derive(Serialize)]
struct StartJson {
    /// The running daemon's PID and version.
    pid: u32,
    version: String,
    /// It was running before this command.
    already_running: bool,
    /// What started it: `systemd`, `launchd` or `on-demand` (`null` when already running).
    started_by: Option<&'static str>,
}

/// `systemctl --user …` / `launchctl …`; an error carries its stderr.
fn manager(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn start(args: Args) -> anyhow::Result<ExitCode> {
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    let unit = super::stop::systemd_unit();
    let agent = super::stop::launchd_agent();
    // Running already? Asked of the service manager first where there is one: connecting to
    // its socket would start the daemon (and this would wrongly say "already running").
    let before = match &unit {
        Some(unit) => unit.main_pid()?,
        None => super::stop::ping_pid(&state),
    };
    let started_by = if before.is_some() {
        None
    } else if unit.is_some() {
        let _wait = waiting("starting the mesh daemon through systemd (mesh.service)");
        // A unit that failed before refuses to start until its failure is reset.
        let _ = manager(
            "systemctl",
            &["--user", "reset-failed", "mesh.socket", "mesh.service"],
        );
        manager(
            "systemctl",
            &["--user", "start", "mesh.socket", "mesh.service"],
        )
        .context("cannot start the daemon through systemd")?;
        Some("systemd")
    } else if let Some(agent) = &agent {
        let _wait = waiting("starting the mesh daemon through launchd");
        start_agent(agent)?;
        Some("launchd")
    } else {
        Some("on-demand")
    };
    let conn = {
        let _wait = waiting("starting the mesh daemon");
        connect_or_start(&state, &ConnectOptions::default()).context("the daemon did not start")?
    };
    let (pid, version) = (conn.daemon_pid(), conn.daemon_version().to_owned());
    // The same daemon as before (a systemd MainPID is the daemon's own pid).
    let already_running = before.is_some_and(|b| b == pid) || started_by.is_none();
    if args.out.json {
        emit_json(&StartJson {
            pid,
            version,
            already_running,
            started_by: if already_running { None } else { started_by },
        })?;
    } else if already_running {
        emit(&format!(
            "mesh daemon {version} already running (pid {pid})\n"
        ))?;
    } else {
        emit(&format!("mesh daemon {version} running (pid {pid})\n"))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn start_agent(agent: &Launchd) -> anyhow::Result<()> {
    let target = agent.service_target();
    if manager("launchctl", &["print", &target]).is_ok() {
        manager("launchctl", &["kickstart", &target])
    } else {
        let domain = format!("gui/{}", rustix::process::getuid().as_raw());
        let plist = agent.plist_path().to_string_lossy().into_owned();
        manager("launchctl", &["bootstrap", &domain, &plist])
    }
    .context("cannot start the daemon through launchd")
}
