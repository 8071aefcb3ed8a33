//! How a failed command ends: the one place that maps an error ([`ClientError`], a daemon's
//! [`ErrorCode`], or a [`Failure`] a command raised itself) to a stable code string and an exit
//! status, and prints it: one `mesh: …` line on stderr, or with `--json` one document on stdout,
//! `{"error": {"code": "...", "message": "...", "fix": "..." | null}}`.
//!
//! | exit | code(s) | meaning |
//! |---|---|---|
//! | 1 | `error`, `internal`, `storage`, `already_answered`, … | any other failure |
//! | 2 | (clap) | usage error: unknown flag, missing argument |
//! | 3 | `timeout` | `mesh ask`: no answer in time |
//! | 4 | `unknown_peer` | no session answers to that name or id |
//! | 5 | `peer_gone` | `mesh ask`: the peer's session ended before answering |
//! | 6 | `daemon_unreachable` | no daemon could be reached or started |
//! | 7 | `invalid_argument`, `ambiguous_peer`, `unknown_message`, `not_a_question`, `not_yours`, `too_large`, `bad_pattern` | bad input |
//! | 130 | `interrupted` | `mesh ask` interrupted (Ctrl-C, SIGTERM) |

use std::process::ExitCode;

use mesh_client::ClientError;
use mesh_proto::ErrorCode;
use serde::Serialize;

/// Exit status of any failure without a class of its own.
pub const EXIT_FAILURE: u8 = 1;
/// `mesh ask`: no answer came in time.
pub const EXIT_TIMED_OUT: u8 = 3;
/// No session answers to the name or id given.
pub const EXIT_UNKNOWN_PEER: u8 = 4;
/// `mesh ask`: the peer's session ended before it answered.
pub const EXIT_PEER_GONE: u8 = 5;
/// No daemon could be reached (or started).
pub const EXIT_DAEMON_UNREACHABLE: u8 = 6;
/// The input was refused: a bad argument, a body over the limit, a bad pattern.
pub const EXIT_BAD_INPUT: u8 = 7;
/// `mesh ask` after Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// A failure class a script can tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Timeout,
    UnknownPeer,
    PeerGone,
    DaemonUnreachable,
    /// `mesh ask` interrupted (Ctrl-C, SIGTERM).
    Interrupted,
    /// Bad input, with its code string.
    BadInput(&'static str),
    /// Anything else, with its code string.
    Other(&'static str),
}

impl Class {
    /// The stable code string (`--json`'s `error.code`).
    pub fn code(self) -> &'static str {
        match self {
            Class::Timeout => "timeout",
            Class::UnknownPeer => "unknown_peer",
            Class::PeerGone => "peer_gone",
            Class::DaemonUnreachable => "daemon_unreachable",
            Class::Interrupted => "interrupted",
            Class::BadInput(code) | Class::Other(code) => code,
        }
    }

    /// The exit status.
    pub fn exit(self) -> u8 {
        match self {
            Class::Timeout => EXIT_TIMED_OUT,
            Class::UnknownPeer => EXIT_UNKNOWN_PEER,
            Class::PeerGone => EXIT_PEER_GONE,
            Class::DaemonUnreachable => EXIT_DAEMON_UNREACHABLE,
            Class::Interrupted => EXIT_INTERRUPTED,
            Class::BadInput(_) => EXIT_BAD_INPUT,
            Class::Other(_) => EXIT_FAILURE,
        }
    }

    /// What to do next, where one thing always helps.
    fn fix(self) -> Option<&'static str> {
        match self {
            Class::UnknownPeer => Some("`mesh list` shows the live sessions and their names"),
            Class::DaemonUnreachable => Some("`mesh health` says what is wrong"),
            Class::PeerGone | Class::Timeout => {
                Some("an answer that still comes waits in your inbox: `mesh inbox`")
            }
            _ => None,
        }
    }
}

/// A failure a command classifies itself (an ask that timed out, a body over the limit, a bad
/// regular expression); its message is the whole story.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub class: Class,
    pub message: String,
}

impl Failure {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }

    /// Bad input with code `code`.
    pub fn bad_input(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(Class::BadInput(code), message)
    }
}

