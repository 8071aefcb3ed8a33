//! `daemon.reachable` and `daemon.version`: connect to the socket WITHOUT starting a daemon
//! (a health check must not change what it diagnoses; only a service manager's socket
//! activation may start one), handshake, and time a few pings.

use std::cmp::Ordering;
use std::path::Path;
use std::time::{Duration, Instant};

use mesh_proto::{ErrorCode, PROTOCOL_VERSION};

use super::check::{Check, Inputs, human_duration, quote};
use super::service::{self, Facts};
use super::version;
use mesh_client::connection::{ConnectOptions, Connection};
use mesh_client::error::ClientError;

/// Bound on the handshake: a socket-activated daemon starts well within it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Bound on each ping.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Pings timed; the median is reported.
const PINGS: usize = 3;
/// A round trip slower than this is worth a warning (a healthy daemon answers in well under
/// a millisecond).
const SLOW: Duration = Duration::from_millis(250);

/// What the daemon said.
#[derive(Debug)]
pub(super) struct Probe {
    /// The daemon's program version, when it announced one (also on a protocol mismatch).
    pub version: Option<String>,
    pub outcome: Result<Answered, ClientError>,
}

#[derive(Debug)]
pub(super) struct Answered {
    pub pid: u32,
    pub protocol: u32,
    pub round_trip: Duration,
    pub uptime_ms: u64,
}

/// Connect (never autostart), handshake and ping.
pub(super) fn probe(socket: &Path) -> Probe {
    let opts = ConnectOptions {
        autostart: false,
        deadline: HANDSHAKE_TIMEOUT,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        request_timeout: Some(PING_TIMEOUT),
    };
    let mut conn = match Connection::connect(socket, &opts) {
        Ok(c) => c,
        Err(e) => {
            let version = match &e {
                ClientError::VersionMismatch { daemon_version, .. } => Some(daemon_version.clone()),
                _ => None,
            };
            return Probe {
                version,
                outcome: Err(e),
            };
        }
    };
    let version = Some(conn.daemon_version().to_owned());
    let mut times = Vec::with_capacity(PINGS);
    let mut uptime_ms = 0;
    for _ in 0..PINGS {
        let start = Instant::now();
        match conn.ping() {
            Ok(pong) => {
                times.push(start.elapsed());
                uptime_ms = pong.uptime_ms;
            }
            Err(e) => {
                return Probe {
                    version,
                    outcome: Err(e),
                };
            }
        }
    }
    times.sort();
    Probe {
        version,
        outcome: Ok(Answered {
            pid: conn.daemon_pid(),
            protocol: conn.server_hello().protocol,
            round_trip: times[times.len() / 2],
            uptime_ms,
        }),
    }
}

/// `daemon.reachable`, then `daemon.version` when the daemon said its version.
pub(super) fn checks(probe: &Probe, facts: &Facts, activated: bool, inputs: &Inputs) -> Vec<Check> {
    const NAME: &str = "daemon.reachable";
    let socket = inputs.state.socket();
    let mut out = Vec::new();
    match &probe.outcome {
        Ok(a) => {
            let ms = a.round_trip.as_secs_f64() * 1000.0;
            let started = if activated {
                "; started by socket activation for this check"
            } else {
                ""
            };
            let detail = format!(
                "pid {}, protocol {}, up {}, round trip {ms:.2} ms{started}",
                a.pid,
                a.protocol,
                human_duration(a.uptime_ms)
            );
            out.push(if a.round_trip > SLOW {
                Check::warn(
                    NAME,
                    format!("{detail}: slow (a healthy daemon answers in under a millisecond)"),
                    "mesh restart",
                )
            } else {
                Check::ok(NAME, detail)
            });
        }
        Err(e) => out.push(unreachable(e, facts, &socket, inputs)),
    }
    if let Some(v) = &probe.version {
        let bin = inputs.mesh_bin.as_deref().map(|p| p.display().to_string());
        out.push(version::daemon(v, &inputs.version, bin.as_deref()));
    }
    out
}

