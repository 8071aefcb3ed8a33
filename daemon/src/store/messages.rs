//! Messages: send, ask, reply, consume, status.
//!
//! A message is addressed to a session row (`to_key`) and its name (`to_name_norm`), or to the
//! user (both NULL). A live session receives what is addressed to its key, plus what is
//! addressed to its name whose addressee is no longer live: mail is never dropped because a
//! peer died, it waits for the next session of that name. Mail sent to an id prefix has no
//! `to_name_norm`: it is for that session only, and never moves to another of the same name.

use std::sync::OnceLock;

use mesh_proto::{
    AskResult, Class, ErrorCode, Inbox, Kind, MAX_BODY_LEN, Message, Party, Status, WireError,
};
use rusqlite::{OptionalExtension, Row, params};

use crate::federation::envelope::{Envelope, Mail, Receipt};
use tokio::sync::oneshot;

use super::outbox;
use super::remote::RemoteTarget;
use super::sessions::{self, SessionRow, Target, db};
use super::{Ctx, Identity, Reader, Waiter, norm};

/// Display name of the human user as a sender or recipient.
pub const USER: &str = "user";

/// Default byte budget of one consume, and the most a client may ask for: whatever
/// `max_bytes` says, an answer stays far below the frame cap ([`mesh_proto::MAX_FRAME_LEN`]),
/// since an answer that cannot be sent hands nothing out.
pub const DEFAULT_CONSUME_BYTES: usize = 1024 * 1024;

/// Most messages one consume hands out.
pub const MAX_CONSUME_MESSAGES: usize = 1000;

/// What a message costs in a consume's budget besides its text fields (kind, ids, timestamps,
/// and their encoding).
const MESSAGE_OVERHEAD: usize = 128;

/// What a message costs in a consume's budget: its encoded size, give or take a few bytes.
fn cost(m: &Message) -> usize {
    let text = |p: &Party| p.name.len() + p.session_id.as_ref().map_or(0, String::len);
    m.body.len() + text(&m.from) + text(&m.to) + MESSAGE_OVERHEAD
}

const COLUMNS: &str = "id, kind, from_name, from_session_id, to_name, to_session_id, body, in_reply_to, \
                       created_ms, delivered_ms, answered_ms, withdrawn_ms";

/// The kind in column `idx` of `r`: one this build knows, else an error naming it (a row
/// written by something else is reported, never read as some other kind).
pub(crate) fn kind_at(r: &Row<'_>, idx: usize) -> rusqlite::Result<Kind> {
    let v = r.get_ref(idx)?;
    let conversion = |e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(idx, v.data_type(), e)
    };
    let s = v.as_str().map_err(|e| conversion(Box::new(e)))?;
    Kind::from_db(s).map_err(|e| conversion(Box::new(e)))
}

/// The SQL list `('task', 'question')` of the kinds that `rule` selects, for `kind IN ...`.
/// Built from [`Kind::ALL`] once per query text (callers keep it in a `OnceLock`), never per
/// query.
pub(crate) fn kinds_in(rule: impl Fn(Kind) -> bool) -> String {
    let names: Vec<String> = Kind::ALL
        .into_iter()
        .filter(|k| rule(*k))
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

/// The two queries of a consume: count what is pending, and read it.
struct ConsumeSql {
    count: String,
    select: String,
}

/// The consume queries of `class`, for a session (`true`) or for the user, built once.
fn consume_sql(class: Class, for_session: bool) -> &'static ConsumeSql {
    static SQL: OnceLock<[ConsumeSql; 4]> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        let make = |class: Class, for_session: bool| {
            // A class of every kind reads every pending row: one of a kind this build does not
            // know is then reported (`kind_at`), not left pending forever unseen.
            let kinds = if Kind::ALL.into_iter().all(|k| k.in_class(class)) {
                String::new()
            } else {
                format!(" AND kind IN {}", kinds_in(|k| k.in_class(class)))
            };
            let filter = if for_session {
                sessions::PENDING_FOR_SESSION
            } else {
                "id IN (SELECT id FROM messages WHERE to_key IS NULL AND delivered_ms IS NULL
                    AND to_name_norm IS NULL AND ?1 IS NULL AND ?2 IS NULL)"
            };
            let pending = format!("delivered_ms IS NULL{kinds} AND {filter}");
            ConsumeSql {
                count: format!("SELECT count(*) FROM messages WHERE {pending}"),
                select: format!("SELECT {COLUMNS} FROM messages WHERE {pending} ORDER BY id"),
            }
        };
        [
            make(Class::All, false),
            make(Class::All, true),
            make(Class::Urgent, false),
            make(Class::Urgent, true),
        ]
    });
    let class_index = match class {
        Class::All => 0,
        Class::Urgent => 2,
    };
    &all[class_index + usize::from(for_session)]
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let delivered_ms: Option<i64> = r.get(9)?;
    let answered_ms: Option<i64> = r.get(10)?;
    let withdrawn_ms: Option<i64> = r.get(11)?;
    // A withdrawn question was never handed out (`delivered_ms` only keeps it out of the queue).
    let delivered_ms = delivered_ms.filter(|_| withdrawn_ms.is_none());
    let status = match (delivered_ms, answered_ms, withdrawn_ms) {
        (_, Some(_), _) => Status::Answered,
        (_, None, Some(_)) => Status::Withdrawn,
        (Some(_), None, None) => Status::Delivered,
        (None, None, None) => Status::Queued,
    };
    Ok(Message {
        // Checked (rusqlite's `fallible_uint`): a negative id is an error, not a huge one.
        id: r.get::<_, u64>(0)?,
        kind: kind_at(r, 1)?,
        from: Party {
            name: r.get(2)?,
            session_id: r.get(3)?,
        },
        to: Party {
            name: r
                .get::<_, Option<String>>(4)?
                .unwrap_or_else(|| USER.to_owned()),
            session_id: r.get(5)?,
        },
        body: r.get(6)?,
        in_reply_to: r.get::<_, Option<u64>>(7)?,
        status,
        created_ms: r.get(8)?,
        delivered_ms,
        answered_ms,
    })
}

