//! Connect to the daemon, starting it on demand (sccache/atuin style).
//!
//! 1. Connect; done if it works. Only "no socket" and "connection refused" mean "not running".
//! 2. If a service unit is installed, the service manager owns the daemon: never spawn a
//!    competitor, retry connecting until the deadline, then [`ClientError::ServiceNotReady`].
//! 3. Otherwise take `spawn.lock` (so concurrent clients start one daemon), connect again (the
//!    lock holder before us may have started it), else re-execute this binary as `mesh daemon`,
//!    detached, and wait for its readiness line on a pipe (see [`crate::ready`]).

use std::ffi::OsStr;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use mesh_daemon::paths::StateDir;

use crate::connection::{ConnectOptions, Connection};
use crate::error::ClientError;
use crate::ready;
use crate::unit::ServiceUnit;

const BACKOFF_START: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

/// Connect to the daemon of `state`, starting it if needed and allowed (see the module docs).
///
/// Starting re-executes [`std::env::current_exe`] as `<exe> daemon`, so only the `mesh` binary
/// may use `autostart: true`; any other program embedding this library must pass
/// `autostart: false` (the spawn lock keeps a wrong binary from recursing, but it fails).
pub fn connect_or_start(
    state: &StateDir,
    opts: &ConnectOptions,
) -> Result<Connection, ClientError> {
    let deadline = Instant::now() + opts.deadline;
    let socket = state.socket();
    let err = match Connection::connect(&socket, opts) {
        Ok(conn) => return Ok(conn),
        Err(e) => e,
    };
    let unit = ServiceUnit::installed();
    if !err.is_not_running() {
        // Under socket activation the connect succeeds even when the daemon fails to start;
        // the handshake then times out or the connection closes.
        return Err(match (unit, service_detail(&err)) {
            (Some(unit), Some(detail)) => ClientError::ServiceNotReady { unit, detail },
            _ => err,
        });
    }
    if !opts.autostart {
        return Err(err);
    }
    if let Some(unit) = unit {
        tracing::debug!(unit = %unit.path.display(), "service unit installed: waiting for it");
        return connect_retrying(&socket, opts, deadline).map_err(|e| match e {
            ClientError::NotRunning { .. } => ClientError::ServiceNotReady {
                detail: format!(
                    "nothing accepted connections on {} within {:.1}s",
                    socket.display(),
                    opts.deadline.as_secs_f64()
                ),
                unit,
            },
            e => match service_detail(&e) {
                Some(detail) => ClientError::ServiceNotReady { unit, detail },
                None => e,
            },
        });
    }
    start_daemon(state, opts, deadline)
}

/// What a handshake failure means when the service manager owns the socket: the daemon it
/// started failed or hangs. `None` for errors that mean something else.
fn service_detail(err: &ClientError) -> Option<String> {
    match err {
        ClientError::Timeout { after, .. } => Some(format!(
            "the socket accepted the connection but the daemon did not answer within {:.1}s",
            after.as_secs_f64()
        )),
        ClientError::Frame(e) => Some(format!(
            "the daemon closed the connection during the handshake ({e})"
        )),
        _ => None,
    }
}

/// Spawn a daemon under `spawn.lock` and connect to it.
fn start_daemon(
    state: &StateDir,
    opts: &ConnectOptions,
    deadline: Instant,
) -> Result<Connection, ClientError> {
    state
        .ensure()
        .map_err(|e| ClientError::io("cannot prepare the mesh state directory", e))?;
    let socket = state.socket();
    let _lock = match lock_or_connect(state, opts, deadline)? {
        Locked::Lock(file) => file,
        Locked::Connected(conn) => return Ok(conn),
    };
    // Whoever held the lock before us may have started the daemon meanwhile.
    match Connection::connect(&socket, opts) {
        Ok(conn) => return Ok(conn),
        Err(e) if e.is_not_running() => {}
        Err(e) => return Err(e),
    }
    let exe = std::env::current_exe()
        .map_err(|e| ClientError::io("cannot find the mesh binary to start the daemon", e))?;
    tracing::debug!(exe = %exe.display(), "starting the daemon");
    let pid = match ready::spawn_daemon(state, &exe, &[OsStr::new("daemon")], deadline) {
        Ok(pid) => pid,
        // E.g. a `mesh daemon` started by hand was still starting up and holds the daemon
        // lock: ours gave way, and that one may be serving by now.
        Err(e) => return Connection::connect(&socket, opts).map_err(|_| e),
    };
    tracing::debug!(pid, "daemon reported ready");
    connect_retrying(&socket, opts, deadline).map_err(|e| match e {
        ClientError::NotRunning { reason, .. } => ClientError::DaemonStartFailed {
            reason: format!(
                "it reported ready (pid {pid}) but {} refuses connections ({reason})",
                socket.display()
            ),
        },
        e => e,
    })
}

