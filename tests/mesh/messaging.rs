//! Messaging between sessions, end to end through a real daemon: tasks, notes, broadcast, ask
//! and reply, concurrent consumers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use mesh_proto::{
    Ask, AskResult, Class, Consume, ErrorCode, Kind, List, MessageStatus, Reply, Scope,
    SendMessage, SetSummary, Status,
};
use mesh_testkit::{Mesh, wait_for};

fn send(mesh: &Mesh, from: &mesh_testkit::Session, to: &str, kind: Kind, body: &str) -> Vec<u64> {
    let sent = mesh
        .conn()
        .send(SendMessage {
            caller: from.caller.clone(),
            to: to.into(),
            kind,
            body: body.into(),
        })
        .unwrap();
    sent.messages.iter().map(|m| m.id).collect()
}

fn consume(mesh: &Mesh, who: &mesh_testkit::Session, class: Class) -> Vec<mesh_proto::Message> {
    mesh.conn()
        .consume(Consume {
            caller: who.caller.clone(),
            class,
            peek: false,
            max_bytes: 0,
            handout: 0,
        })
        .unwrap()
        .messages
}

#[test]
fn two_sessions_exchange_tasks_and_notes() {
    let mesh = Mesh::start();
    let a = mesh.session("frontend");
    let b = mesh.session("backend");

    send(&mesh, &a, "Backend", Kind::Task, "please add /health");
    send(&mesh, &a, "backend", Kind::Note, "fyi: CI is green");

    // A tool-use hook takes urgent mail only: the task, not the note.
    let urgent = consume(&mesh, &b, Class::Urgent);
    assert_eq!(urgent.len(), 1);
    assert_eq!(
        (urgent[0].kind, urgent[0].body.as_str()),
        (Kind::Task, "please add /health")
    );
    assert_eq!(urgent[0].from.name, "frontend");
    assert_eq!(urgent[0].status, Status::Delivered);
    // The next prompt takes the note.
    let rest = consume(&mesh, &b, Class::All);
    assert_eq!(
        rest.iter().map(|m| m.kind).collect::<Vec<_>>(),
        [Kind::Note]
    );
    assert!(
        consume(&mesh, &b, Class::All).is_empty(),
        "nothing is handed out twice"
    );

    // And back.
    let id = send(&mesh, &b, "frontend", Kind::Task, "done, see /health")[0];
    let got = consume(&mesh, &a, Class::All);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
    let status = mesh
        .conn()
        .message_status(MessageStatus { message_id: id })
        .unwrap();
    assert_eq!(status.status, Status::Delivered);
    assert!(status.delivered_ms.is_some());
}

#[test]
fn broadcast_reaches_every_live_peer_but_the_sender() {
    let mesh = Mesh::start();
    let a = mesh.session("alpha");
    let b = mesh.session("beta");
    let c = mesh.session("gamma");
    let mut dead = mesh.session("delta");
    dead.kill();
    wait_for("delta to leave the list", Duration::from_secs(10), || {
        let peers = mesh.conn().list(List {
            caller: Default::default(),
            scope: Scope::Machine,
            include_offline: false,
        });
        peers.unwrap().sessions.iter().all(|s| s.name != "delta")
    });

    let ids = send(&mesh, &a, "*", Kind::Task, "rebase on main");
    assert_eq!(ids.len(), 2);
    for s in [&b, &c] {
        let got = consume(&mesh, s, Class::All);
        assert_eq!(got.len(), 1, "{}", s.info.name);
        assert_eq!(got[0].body, "rebase on main");
    }
    assert!(
        consume(&mesh, &a, Class::All).is_empty(),
        "the sender is not its own peer"
    );
}

#[test]
fn ask_blocks_until_the_reply_is_pushed() {
    let mesh = Mesh::start();
    let asker = mesh.session("asker");
    let answerer = mesh.session("answerer");

    let caller = asker.caller.clone();
    let socket = mesh.state.socket();
    let waiting = std::thread::spawn(move || {
        let mut conn = mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
        conn.ask(Ask {
            caller,
            to: "answerer".into(),
            question: "which port?".into(),
            timeout_ms: 30_000,
        })
        .unwrap()
    });

    // The question arrives as urgent mail.
    let mut question = Vec::new();
    wait_for("the question to arrive", Duration::from_secs(10), || {
        question = consume(&mesh, &answerer, Class::Urgent);
        !question.is_empty()
    });
    assert_eq!(question[0].kind, Kind::Question);
    let reply = mesh
        .conn()
        .reply(Reply {
            caller: answerer.caller.clone(),
            message_id: question[0].id,
            body: "8080".into(),
        })
        .unwrap();

    let outcome = waiting.join().unwrap();
    match outcome.result {
        AskResult::Answered(m) => {
            assert_eq!(
                (m.id, m.body.as_str(), m.from.name.as_str()),
                (reply.answer.id, "8080", "answerer")
            );
        }
        other => panic!("expected an answer, got {other:?}"),
    }
    // Delivered once, to the blocked asker: not again in its inbox.
    assert!(consume(&mesh, &asker, Class::All).is_empty());
    let q = mesh
        .conn()
        .message_status(MessageStatus {
            message_id: question[0].id,
        })
        .unwrap();
    assert_eq!(q.status, Status::Answered);
    // A second reply is refused.
    let err = mesh
        .conn()
        .reply(Reply {
            caller: answerer.caller.clone(),
            message_id: question[0].id,
            body: "9090".into(),
        })
        .unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::AlreadyAnswered));
}

#[test]
fn ask_times_out_and_a_dying_peer_ends_the_wait() {
    let mesh = Mesh::start();
    let asker = mesh.session("asker");
    let mut answerer = mesh.session("answerer");

    let outcome = mesh
        .conn()
        .ask(Ask {
            caller: asker.caller.clone(),
            to: "answerer".into(),
            question: "there?".into(),
            timeout_ms: 200,
        })
        .unwrap();
    assert_eq!(outcome.result, AskResult::TimedOut);

    let caller = asker.caller.clone();
    let socket = mesh.state.socket();
    let waiting = std::thread::spawn(move || {
        let mut conn = mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
        conn.ask(Ask {
            caller,
            to: "answerer".into(),
            question: "still there?".into(),
            timeout_ms: 60_000,
        })
        .unwrap()
    });
    // Wait until the question is queued, then end the asked session.
    wait_for("the question to be queued", Duration::from_secs(10), || {
        let peers = mesh.conn().list(List {
            caller: Default::default(),
            scope: Scope::Machine,
            include_offline: false,
        });
        peers
            .unwrap()
            .sessions
            .iter()
            // The first question was withdrawn when its asker timed out: only this one.
            .any(|s| s.name == "answerer" && s.pending == 1)
    });
    answerer.kill();
    let outcome = waiting.join().unwrap();
    assert_eq!(outcome.result, AskResult::PeerGone);
}

