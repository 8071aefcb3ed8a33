//! The outbox: envelopes committed here and not yet acknowledged by the NATS server. A send to
//! another machine writes its message row and its envelope in one transaction; the daemon's
//! forwarder (`crate::federation`) publishes them oldest first and deletes each once the server
//! acknowledged it.

use mesh_proto::{ErrorCode, WireError};
use rusqlite::params;

use super::hosts::key32;
use super::{Ctx, Reader, db};
use crate::federation::envelope::Envelope;
use crate::federation::keys::PublicKey;

/// Queue `env` for `host` in the outbox (in the caller's transaction). A second envelope with
/// the same id (a receipt sent again) is the same envelope: kept once.
pub fn queue(ctx: &mut Ctx<'_>, host: &str, env: &Envelope) -> Result<(), WireError> {
    queue_as(ctx, host, env, &env.id())
}

/// [`queue`] under another dedupe id than the envelope's own: an envelope sent again on purpose
/// (to a host's new key) must not be taken for a duplicate by the server.
pub fn queue_as(
    ctx: &mut Ctx<'_>,
    host: &str,
    env: &Envelope,
    dedupe: &str,
) -> Result<(), WireError> {
    let bytes = postcard::to_allocvec(env).map_err(|e| {
        WireError::new(
            ErrorCode::Internal,
            format!("cannot encode an envelope: {e}"),
        )
    })?;
    ctx.conn
        .prepare_cached(
            "INSERT OR IGNORE INTO outbox (host, dedupe, envelope, created_ms)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![host, dedupe, bytes, ctx.now_ms]))
        .map_err(|e| db(ctx, e))?;
    let store = ctx.store();
    ctx.after_commit(move || store.outbox_changed());
    Ok(())
}

/// One envelope waiting in the outbox.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub seq: i64,
    pub host: String,
    pub dedupe: String,
    pub envelope: Vec<u8>,
    pub created_ms: i64,
}

/// The oldest `limit` envelopes of the outbox, each with the pinned key of its host. A host
/// under whose name another key is offered still gets its mail, sealed for its pinned key: the
/// offered key (an impostor's, until the user trusts it) can neither read it nor hold it up.
pub fn sendable(r: &Reader<'_>, limit: usize) -> Result<Vec<(Outgoing, PublicKey)>, WireError> {
    r.conn
        .prepare_cached(
            "SELECT o.seq, o.host, o.dedupe, o.envelope, o.created_ms, h.public_key
             FROM outbox o JOIN hosts h ON lower(h.host) = lower(o.host)
             ORDER BY o.seq LIMIT ?1",
        )
        .and_then(|mut s| {
            s.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok((
                    Outgoing {
                        seq: row.get(0)?,
                        host: row.get(1)?,
                        dedupe: row.get(2)?,
                        envelope: row.get(3)?,
                        created_ms: row.get(4)?,
                    },
                    PublicKey::from_bytes(key32(row.get(5)?, 5)?),
                ))
            })?
            .collect()
        })
        .map_err(|e| db(r, e))
}

/// The outbox's depth and the commit time of its oldest envelope.
pub fn outbox_depth(r: &Reader<'_>) -> Result<(u64, Option<i64>), WireError> {
    r.conn
        .prepare_cached("SELECT count(*), min(created_ms) FROM outbox")
        .and_then(|mut s| {
            s.query_row([], |row| {
                Ok((row.get::<_, i64>(0)?.max(0).unsigned_abs(), row.get(1)?))
            })
        })
        .map_err(|e| db(r, e))
}

/// The server acknowledged these envelopes: they leave the outbox.
pub fn sent(ctx: &mut Ctx<'_>, seqs: &[i64]) -> Result<(), WireError> {
    for seq in seqs {
        ctx.conn
            .prepare_cached("DELETE FROM outbox WHERE seq = ?1")
            .and_then(|mut s| s.execute(params![seq]))
            .map_err(|e| db(ctx, e))?;
    }
    Ok(())
}
