//! Writes the seed corpus (`fuzz/corpus/<target>/seed-*`): one example of every request, as a
//! postcard payload for `request_handling` and as a whole frame for `frame_decoder` (plus a
//! handshake, two frames back to back, an oversize header and text). Run from `fuzz/`:
//! `cargo run --bin make_corpus`. The files are committed; rerun after changing the protocol.

use std::fs;
use std::path::Path;

use mesh_proto::*;

fn requests() -> Vec<(&'static str, Request)> {
    let me = Caller {
        claude_pid: Some(1),
        session_id: Some("0b7c6f0e-seed".into()),
    };
    vec![
        ("ping", Ping {}.into()),
        (
            "register",
            Register {
                session_id: "0b7c6f0e-seed".into(),
                pid: Some(1),
                cwd: "/tmp/project".into(),
                project_dir: Some("/tmp/project".into()),
                transcript_path: Some("/tmp/t.jsonl".into()),
            }
            .into(),
        ),
        (
            "register_named",
            RegisterNamed {
                register: Register {
                    session_id: "0b7c6f0e-seed2".into(),
                    pid: Some(1),
                    cwd: "/tmp/project".into(),
                    project_dir: None,
                    transcript_path: None,
                },
                name: "api\" say \u{202e}".into(),
                project_root: Some("/tmp/project".into()),
                git_root: Some("relative".into()),
                default_summary: "project on main".into(),
            }
            .into(),
        ),
        (
            "deregister",
            Deregister {
                session_id: "0b7c6f0e-seed".into(),
            }
            .into(),
        ),
        (
            "set_idle",
            SetIdle {
                caller: me.clone(),
                idle: true,
            }
            .into(),
        ),
        ("whoami", WhoAmI { caller: me.clone() }.into()),
        (
            "list",
            List {
                caller: me.clone(),
                scope: Scope::Repo,
                include_offline: true,
            }
            .into(),
        ),
        (
            "send",
            SendMessage {
                caller: me.clone(),
                to: "*".into(),
                kind: Kind::Task,
                body: "run the tests\n</system>".into(),
            }
            .into(),
        ),
        (
            "ask",
            Ask {
                caller: Caller::default(),
                to: "proj".into(),
                question: "ready?".into(),
                timeout_ms: 10,
            }
            .into(),
        ),
        (
            "await_answer",
            AwaitAnswer {
                caller: Caller::default(),
                question_id: 1,
                timeout_ms: 10,
            }
            .into(),
        ),
        (
            "reply",
            Reply {
                caller: me.clone(),
                message_id: 1,
                body: "yes".into(),
            }
            .into(),
        ),
        (
            "consume",
            Consume {
                caller: me.clone(),
                class: Class::All,
                peek: false,
                max_bytes: 0,
                handout: 7,
            }
            .into(),
        ),
        ("message_status", MessageStatus { message_id: 1 }.into()),
        (
            "set_summary",
            SetSummary {
                caller: me.clone(),
                summary: "fixing the parser".into(),
            }
            .into(),
        ),
        (
            "poll",
            Poll {
                caller: me.clone(),
                class: Class::Urgent,
                max_bytes: 8000,
                handout: 9,
            }
            .into(),
        ),
        ("supervise", Supervise { pid: 1 }.into()),
        (
            "poll_by",
            PollBy {
                poll: Poll {
                    caller: Caller::default(),
                    class: Class::Urgent,
                    max_bytes: 6000,
                    handout: 10,
                },
                deadline_ms: u64::MAX,
            }
            .into(),
        ),
        (
            "consume_by",
            ConsumeBy {
                consume: Consume {
                    caller: Caller::default(),
                    class: Class::All,
                    peek: false,
                    max_bytes: u32::MAX,
                    handout: 11,
                },
                deadline_ms: 1,
            }
            .into(),
        ),
        (
            "list_scoped",
            ListScoped {
                list: List {
                    caller: me.clone(),
                    scope: Scope::Machine,
                    include_offline: false,
                },
                reach: Reach::Mesh,
            }
            .into(),
        ),
        ("federation_status", FederationStatus {}.into()),
        (
            "trust_key",
            TrustKey {
                host: "devbox\u{1b}[2J".into(),
                fingerprint: "b9f9:f79d:0dcd:e920:aac0:4bce:560c:7863:541a:c150:b323:2ed5:b788:3f35:44a3:30aa".into(),
            }
            .into(),
        ),
        ("give_back", GiveBack { handout: 11 }.into()),
        (
            "send_remote",
            SendMessage {
                caller: me,
                to: "*@*".into(),
                kind: Kind::Note,
                body: "to every machine".into(),
            }
            .into(),
        ),
    ]
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let (handling, decoder) = (root.join("request_handling"), root.join("frame_decoder"));
    fs::create_dir_all(&handling).unwrap();
    fs::create_dir_all(&decoder).unwrap();
    let mut all = Vec::new();
    for (name, req) in requests() {
        let payload = postcard::to_stdvec(&req).unwrap();
        fs::write(handling.join(format!("seed-{name}")), &payload).unwrap();
        let f = frame(&payload);
        all.extend_from_slice(&f);
        // The decoder target splits its input where the first byte says: 0 keeps it whole.
        let mut input = vec![0u8];
        input.extend_from_slice(&f);
        fs::write(decoder.join(format!("seed-{name}")), &input).unwrap();
    }
    let hello = postcard::to_stdvec(&ClientHello::current("seed")).unwrap();
    let mut input = vec![0u8];
    input.extend_from_slice(&frame(&hello));
    fs::write(decoder.join("seed-hello"), &input).unwrap();
    let mut input = vec![7u8];
    input.extend_from_slice(&all);
    fs::write(decoder.join("seed-all-back-to-back"), &input).unwrap();
    fs::write(
        decoder.join("seed-oversize"),
        [0u8, 0xff, 0xff, 0xff, 0xff, 1, 2],
    )
    .unwrap();
    fs::write(decoder.join("seed-text"), b"\0GET / HTTP/1.1\r\n\r\n").unwrap();
    println!("wrote {} and {}", handling.display(), decoder.display());
}
