//! Everything that can go wrong between a client and the daemon. Each message says what the
//! user should do next, because these end up verbatim on a terminal or in a hook's output.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use mesh_proto::{ErrorCode, FrameError, WireError};

use crate::unit::ServiceUnit;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket: it is missing, or connecting was refused.
    #[error(
        "the mesh daemon is not running (cannot connect to {}: {reason}); start it with `mesh daemon`, or run any `mesh` command to start it on demand",
        socket.display()
    )]
    NotRunning { socket: PathBuf, reason: io::Error },

    /// A service unit is installed, so the service manager owns the daemon, but it did not come
    /// up in time. Clients never start a competing daemon in that case.
    #[error(
        "service not ready: the mesh service is installed ({}) but the daemon did not come up: {detail}; check it with `{}`",
        unit.path.display(),
        unit.status_command()
    )]
    ServiceNotReady { unit: ServiceUnit, detail: String },

    /// The client started a daemon and it failed (or never said it was ready).
    #[error("could not start the mesh daemon: {reason}")]
    DaemonStartFailed { reason: String },

    /// The daemon speaks another protocol version.
    #[error("{}", version_mismatch_message(.daemon_version, .daemon_protocol, .client_version, .client_protocol))]
    VersionMismatch {
        daemon_version: String,
        daemon_protocol: u32,
        client_version: String,
        client_protocol: u32,
    },

    /// The handshake was refused (another user's daemon, too many connections, shutting down…).
    #[error("the mesh daemon refused the connection: {}{}", .0.message, refused_hint(.0.code))]
    Refused(WireError),

    /// The daemon answered the request with an error.
    #[error("{}", .0.message)]
    Remote(WireError),

    /// The daemon did not answer in time.
    #[error(
        "timed out after {:.1}s waiting for {waiting_for}; the daemon may be stuck: check `mesh health` or restart it with `mesh restart`",
        after.as_secs_f64()
    )]
    Timeout {
        waiting_for: String,
        after: Duration,
    },

    /// A local I/O failure (state directory, log file, socket options, spawning).
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// The connection broke or carried garbage.
    #[error(
        "lost the connection to the mesh daemon ({0}); it may have crashed or restarted: run the command again, and check `mesh health` if it keeps failing"
    )]
    Frame(FrameError),

    /// A request was too large to send.
    #[error(
        "the request is too large ({len} bytes; a request may have {} KiB at most, and a message {} KiB): send a shorter message",
        max / 1024,
        mesh_proto::MAX_BODY_LEN / 1024
    )]
    TooLarge { len: usize, max: usize },

    /// Whatever listens on the socket does not speak the claude-mesh protocol.
    #[error(
        "{} is not a claude-mesh daemon socket (wrong handshake); stop whatever listens there, or set CLAUDE_MESH_HOME to another directory",
        socket.display()
    )]
    NotAMeshDaemon { socket: PathBuf },

    /// The daemon answered with a response of the wrong kind.
    #[error(
        "the mesh daemon answered {} {request} request with {response}; it may be another version: restart it with `mesh restart`",
        article(request)
    )]
    Unexpected {
        request: &'static str,
        response: &'static str,
    },
}

impl ClientError {
    /// Whether this error means "no daemon is listening" (the autostart trigger).
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::NotRunning { .. })
    }

    /// The connection broke (or nobody listens any more): the request may or may not have been
    /// carried out. Retry-safe requests (a consume with a hand-out token) can be sent again on
    /// a new connection.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            ClientError::Io { .. } | ClientError::Frame(_) | ClientError::NotRunning { .. }
        )
    }

    /// The daemon speaks another protocol version (one binary was upgraded, not the other).
    pub fn is_version_mismatch(&self) -> bool {
        matches!(self, ClientError::VersionMismatch { .. })
    }

    /// The wire error code, for errors the daemon sent.
    pub fn wire_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote(w) | ClientError::Refused(w) => Some(w.code),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }

    /// `request` was answered by the response named `response` ([`mesh_proto::Response::name`]).
    pub(crate) fn unexpected(request: &'static str, response: &'static str) -> Self {
        ClientError::Unexpected { request, response }
    }
}

/// `a` or `an`, as English wants it before `word` (`an Ask`, `a Ping`).
pub(crate) fn article(word: &str) -> &'static str {
    match word.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// "Restart the daemon" when it is the older side, "upgrade this binary" when it is newer.
