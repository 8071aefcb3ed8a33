//! The daemon's lifecycle and the CLI, through the real `mesh` binary: one daemon per state
//! directory, clean shutdown, on-demand start by concurrent clients, socket-activated idle exit,
//! and the CLI's identity rules, `--json` output and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mesh_testkit::{Mesh, wait_for};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    mesh_daemon::procinfo::info(pid).is_some_and(|p| !p.zombie)
}

/// PIDs of `mesh daemon` processes serving `state`.
pub(crate) fn daemons_of(mesh: &Mesh) -> Vec<u32> {
    let want = format!("CLAUDE_MESH_HOME={}", mesh.state.root().display());
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_daemon = args.len() >= 2 && args[0].ends_with(b"mesh") && args[1] == b"daemon";
        if is_daemon && environ.split(|b| *b == 0).any(|v| v == want.as_bytes()) && pid_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Kills daemons started on demand (they are detached, so nothing else would).
pub(crate) struct Reaper<'a>(pub(crate) &'a Mesh);

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        for pid in daemons_of(self.0) {
            // SAFETY: kill(2) of a daemon this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn a_second_daemon_refuses_with_a_clear_message() {
    let mesh = Mesh::start();
    let out = mesh.mesh().arg("daemon").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("already running") && err.contains(&mesh.daemon_pid().to_string()),
        "{err}"
    );
}

/// A daemon variable that is set but empty (`CLAUDE_MESH_IDLE_TIMEOUT=` in a unit file or a
/// shell) means "not set", as an absent one does; a value that is not a number is still
/// refused, naming it.
#[test]
fn empty_daemon_variables_mean_unset_and_bad_values_are_refused() {
    let vars = [
        "CLAUDE_MESH_IDLE_TIMEOUT",
        "CLAUDE_MESH_NOTIFY_AFTER",
        "CLAUDE_MESH_CONNECTION_IDLE_TIMEOUT",
        "CLAUDE_MESH_MAX_CONNECTIONS",
        "CLAUDE_MESH_MAX_CONNECTIONS_PER_PROCESS",
        "CLAUDE_MESH_RETAIN_DAYS",
        "CLAUDE_MESH_LOG_KEEP",
    ];
    let empty: Vec<(&str, &str)> = vars.iter().map(|v| (*v, "")).collect();
    let mesh = Mesh::start_with(&empty);
    mesh.conn().ping().unwrap();
    for var in vars {
        let out = mesh.mesh().arg("daemon").env(var, "soon").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}=soon: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid value 'soon'"),
            "{var}: {}",
            stderr(&out)
        );
    }
}

