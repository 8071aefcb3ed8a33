//! The hosts of the mesh and their keys: trusted on first use and pinned; a different key
//! under a known host name is refused until the user trusts it (`mesh keys trust`).

use mesh_proto::sanitize;
use mesh_proto::{ErrorCode, HostKey, WireError};
use rusqlite::{OptionalExtension, params};

use super::{Ctx, Reader, db};
use crate::federation::keys::PublicKey;

/// A host and its keys, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub host: String,
    pub device_id: String,
    pub public_key: [u8; 32],
    pub offered_key: Option<[u8; 32]>,
    pub first_seen_ms: i64,
    pub changed_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
}

impl HostRow {
    pub fn key(&self) -> PublicKey {
        PublicKey::from_bytes(self.public_key)
    }

    /// Whether a different key is offered under this host name (refused until trusted).
    pub fn refused(&self) -> bool {
        self.offered_key.is_some()
    }

    /// Whether its presence was heard within [`super::remote::PRESENCE_TIMEOUT_MS`] of `now_ms`.
    pub fn live(&self, now_ms: i64) -> bool {
        self.last_seen_ms
            .is_some_and(|t| t > now_ms - super::remote::PRESENCE_TIMEOUT_MS)
    }
}

pub(crate) fn key32(v: Vec<u8>, idx: usize) -> rusqlite::Result<[u8; 32]> {
    <[u8; 32]>::try_from(v.as_slice()).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            "a public key is 32 bytes".into(),
        )
    })
}

const HOST_COLUMNS: &str =
    "host, device_id, public_key, offered_key, first_seen_ms, changed_ms, last_seen_ms";

fn host_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostRow> {
    Ok(HostRow {
        host: r.get(0)?,
        device_id: r.get(1)?,
        public_key: key32(r.get(2)?, 2)?,
        offered_key: r
            .get::<_, Option<Vec<u8>>>(3)?
            .map(|v| key32(v, 3))
            .transpose()?,
        first_seen_ms: r.get(4)?,
        changed_ms: r.get(5)?,
        last_seen_ms: r.get(6)?,
    })
}

/// Every known host, by name.
pub fn hosts(r: &Reader<'_>) -> Result<Vec<HostRow>, WireError> {
    r.conn
        .prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY host"))
        .and_then(|mut s| s.query_map([], host_row)?.collect())
        .map_err(|e| db(r, e))
}

/// The host whose pinned key has device id `device`.
pub fn host_by_device(r: &Reader<'_>, device: &str) -> Result<Option<HostRow>, WireError> {
    r.conn
        .prepare_cached(&format!(
            "SELECT {HOST_COLUMNS} FROM hosts WHERE device_id = ?1"
        ))
        .and_then(|mut s| s.query_row(params![device], host_row).optional())
        .map_err(|e| db(r, e))
}

/// The host named `host`.
pub fn host_named(r: &Reader<'_>, host: &str) -> Result<Option<HostRow>, WireError> {
    r.conn
        .prepare_cached(&format!(
            "SELECT {HOST_COLUMNS} FROM hosts WHERE lower(host) = lower(?1)"
        ))
        .and_then(|mut s| s.query_row(params![host], host_row).optional())
        .map_err(|e| db(r, e))
}

/// Most hosts pinned: past it a new host name is not pinned (anyone with the NATS credentials
/// can announce keys under as many names as they like; each pinned host costs a row, a sealed
/// presence every heartbeat and a line in `mesh keys`).
pub const MAX_HOSTS: usize = 1024;

/// What an announcement of a host's key meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// The host was unknown: its key is pinned now (trust on first use).
    Pinned,
    /// The host was unknown, and [`MAX_HOSTS`] are pinned already: not pinned.
    TooMany,
    /// The key is pinned already, for this other host: a device is one host, so the new name
    /// is not pinned (anyone with the NATS credentials can announce someone else's public key
    /// under a name of their choosing).
    OtherHost(String),
    /// The pinned key, again.
    Known,
    /// A different key under a known host name: refused until the user trusts it.
    Changed {
        pinned: PublicKey,
        offered: PublicKey,
    },
}