/// The class of a daemon's error code.
fn wire_class(code: ErrorCode) -> Class {
    match code {
        ErrorCode::UnknownPeer => Class::UnknownPeer,
        ErrorCode::AmbiguousPeer => Class::BadInput("ambiguous_peer"),
        ErrorCode::InvalidArgument => Class::BadInput("invalid_argument"),
        ErrorCode::UnknownMessage => Class::BadInput("unknown_message"),
        ErrorCode::NotAQuestion => Class::BadInput("not_a_question"),
        ErrorCode::NotYours => Class::BadInput("not_yours"),
        ErrorCode::FrameTooLarge => Class::BadInput("too_large"),
        ErrorCode::Internal => Class::Other("internal"),
        ErrorCode::Malformed => Class::Other("malformed"),
        ErrorCode::Incompatible => Class::Other("incompatible"),
        ErrorCode::PermissionDenied => Class::Other("permission_denied"),
        ErrorCode::NotASession => Class::Other("not_a_session"),
        ErrorCode::AlreadyAnswered => Class::Other("already_answered"),
        ErrorCode::Busy => Class::Other("busy"),
        ErrorCode::ShuttingDown => Class::Other("shutting_down"),
        ErrorCode::Storage => Class::Other("storage"),
        ErrorCode::DiskFull => Class::Other("disk_full"),
        ErrorCode::Handshake => Class::Other("handshake"),
        ErrorCode::DeadlineExceeded => Class::Other("deadline_exceeded"),
        ErrorCode::Other(_) => Class::Other("error"),
    }
}

/// The class of a client library error.
pub(crate) fn client_class(e: &ClientError) -> Class {
    match e {
        // `Io`: the local side of reaching a daemon (its state directory, its socket, starting
        // it) failed.
        ClientError::NotRunning { .. }
        | ClientError::Io { .. }
        | ClientError::ServiceNotReady { .. }
        | ClientError::DaemonStartFailed { .. }
        | ClientError::NotAMeshDaemon { .. }
        | ClientError::Timeout { .. } => Class::DaemonUnreachable,
        ClientError::Refused(w) => match w.code {
            ErrorCode::PermissionDenied
            | ErrorCode::Busy
            | ErrorCode::ShuttingDown
            | ErrorCode::Handshake => Class::DaemonUnreachable,
            code => wire_class(code),
        },
        ClientError::Remote(w) => wire_class(w.code),
        ClientError::TooLarge { .. } => Class::BadInput("too_large"),
        ClientError::VersionMismatch { .. } => Class::Other("version_mismatch"),
        ClientError::Frame(_) => Class::Other("connection_lost"),
        ClientError::Unexpected { .. } => Class::Other("unexpected_response"),
    }
}

/// The class of any error: the first [`Failure`] or [`ClientError`] in its chain, else `error`.
pub fn classify(e: &anyhow::Error) -> Class {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.class;
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return client_class(c);
        }
    }
    Class::Other("error")
}

#[derive(Serialize)]
struct ErrorDoc<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    fix: Option<&'a str>,
}

/// `--json`'s error document for `e`, pretty-printed.
pub fn error_json(class: Class, message: &str) -> String {
    let doc = ErrorDoc {
        error: ErrorBody {
            code: class.code(),
            message,
            fix: class.fix(),
        },
    };
    // Three strings always encode; the fallback keeps the promise of one document anyway.
    serde_json::to_string_pretty(&doc)
        .unwrap_or_else(|_| r#"{"error": {"code": "error", "message": "", "fix": null}}"#.into())
}

/// `error: cause: cause…`, each cause once: a cause whose text the message already holds (an
/// error that quotes its source, as `… is not valid JSON (key must be a string …)`) is not
/// repeated.
pub fn chain_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

/// Print a command's error (stderr, or stdout with `--json`) and return its exit status.
pub fn report(e: &anyhow::Error, json: bool) -> ExitCode {
    let class = classify(e);
    let message = chain_text(e);
    if json {
        // Exact, as every `--json` document (JSON escapes control characters itself).
        let _ = super::stdout::write_stdout(&(error_json(class, &message) + "\n"));
    } else {
        // Errors can quote peer-controlled text (names, paths): shown safely.
        super::stdout::warn(&message);
    }
    ExitCode::from(class.exit())
}

#[cfg(test)]
mod tests {
    use mesh_proto::WireError;

    use super::*;

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let inner = std::io::Error::other("disk on fire");
        let e = anyhow::Error::from(ClientError::Io {
            context: "cannot write: disk on fire".into(),
            source: inner,
        })
        .context("cannot send");
        assert_eq!(chain_text(&e), "cannot send: cannot write: disk on fire");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&e), "outer: inner");
    }

    #[test]
    fn classes_are_found_anywhere_in_the_chain() {
        let e = anyhow::Error::from(ClientError::Remote(WireError::new(
            ErrorCode::UnknownPeer,
            "no session named `x`",
        )))
        .context("cannot send to `x`");
        assert_eq!(classify(&e), Class::UnknownPeer);
        assert_eq!(classify(&e).exit(), 4);
        let e = anyhow::Error::from(Failure::bad_input("bad_pattern", "unclosed group"))
            .context("cannot search");
        assert_eq!(classify(&e).code(), "bad_pattern");
        assert_eq!(classify(&e).exit(), 7);
        assert_eq!(classify(&anyhow::anyhow!("plain")), Class::Other("error"));
        let doc: serde_json::Value =
            serde_json::from_str(&error_json(Class::Other("error"), "m")).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"error": {"code": "error", "message": "m", "fix": null}})
        );
    }
}
