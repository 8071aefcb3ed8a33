//! Upgrades: today's daemon opens a database written by the real daemon of every earlier
//! schema version (`tests/fixtures/schema-vN.db`, made by `tests/fixtures/make-fixture.sh` at
//! the commits its README names), migrates it, and keeps all of its mail: every message with its
//! kind, status, body and parties, and what was pending can still be consumed and answered.
//!
//! The daemon is the real one (`mesh_daemon::run`, in this process, on a copy of the fixture in
//! a temp dir), spoken to over its Unix socket with the wire protocol.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use mesh_proto::{
    Caller, Class, ClientHello, Consume, ErrorCode, Kind, List, Message, MessageStatus, Register,
    Reply, Request, Response, Scope, ServerHello, Status, read_frame, write_frame,
};
use tokio_util::sync::CancellationToken;

const ALPHA: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const BETA: &str = "bbbbbbbb-0000-4000-8000-000000000002";

/// A message as the fixture script wrote it.
struct Expected {
    id: u64,
    kind: Kind,
    status: Status,
    from: (&'static str, Option<&'static str>),
    to: (&'static str, Option<&'static str>),
    body: &'static str,
    in_reply_to: Option<u64>,
}

/// The mail `make-fixture.sh` leaves in every fixture.
fn expected() -> Vec<Expected> {
    let user = ("user", None);
    let alpha = ("alpha", Some(ALPHA));
    let beta = ("beta", Some(BETA));
    let m = |id, kind, status, from, to, body, in_reply_to| Expected {
        id,
        kind,
        status,
        from,
        to,
        body,
        in_reply_to,
    };
    vec![
        m(
            1,
            Kind::Task,
            Status::Delivered,
            user,
            beta,
            "fixture: a task beta has read",
            None,
        ),
        m(
            2,
            Kind::Question,
            Status::Answered,
            alpha,
            beta,
            "fixture: a question beta answered",
            None,
        ),
        m(
            3,
            Kind::Answer,
            Status::Delivered,
            beta,
            alpha,
            "fixture: beta's answer",
            Some(2),
        ),
        m(
            4,
            Kind::Task,
            Status::Queued,
            user,
            beta,
            "fixture: a queued task",
            None,
        ),
        m(
            5,
            Kind::Note,
            Status::Queued,
            user,
            beta,
            "fixture: a queued note",
            None,
        ),
        m(
            6,
            Kind::Question,
            Status::Queued,
            alpha,
            beta,
            "fixture: a question nobody answered",
            None,
        ),
        m(
            7,
            Kind::Task,
            Status::Queued,
            beta,
            alpha,
            "fixture: a task from beta to alpha",
            None,
        ),
    ]
}

fn check(m: &Message, e: &Expected) {
    let what = format!("message {}: {m:?}", e.id);
    assert_eq!(m.id, e.id, "{what}");
    assert_eq!(m.kind, e.kind, "{what}");
    assert_eq!(m.status, e.status, "{what}");
    assert_eq!(
        (m.from.name.as_str(), m.from.session_id.as_deref()),
        e.from,
        "{what}"
    );
    assert_eq!(
        (m.to.name.as_str(), m.to.session_id.as_deref()),
        e.to,
        "{what}"
    );
    assert_eq!(m.body, e.body, "{what}");
    assert_eq!(m.in_reply_to, e.in_reply_to, "{what}");
    assert_eq!(
        m.delivered_ms.is_some(),
        e.status != Status::Queued,
        "{what}"
    );
}

/// `mesh_daemon::run` on `dir/mesh.db`, serving `dir/mesh.sock`; stopped and joined on drop.
struct Daemon {
    socket: PathBuf,
    shutdown: CancellationToken,
    thread: Option<thread::JoinHandle<()>>,
}

impl Daemon {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("mesh.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let config = mesh_daemon::Config::new(dir.join("mesh.db"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let thread = thread::spawn(move || {
            let runtime = mesh_daemon::runtime().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                mesh_daemon::run(listener, config, stop).await.unwrap();
            });
        });
        Self {
            socket,
            shutdown,
            thread: Some(thread),
        }
    }

    /// A connection past the handshake, once the daemon serves (it migrates first).
    fn connect(&self) -> UnixStream {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = UnixStream::connect(&self.socket) {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                write_frame(&mut s, &ClientHello::current("upgrade-test")).unwrap();
                let hello: ServerHello = read_frame(&mut s).unwrap();
                assert_eq!(hello.error, None);
                return s;
            }
            let finished = self.thread.as_ref().is_some_and(|t| t.is_finished());
            assert!(!finished, "the daemon stopped before serving");
            assert!(
                Instant::now() < deadline,
                "the daemon did not serve in time"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let joined = t.join();
            if !thread::panicking() {
                joined.unwrap();
            }
        }
    }
}

fn call(conn: &mut UnixStream, req: Request) -> Response {
    write_frame(conn, &req).unwrap();
    read_frame(conn).unwrap()
}

fn status(conn: &mut UnixStream, id: u64) -> Message {
    match call(
        conn,
        Request::MessageStatus(MessageStatus { message_id: id }),
    ) {
        Response::Message(m) => m,
        other => panic!("status of {id}: {other:?}"),
    }
}

