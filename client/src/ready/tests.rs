//! Readiness protocol tests: line parsing, and real spawns of `sh` standing in for the daemon.

use super::*;

fn spawn_sh(state: &StateDir, script: &str, within: Duration) -> Result<u32, ClientError> {
    state.ensure().unwrap();
    let args = [OsStr::new("-c"), OsStr::new(script)];
    spawn_daemon(state, Path::new("/bin/sh"), &args, Instant::now() + within)
}

fn start_failed_reason(r: Result<u32, ClientError>) -> String {
    match r {
        Err(ClientError::DaemonStartFailed { reason }) => reason,
        other => panic!("expected DaemonStartFailed, got {other:?}"),
    }
}

#[test]
fn parses_ready_and_error_lines() {
    assert_eq!(
        parse_ready_line("ready 1234\n").unwrap(),
        ReadyLine::Ready { pid: 1234 }
    );
    assert_eq!(
        parse_ready_line("error: address in use\r\n").unwrap(),
        ReadyLine::Error("address in use".into())
    );
    assert_eq!(
        parse_ready_line("error:").unwrap(),
        ReadyLine::Error(String::new())
    );
    for bad in ["", "ready", "ready x", "ok 12", "READY 1", "ready -1"] {
        assert!(
            matches!(parse_ready_line(bad), Err(ReadyError::Garbled(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn ready_line_returns_the_pid_and_the_child_is_detached() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    let script = r#"echo "ready $$" > "/proc/self/fd/$CLAUDE_MESH_READY_FD"; exec sleep 2"#;
    let pid = spawn_sh(&state, script, Duration::from_secs(5)).unwrap();
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    let sid = rustix::process::getsid(Some(pid)).unwrap();
    assert_eq!(sid, pid, "the daemon leads its own session");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

#[test]
fn daemon_sees_state_dir_and_root_cwd_but_no_session_env() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    let script = r#"echo "error: home=$CLAUDE_MESH_HOME cwd=$(pwd) pid=${CLAUDE_PID-unset}" > "/proc/self/fd/$CLAUDE_MESH_READY_FD""#;
    let reason = start_failed_reason(spawn_sh(&state, script, Duration::from_secs(5)));
    assert_eq!(
        reason,
        format!("home={} cwd=/ pid=unset", state.root().display())
    );
}

#[test]
fn silent_death_reports_the_log_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    state.ensure().unwrap();
    std::fs::write(state.log(), "an old line from a previous run\n").unwrap();
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; echo cannot open database >&2; exit 1";
    let reason = start_failed_reason(spawn_sh(&state, script, Duration::from_secs(5)));
    assert!(
        reason.starts_with("it exited without reporting"),
        "{reason}"
    );
    assert!(reason.contains("last lines of"), "{reason}");
    assert!(reason.ends_with("  cannot open database"), "{reason}");
    assert!(reason.contains("  line 4\n"), "{reason}");
    assert!(
        !reason.contains("line 3\n"),
        "only the last 10 lines: {reason}"
    );
    assert!(!reason.contains("previous run"), "{reason}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(state.log()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn silent_death_with_empty_log_says_how_to_see_why() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    let reason = start_failed_reason(spawn_sh(&state, "exit 1", Duration::from_secs(5)));
    assert!(reason.contains("wrote nothing"), "{reason}");
    assert!(reason.contains("mesh daemon"), "{reason}");
}

#[test]
fn no_line_before_the_deadline_is_a_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    let started = Instant::now();
    let reason = start_failed_reason(spawn_sh(
        &state,
        "echo starting; exec sleep 3",
        Duration::from_millis(300),
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        reason.starts_with("it did not report ready within"),
        "{reason}"
    );
    assert!(reason.contains("  starting"), "{reason}");
}

#[test]
fn missing_program_fails_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::new(tmp.path().join("state"));
    state.ensure().unwrap();
    let err = spawn_daemon(
        &state,
        &tmp.path().join("no-such-mesh"),
        &[OsStr::new("daemon")],
        Instant::now() + Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot run"), "{err}");
}

#[test]
fn log_tail_of_nothing_new_is_none() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("mesh.log");
    assert_eq!(log_tail(&log, 0), None);
    std::fs::write(&log, "a\n\nb\n").unwrap();
    assert_eq!(log_tail(&log, 0).as_deref(), Some("  a\n  b"));
    assert_eq!(log_tail(&log, 5), None);
}
