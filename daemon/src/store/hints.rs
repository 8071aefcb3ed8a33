//! Which sessions may have urgent mail waiting: a hint that picks the faster way to answer a
//! hook's poll, never the answer itself.
//!
//! Most polls find nothing, and a read answers them off the store thread. A poll that will
//! take mail needs the store thread anyway (the hand-out is a write), so the read before it is
//! wasted. The store thread marks a session here when it queues urgent mail for it, and clears
//! the mark when a consume of that session leaves nothing behind; a poll of a marked session
//! goes straight to the store thread. Both ways give the same answer, so a stale mark costs
//! one trip to the store thread, and a missing one the read that finds the mail: neither
//! loses, delays nor repeats a message.

use std::collections::HashSet;
use std::sync::Mutex;

/// At most this many marks are kept (sessions that died with mail waiting are never cleared);
/// past it, every mark is dropped and polls take the read first until marked again.
const MAX_MARKS: usize = 1024;

/// Session ids that may have urgent mail waiting.
#[derive(Debug, Default)]
pub struct MailHints {
    marked: Mutex<HashSet<String>>,
}

impl MailHints {
    fn marked(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.marked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Urgent mail was queued for `session_id`.
    pub fn mark(&self, session_id: &str) {
        let mut marked = self.marked();
        if marked.contains(session_id) {
            return;
        }
        if marked.len() >= MAX_MARKS {
            marked.clear();
        }
        marked.insert(session_id.to_owned());
    }

    /// A consume of `session_id` left nothing waiting.
    pub fn clear(&self, session_id: &str) {
        self.marked().remove(session_id);
    }

    /// Whether urgent mail may be waiting for `session_id`.
    pub fn maybe_waiting(&self, session_id: &str) -> bool {
        self.marked().contains(session_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_until_cleared_and_stays_bounded() {
        let h = MailHints::default();
        assert!(!h.maybe_waiting("a"));
        h.mark("a");
        h.mark("a");
        assert!(h.maybe_waiting("a"));
        h.clear("a");
        assert!(!h.maybe_waiting("a"));
        for i in 0..MAX_MARKS {
            h.mark(&i.to_string());
        }
        assert_eq!(h.marked().len(), MAX_MARKS);
        h.mark("one more");
        assert!(h.maybe_waiting("one more"));
        assert_eq!(h.marked().len(), 1);
    }
}
