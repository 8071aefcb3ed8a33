//! Who is calling, from the environment: `CLAUDE_PID` and `CLAUDE_CODE_SESSION_ID`. The daemon
//! resolves these (plus the peer PID it reads from the socket) to a session; outside Claude Code
//! both are absent and the daemon treats the caller as the user.

use std::ffi::OsStr;

use mesh_proto::Caller;

/// Set by recent Claude Code for hooks: the Claude Code process.
pub const CLAUDE_PID_ENV: &str = "CLAUDE_PID";
/// Set by Claude Code for the processes it spawns; stale after `/clear` in an MCP server.
pub const SESSION_ID_ENV: &str = "CLAUDE_CODE_SESSION_ID";

/// `Caller::from_env()`: the caller as this process's environment describes it.
pub trait CallerFromEnv {
    fn from_env() -> Self;
}

impl CallerFromEnv for Caller {
    fn from_env() -> Self {
        caller_from_values(
            std::env::var_os(CLAUDE_PID_ENV).as_deref(),
            std::env::var_os(SESSION_ID_ENV).as_deref(),
        )
    }
}

/// Build a caller from the raw variable values; empty or unparsable values are ignored.
pub fn caller_from_values(claude_pid: Option<&OsStr>, session_id: Option<&OsStr>) -> Caller {
    let claude_pid = claude_pid
        .and_then(OsStr::to_str)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&pid| pid > 0);
    let session_id = session_id
        .and_then(OsStr::to_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    Caller {
        claude_pid,
        session_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(pid: Option<&str>, sid: Option<&str>) -> Caller {
        caller_from_values(pid.map(OsStr::new), sid.map(OsStr::new))
    }

    #[test]
    fn parses_both() {
        assert_eq!(
            caller(Some("1234"), Some("abcd-ef")),
            Caller {
                claude_pid: Some(1234),
                session_id: Some("abcd-ef".into())
            }
        );
    }

    #[test]
    fn ignores_empty_and_garbage() {
        assert_eq!(caller(None, None), Caller::default());
        assert_eq!(caller(Some(""), Some("")), Caller::default());
        assert_eq!(caller(Some("  "), Some("  ")), Caller::default());
        assert_eq!(caller(Some("abc"), None), Caller::default());
        assert_eq!(caller(Some("-5"), None), Caller::default());
        assert_eq!(caller(Some("0"), None), Caller::default());
        assert_eq!(caller(Some("99999999999"), None), Caller::default());
        assert_eq!(caller(Some(" 42\n"), None).claude_pid, Some(42));
    }
}
