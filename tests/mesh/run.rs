//! `mesh run`: the daemon's side (a supervising connection that is pushed the supervised
//! session's state), and the supervisor itself in a real pseudo-terminal with a stand-in for
//! Claude Code (`testkit/fake_claude.py`, which runs the real hooks against the real
//! daemon). The real Claude Code binary under `mesh run` is in `tests/claude/main.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use mesh_proto::{Caller, Class, Consume, ErrorCode, Kind, SetIdle, Supervise, Supervision};
use mesh_testkit::Mesh;

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

/// A question from the user, queued (a zero wait: nobody blocks on its answer).
fn user_asks(mesh: &Mesh, to: &str, question: &str) -> u64 {
    let asked = mesh
        .conn()
        .ask(mesh_proto::Ask {
            caller: Caller::default(),
            to: to.into(),
            question: question.into(),
            timeout_ms: 0,
        })
        .unwrap();
    asked.question.id
}

fn user_sends(mesh: &Mesh, to: &str, kind: Kind, body: &str) -> u64 {
    mesh.send(&Caller::default(), to, kind, body)
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

// ---- The supervisor in a real pseudo-terminal, with a stand-in for Claude Code. ----

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Instant;

use mesh_testkit::tty::Tty;

const WAIT: Duration = Duration::from_secs(20);

/// The stand-in for Claude Code.
fn fake_claude() -> PathBuf {
    let path = mesh_testkit::fake_claude().canonicalize().unwrap();
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "python3 is needed to run the stand-in for Claude Code (.ci/run installs it)"
    );
    path
}

/// `mesh run <args>` in project `name`, in a terminal of `rows`×`cols`, with the stand-in as
/// Claude Code (session id `<name>-session-0001`). Waits until the stand-in is ready.
fn mesh_run(mesh: &Mesh, name: &str, args: &[&str], rows: u16, cols: u16) -> Tty {
    mesh_run_with(mesh, name, args, rows, cols, &[])
}

