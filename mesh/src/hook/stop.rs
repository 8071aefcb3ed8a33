//! The Stop hook's loop guard (docs/interface.md, "Delivery promises"): a session with an
//! urgent message pending cannot end its turn, unless `stop_hook_active` says this stop already
//! follows a block. So the hook blocks only a fresh stop: at most one block in a row, whatever
//! peers keep sending (new mail then waits for the next hook). Claude Code also caps
//! consecutive blocks (`CLAUDE_CODE_STOP_HOOK_BLOCK_CAP`, default 8); with a cap of 1 or less
//! no block is ever allowed, so the hook does not block at all.

use std::ffi::OsStr;

/// Claude Code's variable for its cap on consecutive Stop-hook blocks.
pub(crate) const CAP_ENV: &str = "CLAUDE_CODE_STOP_HOOK_BLOCK_CAP";
/// Claude Code's default cap.
pub(crate) const DEFAULT_CAP: u32 = 8;

/// The cap from the variable's value; unset, empty or garbage: the default.
pub(crate) fn cap_from(value: Option<&OsStr>) -> u32 {
    value
        .and_then(OsStr::to_str)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_CAP)
}

/// Whether this stop may be blocked: only a fresh one, and only if one block stays under the cap.
pub(crate) fn may_block(stop_hook_active: bool, cap: u32) -> bool {
    !stop_hook_active && cap > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_parsing() {
        assert_eq!(cap_from(None), 8);
        assert_eq!(cap_from(Some(OsStr::new("2"))), 2);
        assert_eq!(cap_from(Some(OsStr::new(" 3 "))), 3);
        assert_eq!(cap_from(Some(OsStr::new(""))), 8);
        assert_eq!(cap_from(Some(OsStr::new("lots"))), 8);
        assert_eq!(cap_from(Some(OsStr::new("-1"))), 8);
    }

    #[test]
    fn only_a_fresh_stop_is_blocked() {
        assert!(may_block(false, 8));
        assert!(may_block(false, 2));
        assert!(
            !may_block(true, 8),
            "a stop after a block always goes through"
        );
        assert!(!may_block(false, 1), "a cap of 1 allows no block");
        assert!(!may_block(false, 0));
    }
}
