//! What the tools return: one compact JSON document per result, written for the model.
//!
//! These follow the CLI's `--json` documents (`mesh::json`) in names and values, with
//! two deliberate differences: message ids are in the `m42` form that the hooks show and
//! `reply_to_peer` / `message_status` take (the CLI's JSON has bare integers), and timestamps
//! are local date-times a model can read (`2025-11-23 19:06:12 +0100`) instead of epoch
//! milliseconds. Session objects carry what `list_peers` promises: id, name, cwd, repo,
//! summary, state, pending count and last activity.

use mesh::display::{local_timestamp, now_ms, relative_time, session_state};
use mesh_client::format_message_id;
use mesh_proto::{
    AskOutcome, AskResult, Inbox, Kind, MeshPeers, Message, RemoteSession, SessionInfo, Status,
};
use serde::Serialize;
use serde_json::{Value, json};

/// A session.
#[derive(Debug, Serialize)]
pub struct SessionOut<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub cwd: &'a str,
    pub repo: Option<&'a str>,
    pub summary: &'a str,
    /// `busy`, `idle` or `offline`.
    pub state: &'static str,
    pub idle: bool,
    pub pending: u32,
    pub last_active: String,
    pub pid: u32,
}

impl<'a> SessionOut<'a> {
    pub fn new(s: &'a SessionInfo, now: i64) -> Self {
        Self {
            id: &s.session_id,
            name: &s.name,
            cwd: &s.cwd,
            repo: s.git_root.as_deref(),
            summary: &s.summary,
            state: session_state(s),
            idle: s.idle,
            pending: s.pending,
            last_active: relative_time(now, s.last_active_ms),
            pid: s.pid,
        }
    }
}

/// A message with its delivery state.
#[derive(Debug, Serialize)]
pub struct MessageOut<'a> {
    pub id: String,
    pub kind: &'static str,
    pub from: &'a str,
    pub from_id: Option<&'a str>,
    pub to: &'a str,
    pub body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    pub status: &'static str,
    pub created: String,
    pub delivered: Option<String>,
    pub answered: Option<String>,
}

impl<'a> From<&'a Message> for MessageOut<'a> {
    fn from(m: &'a Message) -> Self {
        Self {
            id: format_message_id(m.id),
            kind: m.kind.as_str(),
            from: &m.from.name,
            from_id: m.from.session_id.as_deref(),
            to: &m.to.name,
            body: &m.body,
            in_reply_to: m.in_reply_to.map(format_message_id),
            status: m.status.as_str(),
            created: local_timestamp(m.created_ms),
            delivered: m.delivered_ms.map(local_timestamp),
            answered: m.answered_ms.map(local_timestamp),
        }
    }
}

pub fn whoami(me: Option<&SessionInfo>) -> Value {
    match me {
        Some(s) => json!({"in_session": true, "session": SessionOut::new(s, now_ms())}),
        None => json!({
            "in_session": false,
            "session": null,
            "note": "This Claude Code session is not registered with claude-mesh (its SessionStart \
                     hook registers it; check `mesh health`). You can still send messages and ask \
                     questions, as the user, but peers cannot address you.",
        }),
    }
}

/// `list_peers`: the other sessions of this machine, then (scope `mesh`) those of the other
/// machines, named `name@host` as the tools take them.
pub fn peers(scope: &str, me: Option<&SessionInfo>, found: &MeshPeers) -> Value {
    let now = now_ms();
    let mut others: Vec<Value> = found
        .local
        .iter()
        .filter(|s| me.is_none_or(|m| m.key != s.key))
        .map(|s| json!(SessionOut::new(s, now)))
        .collect();
    others.extend(found.remote.iter().map(|r| json!(RemoteOut::new(r, now))));
    let mut doc = json!({
        "scope": scope,
        "you": me.map(|m| json!({"id": m.session_id, "name": m.name})),
        "peers": others,
    });
    if let Some(host) = &found.host {
        doc["host"] = json!(host);
    }
    if others.is_empty() {
        doc["note"] = json!("no other live sessions in this scope");
    }
    doc
}

/// A session on another machine, as its daemon last announced it.
#[derive(Debug, Serialize)]
pub struct RemoteOut<'a> {
    pub id: &'a str,
    /// `name@host`: how send_message, ask_peer and the other tools address it.
    pub name: String,
    pub host: &'a str,
    pub summary: &'a str,
    /// `busy`, `idle` or `offline`.
    pub state: &'static str,
    pub idle: bool,
    pub pending: u32,
    /// When its machine last listed it.
    pub last_seen: String,
}