#[test]
fn mail_for_an_offline_peer_waits_for_its_next_session() {
    let mesh = Mesh::start();
    let a = mesh.session("alpha");
    let mut b = mesh.session("beta");
    b.kill();
    wait_for("beta to go offline", Duration::from_secs(10), || {
        let peers = mesh.conn().list(List {
            caller: Default::default(),
            scope: Scope::Machine,
            include_offline: true,
        });
        peers
            .unwrap()
            .sessions
            .iter()
            .any(|s| s.name == "beta" && !s.live)
    });
    let id = send(&mesh, &a, "beta", Kind::Task, "for whoever is beta next")[0];
    let err = mesh
        .conn()
        .send(SendMessage {
            caller: a.caller.clone(),
            to: "nobody".into(),
            kind: Kind::Task,
            body: "x".into(),
        })
        .unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::UnknownPeer));

    let b2 = mesh.session("beta");
    let got = consume(&mesh, &b2, Class::All);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
}

#[test]
fn concurrent_consumers_get_disjoint_sets_in_order() {
    const MESSAGES: usize = 400;
    const CONSUMERS: usize = 4;
    let mesh = Mesh::start();
    let a = mesh.session("producer");
    let b = mesh.session("consumer");

    let barrier = Arc::new(Barrier::new(CONSUMERS + 1));
    let done = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let socket = mesh.state.socket();
            let caller = b.caller.clone();
            let (barrier, done) = (barrier.clone(), done.clone());
            std::thread::spawn(move || {
                let mut conn =
                    mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
                let mut got = Vec::new();
                barrier.wait();
                loop {
                    // Read `done` before consuming: an empty batch after it means nothing is left.
                    let finished = done.load(Ordering::SeqCst);
                    let batch = conn
                        .consume(Consume {
                            caller: caller.clone(),
                            class: Class::All,
                            peek: false,
                            max_bytes: 16,
                            handout: 0,
                        })
                        .unwrap();
                    let ids: Vec<u64> = batch.messages.iter().map(|m| m.id).collect();
                    assert!(
                        ids.windows(2).all(|w| w[0] < w[1]),
                        "each batch is in FIFO order"
                    );
                    if ids.is_empty() {
                        if finished {
                            break;
                        }
                        std::thread::yield_now();
                    }
                    got.extend(ids);
                }
                got
            })
        })
        .collect();
    barrier.wait();
    let mut sent = Vec::new();
    let mut conn = mesh.conn();
    for i in 0..MESSAGES {
        let s = conn.send(SendMessage {
            caller: a.caller.clone(),
            to: "consumer".into(),
            kind: Kind::Task,
            body: format!("{i}"),
        });
        sent.push(s.unwrap().messages[0].id);
    }
    done.store(true, Ordering::SeqCst);
    // Drain what the consumers did not take before they gave up.
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.extend(consume(&mesh, &b, Class::All).iter().map(|m| m.id));
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a message was handed out twice");
    assert_eq!(
        unique,
        sent.into_iter().collect::<HashSet<_>>(),
        "a message was lost"
    );
}

#[test]
fn poll_takes_urgent_mail_only_for_the_current_session_id() {
    let mesh = Mesh::start();
    let alpha = mesh.session("alpha");
    let beta = mesh.session("beta");
    let poll = |caller: mesh_proto::Caller| {
        mesh.conn()
            .poll(mesh_proto::Poll {
                caller,
                class: Class::Urgent,
                max_bytes: 0,
                handout: 0,
            })
            .unwrap()
    };
    let as_beta = |id: &str| mesh_proto::Caller {
        claude_pid: beta.caller.claude_pid,
        session_id: Some(id.to_owned()),
    };
    // Nothing pending: the session, nothing taken.
    let p = poll(as_beta(&beta.info.session_id));
    assert_eq!(p.session.as_ref().unwrap().key, beta.info.key);
    assert!(p.inbox.messages.is_empty());

    let task = send(&mesh, &alpha, "beta", Kind::Task, "run the tests")[0];
    let note = send(&mesh, &alpha, "beta", Kind::Note, "fyi")[0];
    // The process is beta's but the daemon knows it under another id (a /clear whose
    // SessionStart failed): the session comes back, nothing is taken.
    let p = poll(as_beta("some-newer-session-id"));
    assert_eq!(p.session.unwrap().pending, 2);
    assert!(p.inbox.messages.is_empty());
    // Outside any session: no session, and the user's own mail is not touched.
    let from_user = mesh
        .conn()
        .send(SendMessage {
            caller: alpha.caller.clone(),
            to: "beta".into(),
            kind: Kind::Task,
            body: "second".into(),
        })
        .unwrap();
    let p = poll(mesh_proto::Caller::default());
    assert!(p.session.is_none() && p.inbox.messages.is_empty(), "{p:?}");
    // The current id: the urgent mail is taken (in order), the note waits.
    let p = poll(as_beta(&beta.info.session_id));
    let ids: Vec<u64> = p.inbox.messages.iter().map(|m| m.id).collect();
    assert_eq!(ids, [task, from_user.messages[0].id]);
    assert_eq!(p.inbox.remaining, 0);
    assert_eq!(p.session.unwrap().pending, 1, "the note is still pending");
    let rest = consume(&mesh, &beta, Class::All);
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), [note]);
}