/// A live process standing in for a session's Claude Code; killed on drop.
struct StandIn(Child);

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Register session `session_id` again (its old process is gone) with a live stand-in in `cwd`.
fn come_back(conn: &mut UnixStream, session_id: &str, cwd: &Path) -> (StandIn, Caller) {
    std::fs::create_dir_all(cwd).unwrap();
    let child = Command::new("sleep")
        .arg("600")
        .current_dir(cwd)
        .spawn()
        .unwrap();
    let pid = child.id();
    let reg = Register {
        session_id: session_id.to_owned(),
        pid: Some(pid),
        cwd: cwd.to_string_lossy().into_owned(),
        project_dir: None,
        transcript_path: None,
    };
    match call(conn, Request::Register(reg)) {
        Response::Registered(info) => assert_eq!(info.session_id, session_id),
        other => panic!("register {session_id}: {other:?}"),
    }
    let caller = Caller {
        claude_pid: Some(pid),
        session_id: Some(session_id.to_owned()),
    };
    (StandIn(child), caller)
}

fn consume(conn: &mut UnixStream, caller: &Caller) -> Vec<Message> {
    let req = Consume {
        caller: caller.clone(),
        class: Class::All,
        peek: false,
        max_bytes: 0,
        handout: 0,
    };
    match call(conn, Request::Consume(req)) {
        Response::Inbox(inbox) => {
            assert_eq!(inbox.remaining, 0);
            inbox.messages
        }
        other => panic!("consume: {other:?}"),
    }
}

fn schema_version(db: &Path) -> u32 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Upgrade a copy of `tests/fixtures/{file}`, a database of schema `version`.
fn upgrade(file: &str, version: u32) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mesh.db");
    std::fs::copy(&fixture, &db).unwrap();
    assert_eq!(
        schema_version(&db),
        version,
        "{} is not schema {version}",
        fixture.display()
    );

    let daemon = Daemon::start(dir.path());
    let mut conn = daemon.connect();

    // Every message is there, as the old daemon left it.
    let all = expected();
    for e in &all {
        check(&status(&mut conn, e.id), e);
    }
    let last = all.iter().map(|e| e.id).max().unwrap_or(0);
    match call(
        &mut conn,
        Request::MessageStatus(MessageStatus {
            message_id: last + 1,
        }),
    ) {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::UnknownMessage, "{e:?}"),
        other => panic!("message {} should not exist: {other:?}", last + 1),
    }
    // Both sessions are known (their processes are gone: offline).
    let peers = match call(
        &mut conn,
        Request::List(List {
            caller: Caller::default(),
            scope: Scope::Machine,
            include_offline: true,
        }),
    ) {
        Response::Peers(p) => p.sessions,
        other => panic!("list: {other:?}"),
    };
    let mut names: Vec<&str> = peers.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["alpha", "beta"]);

    // The sessions come back and take their pending mail, oldest first.
    let (_beta_proc, beta) = come_back(&mut conn, BETA, &dir.path().join("beta"));
    let (_alpha_proc, alpha) = come_back(&mut conn, ALPHA, &dir.path().join("alpha"));
    let pending = |to: &str| -> Vec<u64> {
        all.iter()
            .filter(|e| e.status == Status::Queued && e.to.0 == to)
            .map(|e| e.id)
            .collect()
    };
    let got = consume(&mut conn, &beta);
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        pending("beta")
    );
    for m in &got {
        let e = all.iter().find(|e| e.id == m.id).unwrap();
        assert_eq!((m.kind, m.body.as_str()), (e.kind, e.body));
        assert_eq!(m.status, Status::Delivered);
    }
    let got = consume(&mut conn, &alpha);
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        pending("alpha")
    );
    assert!(consume(&mut conn, &beta).is_empty());

    // The old open question can still be answered; the answer reaches its asker.
    let answer = match call(
        &mut conn,
        Request::Reply(Reply {
            caller: beta.clone(),
            message_id: 6,
            body: "answered after the upgrade".to_owned(),
        }),
    ) {
        Response::Replied(r) => r.answer,
        other => panic!("reply: {other:?}"),
    };
    assert_eq!(answer.in_reply_to, Some(6));
    assert_eq!(status(&mut conn, 6).status, Status::Answered);
    let got = consume(&mut conn, &alpha);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, answer.id);
    assert_eq!(got[0].kind, Kind::Answer);
    assert_eq!(got[0].body, "answered after the upgrade");

    drop(conn);
    drop(daemon);
    assert_eq!(
        schema_version(&db),
        mesh_daemon::store::SCHEMA_VERSION,
        "the database was migrated"
    );
}

#[test]
fn schema_v1_is_upgraded_and_keeps_its_mail() {
    upgrade("schema-v1.db", 1);
}

#[test]
fn schema_v2_is_upgraded_and_keeps_its_mail() {
    upgrade("schema-v2.db", 2);
}

#[test]
fn schema_v3_is_upgraded_and_keeps_its_mail() {
    upgrade("schema-v3.db", 3);
}

/// Schema 4 as commit 4215827 wrote it: its migration 4 had the index and not yet the
/// `withdrawn_ms` column that a later commit added to it (see `repair` in store/schema.rs).
#[test]
fn schema_v4_of_4215827_without_withdrawn_ms_is_repaired_and_keeps_its_mail() {
    upgrade("schema-v4-4215827.db", 4);
}