impl<'a> RemoteOut<'a> {
    pub fn new(r: &'a RemoteSession, now: i64) -> Self {
        Self {
            id: &r.session_id,
            name: format!("{}@{}", r.name, r.host),
            host: &r.host,
            summary: &r.summary,
            state: mesh::json::remote_state(r),
            idle: r.idle,
            pending: r.pending,
            last_seen: relative_time(now, r.seen_ms),
        }
    }
}

pub fn sent(kind: Kind, messages: &[Message]) -> Value {
    let list: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "id": format_message_id(m.id),
                "to": m.to.name,
                "to_id": m.to.session_id,
                "status": m.status.as_str(),
            })
        })
        .collect();
    json!({"kind": kind.as_str(), "messages": list})
}

/// The result of an ask. `asked_s` is the wait that applied (after capping), `requested_s`
/// what the model asked for.
pub fn asked(outcome: &AskOutcome, asked_s: u64, requested_s: u64) -> Value {
    let q = &outcome.question;
    let qid = format_message_id(q.id);
    let peer = &q.to.name;
    // In prose, the peer's name (peer-controlled) only ever appears quoted.
    let quoted = mesh_proto::sanitize::model_quoted(peer, 64);
    let mut doc = match &outcome.result {
        AskResult::Answered(a) => json!({
            "status": "answered",
            "peer": peer,
            "question_id": qid,
            "answer_id": format_message_id(a.id),
            "answer": a.body,
        }),
        AskResult::TimedOut => json!({
            "status": "timed_out",
            "peer": peer,
            "question_id": qid,
            "question_status": q.status.as_str(),
            "waited_s": asked_s,
            "note": match q.status {
                Status::Withdrawn => format!(
                    "No answer from {quoted} within {asked_s} s. {quoted} had not seen the question, \
                     so it is withdrawn: {quoted} will not be shown it. Ask again if you still \
                     need the answer."
                ),
                Status::Delivered => format!(
                    "No answer from {quoted} within {asked_s} s. {quoted} has seen the question: a \
                     later answer arrives in your messages (check_messages), and \
                     message_status(\"{qid}\") shows whether it was answered."
                ),
                _ => format!(
                    "No answer from {quoted} within {asked_s} s. The question stays queued for \
                     {quoted}; a later answer arrives in your messages (check_messages), and \
                     message_status(\"{qid}\") shows whether it was answered."
                ),
            },
        }),
        AskResult::PeerGone => json!({
            "status": "peer_gone",
            "peer": peer,
            "question_id": qid,
            "note": format!(
                "The session of {quoted} is not running (it ended before answering). The question \
                 stays queued: the next session named {quoted} receives it, and its answer would arrive \
                 in your messages (check_messages)."
            ),
        }),
    };
    if requested_s > asked_s {
        doc["timeout_capped"] = json!(format!(
            "timeout_s {requested_s} was capped to {asked_s} s to stay inside the MCP tool timeout"
        ));
    }
    doc
}

pub fn replied(answer: &Message) -> Value {
    json!({
        "ok": true,
        "answer_id": format_message_id(answer.id),
        "question_id": answer.in_reply_to.map(format_message_id),
        "to": answer.to.name,
    })
}

pub fn inbox(inbox: &Inbox) -> Value {
    let messages: Vec<MessageOut<'_>> = inbox.messages.iter().map(Into::into).collect();
    let mut doc = json!({"messages": messages, "remaining": inbox.remaining});
    if inbox.messages.is_empty() {
        doc["note"] = json!("no messages");
    }
    if inbox.messages.iter().any(|m| m.kind == Kind::Question) {
        doc["how_to_answer"] =
            json!("answer each question with reply_to_peer(message_id: its id, body: your answer)");
    }
    if inbox.remaining > 0 {
        doc["more"] = json!(format!(
            "{} more message(s) pending: call check_messages again",
            inbox.remaining
        ));
    }
    doc
}

pub fn message(m: &Message) -> Value {
    json!(MessageOut::from(m))
}

#[cfg(test)]
mod tests {
    use mesh_proto::{Party, Status};

    use super::*;

