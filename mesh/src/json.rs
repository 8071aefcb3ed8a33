//! The `--json` output of the CLI: one document per command, stable and snake_case. These are
//! our own structs, not the wire types, so the wire can evolve without breaking scripts.
//!
//! Conventions: kinds, statuses, states and scopes are lowercase strings; timestamps are
//! integers in milliseconds since the Unix epoch, named `*_ms`, `null` when not (yet) set;
//! message ids are integers (the CLI also accepts `m42` / `#42` as input); session `id` is the
//! full Claude Code session id.
//!
//! | command | document |
//! |---|---|
//! | `list` | `{"scope", "include_offline", "sessions": [Session + "host", "remote": false, "you" / RemoteSession]}` (`you`: true on the row of the session the command runs in; `host`: this machine's host in the mesh, `null` when it joined none) |
//! | `whoami` | `{"in_session": bool, "session": Session or null}` |
//! | `send` | `{"messages": [Message]}` (one per recipient) |
//! | `ask` | `{"status": "answered"/"timed_out"/"peer_gone", "question": Message, "answer": Message or null}` |
//! | `reply` | `{"answer": Message}` |
//! | `inbox` | `{"peek": bool, "messages": [Message], "remaining": int}` |
//! | `message` | `Message` |
//!
//! `Session`: `{"id", "name", "pid", "cwd", "project_root", "git_root", "transcript_path",
//! "summary", "state": "busy"/"idle"/"offline", "live", "idle", "pending", "registered_ms",
//! "last_active_ms"}`.
//!
//! `RemoteSession` (another machine's, `list --scope mesh`): `{"id", "name", "host", "address":
//! "name@host", "summary", "state", "live", "idle", "pending", "seen_ms", "remote": true, "you":
//! false}`.
//!
//! `Message`: `{"id", "kind": "task"/"note"/"question"/"answer", "from": Party, "to": Party,
//! "body", "in_reply_to", "status": "queued"/"delivered"/"answered"/"withdrawn", "created_ms",
//! "delivered_ms", "answered_ms"}`; `Party`: `{"name", "session_id"}` (`name` is `user` and
//! `session_id` null for a command run outside any session).

use mesh_proto::{
    AskOutcome, AskResult, Inbox, MeshPeers, Message, Party, RemoteSession, Scope, SessionInfo,
};
use serde::Serialize;

use crate::display::session_state;

/// A session, in `list` and `whoami`.
#[derive(Debug, Serialize)]
pub struct SessionJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub pid: u32,
    pub cwd: &'a str,
    pub project_root: Option<&'a str>,
    pub git_root: Option<&'a str>,
    pub transcript_path: Option<&'a str>,
    pub summary: &'a str,
    pub state: &'static str,
    pub live: bool,
    pub idle: bool,
    pub pending: u32,
    pub registered_ms: i64,
    pub last_active_ms: i64,
}

impl<'a> From<&'a SessionInfo> for SessionJson<'a> {
    fn from(s: &'a SessionInfo) -> Self {
        Self {
            id: &s.session_id,
            name: &s.name,
            pid: s.pid,
            cwd: &s.cwd,
            project_root: s.project_root.as_deref(),
            git_root: s.git_root.as_deref(),
            transcript_path: s.transcript_path.as_deref(),
            summary: &s.summary,
            state: session_state(s),
            live: s.live,
            idle: s.idle,
            pending: s.pending,
            registered_ms: s.registered_ms,
            last_active_ms: s.last_active_ms,
        }
    }
}

/// One end of a message.
#[derive(Debug, Serialize)]
pub struct PartyJson<'a> {
    pub name: &'a str,
    pub session_id: Option<&'a str>,
}

impl<'a> From<&'a Party> for PartyJson<'a> {
    fn from(p: &'a Party) -> Self {
        Self {
            name: &p.name,
            session_id: p.session_id.as_deref(),
        }
    }
}

/// A message with its delivery state.
#[derive(Debug, Serialize)]
pub struct MessageJson<'a> {
    pub id: u64,
    pub kind: &'static str,
    pub from: PartyJson<'a>,
    pub to: PartyJson<'a>,
    pub body: &'a str,
    pub in_reply_to: Option<u64>,
    pub status: &'static str,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
    pub answered_ms: Option<i64>,
}

impl<'a> From<&'a Message> for MessageJson<'a> {
    fn from(m: &'a Message) -> Self {
        Self {
            id: m.id,
            kind: m.kind.as_str(),
            from: (&m.from).into(),
            to: (&m.to).into(),
            body: &m.body,
            in_reply_to: m.in_reply_to,
            status: m.status.as_str(),
            created_ms: m.created_ms,
            delivered_ms: m.delivered_ms,
            answered_ms: m.answered_ms,
        }
    }
}

/// `mesh list --json`.
#[derive(Debug, Serialize)]
pub struct ListJson<'a> {
    /// `machine`, `repo`, `directory` or `mesh`.
    pub scope: &'static str,
    pub include_offline: bool,
    pub sessions: Vec<ListedJson<'a>>,
}

