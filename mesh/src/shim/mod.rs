//! What the short-lived shims share (`mesh hook`, `mesh statusline`): both run on Claude Code's
//! hot path, before clap and logging, with a hard [`deadline`], read Claude Code's JSON on
//! stdin ([`input`]) and [`connect`] with one blocking connection.

pub(crate) mod deadline;
pub(crate) mod input;

use std::time::Duration;

use mesh_client::{ConnectOptions, Connection, connect_or_start};
use mesh_daemon::paths::StateDir;

use self::deadline::Deadline;

/// Longest wait for an on-demand daemon to come up.
pub(crate) const MAX_BOOT_WAIT: Duration = Duration::from_millis(1000);

/// Connect within the deadline; start the daemon on demand when `autostart` (waiting at most
/// [`MAX_BOOT_WAIT`] for it).
pub(crate) fn connect(
    state: &StateDir,
    deadline: &Deadline,
    autostart: bool,
) -> anyhow::Result<Connection> {
    let left = deadline.remaining();
    let opts = ConnectOptions {
        autostart,
        deadline: left.min(MAX_BOOT_WAIT),
        handshake_timeout: left,
        request_timeout: Some(left),
    };
    // The daemon is almost always up: pipeline the handshake with the first request. Only if
    // nobody listens, fall back to the path that can start one.
    match Connection::connect_pipelined(&state.socket(), &opts) {
        Ok(conn) => Ok(conn),
        Err(e) if e.is_not_running() => Ok(connect_or_start(state, &opts)?),
        Err(e) => Err(e.into()),
    }
}