/// `mesh.log` stays bounded. A daemon started on demand whose log grows past
/// `CLAUDE_MESH_LOG_KEEP` moves it to `mesh.log.1` and goes on in a fresh `mesh.log` (0600),
/// again and again, serving all along; and a shim that starts a daemon first moves a log that
/// is already over the limit aside.
#[test]
fn the_on_demand_daemons_log_moves_to_dot_1_past_its_limit() {
    use std::io::{Read, Write};
    const KEEP: u64 = 4096;
    let mesh = Mesh::without_daemon();
    let _reaper = Reaper(&mesh);
    let log = mesh.state.log();
    let older = log.with_file_name("mesh.log.1");
    let cli = |args: &[&str]| {
        let out = mesh
            .mesh()
            .env("CLAUDE_MESH_LOG_KEEP", KEEP.to_string())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    cli(&["list"]);
    let pid = daemons_of(&mesh)[0];
    // Each refused handshake is a line of the daemon's log (what any process of this user can
    // make it write).
    let refused = || {
        let mut s = std::os::unix::net::UnixStream::connect(mesh.state.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd]).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    };
    let mut moved = 0;
    let mut inode = None;
    for _ in 0..2000 {
        refused();
        let now = fs::metadata(&older).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
        if now.is_some() && now != inode {
            inode = now;
            moved += 1;
            if moved == 3 {
                break;
            }
        }
    }
    assert_eq!(
        moved,
        3,
        "mesh.log never moved (or not again): {:?}",
        fs::metadata(&log)
    );
    // The daemon writes on in the fresh file, which is private, and it stays near the limit.
    refused();
    let fresh = fs::metadata(&log).unwrap();
    assert_eq!(fresh.permissions().mode() & 0o777, 0o600);
    assert!(
        fresh.len() <= KEEP + 1024,
        "mesh.log is {} bytes, over the limit {KEEP}",
        fresh.len()
    );
    assert!(
        fs::read_to_string(&log)
            .unwrap()
            .contains("refused a handshake"),
        "the daemon's lines go to the fresh mesh.log"
    );
    assert!(fs::metadata(&older).unwrap().len() > KEEP);
    assert_eq!(daemons_of(&mesh), vec![pid], "the same daemon serves on");
    cli(&["list"]);

    // A shim starting a daemon moves a log already over the limit aside first.
    cli(&["stop"]);
    fs::write(&log, vec![b'x'; KEEP as usize + 1]).unwrap();
    cli(&["list"]);
    assert_eq!(fs::metadata(&older).unwrap().len(), KEEP + 1);
    assert!(fs::metadata(&log).unwrap().len() < KEEP);
    assert!(!fs::read_to_string(&log).unwrap().contains("xxx"));

    // A directory where mesh.log.1 goes: the log cannot move, so it is emptied instead, and
    // stays bounded all the same.
    fs::remove_file(&older).unwrap();
    fs::create_dir_all(older.join("kept")).unwrap();
    for _ in 0..200 {
        refused();
    }
    let len = fs::metadata(&log).unwrap().len();
    assert!(
        len <= KEEP + 1024,
        "mesh.log is {len} bytes, over the limit {KEEP}"
    );
    assert!(
        fs::read_to_string(&log)
            .unwrap()
            .contains("emptied instead"),
        "{}",
        fs::read_to_string(&log).unwrap()
    );
    assert!(older.join("kept").is_dir(), "what is there is left alone");
    cli(&["list"]);
}