/// A session in `list`: a session of this machine, or (with `--scope mesh`) of another one.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ListedJson<'a> {
    /// [`SessionJson`], this machine's host in the mesh (`null` when it joined none) and
    /// whether it is the session the command runs in.
    Local {
        #[serde(flatten)]
        session: SessionJson<'a>,
        host: Option<&'a str>,
        remote: bool,
        you: bool,
    },
    Remote(RemoteJson<'a>),
}

/// A session on another machine, as its daemon last announced it. Every text field came from
/// that machine.
#[derive(Debug, Serialize)]
pub struct RemoteJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub host: &'a str,
    /// `name@host`: what `send`, `ask` and the MCP tools take.
    pub address: String,
    pub summary: &'a str,
    pub state: &'static str,
    pub live: bool,
    pub idle: bool,
    pub pending: u32,
    /// When its machine last listed it.
    pub seen_ms: i64,
    pub remote: bool,
    pub you: bool,
}

impl<'a> From<&'a RemoteSession> for RemoteJson<'a> {
    fn from(s: &'a RemoteSession) -> Self {
        Self {
            id: &s.session_id,
            name: &s.name,
            host: &s.host,
            address: format!("{}@{}", s.name, s.host),
            summary: &s.summary,
            state: remote_state(s),
            live: s.live,
            idle: s.idle,
            pending: s.pending,
            seen_ms: s.seen_ms,
            remote: true,
            you: false,
        }
    }
}

impl<'a> ListJson<'a> {
    /// `scope`: [`scope_str`] or `mesh`; `me`: the key of the session the command runs in, if
    /// any.
    pub fn new(
        scope: &'static str,
        include_offline: bool,
        peers: &'a MeshPeers,
        me: Option<u64>,
    ) -> Self {
        let host = peers.host.as_deref();
        Self {
            scope,
            include_offline,
            sessions: peers
                .local
                .iter()
                .map(|s| ListedJson::Local {
                    session: s.into(),
                    host,
                    remote: false,
                    you: Some(s.key) == me,
                })
                .chain(peers.remote.iter().map(|r| ListedJson::Remote(r.into())))
                .collect(),
        }
    }
}

/// A remote session's `offline`, `idle` or `busy`.
pub fn remote_state(s: &RemoteSession) -> &'static str {
    if !s.live {
        "offline"
    } else if s.idle {
        "idle"
    } else {
        "busy"
    }
}

/// `mesh whoami --json`.
#[derive(Debug, Serialize)]
pub struct WhoAmIJson<'a> {
    pub in_session: bool,
    pub session: Option<SessionJson<'a>>,
}

impl<'a> WhoAmIJson<'a> {
    pub fn new(session: Option<&'a SessionInfo>) -> Self {
        Self {
            in_session: session.is_some(),
            session: session.map(Into::into),
        }
    }
}

/// `mesh send --json`.
#[derive(Debug, Serialize)]
pub struct SentJson<'a> {
    pub messages: Vec<MessageJson<'a>>,
}

impl<'a> SentJson<'a> {
    pub fn new(messages: &'a [Message]) -> Self {
        Self {
            messages: messages.iter().map(Into::into).collect(),
        }
    }
}

/// `mesh ask --json`.
#[derive(Debug, Serialize)]
pub struct AskJson<'a> {
    pub status: &'static str,
    pub question: MessageJson<'a>,
    pub answer: Option<MessageJson<'a>>,
}

impl<'a> From<&'a AskOutcome> for AskJson<'a> {
    fn from(o: &'a AskOutcome) -> Self {
        let (status, answer) = match &o.result {
            AskResult::Answered(m) => ("answered", Some(m.into())),
            AskResult::TimedOut => ("timed_out", None),
            AskResult::PeerGone => ("peer_gone", None),
        };
        Self {
            status,
            question: (&o.question).into(),
            answer,
        }
    }
}

/// `mesh reply --json`.
#[derive(Debug, Serialize)]
pub struct RepliedJson<'a> {
    pub answer: MessageJson<'a>,
}

/// `mesh inbox --json`.
#[derive(Debug, Serialize)]
pub struct InboxJson<'a> {
    pub peek: bool,
    pub messages: Vec<MessageJson<'a>>,
    pub remaining: u32,
}

impl<'a> InboxJson<'a> {
    pub fn new(peek: bool, inbox: &'a Inbox) -> Self {
        Self {
            peek,
            messages: inbox.messages.iter().map(Into::into).collect(),
            remaining: inbox.remaining,
        }
    }
}

/// `machine`, `repo` or `directory`.
pub fn scope_str(scope: Scope) -> &'static str {
    match scope {
        Scope::Machine => "machine",
        Scope::Repo => "repo",
        Scope::Directory => "directory",
    }
}

#[cfg(test)]
mod tests;