fn check_body(body: &str, what: &str) -> Result<(), WireError> {
    if body.trim().is_empty() {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!("the {what} is empty"),
        ));
    }
    if body.len() > MAX_BODY_LEN {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!(
                "the {what} is {} bytes; the limit is {} bytes",
                body.len(),
                MAX_BODY_LEN
            ),
        ));
    }
    Ok(())
}

fn id_of(id: u64) -> Result<i64, WireError> {
    i64::try_from(id)
        .map_err(|_| WireError::new(ErrorCode::UnknownMessage, format!("no message {id}")))
}

/// A message row to insert, every column spelled out ([`insert_row`]).
#[derive(Debug)]
pub(crate) struct NewMessage<'a> {
    pub kind: Kind,
    pub from_key: Option<i64>,
    pub from_name: &'a str,
    pub from_session_id: Option<&'a str>,
    pub to_key: Option<i64>,
    pub to_name: Option<&'a str>,
    pub to_name_norm: Option<&'a str>,
    pub to_session_id: Option<&'a str>,
    pub body: &'a str,
    pub in_reply_to: Option<i64>,
    /// Handed out in the same transaction.
    pub delivered: bool,
    /// Its global id, when it crosses machines (`store::federation`).
    pub gid: Option<&'a str>,
    /// The other machine, when it crosses machines.
    pub remote_host: Option<&'a str>,
}

/// Insert one message row; returns its id.
pub(crate) fn insert_row(ctx: &mut Ctx<'_>, m: &NewMessage<'_>) -> Result<i64, WireError> {
    let now = ctx.now_ms;
    ctx.conn
        .prepare_cached(
            "INSERT INTO messages (kind, from_key, from_name, from_session_id, to_key, to_name, to_name_norm,
             to_session_id, body, in_reply_to, created_ms, delivered_ms, gid, remote_host)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .and_then(|mut s| {
            s.execute(params![
                m.kind.as_str(),
                m.from_key,
                m.from_name,
                m.from_session_id,
                m.to_key,
                m.to_name,
                m.to_name_norm,
                m.to_session_id,
                m.body,
                m.in_reply_to,
                now,
                m.delivered.then_some(now),
                m.gid,
                m.remote_host,
            ])
        })
        .map_err(|e| db(ctx, e))?;
    Ok(ctx.conn.last_insert_rowid())
}

/// Insert one message between sessions of this machine; `delivered` marks it handed out in
/// the same transaction. Mail sent `by_id` records no name to follow: it waits for that
/// session (its key) only.
#[allow(clippy::too_many_arguments)]
fn insert(
    ctx: &mut Ctx<'_>,
    kind: Kind,
    from: Option<&SessionRow>,
    to: Option<&SessionRow>,
    by_id: bool,
    body: &str,
    in_reply_to: Option<i64>,
    delivered: bool,
) -> Result<Message, WireError> {
    insert_from(
        ctx,
        kind,
        Sender::Local(from),
        to,
        by_id,
        body,
        in_reply_to,
        delivered,
    )
}