/// A host announced its key.
pub fn observe_key(
    ctx: &mut Ctx<'_>,
    host: &str,
    key: &PublicKey,
) -> Result<KeyVerdict, WireError> {
    let now = ctx.now_ms;
    match host_named(ctx, host)? {
        None => {
            if let Some(other) = host_by_device(ctx, &key.device_id().to_string())? {
                return Ok(KeyVerdict::OtherHost(other.host));
            }
            let pinned: i64 = ctx
                .conn
                .prepare_cached("SELECT count(*) FROM hosts")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(|e| db(ctx, e))?;
            if usize::try_from(pinned).unwrap_or(usize::MAX) >= MAX_HOSTS {
                return Ok(KeyVerdict::TooMany);
            }
            ctx.conn
                .prepare_cached(
                    "INSERT INTO hosts (host, device_id, public_key, first_seen_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        host,
                        key.device_id().to_string(),
                        key.as_bytes().as_slice(),
                        now
                    ])
                })
                .map_err(|e| db(ctx, e))?;
            Ok(KeyVerdict::Pinned)
        }
        Some(row) if row.public_key == *key.as_bytes() => Ok(KeyVerdict::Known),
        Some(row) => {
            if row.offered_key != Some(*key.as_bytes()) {
                ctx.conn
                    .prepare_cached(
                        "UPDATE hosts SET offered_key = ?2, changed_ms = ?3 WHERE host = ?1",
                    )
                    .and_then(|mut s| s.execute(params![row.host, key.as_bytes().as_slice(), now]))
                    .map_err(|e| db(ctx, e))?;
            }
            Ok(KeyVerdict::Changed {
                pinned: row.key(),
                offered: *key,
            })
        }
    }
}

/// Trust `fingerprint` as `host`'s key: it must be the key the host offers now (or already the
/// pinned one: nothing changes).
pub fn trust_key(ctx: &mut Ctx<'_>, host: &str, fingerprint: &str) -> Result<HostKey, WireError> {
    let wanted: crate::federation::keys::Fingerprint = fingerprint.parse().map_err(|_| {
        WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "`{}` is not a key fingerprint (64 hex digits, as `mesh keys` prints them)",
                sanitize::terminal_cut(fingerprint, 100)
            ),
        )
    })?;
    let Some(row) = host_named(ctx, host)? else {
        return Err(WireError::new(
            ErrorCode::UnknownPeer,
            format!(
                "no host named `{}` has announced a key (`mesh keys` lists the known hosts)",
                sanitize::terminal_cut(host, 100)
            ),
        ));
    };
    if row.key().fingerprint() == wanted && row.offered_key.is_none() {
        return Ok(host_key(&row, 0));
    }
    let Some(offered) = row.offered_key.map(PublicKey::from_bytes) else {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "{} is not the key of {} (its pinned key is {}); compare fingerprints with \
                 `mesh keys` on that machine",
                wanted,
                row.host,
                row.key().fingerprint()
            ),
        ));
    };
    if offered.fingerprint() != wanted {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "{} is not the key {} offers now ({}); compare fingerprints with `mesh keys` on \
                 that machine",
                wanted,
                row.host,
                offered.fingerprint()
            ),
        ));
    }
    ctx.conn
        .prepare_cached(
            "UPDATE hosts SET public_key = ?2, device_id = ?3, offered_key = NULL, changed_ms = ?4,
                presence_ms = NULL
             WHERE host = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                row.host,
                offered.as_bytes().as_slice(),
                offered.device_id().to_string(),
                ctx.now_ms
            ])
        })
        .map_err(|e| db(ctx, e))?;
    // Mail queued for that host now goes to the key just trusted.
    let store = ctx.store();
    ctx.after_commit(move || store.outbox_changed());
    let row = host_named(ctx, host)?
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "host vanished"))?;
    Ok(host_key(&row, 0))
}

/// A host as the wire shows it.
pub fn host_key(row: &HostRow, live_sessions: u32) -> HostKey {
    HostKey {
        host: row.host.clone(),
        device_id: row.device_id.clone(),
        fingerprint: row.key().fingerprint().to_string(),
        offered_fingerprint: row
            .offered_key
            .map(|k| PublicKey::from_bytes(k).fingerprint().to_string()),
        first_seen_ms: row.first_seen_ms,
        last_seen_ms: row.last_seen_ms,
        live_sessions,
    }
}
