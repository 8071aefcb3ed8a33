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
use mesh_proto::{Kind, WireError};
use rusqlite::{OptionalExtension, params};

use super::messages::{self, NewMessage};
use super::sessions::{self, SessionRow, db, norm};
use super::{Ctx, Identity, Reader};
use crate::federation::envelope::{Mail, PresenceSession, Receipt};
use crate::naming::MAX_NAME_CHARS;

pub use super::remote::{PRESENCE_TIMEOUT_MS, RemoteTarget, live_count};

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