/// Who sends a message that is stored here for a session of this machine.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sender<'a> {
    /// A session of this machine, or the user (`None`).
    Local(Option<&'a SessionRow>),
    /// A session on another machine (its envelope authenticated by `host`'s key).
    Remote {
        /// `name@host`.
        name: &'a str,
        session_id: Option<&'a str>,
        gid: &'a str,
        host: &'a str,
    },
}

#[allow(clippy::too_many_arguments)]
fn insert_from(
    ctx: &mut Ctx<'_>,
    kind: Kind,
    from: Sender<'_>,
    to: Option<&SessionRow>,
    by_id: bool,
    body: &str,
    in_reply_to: Option<i64>,
    delivered: bool,
) -> Result<Message, WireError> {
    let (from_key, from_name, from_session_id, gid, remote_host) = match from {
        Sender::Local(f) => (
            f.map(|f| f.key),
            f.map_or(USER, |f| f.name.as_str()),
            f.map(|f| f.session_id.as_str()),
            None,
            None,
        ),
        Sender::Remote {
            name,
            session_id,
            gid,
            host,
        } => (None, name, session_id, Some(gid), Some(host)),
    };
    let id = insert_row(
        ctx,
        &NewMessage {
            kind,
            from_key,
            from_name,
            from_session_id,
            to_key: to.map(|t| t.key),
            to_name: to.map(|t| t.name.as_str()),
            to_name_norm: to.filter(|_| !by_id).map(|t| t.name_norm.as_str()),
            to_session_id: to.map(|t| t.session_id.as_str()),
            body,
            in_reply_to,
            delivered,
            gid,
            remote_host,
        },
    )?;
    if let Some(t) = to
        && !delivered
        && kind.is_urgent()
    {
        ctx.store.hints().mark(&t.session_id);
    }
    get(ctx, id)?.ok_or_else(|| WireError::new(ErrorCode::Internal, "inserted message vanished"))
}

pub(crate) fn get(ctx: &Reader<'_>, id: i64) -> Result<Option<Message>, WireError> {
    ctx.conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![id], from_row).optional())
        .map_err(|e| db(ctx, e))
}

/// Queue a task or note; one message per recipient (on this machine or another).
pub fn send(
    ctx: &mut Ctx<'_>,
    from: Option<&SessionRow>,
    to: &str,
    kind: Kind,
    body: &str,
) -> Result<Vec<Message>, WireError> {
    if !kind.is_sent() {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            "send takes a task or a note; use ask for a question and reply for an answer",
        ));
    }
    check_body(body, "message")?;
    let fed = ctx.store.identity();
    let target =
        sessions::resolve_address(ctx, fed.as_deref(), to, from.map(|f| f.key), ctx.now_ms)?;
    let (local, remote) = match target {
        Target::One { row, by_id } => (vec![(*row, by_id)], Vec::new()),
        Target::All(rows) => (rows.into_iter().map(|r| (r, false)).collect(), Vec::new()),
        Target::Remote(t) => (Vec::new(), vec![t]),
        Target::Many { local, remote } => (local.into_iter().map(|r| (r, false)).collect(), remote),
    };
    if let Some(f) = from {
        sessions::touch(ctx, f.key)?;
    }
    let mut sent = Vec::with_capacity(local.len() + remote.len());
    for (t, by_id) in &local {
        sent.push(insert(ctx, kind, from, Some(t), *by_id, body, None, false)?);
    }
    if let Some(me) = fed.as_deref() {
        for t in &remote {
            sent.push(send_remote(ctx, me, from, t, kind, body, None)?);
        }
    }
    Ok(sent)
}

