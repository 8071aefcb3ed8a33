//! Retention: what the daemon forgets, and when. Delivered mail, answered questions and ended
//! sessions are kept for a configurable age ([`crate::Config::retain`], 30 days by default),
//! then deleted by the periodic sweep ([`crate::monitor`]), a bounded batch per store job so a
//! large backlog never holds the store thread for long. Freed pages are reused by SQLite, so
//! under a steady workload the file stops growing.
//!
//! Never deleted, whatever their age:
//! - undelivered mail (`mesh health` warns when some is old);
//! - a question while an answer to it is kept, or while its asker waits for one;
//! - a session that is live, that has undelivered mail waiting on it, or that asked a question
//!   still open; nor the session with the highest key (SQLite would hand its key to the next
//!   new session, and a key must never name two sessions).

use rusqlite::params;

use super::Ctx;
use super::sessions::db;
use mesh_proto::{Kind, WireError};

/// What one [`prune`] job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub messages: usize,
    pub sessions: usize,
    /// The last message id looked at; the next job of the same sweep starts after it.
    pub scanned_to: i64,
    /// Nothing more to do in this sweep.
    pub done: bool,
}

/// Most rows deleted by one job.
pub const BATCH: usize = 500;
/// Most messages one job looks at (kept ones included), so that a large backlog of old
/// undelivered mail does not make every job read all of it.
const MAX_SCAN: usize = 20 * BATCH;

/// Ended sessions retention lets go (`?1`: the cut-off, `?2`: the batch). Each test on
/// messages is a lookup in a partial index, never a scan of every message. (`'question'` is
/// [`Kind::Question`]'s stored spelling, written out as the index `messages_open_questions`
/// spells it, so that SQLite uses the index.)
pub(crate) const PRUNE_SESSIONS: &str = "DELETE FROM sessions WHERE key IN (
   SELECT key FROM sessions s
   WHERE live = 0 AND last_active_ms < ?1
     AND key < (SELECT max(key) FROM sessions)
     AND NOT EXISTS (SELECT 1 FROM messages
                     WHERE to_key = s.key AND delivered_ms IS NULL)
     AND NOT EXISTS (SELECT 1 FROM messages
                     WHERE from_key = s.key AND kind = 'question' AND answered_ms IS NULL)
   LIMIT ?2)";

/// Delete up to `batch` messages older than `ctx.now_ms - older_than_ms` that retention lets
/// go, looking only past message `after_id`; once the messages are done, the ended sessions.
pub fn prune(
    ctx: &mut Ctx<'_>,
    older_than_ms: i64,
    after_id: i64,
    batch: usize,
) -> Result<Pruned, WireError> {
    let cutoff = ctx.now_ms.saturating_sub(older_than_ms);
    let mut ids = Vec::new();
    let mut scanned_to = after_id;
    let mut messages_done = false;
    {
        let mut stmt = ctx
            .conn
            .prepare_cached(
                "SELECT id, kind, created_ms, delivered_ms, answered_ms,
                        EXISTS (SELECT 1 FROM messages a WHERE a.in_reply_to = m.id)
                 FROM messages m WHERE id > ?1 ORDER BY id",
            )
            .map_err(|e| db(ctx, e))?;
        let mut rows = stmt.query(params![after_id]).map_err(|e| db(ctx, e))?;
        let mut scanned = 0;
        loop {
            if ids.len() >= batch || scanned >= MAX_SCAN {
                break;
            }
            let Some(r) = rows.next().map_err(|e| db(ctx, e))? else {
                messages_done = true;
                break;
            };
            let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<_> {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, bool>(5)?,
                ))
            };
            let (id, kind, created, delivered, answered, has_answer) =
                read(r).map_err(|e| db(ctx, e))?;
            // Ids grow with time: everything from here on is younger.
            if created >= cutoff {
                messages_done = true;
                break;
            }
            scanned += 1;
            scanned_to = id;
            if delivered.is_none_or(|d| d >= cutoff) {
                continue;
            }
            if kind == Kind::Question.as_str()
                && (has_answer
                    || answered.is_some_and(|a| a >= cutoff)
                    || ctx.waiters.is_waiting(id))
            {
                continue;
            }
            ids.push(id);
        }
    }
    {
        let mut delete = ctx
            .conn
            .prepare_cached("DELETE FROM messages WHERE id = ?1")
            .map_err(|e| db(ctx, e))?;
        for id in &ids {
            delete.execute(params![id]).map_err(|e| db(ctx, e))?;
        }
    }
    let mut out = Pruned {
        messages: ids.len(),
        sessions: 0,
        scanned_to,
        done: false,
    };
    if !messages_done {
        return Ok(out);
    }
    out.sessions = ctx
        .conn
        .prepare_cached(PRUNE_SESSIONS)
        .and_then(|mut s| s.execute(params![cutoff, i64::try_from(batch).unwrap_or(i64::MAX)]))
        .map_err(|e| db(ctx, e))?;
    out.done = out.sessions < batch;
    Ok(out)
}