#[test]
fn a_session_shows_its_folder_and_branch_until_it_sets_a_summary() {
    let mesh = Mesh::start();
    let repo = mesh.project("shop");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::write(repo.join(".git/HEAD"), "ref: refs/heads/feature/login\n").unwrap();
    let dir = repo.join("backend");
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(&dir)
        .spawn()
        .unwrap();
    // Started in a sub-folder of the repository: summarized by the project, not the folder.
    let info = mesh.register(child.id(), "shop-session-0001", &dir);
    assert_eq!(info.summary, "shop on feature/login");
    let list = |mesh: &Mesh| {
        let out = mesh.mesh().args(["list"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = list(&mesh);
    assert!(
        text.contains("SUMMARY") && text.contains("shop on feature/login"),
        "{text}"
    );
    // Its own summary replaces the default; clearing it brings the default back.
    let caller = mesh_proto::Caller {
        claude_pid: Some(child.id()),
        session_id: None,
    };
    mesh.conn()
        .set_summary(mesh_proto::SetSummary {
            caller: caller.clone(),
            summary: "fixing the login form".into(),
        })
        .unwrap();
    let text = list(&mesh);
    assert!(
        text.contains("fixing the login form") && !text.contains("on feature/login"),
        "{text}"
    );
    mesh.conn()
        .set_summary(mesh_proto::SetSummary {
            caller,
            summary: String::new(),
        })
        .unwrap();
    assert!(list(&mesh).contains("shop on feature/login"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn list_marks_the_row_of_the_session_it_runs_in() {
    let mesh = Mesh::start();
    let backend = mesh.session("backend");
    let _frontend = mesh.session("frontend");
    let list = |claude_pid: Option<u32>, json: bool| {
        let mut cmd = mesh.mesh();
        cmd.arg("list");
        if json {
            cmd.arg("--json");
        }
        if let Some(pid) = claude_pid {
            cmd.env("CLAUDE_PID", pid.to_string());
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let inside = list(Some(backend.pid()), false);
    let rows: Vec<&str> = inside.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{inside}");
    for row in rows {
        assert_eq!(
            row.starts_with("backend (you) "),
            row.starts_with("backend"),
            "{inside}"
        );
        assert!(
            row.starts_with("backend (you) ") || row.starts_with("frontend "),
            "{inside}"
        );
    }
    // As the user: no row is anyone's own.
    assert!(!list(None, false).contains("(you)"));
    let you = |claude_pid| {
        let doc: serde_json::Value = serde_json::from_str(&list(claude_pid, true)).unwrap();
        doc["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_owned(), s["you"].clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        you(Some(backend.pid())),
        [
            ("backend".to_owned(), serde_json::json!(true)),
            ("frontend".to_owned(), serde_json::json!(false))
        ]
        .into()
    );
    assert!(you(None).values().all(|v| v == false));
}

#[test]
fn an_idle_unsupervised_session_with_waiting_mail_gets_one_desktop_notification() {
    use std::os::unix::fs::PermissionsExt;
    let mut mesh = Mesh::without_daemon();
    // A stand-in for notify-send: it records its arguments, one call per line.
    let bin = mesh.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = mesh.home.path().join("notifications.txt");
    let script = bin.join("notify-send");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", calls.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let log = std::fs::File::create(mesh.log_path()).unwrap();
    let child = mesh
        .mesh()
        .arg("daemon")
        .env("PATH", path)
        .env("CLAUDE_MESH_NOTIFY_AFTER", "1")
        .stderr(log)
        .spawn()
        .unwrap();
    mesh.daemon = Some(child);
    wait_for("the daemon", Duration::from_secs(20), || {
        mesh_client::Connection::connect(&mesh.state.socket(), &mesh_testkit::opts()).is_ok()
    });
    let idle = mesh.session("alpha");
    let busy = mesh.session("beta");
    // Idle too, but supervised by `mesh run` (which wakes it itself): no notification.
    let supervised = mesh.session("gamma");
    for s in [&idle, &supervised] {
        mesh.conn()
            .set_idle(mesh_proto::SetIdle {
                caller: s.caller.clone(),
                idle: true,
            })
            .unwrap();
    }
    let mut supervisor = mesh
        .conn()
        .supervise(mesh_proto::Supervise {
            pid: supervised.pid(),
        })
        .unwrap();
    let first = supervisor.recv().unwrap();
    assert_eq!(first.session.map(|s| s.name).as_deref(), Some("gamma"));
    send(
        &mesh,
        &busy,
        "gamma",
        Kind::Task,
        "gamma's supervisor wakes it",
    );
    let woken = supervisor.recv().unwrap();
    assert_eq!(woken.waiting.len(), 1, "{woken:?}");
    send(
        &mesh,
        &busy,
        "alpha",
        Kind::Note,
        "a note does not call for the human",
    );
    send(
        &mesh,
        &idle,
        "beta",
        Kind::Task,
        "beta is busy: it will see this itself",
    );
    send(&mesh, &busy, "alpha", Kind::Task, "please review the diff");
    wait_for("a notification", Duration::from_secs(10), || calls.exists());
    // Under test: no second notification (for alpha again, or for beta) comes in the next 2 s.
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&calls).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "once, and only for alpha: {text}");
    assert!(lines[0].contains("claude-mesh: alpha has mail"), "{text}");
    assert!(lines[0].contains("1 message "), "{text}");
    assert!(!text.contains("beta"), "{text}");
    assert!(!text.contains("gamma"), "{text}");
    drop(supervisor);
}

/// What a peer can put in any text to drive a terminal: a window title, an OSC 52 clipboard
/// write, a clear screen, a bare CR, a right-to-left override, a line separator.
const HOSTILE: &str =
    "a\u{1b}]0;title\u{7}b\u{1b}]52;c;cm0gLXJmIH4=\u{7}c\u{1b}[2Jd\re\u{202e}f\u{2028}g";
/// How a human sees it: every one of them visibly replaced, nothing lost.
const SHOWN: &str = "a␛]0;title␇b␛]52;c;cm0gLXJmIH4=␇c␛[2Jd␍e<U+202E>f<U+2028>g";

/// `mesh <args>` as session `who` (or the user), successful; its stdout.
fn cli(mesh: &Mesh, who: Option<&mesh_testkit::Session>, args: &[&str]) -> String {
    let mut cmd = mesh.mesh();
    if let Some(s) = who {
        cmd.env("CLAUDE_PID", s.pid().to_string());
    }
    let out = cmd.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        mesh_testkit::output_text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cli_json(mesh: &Mesh, who: Option<&mesh_testkit::Session>, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&cli(mesh, who, args)).unwrap()
}

/// Human output: no character that a terminal acts on, and `shown` visibly.
fn assert_shown(out: &str, shown: &str) {
    assert!(out.contains(shown), "{shown:?} not in {out:?}");
    for c in out.chars() {
        assert!(
            c == '\n' || !(c.is_control() || matches!(c, '\u{202e}' | '\u{2028}')),
            "{c:?} in {out:?}"
        );
    }
}

#[test]
fn the_cli_shows_hostile_text_visibly_and_json_exactly() {
    let mesh = Mesh::start();
    let alpha = mesh.session("alpha");
    let beta = mesh.session("beta");

    // A body: `mesh message`, `mesh inbox`.
    let id = send(&mesh, &beta, "alpha", Kind::Task, HOSTILE)[0];
    let mid = format!("m{id}");
    assert_shown(&cli(&mesh, None, &["message", &mid]), SHOWN);
    assert_eq!(
        cli_json(&mesh, None, &["message", &mid, "--json"])["body"],
        HOSTILE
    );
    assert_shown(&cli(&mesh, Some(&alpha), &["inbox", "--peek"]), SHOWN);
    assert_eq!(
        cli_json(&mesh, Some(&alpha), &["inbox", "--peek", "--json"])["messages"][0]["body"],
        HOSTILE
    );

    // An answer: `mesh ask`.
    for json in [false, true] {
        let mut cmd = mesh.mesh();
        cmd.env("CLAUDE_PID", alpha.pid().to_string())
            .args(["ask", "beta", "which port?", "--timeout", "30"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if json {
            cmd.arg("--json");
        }
        let asking = cmd.spawn().unwrap();
        let mut question = Vec::new();
        wait_for("the question to arrive", Duration::from_secs(10), || {
            question = consume(&mesh, &beta, Class::Urgent);
            !question.is_empty()
        });
        mesh.conn()
            .reply(Reply {
                caller: beta.caller.clone(),
                message_id: question[0].id,
                body: HOSTILE.into(),
            })
            .unwrap();
        let out = asking.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        if json {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["answer"]["body"], HOSTILE, "{v}");
        } else {
            assert_shown(&stdout, SHOWN);
        }
    }

    // A folder path and a summary: `mesh list`, `mesh whoami`.
    let folder = "x\u{1b}]0;t\u{7}\ry\u{202e}";
    let odd = mesh.session(folder);
    mesh.conn()
        .set_summary(SetSummary {
            caller: odd.caller.clone(),
            summary: "sum\u{202e}mary\u{2028}end".into(),
        })
        .unwrap();
    let list = cli(&mesh, None, &["list"]);
    assert_shown(&list, "/projects/x␛]0;t␇␍y<U+202E>");
    assert_shown(&list, "sum<U+202E>mary<U+2028>end");
    assert_eq!(list.lines().count(), 4, "one line per session: {list}");
    let sessions = cli_json(&mesh, None, &["list", "--json"])["sessions"].clone();
    let odd_json = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == odd.info.session_id.as_str())
        .unwrap()
        .clone();
    assert!(
        odd_json["cwd"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/projects/{folder}")),
        "{odd_json}"
    );
    assert_eq!(odd_json["summary"], "sum\u{202e}mary\u{2028}end");
    assert_shown(
        &cli(&mesh, Some(&odd), &["whoami"]),
        "sum<U+202E>mary<U+2028>end",
    );
}

// --- Delivery bounds: a hand-out reaches a waiting reader, and every answer fits a frame ---

/// Holds the database's write lock, as another process using `mesh.db` could.
fn lock_database(mesh: &Mesh) -> rusqlite::Connection {
    let lock = rusqlite::Connection::open(mesh.state.db()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    lock
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn consume_by(who: &mesh_testkit::Session, deadline_ms: u64, handout: u64) -> mesh_proto::Request {
    mesh_proto::ConsumeBy {
        consume: Consume {
            caller: who.caller.clone(),
            class: Class::All,
            peek: false,
            max_bytes: 0,
            handout,
        },
        deadline_ms,
    }
    .into()
}

#[test]
fn a_hand_out_past_its_readers_deadline_is_refused_or_put_back() {
    let mesh = Mesh::start();
    let a = mesh.session("alpha");
    let b = mesh.session("beta");
    let id = send(
        &mesh,
        &b,
        "alpha",
        Kind::Task,
        "only for a reader who waits",
    )[0];

    // A request that arrives after its reader's deadline takes nothing.
    let err = mesh
        .conn()
        .call(consume_by(&a, unix_ms() - 1, 11))
        .unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::DeadlineExceeded), "{err}");
    let queued = |mesh: &Mesh| {
        mesh.conn()
            .message_status(MessageStatus { message_id: id })
            .unwrap()
            .status
    };
    assert_eq!(queued(&mesh), Status::Queued);

    // A hand-out that the daemon can only finish after the deadline (the database is locked
    // meanwhile) is put back, even though this reader is still connected.
    let lock = lock_database(&mesh);
    let deadline = unix_ms() + 400;
    let daemon = mesh.daemon_pid();
    // Released once the hand-out waits on the lock and its reader's deadline has passed.
    let release = std::thread::spawn(move || {
        wait_for(
            "the hand-out to wait on the lock past its deadline",
            Duration::from_secs(10),
            || unix_ms() > deadline + 50 && mesh_testkit::thread_in_sleep(daemon, "mesh-store"),
        );
        lock.execute_batch("COMMIT").unwrap();
    });
    let err = mesh.conn().call(consume_by(&a, deadline, 12)).unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::DeadlineExceeded), "{err}");
    release.join().unwrap();
    // The put-back was queued before the refusal was sent: the next take finds the mail.
    let got = consume(&mesh, &a, Class::All);
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), [id]);
    assert!(consume(&mesh, &a, Class::All).is_empty());
}

#[test]
fn an_enormous_max_bytes_is_clamped_and_nothing_is_lost() {
    let mesh = Mesh::start();
    let a = mesh.session("alpha");
    let b = mesh.session("beta");
    // 24 messages of 200 kB: 4.8 MB, more than one frame can carry.
    let body = "x".repeat(200_000);
    let mut sent: Vec<u64> = (0..24)
        .flat_map(|_| send(&mesh, &b, "alpha", Kind::Task, &body))
        .collect();
    let mut got = Vec::new();
    let mut conn = mesh.conn();
    loop {
        let inbox = conn
            .consume(Consume {
                caller: a.caller.clone(),
                class: Class::All,
                peek: false,
                max_bytes: u32::MAX,
                handout: 0,
            })
            .expect("an answer within the frame cap");
        assert!(inbox.messages.len() < 24, "clamped to the daemon's budget");
        got.extend(inbox.messages.iter().map(|m| m.id));
        if inbox.remaining == 0 {
            break;
        }
    }
    got.sort_unstable();
    sent.sort_unstable();
    assert_eq!(got, sent, "every message exactly once");
}

#[test]
fn a_committed_broadcast_of_a_large_body_is_reported_as_sent() {
    let mesh = Mesh::start();
    let sender = mesh.session("sender");
    let peers: Vec<mesh_testkit::Session> =
        (0..20).map(|i| mesh.session(&format!("peer{i}"))).collect();
    // 250 kB to 20 peers: 5 MB if the answer repeated the body per recipient.
    let body = "y".repeat(250_000);
    let mut cmd = mesh.mesh();
    cmd.env("CLAUDE_PID", sender.pid().to_string())
        .args(["send", "*", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20);
    for p in &peers {
        let got = consume(&mesh, p, Class::All);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, body);
    }
    // The protocol's answer carries ids, not 20 copies of the text.
    let sent = mesh
        .conn()
        .send(SendMessage {
            caller: sender.caller.clone(),
            to: "*".into(),
            kind: Kind::Note,
            body: body.clone(),
        })
        .unwrap();
    assert_eq!(sent.messages.len(), 20);
    assert!(sent.messages.iter().all(|m| m.body.is_empty()));
}

#[test]
fn registered_fields_are_bounded_and_list_fits_a_frame() {
    let mesh = Mesh::start();
    let dir = mesh.project("paths");
    let stand_in = std::process::Command::new("sleep")
        .arg("3600")
        .spawn()
        .unwrap();
    let register = |cwd: String, transcript: Option<String>| {
        mesh.conn().register(mesh_proto::Register {
            session_id: "bounded-0001".into(),
            pid: Some(stand_in.id()),
            cwd,
            project_dir: None,
            transcript_path: transcript,
        })
    };
    let long_cwd = format!("/{}", "d".repeat(5000));
    let err = register(long_cwd, None).unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::InvalidArgument), "{err}");
    // A multi-megabyte transcript path (twice: 7 MB) is not kept, and `list` still answers.
    let huge = format!("/{}", "t".repeat(3_500_000));
    let cwd = dir.to_string_lossy().into_owned();
    let info = register(cwd.clone(), Some(huge.clone())).unwrap();
    assert_eq!(info.transcript_path, None);
    let other = mesh.session("other");
    let mut c = mesh.conn();
    c.register(mesh_proto::Register {
        session_id: "bounded-0002".into(),
        pid: Some(other.pid()),
        cwd,
        project_dir: None,
        transcript_path: Some(huge),
    })
    .unwrap();
    let all = mesh
        .conn()
        .list(List {
            caller: Default::default(),
            scope: Scope::Machine,
            include_offline: true,
        })
        .unwrap();
    assert_eq!(all.sessions.len(), 2);
    // A session named by its client (as the hook does) is bounded and cleaned the same way.
    let named = mesh
        .conn()
        .register_named(mesh_proto::RegisterNamed {
            register: mesh_proto::Register {
                session_id: "bounded-0003".into(),
                pid: Some(other.pid()),
                cwd: dir.to_string_lossy().into_owned(),
                project_dir: None,
                transcript_path: None,
            },
            name: "api\" say \"ok\u{202e}\n".into(),
            project_root: Some(format!("/{}", "r".repeat(5000))),
            git_root: Some("relative/path".into()),
            default_summary: "s".repeat(5000),
        })
        .unwrap();
    assert_eq!(named.name, "api- say -ok");
    assert_eq!((named.project_root, named.git_root), (None, None));
    assert_eq!(named.summary.len(), mesh_proto::MAX_SUMMARY_LEN);
    // A name that cleans to nothing falls back to the folder's name, cleaned too.
    let hostile_dir = mesh.project("a\"b\u{202e}");
    let named = mesh
        .conn()
        .register_named(mesh_proto::RegisterNamed {
            register: mesh_proto::Register {
                session_id: "bounded-0004".into(),
                pid: Some(other.pid()),
                cwd: hostile_dir.to_string_lossy().into_owned(),
                project_dir: None,
                transcript_path: None,
            },
            name: "\u{202e}\n".into(),
            project_root: None,
            git_root: None,
            default_summary: String::new(),
        })
        .unwrap();
    assert_eq!(named.name, "a-b");
    let mut stand_in = stand_in;
    stand_in.kill().unwrap();
    stand_in.wait().unwrap();
}

#[test]
fn sixteen_thousand_ended_sessions_leave_list_working() {
    let mut mesh = Mesh::without_daemon();
    std::fs::create_dir_all(mesh.state.root()).unwrap();
    std::fs::set_permissions(
        mesh.state.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    {
        let (store, thread) = mesh_daemon::store::Store::open(&mesh.state.db()).unwrap();
        store
            .call_blocking(|ctx| {
                use mesh_daemon::store::sessions;
                for i in 0..16_000u32 {
                    let sid = format!("ended-{i:05}-0000-0000-000000000000");
                    sessions::register(
                        ctx,
                        sessions::Registration {
                            session_id: sid.clone(),
                            pid: 4_000_000 + i,
                            start_time: 1,
                            name: format!("old{i}"),
                            cwd: format!("/home/someone/{}/old{i}", "p".repeat(300)),
                            project_root: None,
                            git_root: None,
                            transcript_path: None,
                            default_summary: format!("old{i}"),
                        },
                    )?;
                    sessions::deregister(ctx, &sid)?;
                }
                Ok(())
            })
            .unwrap();
        store.close();
        thread.join();
    }
    mesh.spawn_daemon();
    let live = mesh.session("live");
    let all = mesh
        .conn()
        .list(List {
            caller: Default::default(),
            scope: Scope::Machine,
            include_offline: true,
        })
        .expect("an answer within the frame cap");
    // Bounded by bytes: the most recent ones that fit in half a frame, the live one first.
    let n = all.sessions.len();
    eprintln!("list --all returned {n} of 16,001 sessions");
    assert!((1_000..16_001).contains(&n), "{n} sessions");
    assert!(all.sessions.iter().any(|s| s.name == "live"), "live first");
    assert!(
        all.sessions.iter().any(|s| s.name == "old15999"),
        "the most recent ended ones"
    );
    assert!(
        !all.sessions.iter().any(|s| s.name == "old0"),
        "not the oldest"
    );
    for args in [
        &["list", "--all"][..],
        &["list", "--all", "--json"],
        &["list"],
    ] {
        let out = mesh.mesh().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            mesh_testkit::output_text(&out)
        );
    }
    drop(live);
}

fn peek(mesh: &Mesh, who: &mesh_testkit::Session) -> Vec<mesh_proto::Message> {
    mesh.conn()
        .consume(Consume {
            caller: who.caller.clone(),
            class: Class::All,
            peek: true,
            max_bytes: 0,
            handout: 0,
        })
        .unwrap()
        .messages
}

fn status_of(mesh: &Mesh, id: u64) -> Status {
    mesh.conn()
        .message_status(MessageStatus { message_id: id })
        .unwrap()
        .status
}

/// Stops (SIGTERM) a daemon that a client started by itself, however the test ends.
struct TermOnDrop(u32);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of the daemon this test caused to start.
        unsafe { libc::kill(self.0 as i32, libc::SIGTERM) };
    }
}

