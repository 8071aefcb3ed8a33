//! How long `ask_peer` may block, and how often it reports progress.
//!
//! Claude Code enforces a hard wall-clock limit on each MCP tool call (the server's `timeout`
//! in its `mcpServers` entry, else `MCP_TOOL_TIMEOUT` in ms); progress notifications do not
//! extend it, and 2.1.330 also aborts a stdio call after 30 minutes without a response or a
//! progress notification. So an ask waits at most [`MAX_ASK_TIMEOUT_S`], and when
//! `MCP_TOOL_TIMEOUT` is set, at most that less [`TOOL_TIMEOUT_MARGIN_S`]: the tool always
//! returns its own `timed_out` before Claude Code gives up on it.

use std::time::Duration;

/// `ask_peer`'s default wait.
pub const DEFAULT_ASK_TIMEOUT_S: u64 = 300;
/// `ask_peer`'s longest wait: just under Claude Code's 30-minute idle abort of a stdio call
/// (which applies when no progress token lets us send progress).
pub const MAX_ASK_TIMEOUT_S: u64 = 1780;
/// Room left between our own time-out and Claude Code's tool timeout.
pub const TOOL_TIMEOUT_MARGIN_S: u64 = 10;
/// Claude Code's MCP tool timeout, in milliseconds.
pub const TOOL_TIMEOUT_ENV: &str = "MCP_TOOL_TIMEOUT";
/// Progress notification interval, in milliseconds (for tests; default 10 s).
pub const PROGRESS_ENV: &str = "CLAUDE_MESH_MCP_PROGRESS_MS";
const DEFAULT_PROGRESS: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest `ask_peer` wait, in seconds (at least 1).
    pub max_ask_s: u64,
    /// Interval between progress notifications during an ask.
    pub progress_every: Duration,
}

impl Limits {
    pub fn from_env() -> Self {
        Self::from_values(
            std::env::var(TOOL_TIMEOUT_ENV).ok().as_deref(),
            std::env::var(PROGRESS_ENV).ok().as_deref(),
        )
    }

    pub fn from_values(tool_timeout_ms: Option<&str>, progress_ms: Option<&str>) -> Self {
        let tool_cap = tool_timeout_ms
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map(|ms| (ms / 1000).saturating_sub(TOOL_TIMEOUT_MARGIN_S).max(1));
        let max_ask_s = tool_cap.map_or(MAX_ASK_TIMEOUT_S, |cap| cap.min(MAX_ASK_TIMEOUT_S));
        let progress_every = progress_ms
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map_or(DEFAULT_PROGRESS, Duration::from_millis);
        Self {
            max_ask_s,
            progress_every,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_timeout_caps_the_wait_with_a_margin() {
        assert_eq!(Limits::from_values(None, None).max_ask_s, MAX_ASK_TIMEOUT_S);
        // Claude Code's default (100,000,000 ms) is far above our own maximum.
        assert_eq!(
            Limits::from_values(Some("100000000"), None).max_ask_s,
            MAX_ASK_TIMEOUT_S
        );
        assert_eq!(Limits::from_values(Some("60000"), None).max_ask_s, 50);
        assert_eq!(Limits::from_values(Some("10500"), None).max_ask_s, 1);
        assert_eq!(Limits::from_values(Some("1"), None).max_ask_s, 1);
        for junk in ["", "abc", "-5", "0"] {
            assert_eq!(
                Limits::from_values(Some(junk), None).max_ask_s,
                MAX_ASK_TIMEOUT_S,
                "{junk:?}"
            );
        }
    }

    #[test]
    fn progress_interval_defaults_to_ten_seconds() {
        assert_eq!(
            Limits::from_values(None, None).progress_every,
            Duration::from_secs(10)
        );
        assert_eq!(
            Limits::from_values(None, Some("250")).progress_every,
            Duration::from_millis(250)
        );
        assert_eq!(
            Limits::from_values(None, Some("0")).progress_every,
            Duration::from_secs(10)
        );
    }
}