/// Queue a question and register the asker as waiting for its answer. Returns the question and
/// whether the asked session is live (an offline one cannot answer until it comes back).
pub fn ask(
    ctx: &mut Ctx<'_>,
    from: Option<&SessionRow>,
    to: &str,
    question: &str,
    tx: oneshot::Sender<AskResult>,
) -> Result<(Message, bool), WireError> {
    check_body(question, "question")?;
    let fed = ctx.store.identity();
    let target =
        sessions::resolve_address(ctx, fed.as_deref(), to, from.map(|f| f.key), ctx.now_ms)?;
    let (target, by_id) = match target {
        Target::One { row, by_id } => (*row, by_id),
        Target::Remote(t) => {
            let Some(me) = fed.as_deref() else {
                return Err(WireError::new(
                    ErrorCode::Internal,
                    "a remote target outside a mesh",
                ));
            };
            if let Some(f) = from {
                sessions::touch(ctx, f.key)?;
            }
            let msg = send_remote(ctx, me, from, &t, Kind::Question, question, None)?;
            // The other machine may be away: the question waits in the mesh for it, and the
            // asker waits as long as it chose to.
            ctx.waiters.insert(
                id_of(msg.id)?,
                Waiter {
                    target_key: None,
                    tx,
                },
            );
            return Ok((msg, true));
        }
        Target::All(_) | Target::Many { .. } => {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "ask one peer at a time (`*` is for send)",
            ));
        }
    };
    if let Some(f) = from {
        sessions::touch(ctx, f.key)?;
    }
    let msg = insert(
        ctx,
        Kind::Question,
        from,
        Some(&target),
        by_id,
        question,
        None,
        false,
    )?;
    if target.live {
        ctx.waiters.insert(
            id_of(msg.id)?,
            Waiter {
                target_key: Some(target.key),
                tx,
            },
        );
    }
    Ok((msg, target.live))
}

/// Wait again for the answer to `question_id` (asked by `from`). Returns the answer at once if
/// it is already there (and hands it out), else registers the waiter.
pub fn await_answer(
    ctx: &mut Ctx<'_>,
    from: Option<&SessionRow>,
    question_id: u64,
    tx: oneshot::Sender<AskResult>,
) -> Result<(Message, Option<AskResult>), WireError> {
    let qid = id_of(question_id)?;
    type Asked = (Message, Option<i64>, Option<i64>, Option<String>);
    let (question, from_key, to_key, remote_host): Asked = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, from_key, to_key, remote_host FROM messages WHERE id = ?1"
        ))
        .and_then(|mut s| {
            s.query_row(params![qid], |r| {
                Ok((from_row(r)?, r.get(12)?, r.get(13)?, r.get(14)?))
            })
            .optional()
        })
        .map_err(|e| db(ctx, e))?
        .ok_or_else(|| {
            WireError::new(
                ErrorCode::UnknownMessage,
                format!("no message {question_id}"),
            )
        })?;
    if question.kind != Kind::Question {
        return Err(WireError::new(
            ErrorCode::NotAQuestion,
            format!("message {question_id} is not a question"),
        ));
    }
    if from_key != from.map(|f| f.key) {
        return Err(WireError::new(
            ErrorCode::NotYours,
            format!("question {question_id} was asked by someone else"),
        ));
    }
    let answer: Option<Message> = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE in_reply_to = ?1 ORDER BY id LIMIT 1"
        ))
        .and_then(|mut s| s.query_row(params![qid], from_row).optional())
        .map_err(|e| db(ctx, e))?;
    if let Some(answer) = answer {
        mark_delivered(ctx, id_of(answer.id)?)?;
        return Ok((question, Some(AskResult::Answered(answer))));
    }
    let live = match to_key {
        Some(k) => sessions::by_key(ctx, k)?.is_some_and(|r| r.live),
        // Asked of another machine: it waits there (or in the mesh) until answered.
        None => remote_host.is_some(),
    };
    if !live {
        return Ok((question, Some(AskResult::PeerGone)));
    }
    // Its asker gave up and now waits again: the question goes back to the queue.
    let question = if question.status == Status::Withdrawn {
        ctx.conn
            .prepare_cached(
                "UPDATE messages SET withdrawn_ms = NULL, delivered_ms = NULL WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![qid]))
            .map_err(|e| db(ctx, e))?;
        if let Some(session_id) = &question.to.session_id {
            ctx.store.hints().mark(session_id);
        }
        get(ctx, qid)?.unwrap_or(question)
    } else {
        question
    };
    ctx.waiters.insert(
        qid,
        Waiter {
            target_key: to_key,
            tx,
        },
    );
    Ok((question, None))
}

