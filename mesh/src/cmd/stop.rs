//! `mesh stop` / `mesh restart`: stop the daemon gracefully (SIGTERM: it finishes in-flight
//! requests and closes the database; queued mail is in the database and survives), and for
//! restart, start it again. With a systemd unit installed both go through `systemctl --user`
//! (`stop` / `restart mesh.service`; the socket stays, so the next client starts the daemon
//! again), with a launchd agent restart is `launchctl kickstart -k`. Otherwise the daemon's PID
//! comes from its handshake answer, which it sends even when it refuses us (an older daemon
//! after an upgrade), so an incompatible daemon can be stopped too.

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mesh::service::{Launchd, SystemdUser};
use mesh_daemon::paths::StateDir;
use mesh_proto::{ClientHello, ServerHello, read_frame, write_frame};
use serde::Serialize;

use super::{JsonFlag, connect, emit, emit_json};

/// How long a stop waits for the daemon to exit.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Serialize)]
struct StopJson {
    /// The PID of the daemon that was stopped, `null` when none was running.
    stopped_pid: Option<u32>,
    /// After a restart: the new daemon's PID and version.
    running_pid: Option<u32>,
    running_version: Option<String>,
}

/// The installed systemd unit, when its manager answers.
pub(super) fn systemd_unit() -> Option<SystemdUser> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    SystemdUser::from_env().filter(|s| s.is_installed() && s.usable().is_ok())
}

/// The installed launchd agent.
pub(super) fn launchd_agent() -> Option<Launchd> {
    if !cfg!(target_os = "macos") {
        return None;
    }
    Launchd::from_env().filter(Launchd::is_installed)
}

pub fn stop(args: Args) -> anyhow::Result<ExitCode> {
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    let unit = systemd_unit();
    let stopped = match &unit {
        Some(unit) => {
            let pid = unit.main_pid()?;
            unit.stop().context("cannot stop mesh.service")?;
            pid
        }
        None => stop_daemon(&state)?,
    };
    if args.out.json {
        emit_json(&StopJson {
            stopped_pid: stopped,
            running_pid: None,
            running_version: None,
        })?;
    } else {
        match stopped {
            Some(pid) => emit(&format!("stopped the mesh daemon (pid {pid})\n"))?,
            None => emit("no mesh daemon is running\n")?,
        }
        if unit.is_some() {
            emit(
                "mesh.socket still listens: the next mesh command or hook starts the daemon again (`mesh uninstall` removes the unit)\n",
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restart(args: Args) -> anyhow::Result<ExitCode> {
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    let done = restart_daemon(&state)?;
    if args.out.json {
        emit_json(&StopJson {
            stopped_pid: done.stopped_pid,
            running_pid: Some(done.pid),
            running_version: Some(done.version),
        })?;
    } else {
        emit(&format!(
            "mesh daemon {} running (pid {})\n",
            done.version, done.pid
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What [`restart_daemon`] did.
#[derive(Debug)]
pub struct Restarted {
    /// The daemon stopped, `None` when none was running (it was then just started).
    pub stopped_pid: Option<u32>,
    /// The daemon running now.
    pub pid: u32,
    pub version: String,
}

/// Stop the daemon serving `state` (through its service manager where a unit is installed)
/// and start it again; when none runs, start one. `mesh restart`, `mesh join`, `mesh leave`.
pub fn restart_daemon(state: &StateDir) -> anyhow::Result<Restarted> {
    let stopped = if let Some(unit) = systemd_unit() {
        let pid = unit.main_pid()?;
        let _wait = super::progress::waiting("restarting the mesh daemon through systemd");
        unit.restart().context("cannot restart mesh.service")?;
        pid
    } else if let Some(agent) = launchd_agent() {
        let pid = ping_pid(state);
        let _wait = super::progress::waiting("restarting the mesh daemon through launchd");
        agent
            .restart()
            .context("cannot restart the launchd agent")?;
        pid
    } else {
        stop_daemon(state)?
    };
    let conn = connect().context("the daemon did not start again")?;
    Ok(Restarted {
        stopped_pid: stopped,
        pid: conn.daemon_pid(),
        version: conn.daemon_version().to_owned(),
    })
}

/// SIGTERM the daemon serving `state` and wait for it to exit. `None`: none was running.
/// The daemon is found through its socket, else (socket deleted or taken over by something
/// else) through `mesh.lock`, which it holds locked for its whole life with its pid inside.
pub fn stop_daemon(state: &StateDir) -> anyhow::Result<Option<u32>> {
    let pid = match socket_pid(state) {
        Ok(Some(pid)) => pid,
        Ok(None) => match state.lock_holder() {
            Some(pid) => pid,
            None => return Ok(None),
        },
        Err(e) => match state.lock_holder() {
            Some(pid) => pid,
            None => return Err(e),
        },
    };
    // Never 0 or negative: kill(2) would signal a whole process group.
    let Some(target) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        bail!("the daemon announced an invalid pid {pid}")
    };
    if let Err(e) = rustix::process::kill_process(target, rustix::process::Signal::TERM) {
        let e = io::Error::from(e);
        bail!("cannot stop the daemon (pid {pid}): {e}");
    }
    // A stopped daemon (SIGSTOP, Ctrl-Z) acts on the SIGTERM only once it runs again.
    let _ = rustix::process::kill_process(target, rustix::process::Signal::CONT);
    let _wait = super::progress::waiting(format!("waiting for the daemon (pid {pid}) to exit"));
    if !exits_within(target, pid, STOP_DEADLINE) {
        // Stuck: force it, as a service manager does after its stop timeout. Queued mail is
        // safe: every accepted message is committed to the database before it is answered.
        let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
        if !exits_within(target, pid, STOP_DEADLINE) {
            bail!(
                "the daemon (pid {pid}) did not exit within {STOP_DEADLINE:?}, even after SIGKILL"
            );
        }
        super::stdout::warn(&format!(
            "the daemon (pid {pid}) did not exit within {STOP_DEADLINE:?} of SIGTERM: killed it (queued mail is safe)"
        ));
    }
    Ok(Some(pid))
}

/// Whether process `pid` is gone (or a zombie) within `limit`.
fn exits_within(target: rustix::process::Pid, pid: u32, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    while rustix::process::test_kill_process(target).is_ok() && !is_zombie(pid) {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    true
}

/// The pid the daemon on the socket announces in its handshake; `None` when nothing listens.
fn socket_pid(state: &StateDir) -> anyhow::Result<Option<u32>> {
    let socket = state.socket();
    let mut stream = match mesh_client::connection::open_stream(&socket) {
        Ok(s) => s,
        Err(e) if e.is_not_running() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write_frame(
        &mut stream,
        &ClientHello::current(env!("CARGO_PKG_VERSION")),
    )
    .with_context(|| format!("cannot talk to the daemon on {}", socket.display()))?;
    let hello: ServerHello = read_frame(&mut stream).with_context(|| {
        format!(
            "no daemon handshake on {}; is it a mesh daemon?",
            socket.display()
        )
    })?;
    drop(stream);
    Ok(Some(hello.pid))
}

/// The running daemon's pid, if one answers.
pub(super) fn ping_pid(state: &StateDir) -> Option<u32> {
    let opts = mesh_client::ConnectOptions {
        autostart: false,
        ..mesh_client::ConnectOptions::default()
    };
    mesh_client::Connection::connect(&state.socket(), &opts)
        .ok()
        .map(|c| c.daemon_pid())
}

fn is_zombie(pid: u32) -> bool {
    mesh_daemon::procinfo::info(pid).is_some_and(|p| p.zombie)
}
