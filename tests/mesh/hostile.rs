//! Broken and hostile input on the socket: garbage, oversize and truncated frames, a wrong
//! protocol version, another user. Each gets a clear error and the daemon keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mesh_proto::{
    ClientHello, ErrorCode, MAGIC, PROTOCOL_VERSION, Ping, Request, Response, ServerHello,
    read_frame, write_frame,
};
use mesh_testkit::Mesh;

fn raw(mesh: &Mesh) -> UnixStream {
    let s = UnixStream::connect(mesh.state.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The daemon still answers a well-behaved client, and its process is still running.
fn still_serving(mesh: &mut Mesh) {
    mesh.conn().ping().unwrap();
    assert!(
        mesh.daemon.as_mut().unwrap().try_wait().unwrap().is_none(),
        "daemon died: {}",
        mesh.log()
    );
}

/// The same connection still answers a ping.
fn connection_goes_on(s: &mut UnixStream) {
    write_frame(s, &Request::Ping(Ping {})).unwrap();
    assert!(matches!(
        read_frame::<_, Response>(s).unwrap(),
        Response::Pong(_)
    ));
}

fn refusal(stream: &mut UnixStream) -> mesh_proto::WireError {
    let hello: ServerHello = read_frame(stream).unwrap();
    hello.error.expect("the daemon should refuse")
}

fn handshaken(mesh: &Mesh) -> UnixStream {
    let mut s = raw(mesh);
    write_frame(&mut s, &ClientHello::current("test")).unwrap();
    let hello: ServerHello = read_frame(&mut s).unwrap();
    assert_eq!(hello.error, None);
    s
}

#[test]
fn garbage_instead_of_a_handshake() {
    let mut mesh = Mesh::start();
    // Text: its first four bytes read as a huge length.
    let mut s = raw(&mesh);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let err = refusal(&mut s);
    assert_eq!(err.code, ErrorCode::FrameTooLarge, "{err}");
    // A small frame that is not a hello.
    let mut s = raw(&mesh);
    s.write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd]).unwrap();
    let err = refusal(&mut s);
    assert_eq!(err.code, ErrorCode::Handshake, "{err}");
    assert!(err.message.contains("handshake"), "{err}");
    still_serving(&mut mesh);
}

#[test]
fn wrong_protocol_version_is_refused_with_both_versions() {
    let mut mesh = Mesh::start();
    let mut s = raw(&mesh);
    write_frame(
        &mut s,
        &ClientHello {
            magic: MAGIC,
            protocol: PROTOCOL_VERSION + 7,
            program_version: "9.9.9".into(),
        },
    )
    .unwrap();
    let hello: ServerHello = read_frame(&mut s).unwrap();
    let err = hello.error.expect("refused");
    assert_eq!(err.code, ErrorCode::Incompatible);
    assert!(
        err.message
            .contains(&format!("protocol {}", PROTOCOL_VERSION + 7)),
        "{err}"
    );
    assert_eq!(
        hello.protocol, PROTOCOL_VERSION,
        "the daemon says which protocol it speaks"
    );
    // And the connection is closed.
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    still_serving(&mut mesh);
}