/// A question with its asker's key, its addressee's key and normalised name, and, for one
/// that came from another machine, its global id and that machine.
type QuestionRow = (
    Message,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Answer a question. The answer goes to the blocked asker at once (after the commit), or
/// waits in the asker's inbox if it stopped waiting.
pub fn reply(
    ctx: &mut Ctx<'_>,
    from: Option<&SessionRow>,
    message_id: u64,
    body: &str,
) -> Result<Message, WireError> {
    check_body(body, "reply")?;
    let qid = id_of(message_id)?;
    let row: Option<QuestionRow> = ctx
        .conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS}, from_key, to_key, to_name_norm, gid, remote_host
             FROM messages WHERE id = ?1"
        ))
        .and_then(|mut s| {
            s.query_row(params![qid], |r| {
                Ok((
                    from_row(r)?,
                    r.get(12)?,
                    r.get(13)?,
                    r.get(14)?,
                    r.get(15)?,
                    r.get(16)?,
                ))
            })
            .optional()
        })
        .map_err(|e| db(ctx, e))?;
    let Some((question, asker_key, to_key, to_name_norm, gid, remote_host)) = row else {
        return Err(WireError::new(
            ErrorCode::UnknownMessage,
            format!("no message {message_id}"),
        ));
    };
    if question.kind != Kind::Question {
        return Err(WireError::new(
            ErrorCode::NotAQuestion,
            format!(
                "message {message_id} is {}, not a question; use send to respond",
                match question.kind {
                    Kind::Answer => "an answer",
                    Kind::Task => "a task",
                    Kind::Note => "a note",
                    Kind::Question => "a question",
                }
            ),
        ));
    }
    if question.answered_ms.is_some() {
        return Err(WireError::new(
            ErrorCode::AlreadyAnswered,
            format!("question {message_id} was already answered"),
        ));
    }
    if let Some(me) = from {
        let addressed =
            to_key == Some(me.key) || to_name_norm.as_deref() == Some(me.name_norm.as_str());
        if !addressed {
            return Err(WireError::new(
                ErrorCode::NotYours,
                format!(
                    "question {message_id} was asked of `{}`, not of this session",
                    question.to.name
                ),
            ));
        }
        sessions::touch(ctx, me.key)?;
    }
    // A question from another machine: the answer goes back there, through the outbox.
    if asker_key.is_none()
        && let (Some(qgid), Some(host)) = (gid, remote_host)
    {
        let Some(me) = ctx.store.identity() else {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "question {message_id} came from another machine ({host}), and this machine \
                     has left the mesh: `mesh join` again to answer it"
                ),
            ));
        };
        let (name, _) = question
            .from
            .name
            .rsplit_once('@')
            .unwrap_or((question.from.name.as_str(), ""));
        let target = RemoteTarget {
            host: host.clone(),
            session_id: question.from.session_id.clone().unwrap_or_default(),
            name: name.to_owned(),
        };
        let answer = send_remote(
            ctx,
            &me,
            from,
            &target,
            Kind::Answer,
            body,
            Some((qid, qgid)),
        )?;
        mark_answered(ctx, qid)?;
        // Benchmarks time "commit -> the asker on the other machine returns" from this event
        // (the bench reads both daemons' logs, on one machine's clock).
        ctx.after_commit(move || {
            tracing::trace!(target: "mesh::latency", question = qid, remote = true, "answer committed, to be forwarded");
        });
        return Ok(answer);
    }
    let asker = match asker_key {
        Some(k) => sessions::by_key(ctx, k)?,
        None => None,
    };
    answer(ctx, qid, asker.as_ref(), Sender::Local(from), body)
}

fn mark_answered(ctx: &mut Ctx<'_>, qid: i64) -> Result<(), WireError> {
    let now = ctx.now_ms;
    ctx.conn
        .prepare_cached("UPDATE messages SET answered_ms = ?2, delivered_ms = coalesce(delivered_ms, ?2) WHERE id = ?1")
        .and_then(|mut s| s.execute(params![qid, now]))
        .map_err(|e| db(ctx, e))?;
    Ok(())
}

/// Store the answer to question `qid` for its `asker` (`None`: the user) and mark the question
/// answered: the answer goes to the blocked asker at once (after the commit), or waits in the
/// asker's inbox if it stopped waiting. The answer's sender is a session here or on another
/// machine.
pub(crate) fn answer(
    ctx: &mut Ctx<'_>,
    qid: i64,
    asker: Option<&SessionRow>,
    from: Sender<'_>,
    body: &str,
) -> Result<Message, WireError> {
    let waiter = ctx.waiters.take(qid);
    let answer = insert_from(
        ctx,
        Kind::Answer,
        from,
        asker,
        false,
        body,
        Some(qid),
        waiter.is_some(),
    )?;
    mark_answered(ctx, qid)?;
    if let Some(w) = waiter {
        let store = ctx.store();
        let pushed = answer.clone();
        ctx.after_commit(move || {
            let id = pushed.id;
            // Benchmarks time "commit -> asker woken" from this event (same clock, same process).
            tracing::trace!(target: "mesh::latency", question = qid, "answer committed, waking the asker");
            if w.tx.send(AskResult::Answered(pushed)).is_err() {
                // The asker left between the commit and now: the answer waits in its inbox.
                store.spawn(move |ctx| undeliver(ctx, id));
            }
        });
    }
    Ok(answer)
}

