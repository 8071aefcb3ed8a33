//! Mail that would wake an idle session ([`Kind::wakes`](mesh_proto::Kind::wakes): tasks and
//! questions): what `mesh run`'s supervisor ([`crate::supervise`]) and the desktop notifier
//! ([`crate::notify`]) read. Neither writes; both run on the read-only connections, off the
//! hooks' path.

use std::sync::OnceLock;

use mesh_proto::{Supervision, Waiting, WireError};
use rusqlite::params;

use super::Reader;
use super::messages::{kind_at, kinds_in};
use super::sessions::{self, SessionRow, db};

/// The waking mail pending for `row`, oldest first, at most [`Supervision::MAX_WAITING`].
pub fn for_session(r: &Reader<'_>, row: &SessionRow) -> Result<Vec<Waiting>, WireError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "SELECT id, kind, from_name FROM messages
             WHERE delivered_ms IS NULL AND kind IN {}
               AND {}
             ORDER BY id LIMIT {}",
            kinds_in(mesh_proto::Kind::wakes),
            sessions::PENDING_FOR_SESSION,
            Supervision::MAX_WAITING
        )
    });
    r.conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params![row.key, row.name_norm], |m| {
                Ok(Waiting {
                    id: m.get(0)?,
                    kind: kind_at(m, 1)?,
                    from: m.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(|e| db(r, e))
}

/// One live idle session with waking mail queued before a cut-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleMail {
    pub key: i64,
    pub name: String,
    pub cwd: String,
    /// The waiting messages, oldest first.
    pub message_ids: Vec<i64>,
    pub oldest_ms: i64,
}

/// Live idle sessions whose waking mail (addressed to the session itself) was queued before
/// `before_ms`, by session key.
pub fn idle_sessions(r: &Reader<'_>, before_ms: i64) -> Result<Vec<IdleMail>, WireError> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "SELECT s.key, s.name, s.cwd, m.id, m.created_ms
             FROM messages m JOIN sessions s ON s.key = m.to_key
             WHERE m.delivered_ms IS NULL AND m.kind IN {}
               AND m.created_ms < ?1 AND s.live = 1 AND s.idle = 1
             ORDER BY s.key, m.id",
            kinds_in(mesh_proto::Kind::wakes)
        )
    });
    let mut stmt = r.conn.prepare_cached(sql).map_err(|e| db(r, e))?;
    let rows = stmt
        .query_map(params![before_ms], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .map_err(|e| db(r, e))?;
    let mut out: Vec<IdleMail> = Vec::new();
    for row in rows {
        let (key, name, cwd, id, created) = row.map_err(|e| db(r, e))?;
        match out.last_mut() {
            Some(w) if w.key == key => w.message_ids.push(id),
            _ => out.push(IdleMail {
                key,
                name,
                cwd,
                message_ids: vec![id],
                oldest_ms: created,
            }),
        }
    }
    Ok(out)
}
