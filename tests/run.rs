//! `mesh run`: the daemon's side (a supervising connection that is pushed the supervised
//! session's state), and the supervisor itself in a real pseudo-terminal with a stand-in for
//! Claude Code (`tests/support/fake_claude.py`, which runs the real hooks against the real
//! daemon). The real Claude Code binary under `mesh run` is in `tests/claude_e2e.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::Mesh;
use mesh_proto::{Caller, Class, Consume, ErrorCode, Kind, Send, SetIdle, Supervise, Supervision};

/// The supervising connection's pushes, on a channel (so that a missing push fails the test
/// instead of hanging it).
fn supervise(mesh: &Mesh, pid: u32) -> mpsc::Receiver<Supervision> {
    let mut states = mesh.conn().supervise(Supervise { pid }).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(s) = states.recv() {
            if tx.send(s).is_err() {
                return;
            }
        }
    });
    rx
}

fn next(rx: &mpsc::Receiver<Supervision>) -> Supervision {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a pushed state within 10 s")
}

fn user_sends(mesh: &Mesh, to: &str, kind: Kind, body: &str) -> u64 {
    mesh.conn()
        .send(Send {
            caller: Caller::default(),
            to: to.into(),
            kind,
            body: body.into(),
        })
        .unwrap()
        .messages[0]
        .id
}

#[test]
fn a_supervisor_is_pushed_its_sessions_state_as_it_changes() {
    let mesh = Mesh::start();
    let dir = mesh.project("web");
    let mut claude = Command::new("sleep").arg("3600").spawn().unwrap();
    let pid = claude.id();
    let caller = Caller {
        claude_pid: Some(pid),
        session_id: None,
    };
    let rx = supervise(&mesh, pid);
    let first = next(&rx);
    assert_eq!(first.session, None, "not registered yet");

    mesh.register(pid, "web-session-0001", &dir);
    let s = next(&rx);
    let info = s.session.clone().unwrap();
    assert_eq!((info.name.as_str(), info.idle), ("web", false));
    assert!(s.waiting.is_empty());

    mesh.conn()
        .set_idle(SetIdle {
            caller: caller.clone(),
            idle: true,
        })
        .unwrap();
    assert!(next(&rx).session.unwrap().idle);

    // A note does not wake a session; a task and a question do.
    user_sends(&mesh, "web", Kind::Note, "fyi");
    let task = user_sends(&mesh, "web", Kind::Task, "run the tests");
    let s = next(&rx);
    assert_eq!(s.waiting.len(), 1, "{s:?}");
    assert_eq!(
        (
            s.waiting[0].id,
            s.waiting[0].kind,
            s.waiting[0].from.as_str()
        ),
        (task, Kind::Task, "user")
    );

    // Delivered: nothing waits any more.
    let inbox = mesh
        .conn()
        .consume(Consume {
            caller,
            class: Class::All,
            peek: false,
            max_bytes: 0,
            handout: 0,
        })
        .unwrap();
    assert_eq!(inbox.messages.len(), 2);
    let s = next(&rx);
    assert!(s.waiting.is_empty(), "{s:?}");
    assert!(
        s.session.unwrap().idle,
        "delivery by itself does not make it busy"
    );
    let _ = claude.kill();
    let _ = claude.wait();
}

#[test]
fn a_supervisor_finds_its_session_below_a_wrapper_and_refuses_a_dead_pid() {
    let mesh = Mesh::start();
    let dir = mesh.project("api");
    // `mesh run` started a wrapper script, which started Claude Code.
    let mut wrapper = Command::new("sh")
        .args(["-c", "sleep 3600 & echo $!; wait"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(wrapper.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let claude: u32 = line.trim().parse().unwrap();
    mesh.register(claude, "api-session-0001", &dir);
    let rx = supervise(&mesh, wrapper.id());
    let s = next(&rx);
    assert_eq!(
        s.session.map(|i| (i.name, i.pid)),
        Some(("api".into(), claude))
    );
    // SAFETY: plain kill(2) of the wrapper's child.
    unsafe { libc::kill(claude as i32, libc::SIGKILL) };
    let _ = wrapper.kill();
    let _ = wrapper.wait();

    let err = mesh
        .conn()
        .supervise(Supervise { pid: wrapper.id() })
        .unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::InvalidArgument), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}
