//! Other machines' sessions, as their presence listed them, and the addresses that name them
//! (`name@host`). The lowest layer of the mesh in the store: it knows nothing of messages.

use mesh_proto::sanitize;
use mesh_proto::{RemoteSession, WireError};
use rusqlite::{OptionalExtension, params};

use super::{Ctx, Reader, db, norm};
use crate::federation::envelope::Presence;
use crate::naming::MAX_NAME_CHARS;

/// A host stays listed this long after its last presence (heartbeats come every
/// [`crate::federation::PRESENCE_INTERVAL`]): a machine that disappears leaves the lists
/// within this, well inside the 30 s the interface promises.
pub const PRESENCE_TIMEOUT_MS: i64 = 20_000;

/// A session its host stopped listing is forgotten after this long (30 days, as ended local
/// sessions are by default).
pub const FORGET_UNLISTED_MS: i64 = 30 * 24 * 3600 * 1000;

/// A session on another machine, as the target of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    pub host: String,
    pub session_id: String,
    pub name: String,
}

impl RemoteTarget {
    /// Its address, `name@host`.
    pub fn address(&self) -> String {
        format!("{}@{}", self.name, self.host)
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses.

/// The remote sessions named `name_norm` (on `host`, or on any host), the ones their host
/// listed last first. Only sessions of hosts whose key is pinned are ever in the table.
pub fn remote_named(
    r: &Reader<'_>,
    host: Option<&str>,
    name_norm: &str,
) -> Result<Vec<(RemoteTarget, bool)>, WireError> {
    let mut out: Vec<(RemoteTarget, bool)> = r
        .conn
        .prepare_cached(
            "SELECT host, session_id, name, listed FROM remote_sessions
             WHERE name_norm = ?1 AND (?2 IS NULL OR lower(host) = lower(?2))
             ORDER BY listed DESC, seen_ms DESC",
        )
        .and_then(|mut s| {
            s.query_map(params![name_norm, host], |row| {
                Ok((
                    RemoteTarget {
                        host: row.get(0)?,
                        session_id: row.get(1)?,
                        name: row.get(2)?,
                    },
                    row.get::<_, bool>(3)?,
                ))
            })?
            .collect()
        })
        .map_err(|e| db(r, e))?;
    // Listed sessions win; among ended ones, the most recent of each host.
    if out.iter().any(|(_, listed)| *listed) {
        out.retain(|(_, listed)| *listed);
    } else {
        let mut seen = std::collections::HashSet::new();
        out.retain(|(t, _)| seen.insert(t.host.to_lowercase()));
    }
    Ok(out)
}

/// Every session that live hosts (on `host`, or all) list now.
pub fn remote_live(
    r: &Reader<'_>,
    host: Option<&str>,
    now_ms: i64,
) -> Result<Vec<RemoteTarget>, WireError> {
    Ok(remote_sessions(r, now_ms, false)?
        .into_iter()
        .filter(|s| host.is_none_or(|h| s.host.eq_ignore_ascii_case(h)))
        .map(|s| RemoteTarget {
            host: s.host,
            session_id: s.session_id,
            name: s.name,
        })
        .collect())
}

/// Whether `host` is a host of the mesh this machine knows (its key is pinned).
pub fn known_host(r: &Reader<'_>, host: &str) -> Result<Option<String>, WireError> {
    r.conn
        .prepare_cached("SELECT host FROM hosts WHERE lower(host) = lower(?1)")
        .and_then(|mut s| s.query_row(params![host], |row| row.get(0)).optional())
        .map_err(|e| db(r, e))
}

// ---------------------------------------------------------------------------------------------
// Presence.

/// Most sessions a host's presence left unlisted (ended) that are kept, the most recent first:
/// a peer listing fresh session ids at every heartbeat cannot grow the table without bound.
pub const MAX_UNLISTED_PER_HOST: usize = 256;

/// `host`'s presence: its sessions now, replacing what it listed before (ended ones stay
/// known, unlisted, so that mail to them can still be addressed and waits). A presence sent no
/// later than the newest one taken from `host` (a replay, or one overtaken) changes nothing,
/// also after a restart: false. (Only `host` can seal its presence, so a sending time far
/// ahead holds up no one's presence but its own.)
pub fn apply_presence(ctx: &mut Ctx<'_>, host: &str, p: &Presence) -> Result<bool, WireError> {
    let now = ctx.now_ms;
    let newest: Option<i64> = ctx
        .conn
        .prepare_cached("SELECT presence_ms FROM hosts WHERE host = ?1")
        .and_then(|mut s| s.query_row(params![host], |r| r.get(0)).optional())
        .map_err(|e| db(ctx, e))?
        .flatten();
    if newest.is_some_and(|t| p.sent_ms <= t) {
        return Ok(false);
    }
    ctx.conn
        .prepare_cached("UPDATE hosts SET last_seen_ms = ?2, presence_ms = ?3 WHERE host = ?1")
        .and_then(|mut s| s.execute(params![host, (!p.leaving).then_some(now), p.sent_ms]))
        .map_err(|e| db(ctx, e))?;
    ctx.conn
        .prepare_cached("UPDATE remote_sessions SET listed = 0 WHERE host = ?1")
        .and_then(|mut s| s.execute(params![host]))
        .map_err(|e| db(ctx, e))?;
    if !p.leaving {
        for s in &p.sessions {
            let Some(name) = sanitize::name(&s.name, MAX_NAME_CHARS) else {
                continue;
            };
            ctx.conn
                .prepare_cached(
                    "INSERT INTO remote_sessions
                        (host, session_id, name, name_norm, summary, idle, pending, listed, seen_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8)
                     ON CONFLICT (host, session_id) DO UPDATE SET name = ?3, name_norm = ?4,
                        summary = ?5, idle = ?6, pending = ?7, listed = 1, seen_ms = ?8",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        host,
                        s.session_id,
                        name,
                        norm(&name),
                        s.summary,
                        s.idle,
                        s.pending,
                        now
                    ])
                })
                .map_err(|e| db(ctx, e))?;
        }
    }
    // Sessions this host stopped listing: the most recent are kept (mail to their names stays
    // addressable), the rest and those unlisted for a long time are forgotten.
    ctx.conn
        .prepare_cached(
            "DELETE FROM remote_sessions WHERE host = ?1 AND listed = 0 AND (seen_ms < ?3
                OR session_id NOT IN (SELECT session_id FROM remote_sessions
                    WHERE host = ?1 AND listed = 0 ORDER BY seen_ms DESC LIMIT ?2))",
        )
        .and_then(|mut s| {
            s.execute(params![
                host,
                i64::try_from(MAX_UNLISTED_PER_HOST).unwrap_or(i64::MAX),
                now - FORGET_UNLISTED_MS
            ])
        })
        .map_err(|e| db(ctx, e))?;
    Ok(true)
}

