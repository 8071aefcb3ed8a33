//! The mesh across machines, in the database (schema 5): what goes out (the outbox), what came
//! in (messages with a global id, inserted once), the hosts and their pinned keys, and what
//! other machines' presence listed. The daemon's federation tasks (`crate::federation`) move
//! envelopes between this and NATS; nothing here touches the network.
//!
//! Every row that crosses machines has a global id (`messages.gid`): `<sender device>-<16 hex
//! random>`, unique without coordination and never reused (a database started afresh after
//! damage does not repeat its old ids, as a counter would). Outgoing rows are the sender's,
//! found by that id when a receipt or an answer comes back; incoming rows are inserted only if
//! their id is absent, so a redelivered envelope changes nothing.

use mesh_proto::sanitize;
use mesh_proto::{ErrorCode, HostKey, Kind, Message, RemoteSession, WireError};
use rusqlite::{OptionalExtension, params};

use super::messages::{self, NewMessage};
use super::sessions::{self, SessionRow, db, norm};
use super::{Ctx, Reader};
use crate::federation::envelope::{Envelope, Mail, Presence, PresenceSession, Receipt};
use crate::federation::keys::PublicKey;
use crate::naming::MAX_NAME_CHARS;

/// This machine in the mesh, once the daemon has read `federation.toml` and its device key
/// ([`super::Store::set_identity`]). Without it nothing here is ever called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// This device's id (32 hex).
    pub device: String,
    /// This machine's host name in the mesh.
    pub host: String,
}

/// A host stays listed this long after its last presence (heartbeats come every
/// [`crate::federation::PRESENCE_INTERVAL`]): a machine that disappears leaves the lists
/// within this, well inside the 30 s the interface promises.
pub const PRESENCE_TIMEOUT_MS: i64 = 20_000;

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

/// A fresh global id for a message this device sends.
pub fn new_gid(me: &Identity) -> String {
    use crypto_box::aead::rand_core::RngCore;
    let n = crypto_box::aead::OsRng.next_u64();
    format!("{}-{n:016x}", me.device)
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
// Outgoing.

/// Queue `env` for `host` in the outbox (in the caller's transaction). A second envelope with
/// the same id (a receipt sent again) is the same envelope: kept once.
fn queue(ctx: &mut Ctx<'_>, host: &str, env: &Envelope) -> Result<(), WireError> {
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
        .and_then(|mut s| s.execute(params![host, env.id(), bytes, ctx.now_ms]))
        .map_err(|e| db(ctx, e))?;
    let store = ctx.store();
    ctx.after_commit(move || store.outbox_changed());
    Ok(())
}

/// Send `kind` from `from` (`None`: the user) to a session on another machine: the message row
/// (status queued until the other machine's receipt) and its envelope in the outbox, in one
/// transaction. `in_reply_to`: the question this answers (its row here, and its global id).
pub fn send_remote(
    ctx: &mut Ctx<'_>,
    me: &Identity,
    from: Option<&SessionRow>,
    to: &RemoteTarget,
    kind: Kind,
    body: &str,
    in_reply_to: Option<(i64, String)>,
) -> Result<Message, WireError> {
    let gid = new_gid(me);
    let address = to.address();
    let address_norm = norm(&address);
    let from_name = from.map_or(messages::USER, |f| f.name.as_str());
    let id = messages::insert_row(
        ctx,
        &NewMessage {
            kind,
            from_key: from.map(|f| f.key),
            from_name,
            from_session_id: from.map(|f| f.session_id.as_str()),
            to_key: None,
            to_name: Some(&address),
            // Never a local name (they cannot hold `@`): nobody here receives it.
            to_name_norm: Some(&address_norm),
            to_session_id: Some(&to.session_id),
            body,
            in_reply_to: in_reply_to.as_ref().map(|(id, _)| *id),
            delivered: false,
            gid: Some(&gid),
            remote_host: Some(&to.host),
        },
    )?;
    let mail = Mail {
        gid,
        kind,
        from_name: from_name.to_owned(),
        from_session_id: from.map(|f| f.session_id.clone()),
        to_name: to.name.clone(),
        to_session_id: Some(to.session_id.clone()),
        body: body.to_owned(),
        in_reply_to: in_reply_to.map(|(_, gid)| gid),
        created_ms: ctx.now_ms,
    };
    queue(ctx, &to.host, &Envelope::Mail(mail))?;
    messages::get(ctx, id)?
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "inserted message vanished"))
}

