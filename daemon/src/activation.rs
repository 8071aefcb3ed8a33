//! Getting the listening socket: inherited from systemd (`LISTEN_FDS`) or launchd
//! (`launch_activate_socket`), or bound by the daemon itself. STUB: interface only.

use std::fs::File;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use crate::paths::StateDir;

/// Where the listener came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Systemd,
    Launchd,
    /// Bound by this daemon; the socket file is removed on clean shutdown.
    Bound,
}

/// A listener ready to serve, plus what must live as long as the daemon.
#[derive(Debug)]
pub struct Acquired {
    /// Blocking-mode std listener; the caller makes it non-blocking for tokio.
    pub listener: UnixListener,
    pub source: Source,
    /// The flock on `mesh.lock`, held for the daemon's whole life.
    pub lock: File,
    /// The socket path to unlink on clean shutdown (only when `source` is `Bound`).
    pub remove_on_exit: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("a daemon is already running (pid {pid}) on {socket}")]
    AlreadyRunning { pid: u32, socket: PathBuf },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Take a listener passed by systemd or launchd, if any. Call before starting the tokio
/// runtime (it reads and then unsets the activation environment).
pub fn inherited() -> std::io::Result<Option<(UnixListener, Source)>> {
    Ok(None)
}

/// Acquire the listener: inherited if socket-activated, else lock, check for a live or stale
/// socket, bind `mesh.sock` with mode 0600.
pub fn acquire(_state: &StateDir) -> Result<Acquired, ActivationError> {
    Err(ActivationError::Io(std::io::Error::other("activation not implemented yet")))
}