    fn msg(id: u64, kind: Kind, body: &str) -> Message {
        Message {
            id,
            kind,
            from: Party {
                name: "frontend".into(),
                session_id: Some("0123456789".into()),
            },
            to: Party {
                name: "backend".into(),
                session_id: Some("abcdef0123".into()),
            },
            body: body.into(),
            in_reply_to: None,
            status: Status::Queued,
            created_ms: 1_700_000_000_000,
            delivered_ms: None,
            answered_ms: None,
        }
    }

    fn session(key: u64, name: &str) -> SessionInfo {
        SessionInfo {
            key,
            session_id: format!("{name}-session"),
            name: name.into(),
            pid: 42,
            cwd: "/src".into(),
            project_root: None,
            git_root: None,
            transcript_path: None,
            summary: String::new(),
            idle: true,
            live: true,
            registered_ms: 0,
            last_active_ms: 0,
            pending: 0,
        }
    }

    #[test]
    fn peers_across_machines_are_named_name_at_host() {
        let me = session(1, "frontend");
        let found = MeshPeers {
            host: Some("laptop".into()),
            local: vec![me.clone(), session(2, "backend")],
            remote: vec![RemoteSession {
                host: "ci".into(),
                session_id: "ci-session".into(),
                name: "tests".into(),
                summary: "running the suite".into(),
                idle: false,
                pending: 2,
                live: true,
                seen_ms: now_ms(),
            }],
        };
        let v = peers("mesh", Some(&me), &found);
        assert_eq!(v["scope"], "mesh");
        assert_eq!(v["host"], "laptop");
        let list = v["peers"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{v}");
        assert_eq!(list[0]["name"], "backend");
        assert_eq!(list[1]["name"], "tests@ci");
        assert_eq!(list[1]["host"], "ci");
        assert_eq!(list[1]["state"], "busy");
        assert_eq!(list[1]["pending"], 2);
        // Outside a mesh: no host, and the note when nobody else runs.
        let alone = MeshPeers {
            host: None,
            local: vec![me.clone()],
            remote: Vec::new(),
        };
        let v = peers("machine", Some(&me), &alone);
        assert!(v.get("host").is_none(), "{v}");
        assert!(v["note"].is_string(), "{v}");
    }

    #[test]
    fn messages_use_m_ids_and_readable_times() {
        let mut m = msg(42, Kind::Answer, "8080");
        m.in_reply_to = Some(41);
        let v = message(&m);
        assert_eq!(v["id"], "m42");
        assert_eq!(v["in_reply_to"], "m41");
        assert_eq!(v["status"], "queued");
        assert_eq!(v["delivered"], Value::Null);
        assert!(
            v["created"].as_str().unwrap().starts_with("2023-11-"),
            "{v}"
        );
    }

    #[test]
    fn ask_results_say_what_happened_and_what_next() {
        let q = msg(18, Kind::Question, "port?");
        let answered = asked(
            &AskOutcome {
                question: q.clone(),
                result: AskResult::Answered(msg(19, Kind::Answer, "8080")),
            },
            300,
            300,
        );
        assert_eq!(answered["status"], "answered");
        assert_eq!(answered["answer"], "8080");
        assert_eq!(answered["question_id"], "m18");
        assert!(answered.get("timeout_capped").is_none());

        let timed_out = asked(
            &AskOutcome {
                question: q.clone(),
                result: AskResult::TimedOut,
            },
            50,
            300,
        );
        assert_eq!(timed_out["status"], "timed_out");
        assert!(
            timed_out["note"]
                .as_str()
                .unwrap()
                .contains("message_status(\"m18\")")
        );
        assert!(timed_out["timeout_capped"].as_str().unwrap().contains("50"));

        let gone = asked(
            &AskOutcome {
                question: q,
                result: AskResult::PeerGone,
            },
            300,
            300,
        );
        assert_eq!(gone["status"], "peer_gone");
    }

    #[test]
    fn inbox_explains_questions_and_more() {
        let inbox_doc = inbox(&Inbox {
            messages: vec![msg(5, Kind::Question, "ready?")],
            remaining: 2,
        });
        assert_eq!(inbox_doc["messages"][0]["id"], "m5");
        assert!(inbox_doc["how_to_answer"].is_string());
        assert!(inbox_doc["more"].as_str().unwrap().starts_with("2 more"));
    }
}