fn unreachable(e: &ClientError, facts: &Facts, socket: &Path, inputs: &Inputs) -> Check {
    const NAME: &str = "daemon.reachable";
    let shown = socket.display();
    match e {
        ClientError::NotRunning { .. } if let Some(pid) = inputs.state.lock_holder() => {
            Check::fail(
                NAME,
                format!(
                    "the daemon (pid {pid}) holds {} but nothing listens on {shown}: its socket \
                     was deleted or replaced, and no client can reach it",
                    inputs.state.daemon_lock().display()
                ),
                match facts {
                    Facts::None { .. } => "mesh restart".to_owned(),
                    _ => service::start_fix(facts, socket),
                },
            )
        }
        ClientError::NotRunning { reason, .. }
            if service::on_demand(facts) && reason.kind() == std::io::ErrorKind::NotFound =>
        {
            // The normal state of an on-demand setup before the first command needs it.
            Check::ok(
                NAME,
                "not running yet: it starts on demand (any mesh command, Claude Code hook or \
                 the MCP server starts it; `mesh start` does it now)",
            )
        }
        ClientError::NotRunning { reason, .. }
            if service::on_demand(facts)
                && reason.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            Check::warn(
                NAME,
                format!(
                    "not running: {shown} is a stale socket left by a daemon that died (its \
                     log, {}, may say why); the next mesh command replaces it and starts a new \
                     daemon",
                    inputs.state.log().display()
                ),
                "mesh start",
            )
        }
        ClientError::NotRunning { reason, .. } => {
            let how = match facts {
                Facts::None { .. } => {
                    "; any mesh command or Claude Code hook starts it on demand, `mesh start` does it now"
                }
                _ => "",
            };
            let why = match reason.kind() {
                std::io::ErrorKind::NotFound => "no socket".to_owned(),
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused: the socket is left over from a daemon that died".to_owned()
                }
                _ => reason.to_string(),
            };
            Check::fail(
                NAME,
                format!("the daemon is not running: nothing listens on {shown} ({why}){how}"),
                service::start_fix(facts, socket),
            )
        }
        ClientError::VersionMismatch {
            daemon_version,
            daemon_protocol,
            ..
        } => {
            let daemon_older = match daemon_protocol.cmp(&PROTOCOL_VERSION) {
                Ordering::Equal => {
                    mesh_client::version::compare_versions(daemon_version, &inputs.version).is_lt()
                }
                ord => ord.is_lt(),
            };
            let fix = if daemon_older {
                "mesh restart".to_owned()
            } else {
                format!(
                    "upgrade this binary ({}) to {daemon_version} or later, then run `mesh install`",
                    inputs
                        .mesh_bin
                        .as_deref()
                        .map_or_else(|| "mesh".to_owned(), |p| p.display().to_string())
                )
            };
            Check::fail(
                NAME,
                format!(
                    "the daemon speaks protocol {daemon_protocol}, this binary {PROTOCOL_VERSION}: {e}"
                ),
                fix,
            )
        }
        ClientError::Refused(w) => {
            let fix = match w.code {
                ErrorCode::PermissionDenied => "set CLAUDE_MESH_HOME to a directory of your own",
                ErrorCode::Busy => {
                    "wait a moment and run `mesh health` again; if it persists: mesh restart"
                }
                _ => "mesh restart",
            };
            Check::fail(NAME, e.to_string(), fix)
        }
        ClientError::NotAMeshDaemon { .. } => Check::fail(
            NAME,
            format!(
                "something listens on {shown} but does not speak the claude-mesh protocol; \
                 stop that program, or take the path back from it"
            ),
            format!("rm {} && mesh start", quote(socket)),
        ),
        ClientError::Timeout { .. } => Check::fail(
            NAME,
            format!(
                "the daemon on {shown} accepted the connection but did not answer in time: it is stuck, or failing to start"
            ),
            match facts {
                Facts::None { .. } => "mesh restart".to_owned(),
                _ => service::start_fix(facts, socket),
            },
        ),
        other => Check::fail(
            NAME,
            format!("cannot talk to the daemon on {shown}: {other}"),
            "mesh restart",
        ),
    }
}