#[test]
fn oversize_frame_is_refused_before_reading_it() {
    let mut mesh = Mesh::start();
    let mut s = handshaken(&mesh);
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    match read_frame::<_, Response>(&mut s).unwrap() {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::FrameTooLarge, "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    let mut buf = [0u8; 1];
    assert_eq!(
        s.read(&mut buf).unwrap(),
        0,
        "the out-of-sync connection is closed"
    );
    still_serving(&mut mesh);
}

#[test]
fn undecodable_request_gets_an_error_and_the_connection_goes_on() {
    let mut mesh = Mesh::start();
    let mut s = handshaken(&mesh);
    s.write_all(&[0, 0, 0, 2, 0xee, 0xee]).unwrap();
    match read_frame::<_, Response>(&mut s).unwrap() {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::Malformed, "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    connection_goes_on(&mut s);
    still_serving(&mut mesh);
}

#[test]
fn a_message_body_of_invalid_utf8_is_refused_and_nothing_is_queued() {
    let mut mesh = Mesh::start();
    let peer = mesh.session("peer");
    // A well-formed Send whose body bytes are then made invalid UTF-8.
    let send = Request::SendMessage(mesh_proto::SendMessage {
        caller: mesh_proto::Caller::default(),
        to: "peer".into(),
        kind: mesh_proto::Kind::Task,
        body: "BODYBODY".into(),
    });
    let mut payload = postcard::to_stdvec(&send).unwrap();
    let at = payload.windows(8).position(|w| w == b"BODYBODY").unwrap();
    payload[at..at + 8].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x80]);
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    let mut s = handshaken(&mesh);
    s.write_all(&frame).unwrap();
    match read_frame::<_, Response>(&mut s).unwrap() {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::Malformed, "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    // The connection goes on, and nothing was queued.
    connection_goes_on(&mut s);
    assert_eq!(
        mesh.conn()
            .whoami(mesh_proto::WhoAmI {
                caller: peer.caller.clone()
            })
            .unwrap()
            .session
            .unwrap()
            .pending,
        0
    );
    still_serving(&mut mesh);
}

#[test]
fn truncated_and_stalled_frames_hold_nobody_up() {
    let mut mesh = Mesh::start();
    // Truncated: half a frame, then close.
    let mut s = handshaken(&mesh);
    s.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
    drop(s);
    // Stalled: half a handshake, kept open; and half a request, kept open.
    let mut stalled_hello = raw(&mesh);
    stalled_hello.write_all(&[0, 0, 0, 50, 1]).unwrap();
    let mut stalled_request = handshaken(&mesh);
    stalled_request.write_all(&[0, 0, 0, 50, 1]).unwrap();
    // Everyone else is served meanwhile.
    for _ in 0..20 {
        still_serving(&mut mesh);
    }
    // An idle connection, handshaken, that sends nothing at all.
    let mut idle = handshaken(&mesh);
    // The stalled handshake is dropped after the handshake timeout with a clear error.
    let err = refusal(&mut stalled_hello);
    assert_eq!(err.code, ErrorCode::Handshake, "{err}");
    // So is the half request (the same 5 s bound for the rest of a begun frame), and the
    // connection is closed after the error.
    let answer: Response = read_frame(&mut stalled_request).unwrap();
    let Response::Error(err) = answer else {
        panic!("expected an error, got {answer:?}")
    };
    assert_eq!(err.code, ErrorCode::Malformed, "{err}");
    assert!(err.message.contains("not finished"), "{err}");
    let mut rest = Vec::new();
    assert_eq!(stalled_request.read_to_end(&mut rest).unwrap(), 0, "closed");
    // The idle connection, which never began a frame, is still served.
    write_frame(&mut idle, &Request::Ping(Ping {})).unwrap();
    let answer: Response = read_frame(&mut idle).unwrap();
    assert!(matches!(answer, Response::Pong(_)), "{answer:?}");
    still_serving(&mut mesh);
}

#[test]
fn another_user_is_refused() {
    let mut mesh = Mesh::start();
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run a client as another user");
        return;
    }
    // Let uid 65534 reach the socket; only the daemon's own check stands in its way.
    for dir in [mesh.home.path(), mesh.state.root()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(mesh.state.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            mesh_testkit::mesh_bin(),
            "list",
        ])
        .env("HOME", mesh.home.path())
        .env("CLAUDE_MESH_HOME", mesh.state.root())
        .env_remove("CLAUDE_PID")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("setpriv:") {
        eprintln!("SKIPPED: setpriv refused here: {stderr}");
        return;
    }
    // The daemon there is not ours to reach: daemon_unreachable.
    assert_eq!(out.status.code(), Some(6), "stderr: {stderr}");
    assert!(stderr.contains("only its own user"), "stderr: {stderr}");
    assert!(
        mesh.log()
            .contains("refused a connection from another user"),
        "log: {}",
        mesh.log()
    );
    still_serving(&mut mesh);
}

