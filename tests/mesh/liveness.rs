//! Liveness: a registered process that dies leaves `list`, and a reused PID does not revive a
//! dead session (the PID reuse is forced for real inside a new PID namespace).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command};
use std::time::Duration;

use mesh_proto::{Caller, List, Scope, WhoAmI};
use mesh_testkit::{Mesh, wait_for};

fn live_names(mesh: &Mesh) -> Vec<String> {
    let peers = mesh.conn().list(List {
        caller: Caller::default(),
        scope: Scope::Machine,
        include_offline: false,
    });
    peers
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| s.name)
        .collect()
}

fn whoami(mesh: &Mesh, pid: u32) -> Option<String> {
    let me = mesh
        .conn()
        .whoami(WhoAmI {
            caller: Caller {
                claude_pid: Some(pid),
                session_id: None,
            },
        })
        .unwrap();
    me.session.map(|s| s.name)
}

#[test]
fn a_registered_process_that_dies_leaves_list_but_its_mail_stays() {
    let mesh = Mesh::start();
    let mut s = mesh.session("short-lived");
    assert_eq!(live_names(&mesh), ["short-lived"]);
    let sent = mesh
        .conn()
        .send(mesh_proto::SendMessage {
            caller: Caller::default(),
            to: "short-lived".into(),
            kind: mesh_proto::Kind::Task,
            body: "x".into(),
        })
        .unwrap();
    s.kill();
    wait_for(
        "the dead session to leave the list",
        Duration::from_secs(10),
        || live_names(&mesh).is_empty(),
    );
    let all = mesh
        .conn()
        .list(List {
            caller: Caller::default(),
            scope: Scope::Machine,
            include_offline: true,
        })
        .unwrap();
    assert_eq!(all.sessions.len(), 1);
    assert!(!all.sessions[0].live);
    assert_eq!(
        all.sessions[0].pending, 1,
        "mail is never dropped because a peer died"
    );
    let status = mesh
        .conn()
        .message_status(mesh_proto::MessageStatus {
            message_id: sent.messages[0].id,
        })
        .unwrap();
    assert_eq!(status.status, mesh_proto::Status::Queued);
}

#[test]
fn a_zombie_is_dead() {
    let mesh = Mesh::start();
    let mut s = mesh.session("zombie");
    // Kill without reaping: the process stays a zombie with its PID still taken.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.pid() as i32, libc::SIGKILL) };
    wait_for(
        "the zombie to leave the list",
        Duration::from_secs(10),
        || live_names(&mesh).is_empty(),
    );
    assert_eq!(whoami(&mesh, s.pid()), None);
    s.kill();
}

const INNER: &str = "MESH_TEST_IN_PID_NAMESPACE";

/// Clock ticks since boot, the unit of a process's start time.
fn uptime_ticks() -> u64 {
    let up = std::fs::read_to_string("/proc/uptime").unwrap();
    let secs: f64 = up.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (secs * hz) as u64
}

/// Spawn `sleep` so that it gets exactly `pid`, by setting the namespace's last PID. The
/// start time has a resolution of one clock tick (10 ms): a PID reused within the tick its
/// previous owner started in is indistinguishable from it, so wait for the next tick first
/// (outside a namespace a PID comes back only after the whole PID space has been used).
fn spawn_with_pid(pid: u32, previous_start: u64) -> Child {
    wait_for("the next clock tick", Duration::from_secs(1), || {
        uptime_ticks() > previous_start + 1
    });
    for _ in 0..20 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).unwrap();
        let child = Command::new("sleep").arg("3600").spawn().unwrap();
        if child.id() == pid {
            return child;
        }
        let mut wrong = child;
        wrong.kill().unwrap();
        wrong.wait().unwrap();
    }
    panic!("could not get PID {pid} back");
}

#[test]
fn a_reused_pid_does_not_revive_a_dead_session() {
    if std::env::var_os(INNER).is_none() {
        // Run this same test again inside a fresh PID namespace, where we may set ns_last_pid.
        let exe = std::env::current_exe().unwrap();
        // The test's name as libtest knows it: its module path without the crate.
        let (_crate, module) = module_path!().split_once("::").unwrap();
        let name = format!("{module}::a_reused_pid_does_not_revive_a_dead_session");
        let out = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(&exe)
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env(INNER, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() && stderr.contains("unshare failed") {
            eprintln!(
                "SKIPPED: cannot create a PID namespace here ({})",
                stderr.trim()
            );
            return;
        }
        assert!(
            out.status.success(),
            "inner run failed:\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("1 passed"),
            "the inner test did not run:\n{stdout}"
        );
        eprintln!(
            "{}",
            stderr
                .lines()
                .filter(|l| l.contains("reused"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return;
    }

    let mut mesh = Mesh::start();

    // 1. While the daemon runs: the session dies, its PID goes to a new process.
    let mut first = mesh.session("victim");
    let pid = first.pid();
    let start = mesh_daemon::procinfo::info(pid).unwrap().start;
    first.kill();
    let impostor = spawn_with_pid(pid, start);
    wait_for(
        "the dead session to leave the list",
        Duration::from_secs(10),
        || live_names(&mesh).is_empty(),
    );
    assert_eq!(
        whoami(&mesh, pid),
        None,
        "the new owner of PID {pid} is not the dead session"
    );
    drop(impostor);

    // 2. While the daemon is down (only the start-up check can notice): same again.
    let mut second = mesh.session("victim2");
    let pid2 = second.pid();
    let start2 = mesh_daemon::procinfo::info(pid2).unwrap().start;
    mesh.kill9();
    second.kill();
    let mut impostor = spawn_with_pid(pid2, start2);
    assert_ne!(mesh_daemon::procinfo::info(pid2).unwrap().start, start2);
    mesh.spawn_daemon();
    assert!(
        live_names(&mesh).is_empty(),
        "a reused PID revived a dead session"
    );
    assert_eq!(whoami(&mesh, pid2), None);
    impostor.kill().unwrap();
    impostor.wait().unwrap();
    eprintln!("PID {pid} and {pid2} were reused and did not revive their sessions");
}