#[derive(Debug)]
enum Locked {
    Lock(File),
    Connected(Connection),
}

/// Take `spawn.lock`, or connect if the daemon comes up while another client holds it.
fn lock_or_connect(
    state: &StateDir,
    opts: &ConnectOptions,
    deadline: Instant,
) -> Result<Locked, ClientError> {
    let path = state.spawn_lock();
    let file = mesh_daemon::paths::open_regular(
        &path,
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600),
        false,
    )
    .map_err(|e| ClientError::io(format!("cannot open {}", path.display()), e))?;
    let mut backoff = BACKOFF_START;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Locked::Lock(file)),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(ClientError::io(
                    format!("cannot lock {}", path.display()),
                    e,
                ));
            }
        }
        match Connection::connect(&state.socket(), opts) {
            Ok(conn) => return Ok(Locked::Connected(conn)),
            Err(e) if e.is_not_running() => {}
            Err(e) => return Err(e),
        }
        if !sleep_before(deadline, &mut backoff) {
            return Err(ClientError::Timeout {
                waiting_for: format!(
                    "another mesh process to start the daemon (it holds {})",
                    path.display()
                ),
                after: opts.deadline,
            });
        }
    }
}

/// Connect, retrying while nothing listens, until `deadline`; the last error when it passes.
fn connect_retrying(
    socket: &Path,
    opts: &ConnectOptions,
    deadline: Instant,
) -> Result<Connection, ClientError> {
    let mut backoff = BACKOFF_START;
    loop {
        match Connection::connect(socket, opts) {
            Err(e) if e.is_not_running() => {
                if !sleep_before(deadline, &mut backoff) {
                    return Err(e);
                }
            }
            result => return result,
        }
    }
}

/// Sleep for the current backoff (doubling it up to [`BACKOFF_MAX`]) unless `deadline` has
/// passed; false when it has.
fn sleep_before(deadline: Instant, backoff: &mut Duration) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return false;
    }
    thread::sleep((*backoff).min(left));
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_autostart_reports_not_running() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        let opts = ConnectOptions {
            autostart: false,
            ..ConnectOptions::default()
        };
        let err = connect_or_start(&state, &opts).unwrap_err();
        assert!(err.is_not_running(), "{err}");
        assert!(
            !state.root().exists(),
            "no autostart must not create the state dir"
        );
    }

    #[test]
    fn handshake_failures_under_a_service_explain_themselves() {
        let timeout = ClientError::Timeout {
            waiting_for: "x".into(),
            after: Duration::from_secs(2),
        };
        assert!(
            service_detail(&timeout)
                .unwrap()
                .contains("did not answer within 2.0s")
        );
        let closed = ClientError::Frame(mesh_proto::FrameError::Closed);
        assert!(
            service_detail(&closed)
                .unwrap()
                .contains("closed the connection")
        );
        let remote = ClientError::Remote(mesh_proto::WireError::new(
            mesh_proto::ErrorCode::Busy,
            "busy",
        ));
        assert_eq!(service_detail(&remote), None);
    }

    #[test]
    fn backoff_doubles_and_stops_at_the_deadline() {
        let mut b = BACKOFF_START;
        assert!(sleep_before(
            Instant::now() + Duration::from_secs(1),
            &mut b
        ));
        assert_eq!(b, Duration::from_millis(40));
        assert!(!sleep_before(Instant::now(), &mut b));
    }
}