#[test]
fn the_daemon_has_no_network_socket_only_its_unix_socket() {
    let mesh = Mesh::start();
    let _s = mesh.session("alpha");
    let pid = mesh.daemon_pid();
    // Inodes of every socket the daemon holds open.
    let sockets = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|l| {
                l.to_string_lossy()
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .map(str::to_owned)
            })
            .collect()
    };
    let before = sockets();
    assert!(!before.is_empty(), "the daemon holds no socket at all?");
    let table =
        |name: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{name}")).unwrap_or_default();
    let ip: Vec<(&str, String)> = ["tcp", "tcp6", "udp", "udp6", "raw", "raw6"]
        .into_iter()
        .map(|p| (p, table(p)))
        .collect();
    let unix = table("unix");
    // A client connection that closed while the tables were read is no longer the daemon's.
    let after = sockets();
    let inodes: Vec<&String> = before.iter().filter(|i| after.contains(i)).collect();
    assert!(!inodes.is_empty());
    let listed = |t: &str, column: usize, inode: &str| {
        t.lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(column) == Some(inode))
    };
    for inode in &inodes {
        for (proto, t) in &ip {
            assert!(
                !listed(t, 9, inode),
                "the daemon holds a {proto} socket (inode {inode})"
            );
        }
        assert!(
            listed(&unix, 6, inode),
            "socket inode {inode} is not a Unix socket"
        );
    }
}