#[test]
fn sigterm_removes_the_socket_and_keeps_the_mail() {
    let mut mesh = Mesh::start();
    let s = mesh.session("keeper");
    let out = mesh
        .mesh()
        .args(["send", "keeper", "survive a restart"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status = mesh.stop();
    assert!(status.success(), "daemon exit: {status}: {}", mesh.log());
    assert!(
        !mesh.state.socket().exists(),
        "socket left behind after a clean shutdown"
    );
    assert!(mesh.log().contains("daemon stopped"), "{}", mesh.log());

    mesh.spawn_daemon();
    let out = mesh
        .mesh()
        .args(["inbox", "--json"])
        .env("CLAUDE_PID", s.pid().to_string())
        .output()
        .unwrap();
    let inbox = json(&out);
    assert_eq!(inbox["messages"][0]["body"], "survive a restart");
}

#[test]
fn concurrent_clients_start_exactly_one_daemon() {
    let mesh = Mesh::without_daemon();
    let _reaper = Reaper(&mesh);
    let children: Vec<_> = (0..8)
        .map(|_| {
            mesh.mesh()
                .args(["list", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let list = json(&out);
        assert_eq!(list["sessions"].as_array().map(Vec::len), Some(0));
    }
    let daemons = daemons_of(&mesh);
    assert_eq!(daemons.len(), 1, "daemons running: {daemons:?}");
    // It runs detached, in a session of its own, logging to mesh.log.
    let info = mesh_daemon::procinfo::info(daemons[0]).unwrap();
    assert_ne!(info.ppid, std::process::id());
    assert!(mesh.state.log().exists());
}

#[test]
fn a_failed_start_says_why() {
    let mesh = Mesh::without_daemon();
    let _reaper = Reaper(&mesh);
    fs::create_dir_all(mesh.state.root()).unwrap();
    fs::set_permissions(mesh.state.root(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = mesh.mesh().arg("list").output().unwrap();
    // No daemon could be started: daemon_unreachable.
    assert_eq!(out.status.code(), Some(6));
    let err = stderr(&out);
    assert!(
        err.contains("writable by others") && err.contains("chmod 700"),
        "{err}"
    );
    assert!(daemons_of(&mesh).is_empty());
}

#[test]
fn an_installed_unit_is_waited_for_not_competed_with() {
    let mesh = Mesh::without_daemon();
    let _reaper = Reaper(&mesh);
    let units = mesh.home.path().join(".config/systemd/user");
    fs::create_dir_all(&units).unwrap();
    fs::write(units.join("mesh.socket"), "[Socket]\n").unwrap();
    let out = mesh.mesh().arg("list").output().unwrap();
    // The service did not come up: daemon_unreachable.
    assert_eq!(out.status.code(), Some(6));
    let err = stderr(&out);
    assert!(
        err.contains("not ready") && err.contains("systemctl --user"),
        "{err}"
    );
    assert!(
        daemons_of(&mesh).is_empty(),
        "a competitor daemon was started"
    );
}

#[test]
fn socket_activated_daemon_exits_when_idle() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: systemd-socket-activate is not installed (Debian package `systemd`)");
        return;
    }
    let mesh = Mesh::without_daemon();
    fs::create_dir_all(mesh.state.root()).unwrap();
    fs::set_permissions(mesh.state.root(), fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new("systemd-socket-activate");
    mesh_testkit::isolate(&mut cmd, mesh.home.path(), &mesh.state);
    let mut child = cmd
        .arg("-l")
        .arg(mesh.state.socket())
        // It passes on only a few variables (HOME, PATH, ...) unless told with -E.
        .arg("-E")
        .arg(format!("CLAUDE_MESH_HOME={}", mesh.state.root().display()))
        .args(["-E", "CLAUDE_MESH_IDLE_TIMEOUT=1"])
        .args(["--", mesh_testkit::mesh_bin(), "daemon"])
        .stderr(fs::File::create(mesh.log_path()).unwrap())
        .spawn()
        .unwrap();
    wait_for("the activated socket", Duration::from_secs(10), || {
        mesh.state.socket().exists()
    });
    // The first connection reaches the daemon behind the inherited socket.
    let pong = mesh.conn().ping().unwrap();
    assert_eq!(
        pong.pid,
        child.id(),
        "systemd-socket-activate execs the daemon in place"
    );
    // No connection for a second: it exits cleanly, and leaves the socket to the manager.
    wait_for("the idle exit", Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(child.wait().unwrap().success(), "{}", mesh.log());
    assert!(mesh.log().contains("idle"), "{}", mesh.log());
}

#[test]
fn cli_acts_as_the_session_named_by_claude_pid_and_as_the_user_outside() {
    let mesh = Mesh::start();
    let a = mesh.session("web");
    let _b = mesh.session("api");

    let me = json(
        &mesh
            .mesh()
            .args(["whoami", "--json"])
            .env("CLAUDE_PID", a.pid().to_string())
            .output()
            .unwrap(),
    );
    assert_eq!(me["session"]["name"], "web");
    let user = json(&mesh.mesh().args(["whoami", "--json"]).output().unwrap());
    assert_eq!(user["in_session"], false);

    let sent = json(
        &mesh
            .mesh()
            .args(["send", "API", "run", "the", "migrations", "--json"])
            .env("CLAUDE_PID", a.pid().to_string())
            .output()
            .unwrap(),
    );
    let id = sent["messages"][0]["id"].as_u64().unwrap();
    let msg = json(
        &mesh
            .mesh()
            .args(["message", &id.to_string(), "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(msg["body"], "run the migrations");
    assert_eq!(msg["from"]["name"], "web");
    assert_eq!(msg["kind"], "task");
    assert_eq!(msg["status"], "queued");

    let list = json(&mesh.mesh().args(["list", "--json"]).output().unwrap());
    let names: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "web"]);
    let human = mesh.mesh().arg("list").output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("NAME") && text.contains("api") && text.contains("web"),
        "{text}"
    );
}

#[test]
fn cli_exit_codes() {
    let mesh = Mesh::start();
    let _a = mesh.session("silent");
    // Usage error.
    assert_eq!(
        mesh.mesh().args(["send"]).output().unwrap().status.code(),
        Some(2)
    );
    // Unknown peer: exit 4 with a message that names the live peers.
    let out = mesh.mesh().args(["send", "nobody", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("silent"), "{}", stderr(&out));
    // An ask nobody answers times out with exit 3.
    let out = mesh
        .mesh()
        .args(["ask", "silent", "anyone?", "--timeout", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Unknown message id: bad input, exit 7.
    let out = mesh.mesh().args(["message", "999999"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn cli_ask_and_reply_round_trip() {
    let mesh = Mesh::start();
    let answerer = mesh.session("oracle");
    let asker = mesh
        .mesh()
        .args(["ask", "oracle", "what is 6*7?", "--timeout", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = answerer.pid().to_string();
    let mut question = serde_json::Value::Null;
    wait_for("the question", Duration::from_secs(10), || {
        let inbox = json(
            &mesh
                .mesh()
                .args(["inbox", "--json"])
                .env("CLAUDE_PID", &pid)
                .output()
                .unwrap(),
        );
        question = inbox["messages"][0].clone();
        !question.is_null()
    });
    assert_eq!(question["kind"], "question");
    let id = question["id"].as_u64().unwrap().to_string();
    let out = mesh
        .mesh()
        .args(["reply", &id, "42"])
        .env("CLAUDE_PID", &pid)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = asker.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
}

#[test]
fn stop_and_restart_keep_the_mail() {
    let mut mesh = Mesh::start();
    let s = mesh.session("durable");
    assert!(
        mesh.mesh()
            .args(["send", "durable", "still here"])
            .output()
            .unwrap()
            .status
            .success()
    );
    let old = mesh.daemon_pid();
    let mut old_child = mesh.daemon.take().unwrap();
    let _reaper = Reaper(&mesh);

    let out = json(&mesh.mesh().args(["restart", "--json"]).output().unwrap());
    assert_eq!(out["stopped_pid"].as_u64(), Some(u64::from(old)));
    let new = out["running_pid"].as_u64().unwrap() as u32;
    assert_ne!(new, old);
    assert!(
        old_child.wait().unwrap().success(),
        "SIGTERM is a clean exit"
    );
    // The registration and its mail survived.
    let inbox = json(
        &mesh
            .mesh()
            .args(["inbox", "--json"])
            .env("CLAUDE_PID", s.pid().to_string())
            .output()
            .unwrap(),
    );
    assert_eq!(inbox["messages"][0]["body"], "still here");

    let out = mesh.mesh().arg("stop").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("pid {new}")));
    assert!(!pid_alive(new));
    let out = mesh.mesh().arg("stop").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no mesh daemon is running"));
}

#[test]
fn a_damaged_database_is_moved_aside_and_the_daemon_starts_afresh() {
    // Not a database at all.
    let mut mesh = Mesh::start();
    assert!(mesh.stop().success());
    let db = mesh.state.db();
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 31 + 7) as u8).collect();
    fs::write(&db, &garbage).unwrap();
    mesh.spawn_daemon();
    let log = mesh.log();
    assert!(log.contains("was damaged"), "{log}");
    let aside = mesh.set_aside();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(fs::read(aside[0].join("mesh.db")).unwrap(), garbage);
    // And it serves, on a fresh database.
    let s = mesh.session("fresh");
    let out = mesh
        .mesh()
        .args(["send", "fresh", "hello"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = mesh
        .mesh()
        .args(["inbox", "--json"])
        .env("CLAUDE_PID", s.pid().to_string())
        .output()
        .unwrap();
    assert_eq!(json(&out)["messages"][0]["body"], "hello");

    // A real database with one damaged page: found by the start-up quick_check.
    for i in 0..300 {
        let out = mesh
            .mesh()
            .args(["send", "fresh", &format!("message {i} {}", "x".repeat(200))])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(mesh.stop().success(), "{}", mesh.log());
    let mut bytes = fs::read(&db).unwrap();
    assert!(bytes.len() >= 8 * 4096, "{} bytes", bytes.len());
    // Page 5 (1-based) is a b-tree page of the messages table or an index: scribble over it,
    // leaving the file header alone.
    for b in &mut bytes[4 * 4096 + 8..5 * 4096] {
        *b = 0xA5;
    }
    fs::write(&db, &bytes).unwrap();
    let _ = fs::remove_file(mesh.state.root().join("mesh.db-wal"));
    mesh.spawn_daemon();
    assert_eq!(mesh.set_aside().len(), 2, "{}", mesh.log());
    assert!(mesh.log().contains("quick_check"), "{}", mesh.log());
    let out = mesh.mesh().args(["list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // A third start finds nothing wrong.
    assert!(mesh.stop().success());
    mesh.spawn_daemon();
    assert_eq!(mesh.set_aside().len(), 2);
}

/// `mesh daemon` in `mesh`'s HOME, expected to refuse to start: its stderr.
fn daemon_refuses(mesh: &Mesh) -> String {
    let out = mesh
        .mesh()
        .arg("daemon")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn a_state_dir_of_another_user_or_on_a_read_only_disk_is_a_clear_error() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to chown the state dir and to mount a read-only tmpfs");
        return;
    }
    // Owned by someone else.
    let mesh = Mesh::without_daemon();
    fs::create_dir_all(mesh.state.root()).unwrap();
    std::os::unix::fs::chown(mesh.state.root(), Some(65534), Some(65534)).unwrap();
    let err = daemon_refuses(&mesh);
    assert!(
        err.contains("belongs to uid 65534") && err.contains("not to you"),
        "{err}"
    );
    assert_eq!(err.matches("belongs to uid").count(), 1, "said once: {err}");

    // On a read-only filesystem.
    let mesh = Mesh::without_daemon();
    fs::create_dir_all(mesh.state.root()).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,mode=0700", "tmpfs"])
        .arg(mesh.state.root())
        .status()
        .unwrap();
    if !mounted.success() {
        eprintln!("SKIPPED (read-only part): cannot mount a tmpfs here");
        return;
    }
    let err = daemon_refuses(&mesh);
    let _ = Command::new("umount")
        .arg("-l")
        .arg(mesh.state.root())
        .status();
    assert!(err.to_lowercase().contains("read-only"), "{err}");
    assert_eq!(err.matches("Read-only").count(), 1, "said once: {err}");
    assert!(
        err.contains(&mesh.state.root().display().to_string()),
        "{err}"
    );
}

/// Run `cmd` (stdin closed), killing it if it has not finished within `limit`: its output, or
/// `None` when it had to be killed.
pub(crate) fn bounded(mut cmd: Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if mesh_testkit::wait_exit(&mut child, limit).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child.wait_with_output().unwrap())
}

/// `mesh daemon` refuses to start within a few seconds (instead of serving): its stderr.
fn daemon_refuses_soon(mesh: &Mesh, adjust: impl FnOnce(&mut Command)) -> String {
    let mut cmd = mesh.mesh();
    cmd.arg("daemon");
    adjust(&mut cmd);
    let out =
        bounded(cmd, Duration::from_secs(10)).expect("the daemon started instead of refusing");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn a_deleted_or_replaced_socket_is_noticed_and_the_next_client_starts_afresh() {
    let mut mesh = Mesh::start();
    let first = mesh.daemon_pid();
    fs::remove_file(mesh.state.socket()).unwrap();
    wait_for(
        "the daemon to notice its socket is gone",
        Duration::from_secs(6),
        || mesh.daemon.as_mut().unwrap().try_wait().unwrap().is_some(),
    );
    assert!(mesh.log().contains("was deleted"), "{}", mesh.log());
    // The next client starts a fresh daemon at once.
    let reaper = Reaper(&mesh);
    let out = mesh.mesh().args(["list", "--json"]).output().unwrap();
    json(&out);
    let second = daemons_of(&mesh);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second[0], first);
    // Replaced by a plain file: noticed too, and the file does not stop the next start.
    fs::remove_file(mesh.state.socket()).unwrap();
    fs::write(mesh.state.socket(), "not a socket").unwrap();
    wait_for(
        "the daemon to notice its socket was replaced",
        Duration::from_secs(6),
        || daemons_of(&mesh).is_empty(),
    );
    assert!(
        mesh.state.socket().exists(),
        "the replacement must not be removed by the exiting daemon"
    );
    drop(reaper);
    mesh.daemon = None;
    mesh.spawn_daemon();
    json(&mesh.mesh().args(["list", "--json"]).output().unwrap());
}

#[test]
fn a_dangling_symlink_at_the_socket_path_is_replaced() {
    let mut mesh = Mesh::without_daemon();
    mesh.state.ensure().unwrap();
    std::os::unix::fs::symlink("/nonexistent/mesh.sock", mesh.state.socket()).unwrap();
    let mut cmd = mesh.mesh();
    cmd.arg("daemon");
    let log = fs::File::create(mesh.log_path()).unwrap();
    let mut child = cmd.stdin(Stdio::null()).stderr(log).spawn().unwrap();
    let socket = mesh.state.socket();
    // Served, or the daemon exited: either ends the wait.
    let served = mesh_testkit::poll(Duration::from_secs(10), || {
        if child.try_wait().unwrap().is_some() {
            return Some(false);
        }
        mesh_client::Connection::connect(&socket, &mesh_testkit::opts())
            .is_ok()
            .then_some(true)
    })
    .unwrap_or(false);
    mesh.daemon = Some(child);
    assert!(served, "the daemon does not serve: {}", mesh.log());
    assert!(mesh.log().contains("a symbolic link"), "{}", mesh.log());
}

#[test]
fn mesh_stop_finds_the_daemon_through_its_lock_when_the_socket_is_gone() {
    let mut mesh = Mesh::start();
    let pid = mesh.daemon_pid();
    fs::remove_file(mesh.state.socket()).unwrap();
    let out = mesh.mesh().arg("stop").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let exited = mesh.daemon.as_mut().unwrap().try_wait().unwrap().is_some();
    assert!(
        exited,
        "the daemon still runs after `mesh stop` said: {said}"
    );
    // Almost always found through the lock; the daemon may (rarely) have noticed first.
    assert!(
        said.contains(&format!("(pid {pid})")) || said.contains("no mesh daemon"),
        "{said}"
    );
}

#[test]
fn a_relative_claude_mesh_home_is_refused() {
    let mesh = Mesh::without_daemon();
    let err = daemon_refuses_soon(&mesh, |cmd| {
        cmd.env("CLAUDE_MESH_HOME", "rel/state")
            .current_dir(mesh.home.path());
    });
    assert!(
        err.contains("CLAUDE_MESH_HOME must be an absolute path, not `rel/state`"),
        "{err}"
    );
    assert!(!mesh.home.path().join("rel").exists());
    let out = mesh
        .mesh()
        .args(["list"])
        .env("CLAUDE_MESH_HOME", "rel/state")
        .current_dir(mesh.home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("must be an absolute path"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_symlinked_state_dir_or_database_is_refused_and_left_untouched() {
    // The state dir a symbolic link to a real directory.
    let mesh = Mesh::without_daemon();
    let real = mesh.home.path().join("real-state");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&real, mesh.state.root()).unwrap();
    let err = daemon_refuses_soon(&mesh, |_| {});
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(
        err.contains(&format!("CLAUDE_MESH_HOME={}", real.display())),
        "{err}"
    );
    assert!(
        fs::read_dir(&real).unwrap().next().is_none(),
        "nothing is created there"
    );

    // mesh.db a symbolic link to another program's SQLite database.
    let mesh = Mesh::without_daemon();
    mesh.state.ensure().unwrap();
    let other = mesh.home.path().join("other-app.db");
    {
        let db = rusqlite::Connection::open(&other).unwrap();
        db.execute_batch("CREATE TABLE mine (x); INSERT INTO mine VALUES (42);")
            .unwrap();
    }
    let before = fs::read(&other).unwrap();
    std::os::unix::fs::symlink(&other, mesh.state.db()).unwrap();
    let err = daemon_refuses_soon(&mesh, |_| {});
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(
        err.contains(&format!("rm {}", mesh.state.db().display())),
        "{err}"
    );
    assert_eq!(
        fs::read(&other).unwrap(),
        before,
        "the other database was changed"
    );
}

/// Bind-mount `path` read-only onto itself; `false` when mounting is not possible here.
fn read_only_bind(path: &std::path::Path) -> bool {
    let bind = Command::new("mount")
        .arg("--bind")
        .arg(path)
        .arg(path)
        .status();
    if !bind.is_ok_and(|s| s.success()) {
        return false;
    }
    let ro = Command::new("mount")
        .args(["-o", "remount,ro,bind"])
        .arg(path)
        .status();
    if !ro.is_ok_and(|s| s.success()) {
        let _ = Command::new("umount").arg(path).status();
        return false;
    }
    true
}

#[test]
fn a_database_the_daemon_cannot_write_or_a_full_disk_is_caught_at_start() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to mount");
        return;
    }
    let mut mesh = Mesh::start();
    mesh.stop();
    if !read_only_bind(&mesh.state.db()) {
        eprintln!("SKIPPED: cannot bind-mount here");
        return;
    }
    let err = daemon_refuses_soon(&mesh, |_| {});
    let _ = Command::new("umount").arg(mesh.state.db()).status();
    assert!(
        err.contains(&format!(
            "cannot write the database {}",
            mesh.state.db().display()
        )),
        "{err}"
    );
    assert!(err.contains("read-only"), "{err}");

    // A full disk at start.
    let mesh = Mesh::without_daemon();
    fs::create_dir_all(mesh.state.root()).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(mesh.state.root())
        .status()
        .unwrap();
    if !mounted.success() {
        eprintln!("SKIPPED (full disk part): cannot mount a tmpfs here");
        return;
    }
    let fill = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", mesh.state.root().join("fill").display()))
        .arg("bs=64k")
        .output()
        .unwrap();
    let _ = fill; // dd stops (and fails) when the disk is full: that is the point
    let err = daemon_refuses_soon(&mesh, |_| {});
    let _ = Command::new("umount")
        .arg("-l")
        .arg(mesh.state.root())
        .status();
    assert!(err.starts_with("mesh: disk full"), "{err}");
    assert!(err.contains("df -h"), "{err}");
}

#[test]
fn mesh_start_starts_the_daemon_on_demand_and_an_already_running_one_is_success() {
    let mesh = Mesh::without_daemon();
    let _reaper = Reaper(&mesh);
    assert!(daemons_of(&mesh).is_empty());
    let out = json(&mesh.mesh().args(["start", "--json"]).output().unwrap());
    assert_eq!(out["already_running"], false, "{out:#}");
    assert_eq!(out["started_by"], "on-demand", "{out:#}");
    let pid = out["pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(pid));
    assert_eq!(daemons_of(&mesh), vec![pid]);
    assert_eq!(out["version"], env!("CARGO_PKG_VERSION"));

    // Again: the same daemon, and success.
    let out = mesh.mesh().arg("start").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains(&format!("already running (pid {pid})")),
        "{said}"
    );
    let out = json(&mesh.mesh().args(["start", "--json"]).output().unwrap());
    assert_eq!(out["already_running"], true, "{out:#}");
    assert!(out["started_by"].is_null(), "{out:#}");
    assert_eq!(out["pid"].as_u64(), Some(u64::from(pid)));

    // Stopped, then started again: a new daemon.
    let out = mesh.mesh().arg("stop").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!pid_alive(pid));
    let out = mesh.mesh().arg("start").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("running (pid ") && !said.contains("already"),
        "{said}"
    );
    let now = daemons_of(&mesh);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], pid);
}