#[test]
fn mesh_ask_survives_a_daemon_kill_and_restart_and_asks_only_once() {
    let mut mesh = Mesh::start();
    let answerer = mesh.session("answerer");
    let asker = mesh
        .mesh()
        .args(["ask", "answerer", "which port?", "--timeout", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut queued = Vec::new();
    wait_for("the question to be queued", Duration::from_secs(10), || {
        queued = peek(&mesh, &answerer);
        !queued.is_empty()
    });
    // The question is committed before the asker learns its id (a zero-wait ask answers at
    // once); give it that moment, so the kill lands during the wait proper.
    // No condition shows that moment from outside (the asker's next request, AwaitAnswer, on
    // the same connection, changes nothing the daemon reports), so this stays a fixed pause.
    std::thread::sleep(Duration::from_millis(500));
    mesh.kill9();
    // The waiting asker notices, starts a daemon by itself and waits again.
    let conn = mesh_testkit::poll(Duration::from_secs(15), || {
        mesh_client::Connection::connect(&mesh.state.socket(), &mesh_testkit::opts()).ok()
    })
    .expect("no daemon came back");
    let _daemon = TermOnDrop(conn.daemon_pid());
    // A kill -9 withdraws nothing: the same question, once, still pending.
    let got = consume(&mesh, &answerer, Class::All);
    assert_eq!(
        got.iter().map(|m| (m.id, m.kind)).collect::<Vec<_>>(),
        [(queued[0].id, Kind::Question)]
    );
    mesh.conn()
        .reply(Reply {
            caller: answerer.caller.clone(),
            message_id: got[0].id,
            body: "8080".into(),
        })
        .unwrap();
    let out = asker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "8080\n");
    assert!(stderr.contains("reconnecting"), "{stderr}");
    assert!(peek(&mesh, &answerer).is_empty(), "no second question");
    assert_eq!(status_of(&mesh, got[0].id), Status::Answered);
}

#[test]
fn a_question_whose_asker_gave_up_is_withdrawn_unless_the_peer_has_seen_it() {
    let mesh = Mesh::start();
    let asker = mesh.session("asker");
    let answerer = mesh.session("answerer");

    // Timed out before the peer looked: withdrawn, and the asker is told.
    let outcome = mesh
        .conn()
        .ask(Ask {
            caller: asker.caller.clone(),
            to: "answerer".into(),
            question: "there?".into(),
            timeout_ms: 200,
        })
        .unwrap();
    assert_eq!(outcome.result, AskResult::TimedOut);
    assert_eq!(outcome.question.status, Status::Withdrawn);
    assert_eq!(outcome.question.delivered_ms, None, "never delivered");
    assert!(peek(&mesh, &answerer).is_empty(), "never shown to the peer");
    assert_eq!(status_of(&mesh, outcome.question.id), Status::Withdrawn);
    let shown = mesh
        .mesh()
        .args(["message", &outcome.question.id.to_string()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("withdrawn"),
        "{}",
        mesh_testkit::output_text(&shown)
    );

    // `mesh ask` says what became of its question when it gives up.
    let out = mesh
        .mesh()
        .args(["ask", "answerer", "anyone?", "--timeout", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("had not seen question") && stderr.contains("withdrawn"),
        "{stderr}"
    );
    assert!(peek(&mesh, &answerer).is_empty());

    // An asker killed while it waits (Ctrl-C, its process gone): withdrawn.
    let mut killed = mesh
        .mesh()
        .args(["ask", "answerer", "still there?", "--timeout", "60"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut queued = Vec::new();
    wait_for("the question to be queued", Duration::from_secs(10), || {
        queued = peek(&mesh, &answerer);
        !queued.is_empty()
    });
    killed.kill().unwrap();
    killed.wait().unwrap();
    wait_for(
        "the question to be withdrawn",
        Duration::from_secs(10),
        || status_of(&mesh, queued[0].id) == Status::Withdrawn,
    );
    assert!(consume(&mesh, &answerer, Class::All).is_empty());

    // Ctrl-C: the wait ends, the question is withdrawn, and `mesh ask` says so.
    let interrupted = mesh
        .mesh()
        .args(["ask", "answerer", "ctrl-c?", "--timeout", "60"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the question to be queued", Duration::from_secs(10), || {
        queued = peek(&mesh, &answerer);
        !queued.is_empty()
    });
    // The asker learns the question's id just after it is committed; let it, so the signal
    // lands during the wait proper.
    // No condition shows that moment from outside (the asker's next request, AwaitAnswer, on
    // the same connection, changes nothing the daemon reports), so this stays a fixed pause.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(interrupted.id() as i32, libc::SIGINT) };
    let out = interrupted.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("withdrawn"),
        "{stderr}"
    );
    assert_eq!(status_of(&mesh, queued[0].id), Status::Withdrawn);
    assert!(consume(&mesh, &answerer, Class::All).is_empty());

    // The same with --json: one error document on stdout, code `interrupted`, still 130.
    let interrupted = mesh
        .mesh()
        .args([
            "ask",
            "answerer",
            "ctrl-c json?",
            "--timeout",
            "60",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the question to be queued", Duration::from_secs(10), || {
        queued = peek(&mesh, &answerer);
        !queued.is_empty()
    });
    // As above: no condition shows the asker entering its wait.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(interrupted.id() as i32, libc::SIGINT) };
    let out = interrupted.wait_with_output().unwrap();
    let text = mesh_testkit::output_text(&out);
    assert_eq!(out.status.code(), Some(130), "{text}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "interrupted", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("withdrawn"),
        "{doc}"
    );
    assert!(out.stderr.is_empty(), "{text}");
    assert!(consume(&mesh, &answerer, Class::All).is_empty());

    // Seen by the peer before the asker timed out: it stays, and the asker is told that an
    // answer will wait in its inbox.
    let caller = asker.caller.clone();
    let socket = mesh.state.socket();
    let waiting = std::thread::spawn(move || {
        let mut conn = mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
        conn.ask(Ask {
            caller,
            to: "answerer".into(),
            question: "seen?".into(),
            timeout_ms: 1500,
        })
        .unwrap()
    });
    let mut seen = Vec::new();
    wait_for("the question to arrive", Duration::from_secs(10), || {
        seen = consume(&mesh, &answerer, Class::All);
        !seen.is_empty()
    });
    let outcome = waiting.join().unwrap();
    assert_eq!(outcome.result, AskResult::TimedOut);
    assert_eq!(outcome.question.status, Status::Delivered);
    mesh.conn()
        .reply(Reply {
            caller: answerer.caller.clone(),
            message_id: seen[0].id,
            body: "late".into(),
        })
        .unwrap();
    let inbox = consume(&mesh, &asker, Class::All);
    assert_eq!(
        inbox
            .iter()
            .map(|m| (m.in_reply_to, m.body.as_str()))
            .collect::<Vec<_>>(),
        [(Some(seen[0].id), "late")]
    );
}

#[test]
fn sending_to_or_asking_oneself_is_refused_from_the_cli() {
    let mesh = Mesh::start();
    let me = mesh.session("solo");
    let pid = me.pid().to_string();
    for args in [
        ["send", "solo", "hello me"].as_slice(),
        ["ask", "solo", "me?", "--timeout", "1"].as_slice(),
    ] {
        let out = mesh
            .mesh()
            .args(args)
            .env("CLAUDE_PID", &pid)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Bad input (exit 7).
        assert_eq!(out.status.code(), Some(7), "{args:?}: {stderr}");
        assert!(stderr.contains("this session itself"), "{args:?}: {stderr}");
    }
    assert!(peek(&mesh, &me).is_empty());
}

/// `mesh <args>` as session `who` (or the user), expected to fail: its exit status, stdout and
/// stderr.
fn cli_fails(
    mesh: &Mesh,
    who: Option<&mesh_testkit::Session>,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = mesh.mesh();
    if let Some(s) = who {
        cmd.env("CLAUDE_PID", s.pid().to_string());
    }
    let out = cmd.args(args).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert_ne!(code, 0, "{args:?} succeeded");
    (
        code,
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A failure class, without and with `--json`: its exit status, one `mesh: …` line on stderr
/// and nothing on stdout; or one `{"error": {code, message, fix}}` document on stdout and
/// nothing on stderr. Returns the JSON error's message.
fn assert_fails_as(
    mesh: &Mesh,
    who: Option<&mesh_testkit::Session>,
    args: &[&str],
    exit: i32,
    code: &str,
) -> String {
    let (status, stdout, stderr) = cli_fails(mesh, who, args);
    assert_eq!(status, exit, "{args:?}: {stderr}");
    assert_eq!(stdout, "", "{args:?}");
    assert!(stderr.starts_with("mesh: "), "{args:?}: {stderr}");
    let json_args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let (status, stdout, stderr) = cli_fails(mesh, who, &json_args);
    assert_eq!(status, exit, "{json_args:?}: {stdout} {stderr}");
    assert_eq!(stderr, "", "{json_args:?}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let error = doc.as_object().unwrap();
    assert_eq!(error.len(), 1, "{doc}");
    let error = error["error"].as_object().unwrap();
    assert_eq!(error["code"], code, "{doc}");
    assert!(error["fix"].is_null() || error["fix"].is_string(), "{doc}");
    assert_eq!(error.len(), 3, "{doc}");
    error["message"].as_str().unwrap().to_string()
}

#[test]
fn each_failure_class_has_its_exit_status_and_json_error() {
    let mesh = Mesh::start();
    let asker = mesh.session("asker");
    let _answerer = mesh.session("answerer");

    // Unknown peer: 4.
    let message = assert_fails_as(&mesh, None, &["send", "nobody", "hi"], 4, "unknown_peer");
    assert!(message.contains("nobody"), "{message}");
    assert_fails_as(&mesh, None, &["ask", "nobody", "hi"], 4, "unknown_peer");
    assert_fails_as(&mesh, None, &["history", "nobody"], 4, "unknown_peer");
    assert_fails_as(&mesh, None, &["search", "nobody", "x"], 4, "unknown_peer");

    // Timeout: 3, saying what became of the question.
    let message = assert_fails_as(
        &mesh,
        Some(&asker),
        &["ask", "answerer", "there?", "--timeout", "1"],
        3,
        "timeout",
    );
    assert!(message.contains("withdrawn"), "{message}");

    // Bad input: 7 (the daemon's refusal of a message to oneself, an unknown message id).
    assert_fails_as(
        &mesh,
        Some(&asker),
        &["send", "asker", "hello me"],
        7,
        "invalid_argument",
    );
    assert_fails_as(&mesh, None, &["message", "987654"], 7, "unknown_message");

    // Usage errors stay clap's 2.
    let (status, stdout, _) = cli_fails(&mesh, None, &["send", "--json"]);
    assert_eq!((status, stdout.as_str()), (2, ""));
}

#[test]
fn a_peer_that_ends_before_answering_is_exit_5_peer_gone() {
    let mesh = Mesh::start();
    for json in [false, true] {
        let name = if json { "json-answerer" } else { "answerer" };
        let mut answerer = mesh.session(name);
        let mut args = vec!["ask", name, "still there?", "--timeout", "60"];
        if json {
            args.push("--json");
        }
        let asking = mesh
            .mesh()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the question to be queued", Duration::from_secs(10), || {
            !peek(&mesh, &answerer).is_empty()
        });
        answerer.kill();
        let out = asking.wait_with_output().unwrap();
        let text = mesh_testkit::output_text(&out);
        assert_eq!(out.status.code(), Some(5), "{text}");
        if json {
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(doc["error"]["code"], "peer_gone", "{doc}");
            assert!(out.stderr.is_empty(), "{text}");
        } else {
            assert!(out.stdout.is_empty(), "{text}");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("ended before answering"),
                "{text}"
            );
        }
    }
}

#[test]
fn an_unreachable_daemon_is_exit_6_daemon_unreachable() {
    let mesh = Mesh::without_daemon();
    std::fs::create_dir_all(mesh.state.root()).unwrap();
    // Something else listens on the socket: it answers every connection with garbage.
    let listener = std::os::unix::net::UnixListener::bind(mesh.state.socket()).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = std::io::Write::write_all(&mut conn, b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let message = assert_fails_as(&mesh, None, &["list"], 6, "daemon_unreachable");
    assert!(message.contains("not a claude-mesh daemon"), "{message}");

    // A state directory that cannot be made (under a regular file): no daemon can start.
    let file = mesh.home.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = mesh
        .mesh()
        .args(["list", "--json"])
        .env("CLAUDE_MESH_HOME", file.join("state"))
        .output()
        .unwrap();
    let text = mesh_testkit::output_text(&out);
    assert_eq!(out.status.code(), Some(6), "{text}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["code"], "daemon_unreachable", "{doc}");
}

#[test]
fn a_body_over_the_limit_is_told_the_message_limit_first() {
    let mesh = Mesh::start();
    let _peer = mesh.session("peer");
    let limit = format!("the limit is {} KiB", mesh_proto::MAX_BODY_LEN / 1024);
    // Far over the frame cap (4 MiB) too: still the message limit that is quoted.
    for size in [3_000_000, 10_000_000] {
        let mut sending = mesh
            .mesh()
            .args(["send", "peer", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = sending.stdin.take().unwrap();
        // The reader stops at the limit: the rest of the write may fail with a broken pipe.
        let _ = std::io::Write::write_all(&mut stdin, &vec![b'a'; size]);
        drop(stdin);
        let out = sending.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{size}: {stderr}");
        assert!(stderr.contains(&limit), "{size}: {stderr}");
        assert!(
            !stderr.contains("MiB") && !stderr.contains("4194304"),
            "{stderr}"
        );
    }
    // As words (below the kernel's per-argument cap, over the message limit together).
    let word = "a".repeat(100_000);
    let (status, _, stderr) = cli_fails(&mesh, None, &["send", "peer", &word, &word, &word]);
    assert_eq!(status, 7, "{stderr}");
    assert!(stderr.contains(&limit), "{stderr}");
    assert!(peek(&mesh, &_peer).is_empty());
}

#[test]
fn replying_to_an_answer_or_a_note_is_told_in_english() {
    let mesh = Mesh::start();
    let asker = mesh.session("asker");
    let answerer = mesh.session("answerer");
    let caller = asker.caller.clone();
    let socket = mesh.state.socket();
    let asking = std::thread::spawn(move || {
        let mut conn = mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
        conn.ask(Ask {
            caller,
            to: "answerer".into(),
            question: "ready?".into(),
            timeout_ms: 30_000,
        })
        .unwrap()
    });
    let mut queued = Vec::new();
    wait_for("the question to be queued", Duration::from_secs(10), || {
        queued = peek(&mesh, &answerer);
        !queued.is_empty()
    });
    let question = queued[0].id;
    let answer = mesh
        .conn()
        .reply(Reply {
            caller: answerer.caller.clone(),
            message_id: question,
            body: "yes".into(),
        })
        .unwrap();
    assert!(matches!(
        asking.join().unwrap().result,
        AskResult::Answered(_)
    ));
    let note = send(&mesh, &answerer, "asker", Kind::Note, "fyi")[0];
    for (id, what) in [(answer.answer.id, "is an answer,"), (note, "is a note,")] {
        let message = assert_fails_as(
            &mesh,
            Some(&asker),
            &["reply", &id.to_string(), "ok"],
            7,
            "not_a_question",
        );
        assert!(message.contains(what), "{message}");
    }
}

/// `mesh ask` in a pseudo-terminal, isolated in `mesh`'s HOME like [`Mesh::mesh`].
fn ask_in_tty(mesh: &Mesh, peer: &str, question: &str) -> mesh_testkit::tty::Tty {
    let home = mesh.home.path();
    let cmd = pty_process::blocking::Command::new(mesh_testkit::mesh_bin())
        .args(["ask", peer, question, "--timeout", "60"])
        .env("HOME", home)
        .env("CLAUDE_MESH_HOME", mesh.state.root())
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("CLAUDE_PID")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .env_remove("CLAUDE_PROJECT_DIR")
        .env_remove("CLAUDE_MESH_LOG");
    mesh_testkit::tty::Tty::spawn(cmd, 24, 120)
}

#[test]
fn ask_says_what_it_waits_for_on_a_terminal_and_nothing_into_a_pipe() {
    let mesh = Mesh::start();
    let beta = mesh.session("beta");
    // First the asker whose stderr is a pipe; once its question is queued, the one on a
    // terminal: when that one shows its progress line (after a second), the piped one has
    // waited longer than that too.
    let piped = mesh
        .mesh()
        .args(["ask", "beta", "from a pipe?", "--timeout", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut questions = Vec::new();
    wait_for("the piped question", Duration::from_secs(10), || {
        questions.extend(consume(&mesh, &beta, Class::Urgent));
        !questions.is_empty()
    });
    let tty = ask_in_tty(&mesh, "beta", "from a terminal?");
    wait_for("the terminal's question", Duration::from_secs(10), || {
        questions.extend(consume(&mesh, &beta, Class::Urgent));
        questions.len() == 2
    });
    tty.wait_for(
        "waiting for beta to answer (Ctrl-C gives up)",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for q in &questions {
        mesh.conn()
            .reply(Reply {
                caller: beta.caller.clone(),
                message_id: q.id,
                body: format!("answer to {}", q.body),
            })
            .unwrap();
    }
    tty.wait_for("answer to from a terminal?", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        tty.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        tty.describe()
    );
    // The line was erased once the answer came: the screen shows the answer, not the wait.
    let screen = tty.screen();
    assert!(!screen.contains("waiting for beta"), "{screen}");
    let out = piped.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "answer to from a pipe?"
    );
    assert!(
        out.stderr.is_empty(),
        "nothing on a piped stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A send whose answer never reaches the client (here a proxy in front of the daemon drops
/// it and closes the connection, as a daemon that dies right after its commit would): the
/// message is queued all the same, and the command must not say "run it again" as if nothing
/// had happened; it says the message may be queued and that sending again may deliver it twice.
#[test]
fn a_send_whose_answer_is_lost_says_it_may_be_queued() {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    let mesh = Mesh::start();
    let beta = mesh.session("beta");
    let front = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(front.path().join("mesh.sock")).unwrap();
    let daemon_socket = mesh.state.socket();
    let proxy = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut daemon = UnixStream::connect(&daemon_socket).unwrap();
        let mut upstream = client.try_clone().unwrap();
        let mut to_daemon = daemon.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut upstream, &mut to_daemon);
        });
        let mut frame = || {
            let mut len = [0u8; 4];
            daemon.read_exact(&mut len).ok()?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            daemon.read_exact(&mut body).ok()?;
            Some([len.to_vec(), body].concat())
        };
        // The handshake's answer goes through; the send's answer does not.
        let hello = frame().unwrap();
        client.write_all(&hello).unwrap();
        assert!(frame().is_some(), "the daemon answered the send");
        let _ = client.shutdown(std::net::Shutdown::Both);
    });
    let out = mesh
        .mesh()
        .env("CLAUDE_MESH_HOME", front.path())
        .args(["send", "beta", "answer lost on the way"])
        .output()
        .unwrap();
    proxy.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("did not confirm the send to `beta`")
            && err.contains("may have queued it")
            && err.contains("may deliver it twice")
            && !err.contains("run the command again"),
        "{err}"
    );
    let got = consume(&mesh, &beta, Class::All);
    assert_eq!(got.len(), 1, "queued once all the same: {got:?}");
    assert_eq!(got[0].body, "answer lost on the way");
}

/// Another program holds the database locked (an open `sqlite3` shell in a transaction): a send
/// fails cleanly, nothing accepted, and the error says what holds it up and what to do; once the
/// lock is gone the same send works.
#[test]
fn a_database_locked_by_another_program_says_what_to_do() {
    let mesh = Mesh::start();
    let beta = mesh.session("beta");
    let holder = rusqlite::Connection::open(mesh.state.db()).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let out = mesh
        .mesh()
        .args(["send", "beta", "while locked", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("is locked by another program")
            && message.contains("nothing was accepted")
            && message.contains("close whatever holds it"),
        "{doc}"
    );
    holder.execute_batch("ROLLBACK;").unwrap();
    drop(holder);
    let out = mesh
        .mesh()
        .args(["send", "beta", "after the lock"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = consume(&mesh, &beta, Class::All);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body, "after the lock");
}