/// `f` on a thread of its own; its result if it finished within `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A stand-in session process, killed on drop (also when a test fails).
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Register a stand-in session (a `sleep`) in `dir`, within `limit`: its name.
fn register_in(mesh: &Mesh, dir: &std::path::Path, limit: Duration) -> (Sleeper, Option<String>) {
    let child = Sleeper(
        std::process::Command::new("sleep")
            .arg("3600")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (pid, socket, cwd) = (child.0.id(), mesh.state.socket(), dir.to_path_buf());
    let name = within(limit, move || {
        mesh_client::Connection::connect(&socket, &mesh_testkit::opts())
            .unwrap()
            .register(mesh_proto::Register {
                session_id: format!("s-{pid}-0000-session"),
                pid: Some(pid),
                cwd: cwd.to_string_lossy().into_owned(),
                project_dir: None,
                transcript_path: None,
            })
            .unwrap()
            .name
    });
    (child, name)
}

#[test]
fn a_fifo_named_git_or_config_holds_nobody_up_and_stop_still_works() {
    let mut mesh = Mesh::start();
    let trap = mesh.project("trap");
    mkfifo(&trap.join(".git"));
    let trap2 = mesh.project("trap2");
    mkfifo(&trap2.join(".claude-mesh.json"));
    let (_s1, name) = register_in(&mesh, &trap, Duration::from_secs(5));
    // Meanwhile (or after), another client is served at once.
    let socket = mesh.state.socket();
    let pong = within(Duration::from_secs(3), move || {
        mesh_client::Connection::connect(&socket, &mesh_testkit::opts())
            .and_then(|mut c| c.ping())
            .is_ok()
    });
    assert_eq!(pong, Some(true), "another client was not served");
    assert_eq!(
        name.as_deref(),
        Some("trap"),
        "registration: {}",
        mesh.log()
    );
    let (_s2, name) = register_in(&mesh, &trap2, Duration::from_secs(5));
    assert_eq!(
        name.as_deref(),
        Some("trap2"),
        "registration: {}",
        mesh.log()
    );
    // `mesh stop` stops it.
    let mut stop = mesh.mesh();
    stop.arg("stop");
    let out = within(Duration::from_secs(15), move || stop.output().unwrap());
    let out = out.expect("`mesh stop` did not finish");
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    let status = mesh.daemon.as_mut().unwrap().try_wait().unwrap();
    assert!(status.is_some(), "the daemon still runs");
}

#[test]
fn a_config_in_a_folder_others_can_write_or_own_does_not_name_the_session() {
    let mesh = Mesh::start();
    // A shared, world-writable parent (like /tmp) where someone planted a repo and a config.
    let shared = mesh.home.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::create_dir(shared.join(".git")).unwrap();
    std::fs::write(shared.join(".claude-mesh.json"), r#"{"name": "planted"}"#).unwrap();
    let mine = shared.join("mine");
    std::fs::create_dir(&mine).unwrap();
    let (_s1, name) = register_in(&mesh, &mine, Duration::from_secs(5));
    assert_eq!(name.as_deref(), Some("mine"), "{}", mesh.log());
    // The world-writable folder itself: its own config does not count either.
    let (_s2, name) = register_in(&mesh, &shared, Duration::from_secs(5));
    assert_eq!(name.as_deref(), Some("shared"), "{}", mesh.log());

    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED (other owner part): needs root to chown");
        return;
    }
    // A parent of another user's, not writable by us, with a repo and a config of theirs.
    let theirs = mesh.home.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::create_dir(theirs.join(".git")).unwrap();
    std::fs::write(theirs.join(".claude-mesh.json"), r#"{"name": "planted"}"#).unwrap();
    let sub = theirs.join("sub");
    std::fs::create_dir(&sub).unwrap();
    for p in [
        &theirs,
        &theirs.join(".git"),
        &theirs.join(".claude-mesh.json"),
    ] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    let (_s3, name) = register_in(&mesh, &sub, Duration::from_secs(5));
    assert_eq!(name.as_deref(), Some("sub"), "{}", mesh.log());
    // A config of another user's in our own folder.
    let ours = mesh.project("ours");
    std::fs::write(ours.join(".claude-mesh.json"), r#"{"name": "planted"}"#).unwrap();
    std::os::unix::fs::chown(ours.join(".claude-mesh.json"), Some(65534), Some(65534)).unwrap();
    let (_s4, name) = register_in(&mesh, &ours, Duration::from_secs(5));
    assert_eq!(name.as_deref(), Some("ours"), "{}", mesh.log());
    // Ours, with our own config: it counts.
    std::os::unix::fs::chown(ours.join(".claude-mesh.json"), Some(0), Some(0)).unwrap();
    let (_s5, name) = register_in(&mesh, &ours, Duration::from_secs(5));
    assert_eq!(name.as_deref(), Some("planted"), "{}", mesh.log());
}

#[test]
fn an_endless_stdin_body_is_refused_in_bounded_time_and_memory() {
    let mesh = Mesh::start();
    let _peer = mesh.session("peer");
    // `mesh send peer -` with /dev/zero as stdin, under a 1 GiB address-space limit: it must stop
    // reading at the body limit and say so, not read until memory runs out.
    let mut cmd = mesh.mesh();
    cmd.args(["send", "peer", "-"])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit only, in the child between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    if mesh_testkit::wait_exit(&mut child, Duration::from_secs(10)).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("`mesh send peer -` < /dev/zero still running after 10 s");
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Bad input, exit 7, quoting the limit.
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(
        err.contains(&format!("({} bytes)", mesh_proto::MAX_BODY_LEN)),
        "{err}"
    );
    // A body that fits still goes through stdin.
    let mut cmd = mesh.mesh();
    cmd.args(["send", "peer", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello from stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
}

#[test]
fn an_idle_connection_is_closed_but_a_waiting_ask_and_a_supervisor_are_not() {
    const IDLE: Duration = Duration::from_secs(1);
    let mut mesh = Mesh::start_with(&[("CLAUDE_MESH_CONNECTION_IDLE_TIMEOUT", "1")]);
    let alpha = mesh.session("alpha");
    let _beta = mesh.session("beta");
    let socket = mesh.state.socket();

    // A question to beta that nobody answers, waiting 2.5 s on its connection: not idle.
    let asker = {
        let (socket, caller) = (socket.clone(), alpha.caller.clone());
        std::thread::spawn(move || {
            let mut conn =
                mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
            let outcome = conn.ask(mesh_proto::Ask {
                caller,
                to: "beta".into(),
                question: "anyone?".into(),
                timeout_ms: 2_500,
            });
            (outcome, conn.ping())
        })
    };
    // A supervisor of alpha: not idle either.
    let mut states = mesh
        .conn()
        .supervise(mesh_proto::Supervise { pid: alpha.pid() })
        .unwrap();
    let first = states.recv().unwrap();
    assert!(first.waiting.is_empty(), "{first:?}");

    // A connection that answered one request and then heard nothing: closed after the idle
    // time-out, silently (end of stream, no unasked answer).
    let mut idle = handshaken(&mesh);
    connection_goes_on(&mut idle);
    let t = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap();
    let closed_after = t.elapsed();
    assert_eq!(n, 0, "expected the end of the stream, got {:?}", &buf[..n]);
    assert!(
        closed_after >= IDLE - Duration::from_millis(50),
        "{closed_after:?}"
    );
    eprintln!("an idle connection was closed after {closed_after:?} (time-out {IDLE:?})");

    // The ask outlived the idle time-out on its connection, which still serves.
    let (outcome, pong) = asker.join().unwrap();
    let outcome = outcome.unwrap();
    assert_eq!(
        outcome.result,
        mesh_proto::AskResult::TimedOut,
        "{outcome:?}"
    );
    pong.unwrap();

    // The supervisor, quiet for longer than the idle time-out, still hears of new mail.
    mesh.send(
        &mesh_proto::Caller::default(),
        "alpha",
        mesh_proto::Kind::Task,
        "wake up",
    );
    // (Its own ask may have changed its state meanwhile: the updates before the task.)
    while states.recv().unwrap().waiting.is_empty() {}
    still_serving(&mut mesh);
}

/// A FIFO (or a socket, or a directory) planted at any file of the state directory that the
/// daemon or a shim opens (its log, its locks, SQLite's files beside the database) is refused
/// at once, naming the path and how to fix it, by the command that would have started the
/// daemon and by `mesh health`; a hook still exits 0 at once. Nothing waits on the FIFO's
/// other end. Once it is removed, everything works.
#[test]
fn a_fifo_planted_in_the_state_directory_is_refused_not_waited_on() {
    let files = [
        "mesh.log",
        "spawn.lock",
        "mesh.lock",
        "mesh.db-wal",
        "mesh.db-shm",
        "mesh.db-journal",
    ];
    for file in files {
        let mesh = Mesh::without_daemon();
        let _reaper = crate::lifecycle::Reaper(&mesh);
        std::fs::create_dir_all(mesh.state.root()).unwrap();
        std::fs::set_permissions(
            mesh.state.root(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let trap = mesh.state.root().join(file);
        mkfifo(&trap);

        let mut list = mesh.mesh();
        list.arg("list");
        let out = crate::lifecycle::bounded(list, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{file}: `mesh list` hangs on the FIFO"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: {err}");
        assert!(
            err.contains(&trap.display().to_string())
                && err.contains("not a regular file")
                && err.contains("rm "),
            "{file}: the error names the path and the fix: {err}"
        );

        let mut hook = mesh.mesh();
        hook.args(["hook", "post-tool-use"]);
        let out = crate::lifecycle::bounded(hook, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{file}: the hook hangs on the FIFO"));
        assert!(out.status.success(), "{file}: hooks fail open");

        let mut health = mesh.mesh();
        health.args(["health", "--json"]);
        let out = crate::lifecycle::bounded(health, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{file}: `mesh health` hangs on the FIFO"));
        {
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let name = if file.starts_with("mesh.db") {
                "db.file"
            } else {
                "state.files"
            };
            let check = doc["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .unwrap()
                .clone();
            assert_eq!(check["level"], "fail", "{file}: {check:#}");
            assert!(
                check["fix"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("rm {}", trap.display())),
                "{file}: {check:#}"
            );
        }

        std::fs::remove_file(&trap).unwrap();
        let out = mesh.mesh().arg("list").output().unwrap();
        assert!(
            out.status.success(),
            "{file}: after the FIFO is gone: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = mesh.mesh().arg("stop").output();
    }
}