/// The sessions other machines list now (`include_offline`: also those of machines not heard
/// from within [`PRESENCE_TIMEOUT_MS`], and ended ones), by host and name.
pub fn remote_sessions(
    r: &Reader<'_>,
    now_ms: i64,
    include_offline: bool,
) -> Result<Vec<RemoteSession>, WireError> {
    let rows: Vec<RemoteSession> = r
        .conn
        .prepare_cached(
            "SELECT s.host, s.session_id, s.name, s.summary, s.idle, s.pending, s.listed,
                    s.seen_ms, h.last_seen_ms
             FROM remote_sessions s JOIN hosts h ON h.host = s.host
             ORDER BY lower(s.host), s.name_norm, s.session_id",
        )
        .and_then(|mut s| {
            s.query_map([], |row| {
                let listed: bool = row.get(6)?;
                let host_seen: Option<i64> = row.get(8)?;
                let live = listed && host_seen.is_some_and(|t| t > now_ms - PRESENCE_TIMEOUT_MS);
                Ok(RemoteSession {
                    host: row.get(0)?,
                    session_id: row.get(1)?,
                    name: row.get(2)?,
                    summary: row.get(3)?,
                    idle: row.get(4)?,
                    pending: row.get(5)?,
                    live,
                    seen_ms: row.get(7)?,
                })
            })?
            .collect()
        })
        .map_err(|e| db(r, e))?;
    Ok(rows
        .into_iter()
        .filter(|s| include_offline || s.live)
        .collect())
}

/// How many sessions of `host` are live now.
pub fn live_count(sessions: &[RemoteSession], host: &str) -> u32 {
    u32::try_from(sessions.iter().filter(|s| s.live && s.host == host).count()).unwrap_or(u32::MAX)
}