/// The global id and host of a message that came from another machine, if `id` is one.
pub fn origin(
    r: &Reader<'_>,
    me: &Identity,
    id: i64,
) -> Result<Option<(String, String)>, WireError> {
    r.conn
        .prepare_cached(
            "SELECT gid, remote_host FROM messages
             WHERE id = ?1 AND gid IS NOT NULL AND remote_host IS NOT NULL
               AND substr(gid, 1, length(?2) + 1) <> ?2 || '-'",
        )
        .and_then(|mut s| {
            s.query_row(params![id, me.device], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(|e| db(r, e))
}

/// A message was handed out here: if it came from another machine, tell its sender (a
/// receipt). Nothing at all outside a mesh.
pub fn handed_out(ctx: &mut Ctx<'_>, id: i64) -> Result<(), WireError> {
    let Some(me) = ctx.store.identity() else {
        return Ok(());
    };
    if let Some((gid, host)) = origin(ctx, &me, id)? {
        let receipt = Receipt {
            gid,
            delivered_ms: Some(ctx.now_ms),
            answered_ms: None,
        };
        queue(ctx, &host, &Envelope::Receipt(receipt))?;
    }
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

// ---------------------------------------------------------------------------------------------
// Incoming.

/// What became of an envelope that came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Committed now.
    New,
    /// Already here (a redelivery): nothing changed.
    Duplicate,
    /// Not accepted (logged): an answer to no question of ours, a receipt for mail we did not
    /// send to that host.
    Refused(String),
}

/// Mail from `host` (its key authenticated the envelope), inserted if its global id is absent.
/// An answer to a question asked from here completes that question and wakes its asker, as a
/// local reply does.
pub fn receive_mail(ctx: &mut Ctx<'_>, host: &str, mail: &Mail) -> Result<Received, WireError> {
    if gid_exists(ctx, &mail.gid)? {
        return Ok(Received::Duplicate);
    }
    let Some(from_name) = sanitize::name(&mail.from_name, MAX_NAME_CHARS) else {
        return Ok(Received::Refused("a sender without a name".into()));
    };
    let from_address = format!("{from_name}@{host}");
    let from_session_id = mail.from_session_id.as_deref();
    if mail.kind == Kind::Answer
        && let Some(qgid) = &mail.in_reply_to
    {
        let question: Option<(i64, Option<i64>)> = ctx
            .conn
            .prepare_cached(
                "SELECT id, from_key FROM messages
                 WHERE gid = ?1 AND kind = 'question' AND lower(remote_host) = lower(?2)",
            )
            .and_then(|mut s| {
                s.query_row(params![qgid, host], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| db(ctx, e))?;
        let Some((qid, asker_key)) = question else {
            return Ok(Received::Refused(format!(
                "an answer from {host} to a question not asked of it"
            )));
        };
        let asker = match asker_key {
            Some(k) => sessions::by_key(ctx, k)?,
            None => None,
        };
        messages::answer(
            ctx,
            qid,
            asker.as_ref(),
            messages::Sender::Remote {
                name: &from_address,
                session_id: from_session_id,
                gid: &mail.gid,
                host,
            },
            &mail.body,
        )?;
        return Ok(Received::New);
    }
    // An answer to no question of ours is still mail: it waits in the inbox as any other.
    let kind = mail.kind;
    let to = local_recipient(ctx, &mail.to_name, mail.to_session_id.as_deref())?;
    let to_norm = to
        .as_ref()
        .map_or_else(|| norm(&mail.to_name), |r| r.name_norm.clone());
    let to_name = to
        .as_ref()
        .map_or(mail.to_name.as_str(), |r| r.name.as_str());
    messages::insert_row(
        ctx,
        &NewMessage {
            kind,
            from_key: None,
            from_name: &from_address,
            from_session_id,
            to_key: to.as_ref().map(|r| r.key),
            to_name: Some(to_name),
            to_name_norm: Some(&to_norm),
            to_session_id: to.as_ref().map(|r| r.session_id.as_str()),
            body: &mail.body,
            in_reply_to: None,
            delivered: false,
            gid: Some(&mail.gid),
            remote_host: Some(host),
        },
    )?;
    if let Some(r) = &to
        && kind.is_urgent()
    {
        ctx.store.hints().mark(&r.session_id);
    }
    Ok(Received::New)
}

/// Who here receives mail for `name` (`session_id`: the session its sender saw): that session
/// if it is still here, else the session of that name (live, else the most recent). `None`:
/// nobody of that name yet; the mail waits for the next session of that name.
fn local_recipient(
    ctx: &Reader<'_>,
    name: &str,
    session_id: Option<&str>,
) -> Result<Option<SessionRow>, WireError> {
    if let Some(sid) = session_id
        && let Some(row) = sessions::by_session_id(ctx, sid)?
        && row.live
    {
        return Ok(Some(row));
    }
    sessions::by_name(ctx, &norm(name))
}

fn gid_exists(r: &Reader<'_>, gid: &str) -> Result<bool, WireError> {
    r.conn
        .prepare_cached("SELECT 1 FROM messages WHERE gid = ?1")
        .and_then(|mut s| s.query_row(params![gid], |_| Ok(())).optional())
        .map(|o| o.is_some())
        .map_err(|e| db(r, e))
}

/// A receipt from `host` for mail this device sent it.
pub fn receive_receipt(
    ctx: &mut Ctx<'_>,
    me: &Identity,
    host: &str,
    receipt: &Receipt,
) -> Result<Received, WireError> {
    let mine = receipt
        .gid
        .strip_prefix(me.device.as_str())
        .is_some_and(|rest| rest.starts_with('-'));
    if !mine {
        return Ok(Received::Refused(format!(
            "a receipt from {host} for mail this device did not send"
        )));
    }
    let changed = ctx
        .conn
        .prepare_cached(
            "UPDATE messages SET delivered_ms = coalesce(delivered_ms, ?3)
             WHERE gid = ?1 AND lower(remote_host) = lower(?2)",
        )
        .and_then(|mut s| {
            s.execute(params![
                receipt.gid,
                host,
                receipt.delivered_ms.unwrap_or(ctx.now_ms)
            ])
        })
        .map_err(|e| db(ctx, e))?;
    Ok(if changed == 0 {
        Received::Refused(format!("a receipt from {host} for mail not sent to it"))
    } else {
        Received::New
    })
}

// ---------------------------------------------------------------------------------------------
// Hosts and keys.

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

    /// Whether its presence was heard within [`PRESENCE_TIMEOUT_MS`] of `now_ms`.
    pub fn live(&self, now_ms: i64) -> bool {
        self.last_seen_ms
            .is_some_and(|t| t > now_ms - PRESENCE_TIMEOUT_MS)
    }
}

fn key32(v: Vec<u8>, idx: usize) -> rusqlite::Result<[u8; 32]> {
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

/// Most sessions a host's presence left unlisted (ended) that are kept, the most recent first:
/// a peer listing fresh session ids at every heartbeat cannot grow the table without bound.
pub const MAX_UNLISTED_PER_HOST: usize = 256;

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

// ---------------------------------------------------------------------------------------------
// Presence.

/// This machine's live sessions, for its presence.
pub fn local_presence(r: &Reader<'_>) -> Result<Vec<PresenceSession>, WireError> {
    Ok(
        sessions::list(r, mesh_proto::Scope::Machine, None, None, false)?
            .into_iter()
            .take(crate::federation::envelope::MAX_PRESENCE_SESSIONS)
            .map(|s| PresenceSession {
                session_id: s.session_id,
                name: s.name,
                summary: s.summary,
                idle: s.idle,
                pending: s.pending,
            })
            .collect(),
    )
}

/// `host`'s presence: its sessions now, replacing what it listed before (ended ones stay
/// known, unlisted, so that mail to them can still be addressed and waits). A presence sent no
/// later than the newest one taken from `host` (a replay, or one overtaken) changes nothing:
/// false.
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
    if p.leaving {
        return Ok(true);
    }
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
    ctx.conn
        .prepare_cached(
            "DELETE FROM remote_sessions WHERE host = ?1 AND listed = 0 AND session_id NOT IN
                (SELECT session_id FROM remote_sessions WHERE host = ?1 AND listed = 0
                 ORDER BY seen_ms DESC LIMIT ?2)",
        )
        .and_then(|mut s| {
            s.execute(params![
                host,
                i64::try_from(MAX_UNLISTED_PER_HOST).unwrap_or(i64::MAX)
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