fn version_mismatch_message(
    daemon_version: &str,
    daemon_protocol: &u32,
    client_version: &str,
    client_protocol: &u32,
) -> String {
    let daemon_is_older = match daemon_protocol.cmp(client_protocol) {
        std::cmp::Ordering::Equal => {
            crate::version::compare_versions(daemon_version, client_version).is_lt()
        }
        ord => ord.is_lt(),
    };
    if daemon_is_older {
        format!(
            "daemon is version {daemon_version} (protocol {daemon_protocol}) but this mesh is {client_version} (protocol {client_protocol}): restart it with `mesh restart`"
        )
    } else {
        format!(
            "this mesh binary ({client_version}, protocol {client_protocol}) is older than the running daemon ({daemon_version}, protocol {daemon_protocol}): upgrade it"
        )
    }
}

/// Compare dotted numeric versions (`0.10.0` > `0.9.1`); non-numeric parts compare as 0.
fn refused_hint(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::PermissionDenied => {
            "; the socket belongs to another user's daemon: set CLAUDE_MESH_HOME to a directory of your own"
        }
        ErrorCode::Busy => "; it has too many connections: try again in a moment",
        ErrorCode::ShuttingDown => "; it is shutting down: try again in a moment",
        ErrorCode::Incompatible => {
            "; make sure this mesh and the daemon are the same version (`mesh restart`)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::ServiceManager;

    #[test]
    fn older_daemon_says_restart() {
        let e = ClientError::VersionMismatch {
            daemon_version: "0.1.0".into(),
            daemon_protocol: 1,
            client_version: "0.2.0".into(),
            client_protocol: 2,
        };
        assert_eq!(
            e.to_string(),
            "daemon is version 0.1.0 (protocol 1) but this mesh is 0.2.0 (protocol 2): restart it with `mesh restart`"
        );
    }

    #[test]
    fn newer_daemon_says_upgrade() {
        let e = ClientError::VersionMismatch {
            daemon_version: "0.3.0".into(),
            daemon_protocol: 3,
            client_version: "0.2.0".into(),
            client_protocol: 2,
        };
        let msg = e.to_string();
        assert!(msg.starts_with("this mesh binary"), "{msg}");
        assert!(msg.ends_with("upgrade it"), "{msg}");
    }

    #[test]
    fn a_request_too_large_quotes_the_message_limit_too() {
        let e = ClientError::TooLarge {
            len: 10_000_000,
            max: mesh_proto::MAX_FRAME_LEN,
        };
        let msg = e.to_string();
        assert!(
            msg.contains("4096 KiB") && msg.contains("a message 256 KiB"),
            "{msg}"
        );
    }

    #[test]
    fn an_unexpected_response_is_told_in_english() {
        let e = ClientError::unexpected("Ask", "Pong");
        assert!(
            e.to_string().contains("answered an Ask request with Pong"),
            "{e}"
        );
        let e = ClientError::unexpected("Ping", "Done");
        assert!(e.to_string().contains("answered a Ping request"), "{e}");
    }

    #[test]
    fn versions_compare_numerically() {
        let less = |a, b| crate::version::compare_versions(a, b).is_lt();
        assert!(less("0.9.1", "0.10.0"));
        assert!(!less("0.10.0", "0.9.1"));
        assert!(!less("1.0.0", "1.0.0"));
    }

    #[test]
    fn messages_say_what_to_do() {
        let not_running = ClientError::NotRunning {
            socket: "/tmp/x/mesh.sock".into(),
            reason: io::Error::from(io::ErrorKind::NotFound),
        };
        let msg = not_running.to_string();
        assert!(
            msg.contains("/tmp/x/mesh.sock") && msg.contains("mesh daemon"),
            "{msg}"
        );

        let unit = ServiceUnit {
            manager: ServiceManager::Systemd,
            path: "/home/u/.config/systemd/user/mesh.socket".into(),
        };
        let msg = ClientError::ServiceNotReady {
            unit,
            detail: "nothing accepted connections within 5.0s".into(),
        }
        .to_string();
        assert!(msg.contains("systemctl --user status mesh.socket"), "{msg}");

        let busy = ClientError::Refused(WireError::new(ErrorCode::Busy, "too many connections"));
        assert!(busy.to_string().contains("try again"), "{busy}");

        let remote = ClientError::Remote(WireError::new(ErrorCode::UnknownPeer, "no peer `x`"));
        assert_eq!(remote.to_string(), "no peer `x`");
        assert_eq!(remote.wire_code(), Some(ErrorCode::UnknownPeer));

        let t = ClientError::Timeout {
            waiting_for: "the daemon's handshake".into(),
            after: Duration::from_secs(2),
        };
        assert!(t.to_string().contains("after 2.0s"), "{t}");
    }
}
