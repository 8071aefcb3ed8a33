//! Pins the JSON shapes: changing one of these is a breaking change for scripts.

use mesh_proto::{Kind, Status};
use serde_json::json;

use super::*;

fn session() -> SessionInfo {
    SessionInfo {
        key: 7,
        session_id: "0123456789abcdef".into(),
        name: "backend".into(),
        pid: 4242,
        cwd: "/home/u/src/backend".into(),
        project_root: Some("/home/u/src/backend".into()),
        git_root: None,
        transcript_path: None,
        summary: "fixing the tests".into(),
        idle: true,
        live: true,
        registered_ms: 1_000,
        last_active_ms: 2_000,
        pending: 2,
    }
}

fn message() -> Message {
    Message {
        id: 42,
        kind: Kind::Question,
        from: Party {
            name: "user".into(),
            session_id: None,
        },
        to: Party {
            name: "backend".into(),
            session_id: Some("0123456789abcdef".into()),
        },
        body: "ready?".into(),
        in_reply_to: None,
        status: Status::Delivered,
        created_ms: 1_000,
        delivered_ms: Some(1_500),
        answered_ms: None,
    }
}

fn message_json() -> serde_json::Value {
    json!({
        "id": 42,
        "kind": "question",
        "from": {"name": "user", "session_id": null},
        "to": {"name": "backend", "session_id": "0123456789abcdef"},
        "body": "ready?",
        "in_reply_to": null,
        "status": "delivered",
        "created_ms": 1000,
        "delivered_ms": 1500,
        "answered_ms": null
    })
}

fn session_json() -> serde_json::Value {
    json!({
        "id": "0123456789abcdef",
        "name": "backend",
        "pid": 4242,
        "cwd": "/home/u/src/backend",
        "project_root": "/home/u/src/backend",
        "git_root": null,
        "transcript_path": null,
        "summary": "fixing the tests",
        "state": "idle",
        "live": true,
        "idle": true,
        "pending": 2,
        "registered_ms": 1000,
        "last_active_ms": 2000
    })
}

fn to_value(v: impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

fn listed(you: bool, host: Option<&str>) -> serde_json::Value {
    let mut v = session_json();
    v["you"] = json!(you);
    v["host"] = json!(host);
    v["remote"] = json!(false);
    v
}

fn peers(host: Option<&str>, remote: Vec<RemoteSession>) -> MeshPeers {
    MeshPeers {
        host: host.map(str::to_owned),
        local: vec![session()],
        remote,
    }
}

#[test]
fn list_shape() {
    let p = peers(None, Vec::new());
    assert_eq!(
        to_value(ListJson::new(scope_str(Scope::Repo), false, &p, None)),
        json!({"scope": "repo", "include_offline": false, "sessions": [listed(false, None)]})
    );
    assert_eq!(
        to_value(ListJson::new(
            scope_str(Scope::Repo),
            false,
            &p,
            Some(p.local[0].key)
        )),
        json!({"scope": "repo", "include_offline": false, "sessions": [listed(true, None)]})
    );
}

#[test]
fn list_shape_across_machines() {
    let remote = RemoteSession {
        host: "ci".into(),
        session_id: "fedcba9876543210".into(),
        name: "tests".into(),
        summary: "running the suite".into(),
        idle: false,
        pending: 1,
        live: true,
        seen_ms: 3_000,
    };
    let p = peers(Some("laptop"), vec![remote]);
    assert_eq!(
        to_value(ListJson::new("mesh", true, &p, None)),
        json!({"scope": "mesh", "include_offline": true, "sessions": [
            listed(false, Some("laptop")),
            {
                "id": "fedcba9876543210",
                "name": "tests",
                "host": "ci",
                "address": "tests@ci",
                "summary": "running the suite",
                "state": "busy",
                "live": true,
                "idle": false,
                "pending": 1,
                "seen_ms": 3000,
                "remote": true,
                "you": false
            }
        ]})
    );
}

#[test]
fn whoami_shape() {
    let s = session();
    assert_eq!(
        to_value(WhoAmIJson::new(Some(&s))),
        json!({"in_session": true, "session": session_json()})
    );
    assert_eq!(
        to_value(WhoAmIJson::new(None)),
        json!({"in_session": false, "session": null})
    );
}

#[test]
fn message_send_reply_inbox_shapes() {
    let m = message();
    assert_eq!(to_value(MessageJson::from(&m)), message_json());
    let ms = [m.clone()];
    assert_eq!(
        to_value(SentJson::new(&ms)),
        json!({"messages": [message_json()]})
    );
    assert_eq!(
        to_value(RepliedJson {
            answer: (&m).into()
        }),
        json!({"answer": message_json()})
    );
    let inbox = Inbox {
        messages: vec![m],
        remaining: 3,
    };
    assert_eq!(
        to_value(InboxJson::new(true, &inbox)),
        json!({"peek": true, "messages": [message_json()], "remaining": 3})
    );
}

#[test]
fn ask_shapes() {
    let mut answer = message();
    answer.id = 43;
    answer.kind = Kind::Answer;
    answer.in_reply_to = Some(42);
    let outcome = AskOutcome {
        question: message(),
        result: AskResult::Answered(answer),
    };
    let v = to_value(AskJson::from(&outcome));
    assert_eq!(v["status"], "answered");
    assert_eq!(v["question"], message_json());
    assert_eq!(v["answer"]["kind"], "answer");
    assert_eq!(v["answer"]["in_reply_to"], 42);

    for (result, status) in [
        (AskResult::TimedOut, "timed_out"),
        (AskResult::PeerGone, "peer_gone"),
    ] {
        let outcome = AskOutcome {
            question: message(),
            result,
        };
        assert_eq!(
            to_value(AskJson::from(&outcome)),
            json!({"status": status, "question": message_json(), "answer": null})
        );
    }
}