/// The asker of question `id` stopped waiting (its wait timed out, or it left). A question not
/// yet handed to the peer is withdrawn: never handed out, shown as `withdrawn`. One the peer
/// has already seen cannot be unsaid: it stays, and an answer goes to the asker's inbox.
/// Nothing changes while another wait for it is registered (an `AwaitAnswer` elsewhere).
/// Returns the question as it now stands.
pub fn withdraw(ctx: &mut Ctx<'_>, id: u64) -> Result<Option<Message>, WireError> {
    let qid = id_of(id)?;
    if !ctx.waiters.is_waiting(qid) {
        let now = ctx.now_ms;
        // `'question'`: the stored spelling of `Kind::Question` (a store test checks it).
        ctx.conn
            .prepare_cached(
                "UPDATE messages SET withdrawn_ms = ?2, delivered_ms = ?2
                 WHERE id = ?1 AND kind = 'question' AND delivered_ms IS NULL AND answered_ms IS NULL
                   AND remote_host IS NULL",
            )
            .and_then(|mut s| s.execute(params![qid, now]))
            .map_err(|e| db(ctx, e))?;
    }
    get(ctx, qid)
}

/// Hand a message back to the queue (its delivery did not reach the recipient).
pub fn undeliver(ctx: &mut Ctx<'_>, id: u64) -> Result<(), WireError> {
    let id = id_of(id)?;
    ctx.conn
        .prepare_cached("UPDATE messages SET delivered_ms = NULL WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(|e| db(ctx, e))?;
    Ok(())
}

/// Put the messages of a hand-out that did not reach its reader back in the queue, and forget
/// the hand-out's token.
pub fn put_back(ctx: &mut Ctx<'_>, ids: &[u64], token: u64) -> Result<(), WireError> {
    for &id in ids {
        undeliver(ctx, id)?;
    }
    if token != 0 {
        ctx.conn
            .prepare_cached("DELETE FROM handouts WHERE token = ?1")
            .and_then(|mut s| s.execute(params![token_column(token)]))
            .map_err(|e| db(ctx, e))?;
    }
    Ok(())
}

/// [`mesh_proto::GiveBack`]: the messages of the hand-out made under `token` that are still
/// delivered and not answered go back to the queue, and the token is forgotten. An unknown (or
/// forgotten) token gives back nothing. Returns how many went back.
pub fn give_back(ctx: &mut Ctx<'_>, token: u64) -> Result<u32, WireError> {
    if token == 0 {
        return Ok(0);
    }
    let Some(taken) = handed_out(ctx, token)? else {
        return Ok(0);
    };
    let back: Vec<u64> = taken
        .iter()
        .filter(|m| m.delivered_ms.is_some() && m.answered_ms.is_none())
        .map(|m| m.id)
        .collect();
    put_back(ctx, &back, token)?;
    Ok(u32::try_from(back.len()).unwrap_or(u32::MAX))
}

fn mark_delivered(ctx: &mut Ctx<'_>, id: i64) -> Result<(), WireError> {
    let now = ctx.now_ms;
    let changed = ctx
        .conn
        .prepare_cached(
            "UPDATE messages SET delivered_ms = ?2 WHERE id = ?1 AND delivered_ms IS NULL",
        )
        .and_then(|mut s| s.execute(params![id, now]))
        .map_err(|e| db(ctx, e))?;
    if changed > 0 {
        // Mail from another machine: its sender hears that it was handed out.
        receipt_for_hand_out(ctx, id)?;
    }
    Ok(())
}

/// A hand-out token as `handouts.token` stores it: its 64 bits as an `i64` (SQLite integers
/// are signed; a token is opaque, so any 64 bits are valid and none is lost).
fn token_column(token: u64) -> i64 {
    token.cast_signed()
}

/// How long a hand-out can be retried ([`mesh_proto::Consume::handout`]).
pub const HANDOUT_KEPT_MS: i64 = 3_600_000;

/// Whether a hand-out with this (non-zero) token is kept: a retry, to be answered again.
pub fn handout_exists(r: &Reader<'_>, token: u64) -> Result<bool, WireError> {
    if token == 0 {
        return Ok(false);
    }
    r.conn
        .prepare_cached("SELECT 1 FROM handouts WHERE token = ?1")
        .and_then(|mut s| {
            s.query_row(params![token_column(token)], |_| Ok(()))
                .optional()
        })
        .map(|found| found.is_some())
        .map_err(|e| db(r, e))
}

/// The messages of an earlier hand-out with this token, if it is still kept.
fn handed_out(ctx: &Ctx<'_>, token: u64) -> Result<Option<Vec<Message>>, WireError> {
    let ids: Option<String> = ctx
        .conn
        .prepare_cached("SELECT message_ids FROM handouts WHERE token = ?1")
        .and_then(|mut s| {
            s.query_row(params![token_column(token)], |r| r.get(0))
                .optional()
        })
        .map_err(|e| db(ctx, e))?;
    let Some(ids) = ids else { return Ok(None) };
    let mut out = Vec::new();
    for id in ids.split(',').filter_map(|i| i.parse::<i64>().ok()) {
        if let Some(m) = get(ctx, id)? {
            out.push(m);
        }
    }
    Ok(Some(out))
}

/// Remember a hand-out for retries ([`forget_old_handouts`] ends that after an hour).
fn remember_handout(ctx: &Ctx<'_>, token: u64, taken: &[Message]) -> Result<(), WireError> {
    let ids = taken
        .iter()
        .map(|m| m.id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    ctx.conn
        .prepare_cached("INSERT INTO handouts (token, created_ms, message_ids) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![token_column(token), ctx.now_ms, ids]))
        .map_err(|e| db(ctx, e))?;
    Ok(())
}

/// Forget the hand-outs older than [`HANDOUT_KEPT_MS`]: their retries are answered no more.
/// The liveness sweep calls this, off the hooks' path; returns how many were forgotten.
pub fn forget_old_handouts(ctx: &mut Ctx<'_>) -> Result<usize, WireError> {
    ctx.conn
        .prepare_cached("DELETE FROM handouts WHERE created_ms < ?1")
        .and_then(|mut s| s.execute(params![ctx.now_ms - HANDOUT_KEPT_MS]))
        .map_err(|e| db(ctx, e))
}

/// Take (or peek at) what is pending for `who` (`None`: the user), oldest first, up to
/// `max_bytes` (bodies plus a fixed overhead each) and [`MAX_CONSUME_MESSAGES`]; always at least
/// one message when any is pending. `remaining` says how many are left. A non-zero `handout`
/// makes the take retry-safe: the same token again returns the same messages (see
/// [`mesh_proto::Consume::handout`]).
pub fn consume(
    ctx: &mut Ctx<'_>,
    who: Option<&SessionRow>,
    class: Class,
    peek: bool,
    max_bytes: usize,
    handout: u64,
) -> Result<Inbox, WireError> {
    let handout = if peek { 0 } else { handout };
    let sql = consume_sql(class, who.is_some());
    let key = who.map(|w| w.key);
    let name = who.map(|w| w.name_norm.as_str());
    // Clamped: a budget larger than a frame would make an answer that cannot be sent.
    let budget = if max_bytes == 0 {
        DEFAULT_CONSUME_BYTES
    } else {
        max_bytes.min(DEFAULT_CONSUME_BYTES)
    };
    let conn = ctx.conn;
    let count_pending = || -> Result<i64, WireError> {
        conn.prepare_cached(&sql.count)
            .and_then(|mut s| s.query_row(params![key, name], |r| r.get(0)))
            .map_err(|e| db(ctx, e))
    };
    if handout != 0
        && let Some(again) = handed_out(ctx, handout)?
    {
        // A retry: the earlier answer was lost. The same messages again, nothing new taken.
        return Ok(Inbox {
            messages: again,
            remaining: saturating_u32(count_pending()?),
        });
    }
    // Read only as far as the budget goes (a backlog of thousands must not be loaded, nor sent
    // in one frame), then count what is left with the index.
    let mut taken: Vec<Message> = Vec::new();
    // Whether every pending message was read: then none remains, and no count is needed.
    let mut exhausted = false;
    {
        let mut stmt = conn.prepare_cached(&sql.select).map_err(|e| db(ctx, e))?;
        let mut rows = stmt.query(params![key, name]).map_err(|e| db(ctx, e))?;
        let mut used = 0usize;
        while taken.len() < MAX_CONSUME_MESSAGES {
            let Some(row) = rows.next().map_err(|e| db(ctx, e))? else {
                exhausted = true;
                break;
            };
            let m = from_row(row).map_err(|e| db(ctx, e))?;
            let cost = cost(&m);
            if !taken.is_empty() && used + cost > budget {
                break;
            }
            used += cost;
            taken.push(m);
        }
    }
    let remaining = if exhausted {
        0
    } else {
        saturating_u32(
            count_pending()?.saturating_sub(i64::try_from(taken.len()).unwrap_or(i64::MAX)),
        )
    };
    if !peek {
        let now = ctx.now_ms;
        for m in taken.iter_mut() {
            mark_delivered(ctx, id_of(m.id)?)?;
            m.delivered_ms = Some(now);
            if m.status == Status::Queued {
                m.status = Status::Delivered;
            }
        }
        // Only a consume that hands something out writes (and so costs an fsync): hooks
        // consume on every tool call, almost always finding nothing.
        if let Some(w) = who
            && !taken.is_empty()
        {
            sessions::touch(ctx, w.key)?;
        }
        if handout != 0 && !taken.is_empty() {
            remember_handout(ctx, handout, &taken)?;
        }
        if let Some(w) = who
            && remaining == 0
        {
            ctx.store.hints().clear(&w.session_id);
        }
    }
    Ok(Inbox {
        messages: taken,
        remaining,
    })
}

/// A count as the wire's `u32`: negative is 0 (a count never is), and more than `u32::MAX`
/// pending messages (a database of many terabytes) says `u32::MAX`.
fn saturating_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// One message and its status.
pub fn status(ctx: &Reader<'_>, id: u64) -> Result<Message, WireError> {
    get(ctx, id_of(id)?)?
        .ok_or_else(|| WireError::new(ErrorCode::UnknownMessage, format!("no message {id}")))
}

// ---------------------------------------------------------------------------------------------
// Across machines.

/// A fresh global id for a message this device sends.
pub fn new_gid(me: &Identity) -> String {
    use crypto_box::aead::rand_core::RngCore;
    let n = crypto_box::aead::OsRng.next_u64();
    format!("{}-{n:016x}", me.device)
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
    let from_name = from.map_or(USER, |f| f.name.as_str());
    let id = insert_row(
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
    outbox::queue(ctx, &to.host, &Envelope::Mail(mail))?;
    get(ctx, id)?.ok_or_else(|| WireError::new(ErrorCode::Internal, "inserted message vanished"))
}

/// Send again, sealed for `host`'s key now pinned, the mail this device sent it that it has
/// not confirmed yet (no receipt): after `mesh keys trust`, what went to its old key (which
/// its new device cannot open) reaches it. Its global ids stay, so a copy that did arrive
/// is not stored twice. Returns how many.
pub fn resend_unconfirmed(
    ctx: &mut Ctx<'_>,
    me: &Identity,
    host: &str,
) -> Result<usize, WireError> {
    type Row = (
        String,
        Kind,
        String,
        Option<String>,
        String,
        Option<String>,
        String,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> = ctx
        .conn
        .prepare_cached(
            "SELECT m.gid, m.kind, m.from_name, m.from_session_id, m.to_name, m.to_session_id,
                    m.body, q.gid, m.created_ms
             FROM messages m LEFT JOIN messages q ON q.id = m.in_reply_to
             WHERE lower(m.remote_host) = lower(?1) AND m.delivered_ms IS NULL
               AND substr(m.gid, 1, length(?2) + 1) = ?2 || '-'",
        )
        .and_then(|mut s| {
            s.query_map(params![host, me.device], |r| {
                Ok((
                    r.get(0)?,
                    kind_at(r, 1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })?
            .collect()
        })
        .map_err(|e| db(ctx, e))?;
    let device = super::hosts::host_named(ctx, host)?.map(|h| h.device_id);
    for (gid, kind, from_name, from_session_id, to_name, to_session_id, body, reply_to, created) in
        &rows
    {
        // `to_name` is the address `name@host`.
        let name = to_name
            .rsplit_once('@')
            .map_or(to_name.as_str(), |(n, _)| n);
        let mail = Mail {
            gid: gid.clone(),
            kind: *kind,
            from_name: from_name.clone(),
            from_session_id: from_session_id.clone(),
            to_name: name.to_owned(),
            to_session_id: to_session_id.clone(),
            body: body.clone(),
            in_reply_to: reply_to.clone(),
            created_ms: *created,
        };
        let dedupe = format!("{gid}/{}", device.as_deref().unwrap_or_default());
        outbox::queue_as(ctx, host, &Envelope::Mail(mail), &dedupe)?;
    }
    Ok(rows.len())
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
pub fn receipt_for_hand_out(ctx: &mut Ctx<'_>, id: i64) -> Result<(), WireError> {
    let Some(me) = ctx.store.identity() else {
        return Ok(());
    };
    if let Some((gid, host)) = origin(ctx, &me, id)? {
        let receipt = Receipt {
            gid,
            delivered_ms: Some(ctx.now_ms),
            answered_ms: None,
        };
        outbox::queue(ctx, &host, &Envelope::Receipt(receipt))?;
    }
    Ok(())
}
