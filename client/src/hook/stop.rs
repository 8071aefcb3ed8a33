//! The Stop hook's loop guard. Claude Code caps consecutive Stop-hook blocks
//! (`CLAUDE_CODE_STOP_HOOK_BLOCK_CAP`, default 8) and says in `stop_hook_active` whether this
//! stop follows a block. A block always consumes the messages it shows, so blocking again needs
//! new urgent mail; still, a peer that keeps sending must not keep a session from ever
//! stopping, nor run it into Claude Code's cap. So each session has a counter of consecutive
//! blocks in `<state dir>/stop/<session id>` (0600): it restarts from 0 whenever
//! `stop_hook_active` is false (a fresh stop), the hook blocks only while it is below cap − 1,
//! and a stop that is not blocked removes the file (0 = absent, so no litter is left behind).

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use mesh_daemon::paths::StateDir;

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

/// Consecutive blocks before this stop: none for a fresh stop; for a stop that follows a block,
/// what the counter says, and at least one (a block happened, even if it was another hook's
/// or the counter file is gone).
pub(crate) fn blocks_before(stop_hook_active: bool, counter: u32) -> u32 {
    if stop_hook_active { counter.max(1) } else { 0 }
}

/// Whether one more block stays under the cap (leaving Claude Code's own limit unreached).
pub(crate) fn may_block(blocks_before: u32, cap: u32) -> bool {
    blocks_before.saturating_add(1) < cap
}

/// A session's consecutive-block counter file.
#[derive(Debug)]
pub(crate) struct Counter {
    dir: PathBuf,
    path: PathBuf,
}

impl Counter {
    pub(crate) fn new(state: &StateDir, session_id: &str) -> Self {
        let dir = state.root().join("stop");
        let path = dir.join(file_name(session_id));
        Self { dir, path }
    }

    /// The count; 0 when absent or unreadable.
    pub(crate) fn read(&self) -> u32 {
        fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn set(&self, n: u32) -> io::Result<()> {
        match DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(n.to_string().as_bytes())
    }

    /// Back to 0 (the file goes away).
    pub(crate) fn clear(&self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The file name for a session id: the id itself when it is plain (Claude Code's are UUIDs),
/// else a hash of it, so that no id can name a path outside the directory.
fn file_name(session_id: &str) -> String {
    let plain = !session_id.is_empty()
        && session_id.len() <= 128
        && !session_id.starts_with('.')
        && session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        return session_id.to_owned();
    }
    // FNV-1a, 64 bit: stable across builds and platforms (unlike std's hasher).
    let hash = session_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("h-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

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
    fn blocks_stay_one_under_the_cap() {
        // Default cap 8: blocks 1..=7 are ours, the 8th stop goes through.
        let mut n = 0;
        let mut blocked = 0;
        for active in [false, true, true, true, true, true, true, true] {
            let before = blocks_before(active, n);
            if may_block(before, 8) {
                blocked += 1;
                n = before + 1;
            } else {
                n = 0;
            }
        }
        assert_eq!(blocked, 7);
        // Cap 2: one block, then the consecutive stop goes through.
        assert!(may_block(blocks_before(false, 5), 2));
        assert!(!may_block(blocks_before(true, 1), 2));
        // Another hook blocked (no counter of ours): counts as one.
        assert!(!may_block(blocks_before(true, 0), 2));
        assert!(may_block(blocks_before(true, 0), 3));
        // Degenerate caps never block.
        assert!(!may_block(0, 1));
        assert!(!may_block(0, 0));
        assert!(!may_block(u32::MAX, u32::MAX));
    }

    #[test]
    fn counter_file_roundtrip_is_private_and_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path());
        let c = Counter::new(&state, "7f69a2c1-0000-4000-8000-000000000000");
        assert_eq!(c.read(), 0);
        c.clear().unwrap();
        c.set(3).unwrap();
        assert_eq!(c.read(), 3);
        let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&c.path), 0o600);
        assert_eq!(mode(&c.dir), 0o700);
        c.set(1).unwrap();
        assert_eq!(c.read(), 1);
        c.clear().unwrap();
        assert_eq!(c.read(), 0);
        assert!(!c.path.exists());
    }

    #[test]
    fn odd_session_ids_cannot_escape_the_directory() {
        assert_eq!(file_name("abc-DEF_1.2"), "abc-DEF_1.2");
        for id in [
            "../../etc/passwd",
            "..",
            ".",
            "",
            "a/b",
            "x\0y",
            &"a".repeat(300),
        ] {
            let name = file_name(id);
            assert!(
                name.starts_with("h-") && name.len() == 18,
                "{id:?} -> {name}"
            );
        }
        assert_ne!(file_name("a/b"), file_name("a/c"));
    }
}