fn mesh_run_with(
    mesh: &Mesh,
    name: &str,
    args: &[&str],
    rows: u16,
    cols: u16,
    env: &[(&str, &str)],
) -> Tty {
    let dir = mesh.project(name);
    let home = mesh.home.path();
    let cmd = pty_process::blocking::Command::new(mesh_testkit::mesh_bin())
        .arg("run")
        .args(args)
        .current_dir(&dir)
        .env("HOME", home)
        .env("CLAUDE_MESH_HOME", mesh.state.root())
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("CLAUDE_MESH_CLAUDE_BIN", fake_claude())
        .env("FAKE_CLAUDE_MESH", mesh_testkit::mesh_bin())
        .env("FAKE_CLAUDE_SESSION", format!("{name}-session-0001"))
        .env("CLAUDE_MESH_LOG", "debug")
        .env_remove("CLAUDE_PID")
        .env_remove("CLAUDE_CODE_SESSION_ID")
        .env_remove("CLAUDE_PROJECT_DIR")
        .envs(env.iter().copied());
    let tty = Tty::spawn(cmd, rows, cols);
    tty.wait_for("STARTED", WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", run_log(mesh)));
    tty
}

fn run_log(mesh: &Mesh) -> String {
    std::fs::read_to_string(mesh.state.run_log()).unwrap_or_default()
}

/// Type a prompt and wait for the stand-in's turn to end.
fn turn(tty: &Tty, prompt: &str) {
    let mark = tty.mark();
    tty.write(format!("{prompt}\r").as_bytes());
    wait_since(tty, mark, "IDLE");
}

fn wait_since(tty: &Tty, mark: usize, needle: &str) {
    tty.wait_for_since(mark, needle, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The JSON after `tag ` on the first line since `mark` that starts with it.
fn field(tty: &Tty, mark: usize, tag: &str) -> Option<serde_json::Value> {
    tty.since(mark).lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(tag)?.strip_prefix(' ')?;
        serde_json::from_str(rest.trim()).ok()
    })
}

/// Every byte the stand-in read since `mark` (its `GOT <hex>` lines), in order.
fn got(tty: &Tty, mark: usize) -> Vec<u8> {
    tty.since(mark)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("GOT "))
        .flat_map(|hex| {
            (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn mesh_run_passes_arguments_terminal_size_keys_and_exit_code_through() {
    let mesh = Mesh::start();
    let args = ["--model", "two words", "", "ünïcode", "-p", "--", "x"];
    let tty = mesh_run(&mesh, "web", &args, 33, 101);
    assert_eq!(field(&tty, 0, "ARGS"), Some(serde_json::json!(args)));
    let text = tty.text();
    assert!(text.contains("TTY 33x101"), "{text}");

    // Raw mode: control keys, escape sequences and UTF-8 arrive byte for byte.
    let mark = tty.mark();
    let keys = b"a\x1b[A\x03\x1a\x04\xc3\xa9\x7f\x7f";
    tty.write(keys);
    tty.wait_until("the keys, byte for byte", WAIT, |t| got(t, mark) == keys)
        .unwrap_or_else(|e| panic!("{e}\ngot {:?}", got(&tty, mark)));

    let mark = tty.mark();
    tty.resize(40, 120);
    wait_since(&tty, mark, "SIZE 40x120");

    tty.write(b"exit 7\r");
    let status = tty.wait_exit(WAIT).expect("mesh run exits with its child");
    assert_eq!(status.code(), Some(7), "{}", tty.text());
}

#[test]
fn signals_reach_the_child_and_a_death_by_signal_is_passed_on() {
    let mesh = Mesh::start();
    let tty = mesh_run(&mesh, "web", &[], 24, 80);
    let mark = tty.mark();
    tty.signal(libc::SIGUSR1);
    wait_since(&tty, mark, &format!("SIGNAL {}", libc::SIGUSR1));
    tty.signal(libc::SIGHUP);
    wait_since(&tty, mark, &format!("SIGNAL {}", libc::SIGHUP));
    tty.signal(libc::SIGTERM);
    wait_since(&tty, mark, &format!("SIGNAL {}", libc::SIGTERM));
    let status = tty.wait_exit(WAIT).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(42), "the child's own exit code");

    // A child that is stopped is not left stopped: here nobody could continue `mesh run` (its
    // process group is orphaned, so the kernel discards its own stop) and it continues the
    // child at once; under a shell, `fg` would.
    let tty = mesh_run(&mesh, "web", &[], 24, 80);
    let mark = tty.mark();
    tty.write(b"suspend\r");
    wait_since(&tty, mark, "CONTINUED");
    assert!(
        run_log(&mesh).contains("the child stopped"),
        "{}",
        run_log(&mesh)
    );
    turn(&tty, "still alive");
    tty.write(b"die 9\r");
    let status = tty.wait_exit(WAIT).expect("exits when its child is killed");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

#[test]
fn an_idle_session_is_woken_by_a_task_and_the_hook_delivers_it() {
    let mesh = Mesh::start();
    let tty = mesh_run(&mesh, "web", &[], 24, 80);
    turn(&tty, "hello");
    let mark = tty.mark();
    let id = user_sends(&mesh, "web", Kind::Task, "please run the linter");
    wait_since(&tty, mark, "IDLE");
    let prompt = field(&tty, mark, "PROMPT").unwrap();
    assert_eq!(
        prompt,
        "[claude-mesh] New mail while you were idle: 1 task from \"user\". It is delivered with this prompt; please handle it."
    );
    let context = field(&tty, mark, "CONTEXT").unwrap();
    assert!(
        context.as_str().unwrap().contains("please run the linter"),
        "{context}"
    );
    // What was typed: printable text, then Enter on its own (a burst would be a paste).
    let bytes = got(&tty, mark);
    let (text, enter) = bytes.split_at(bytes.len() - 1);
    assert_eq!(enter, b"\r");
    assert!(text.iter().all(|b| *b >= 0x20 && *b != 0x7f), "{bytes:?}");
    assert!(
        tty.since(mark)
            .lines()
            .filter(|l| l.contains("GOT "))
            .count()
            >= 2,
        "text and Enter arrive apart"
    );
    let status = mesh
        .conn()
        .message_status(mesh_proto::MessageStatus { message_id: id })
        .unwrap();
    assert_eq!(status.status, mesh_proto::Status::Delivered);
    // Woken once: the session is idle again with nothing waiting, and stays so. Under test:
    // no second wake in the next 1.5 s.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(tty.since(mark).matches("PROMPT").count(), 1);
    tty.write(b"exit 0\r");
    assert_eq!(tty.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

#[test]
fn with_bracketed_paste_on_the_wake_line_is_a_paste_and_enter_in_one_write() {
    let mesh = Mesh::start();
    let tty = mesh_run_with(&mesh, "web", &[], 24, 80, &[("FAKE_CLAUDE_PASTE", "1")]);
    turn(&tty, "hello");
    // A peer whose name carries a bidirectional override and a would-be paste terminator (the
    // daemon drops control and format characters from names; the supervisor strips any left).
    let dir = mesh.project("hostile");
    std::fs::write(
        dir.join(".claude-mesh.json"),
        r#"{"name": "ev\u202eil[201~"}"#,
    )
    .unwrap();
    let mut peer = Command::new("sleep").arg("3600").spawn().unwrap();
    let info = mesh.register(peer.id(), "hostile-session-0001", &dir);
    assert_eq!(info.name, "evil[201~");
    let mark = tty.mark();
    let peer_caller = Caller {
        claude_pid: Some(peer.id()),
        session_id: None,
    };
    mesh.send(&peer_caller, "web", Kind::Task, "look at this");
    wait_since(&tty, mark, "IDLE");
    let _ = peer.kill();
    let _ = peer.wait();
    let prompt = field(&tty, mark, "PROMPT").unwrap();
    let line = prompt.as_str().unwrap();
    assert!(line.starts_with("[claude-mesh] New mail"), "{line}");
    assert!(line.contains("1 task from \"evil[201~\"."), "{line}");
    let mut expected = b"\x1b[200~".to_vec();
    expected.extend_from_slice(line.as_bytes());
    expected.extend_from_slice(b"\x1b[201~\r");
    assert_eq!(got(&tty, mark), expected);
    tty.write(b"exit 0\r");
    assert_eq!(tty.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_busy_session_and_a_half_typed_line_are_never_typed_into() {
    let mesh = Mesh::start();
    let tty = mesh_run(&mesh, "web", &[], 24, 80);
    // Busy: started, and no turn has ended yet.
    let mark = tty.mark();
    user_sends(&mesh, "web", Kind::Task, "first task");
    // Under test: no wake while the session is busy (1.5 s to show it).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!tty.since(mark).contains("PROMPT"), "{}", tty.since(mark));
    // The user's own prompt gets the mail through its hook.
    turn(&tty, "hello");
    assert!(
        field(&tty, mark, "CONTEXT")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("first task")
    );

    // Idle, but the user is half-way through a line.
    let mark = tty.mark();
    tty.write(b"half");
    user_asks(&mesh, "web", "second: ready?");
    // Under test: no wake while the user is half-way through a line (1.5 s to show it).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!tty.since(mark).contains("PROMPT"), "{}", tty.since(mark));
    // Erasing it, key by key, ends at an empty line: the wake comes 500 ms after the last key.
    for _ in 0..4 {
        tty.write(b"\x7f");
        // Under test: a user typing, one key every 100 ms (the wake waits for a pause).
        std::thread::sleep(Duration::from_millis(100));
    }
    let last_key = Instant::now();
    wait_since(&tty, mark, "IDLE");
    assert!(
        last_key.elapsed() >= Duration::from_millis(500),
        "woken {:?} after the last key",
        last_key.elapsed()
    );
    let prompt = field(&tty, mark, "PROMPT").unwrap();
    assert!(
        prompt
            .as_str()
            .unwrap()
            .contains("1 question from \"user\""),
        "{prompt}"
    );
    tty.write(b"exit 0\r");
    assert_eq!(tty.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
}

#[test]
fn the_supervisor_reconnects_after_the_daemon_dies() {
    let mut mesh = Mesh::start();
    let tty = mesh_run(&mesh, "web", &[], 24, 80);
    turn(&tty, "hello");
    // Killed: the supervisor's reconnection, or `mesh send`, starts a daemon on demand.
    mesh.kill9();
    let mark = tty.mark();
    let sent = mesh
        .mesh()
        .args(["send", "web", "after the restart"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    wait_since(&tty, mark, "IDLE");
    let context = field(&tty, mark, "CONTEXT").unwrap();
    assert!(
        context.as_str().unwrap().contains("after the restart"),
        "{context}\n{}",
        run_log(&mesh)
    );
    tty.write(b"exit 0\r");
    assert_eq!(tty.wait_exit(WAIT).and_then(|s| s.code()), Some(0));
    let stopped = mesh.mesh().arg("stop").output().unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
}
