//! Log lines that other machines can cause. Anyone with the team's NATS credentials can publish
//! junk to this device's subjects (mail that does not open, announcements under made-up names),
//! and each piece is refused with a log line: without a bound, a flood of junk would be a flood
//! of log lines, and an on-demand daemon's `mesh.log` grows without one. So such lines are
//! logged at most [`BURST`] times a [`WINDOW`], all kinds together; the rest are counted, and
//! the count is said in one line with the first line of a later window.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines logged per window at most.
pub const BURST: u32 = 20;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A budget of log lines per [`WINDOW`].
#[derive(Debug)]
pub struct Quiet {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    logged: u32,
    skipped: u64,
}

/// The budget of every line another machine can cause.
pub static PEER_LINES: Quiet = Quiet::new();

/// Whether a line another machine caused may be logged now ([`PEER_LINES`]).
pub fn allow() -> bool {
    match PEER_LINES.allow_at(Instant::now()) {
        Verdict::Log { skipped } => {
            if skipped > 0 {
                tracing::warn!(
                    target: "mesh::federation",
                    skipped,
                    "{skipped} more refusals of what other machines sent were not logged (at most {BURST} a minute)"
                );
            }
            true
        }
        Verdict::Skip => false,
    }
}

/// What [`Quiet::allow_at`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `skipped` lines were left out since the last window began (say so first).
    Log { skipped: u64 },
    /// Leave it out (counted).
    Skip,
}

impl Quiet {
    pub const fn new() -> Quiet {
        Quiet {
            window: Mutex::new(Window {
                start: None,
                logged: 0,
                skipped: 0,
            }),
        }
    }

    /// Whether a line may be logged at `now`.
    pub fn allow_at(&self, now: Instant) -> Verdict {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let mut skipped = 0;
        if w.start
            .is_none_or(|s| now.saturating_duration_since(s) >= WINDOW)
        {
            skipped = w.skipped;
            *w = Window {
                start: Some(now),
                logged: 0,
                skipped: 0,
            };
        }
        if w.logged < BURST {
            w.logged += 1;
            Verdict::Log { skipped }
        } else {
            w.skipped += 1;
            Verdict::Skip
        }
    }
}

impl Default for Quiet {
    fn default() -> Quiet {
        Quiet::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_a_window_then_the_count_of_what_was_left_out() {
        let q = Quiet::new();
        let t0 = Instant::now();
        for i in 0..BURST {
            assert_eq!(q.allow_at(t0), Verdict::Log { skipped: 0 }, "line {i}");
        }
        for _ in 0..500 {
            assert_eq!(q.allow_at(t0 + Duration::from_secs(30)), Verdict::Skip);
        }
        // The next window: logged again, with the count of the lines left out.
        assert_eq!(q.allow_at(t0 + WINDOW), Verdict::Log { skipped: 500 });
        assert_eq!(q.allow_at(t0 + WINDOW), Verdict::Log { skipped: 0 });
        // A quiet stretch: a fresh window, nothing to report.
        assert_eq!(q.allow_at(t0 + WINDOW * 5), Verdict::Log { skipped: 0 });
    }
}
