//! `mesh health` against real processes: the `mesh` binary, a real daemon (a `mesh daemon`
//! process, or `mesh_daemon::run` in this process posing as an older version), a real SQLite
//! file, and Claude Code settings written by the real installer code. Nothing is mocked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use mesh::claude_config::{Plan, claude_json_path, settings_path};
use mesh::service::{ServiceSpec, SystemdUser, render_systemd};
use mesh_client::Connection;
use mesh_testkit::procs::InProcessDaemon;
use mesh_testkit::user_manager::UserManager;
use mesh_testkit::{Mesh, mesh_bin, opts, wait_for};
use serde_json::Value;

/// Every check `mesh health` runs when the daemon answers and the database exists.
const ALL_CHECKS: &[&str] = &[
    "binary.version",
    "state.dir",
    "state.socket",
    "state.files",
    "service.unit",
    "daemon.reachable",
    "daemon.version",
    "federation",
    "db.file",
    "db.schema",
    "db.integrity",
    "db.sessions",
    "db.mail",
    "claude.hooks",
    "claude.mcp",
    "claude.statusline",
    "project.config",
];

/// `mesh health --json`: exit code and the parsed document.
fn health_json(mesh: &Mesh) -> (i32, Value) {
    let out = mesh.mesh().args(["health", "--json"]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let code = out.status.code().expect("mesh health exited by a signal");
    (code, doc)
}

/// `mesh health` for a human.
fn health_text(mesh: &Mesh) -> Output {
    mesh.mesh().arg("health").output().unwrap()
}

fn check<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {doc:#}"))
}

fn names(doc: &Value) -> Vec<String> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Assert that check `name` came out at `level` with a fix mentioning `fix`.
fn assert_check(doc: &Value, name: &str, level: &str, fix: &str) {
    let c = check(doc, name);
    assert_eq!(c["level"], level, "{name}: {c:#}\n{doc:#}");
    let got = c["fix"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no fix: {c:#}"));
    assert!(got.contains(fix), "{name}: fix {got:?} lacks {fix:?}");
}

fn assert_failed(code: i32, doc: &Value) {
    assert_eq!(code, 1, "exit status: {doc:#}");
    assert_eq!(doc["ok"], false, "{doc:#}");
}

/// Register this mesh binary with Claude Code in the test HOME, as `mesh install` does.
fn register(mesh: &Mesh) {
    Plan::install(mesh.home.path(), Path::new(mesh_bin()))
        .unwrap()
        .apply()
        .unwrap();
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn all_good_installation_passes_quickly() {
    let mesh = Mesh::start();
    register(&mesh);
    let peer = mesh.session("backend");
    let sent = mesh
        .mesh()
        .args(["send", "backend", "hello"])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");

    let start = Instant::now();
    let (code, doc) = health_json(&mesh);
    let took = start.elapsed();
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["ok"], true);
    assert_eq!(names(&doc), ALL_CHECKS, "{doc:#}");
    assert!(took < Duration::from_secs(1), "mesh health took {took:?}");
    for name in ALL_CHECKS.iter().filter(|n| **n != "service.unit") {
        let c = check(&doc, name);
        assert_eq!(c["level"], "ok", "{c:#}");
        assert!(c["fix"].is_null(), "{c:#}");
    }
    let reachable = check(&doc, "daemon.reachable")["detail"].as_str().unwrap();
    assert!(
        reachable.contains(&format!("pid {}", mesh.daemon_pid())) && reachable.contains(" ms"),
        "{reachable}"
    );
    let version = check(&doc, "daemon.version")["detail"].as_str().unwrap();
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let sessions = check(&doc, "db.sessions")["detail"].as_str().unwrap();
    assert!(sessions.starts_with("1 live, 0 ended"), "{sessions}");
    let mail = check(&doc, "db.mail")["detail"].as_str().unwrap();
    assert!(mail.starts_with("1 undelivered message,"), "{mail}");
    let hooks = check(&doc, "claude.hooks")["detail"].as_str().unwrap();
    assert!(hooks.contains(mesh_bin()), "{hooks}");

    // The same for a human: one line per check, exit 0.
    let out = health_text(&mesh);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ALL_CHECKS {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "no line for {name}:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok    daemon.reachable ")),
        "{text}"
    );
    drop(peer);
}

#[test]
fn a_daemon_not_started_yet_is_normal_on_demand_and_health_does_not_start_it() {
    // No service manager here: the daemon starts on demand, and before the first command
    // needs it, it simply is not running: not a failure.
    let mesh = Mesh::without_daemon();
    register(&mesh);
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["ok"], true, "{doc:#}");
    for name in ["state.dir", "state.socket", "daemon.reachable", "db.file"] {
        assert_eq!(check(&doc, name)["level"], "ok", "{name}: {doc:#}");
    }
    let c = check(&doc, "daemon.reachable");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("starts on demand") && detail.contains("mesh start"),
        "{c:#}"
    );
    assert!(
        !names(&doc).contains(&"daemon.version".to_owned()),
        "{doc:#}"
    );
    assert_eq!(check(&doc, "claude.hooks")["level"], "ok", "{doc:#}");
    // Never autostarted: still nothing listens, and no state was created.
    assert!(!mesh.state.socket().exists());
    assert!(Connection::connect(&mesh.state.socket(), &opts()).is_err());
    assert!(!mesh.state.db().exists());

    let out = health_text(&mesh);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        mesh_testkit::output_text(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok    daemon.reachable ") && l.contains("starts on demand")),
        "{text}"
    );
    assert!(!text.contains("mesh restart"), "{text}");
}

#[test]
fn a_cleanly_stopped_daemon_is_normal_on_demand_and_its_database_is_checked() {
    let mut mesh = Mesh::start();
    register(&mesh);
    let _ = mesh.session("frontend");
    assert!(mesh.stop().success());
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
    for name in [
        "daemon.reachable",
        "db.file",
        "db.schema",
        "db.integrity",
        "db.sessions",
        "db.mail",
    ] {
        assert_eq!(check(&doc, name)["level"], "ok", "{doc:#}");
    }
    let file = check(&doc, "db.file")["detail"].as_str().unwrap();
    assert!(file.contains("no WAL"), "a clean stop checkpoints: {file}");
    assert!(!mesh.state.socket().exists(), "health started a daemon");
}

#[test]
fn a_stale_socket_of_a_dead_daemon_is_named_and_the_fix_works() {
    let mut mesh = Mesh::start();
    register(&mesh);
    mesh.kill9();
    assert!(
        mesh.state.socket().exists(),
        "SIGKILL leaves the socket behind"
    );
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "a warning, not a failure: {doc:#}");
    assert_check(&doc, "daemon.reachable", "warn", "mesh start");
    let c = check(&doc, "daemon.reachable");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("stale socket left by a daemon that died"),
        "{c:#}"
    );
    let out = run_fix(&mesh, c["fix"].as_str().unwrap());
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let _kill = KillDaemon(Some(started));
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(check(&doc, "daemon.reachable")["level"], "ok", "{doc:#}");
}

#[test]
fn a_socket_closed_to_others_by_its_directory_is_only_a_warning() {
    let mesh = Mesh::start();
    register(&mesh);
    let socket = mesh.state.socket();
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
    assert_check(&doc, "state.socket", "warn", "chmod 600");
    let c = check(&doc, "state.socket");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("no one else can reach it"),
        "{c:#}"
    );
    let out = run_fix(&mesh, c["fix"].as_str().unwrap());
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(check(&doc, "state.socket")["level"], "ok", "{doc:#}");
}

#[test]
fn socket_readable_by_others_fails() {
    let mesh = Mesh::start();
    register(&mesh);
    let socket = mesh.state.socket();
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    assert_check(&doc, "state.socket", "fail", "chmod 600");
    let fix = check(&doc, "state.socket")["fix"].as_str().unwrap();
    assert!(fix.contains(socket.to_str().unwrap()), "{fix}");
    assert_eq!(check(&doc, "daemon.reachable")["level"], "ok");
    assert_eq!(check(&doc, "state.dir")["level"], "ok");

    // Fixing it as told makes the check pass.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600)).unwrap();
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
}

#[test]
fn state_dir_readable_by_others_fails() {
    let mesh = Mesh::start();
    register(&mesh);
    fs::set_permissions(mesh.state.root(), fs::Permissions::from_mode(0o755)).unwrap();
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    assert_check(&doc, "state.dir", "fail", "chmod 700");
}

/// `mesh_daemon::run` in this process, on the test HOME's socket, announcing `version`.
fn in_process_daemon(mesh: &Mesh, version: &str) -> InProcessDaemon {
    in_process_daemon_with(mesh, version, |_| {})
}

/// [`in_process_daemon`] with `tweak` applied to its configuration.
fn in_process_daemon_with(
    mesh: &Mesh,
    version: &str,
    tweak: impl FnOnce(&mut mesh_daemon::Config),
) -> InProcessDaemon {
    mesh.state.ensure().unwrap();
    let mut config = mesh_daemon::Config::new(mesh.state.db());
    config.program_version = version.to_owned();
    tweak(&mut config);
    InProcessDaemon::serve(mesh.state.socket(), config)
}

#[test]
fn daemon_older_than_the_binary_fails() {
    let mesh = Mesh::without_daemon();
    register(&mesh);
    let daemon = in_process_daemon(&mesh, "0.0.1");
    assert_eq!(
        Connection::connect(&mesh.state.socket(), &opts())
            .unwrap()
            .daemon_version(),
        "0.0.1"
    );
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    assert_eq!(check(&doc, "daemon.reachable")["level"], "ok", "{doc:#}");
    assert_check(&doc, "daemon.version", "fail", "mesh restart");
    let detail = check(&doc, "daemon.version")["detail"].as_str().unwrap();
    assert!(
        detail.contains("0.0.1") && detail.contains(env!("CARGO_PKG_VERSION")),
        "{detail}"
    );
    // Only the version is wrong.
    let failed: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["level"] == "fail")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["daemon.version"], "{doc:#}");

    // A newer daemon is only a warning, with an upgrade as the fix.
    drop(daemon);
    let _newer = in_process_daemon(&mesh, "999.0.0");
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
    assert_check(&doc, "daemon.version", "warn", "upgrade");
}

#[test]
fn missing_hooks_fail() {
    let mesh = Mesh::start();
    register(&mesh);
    edit_json(&settings_path(mesh.home.path()), |v| {
        v.as_object_mut().unwrap().remove("hooks");
    });
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    assert_check(&doc, "claude.hooks", "fail", "mesh install");
    let detail = check(&doc, "claude.hooks")["detail"].as_str().unwrap();
    assert!(detail.contains("SessionStart"), "{detail}");
    assert_eq!(check(&doc, "claude.mcp")["level"], "ok", "{doc:#}");
    assert_eq!(check(&doc, "claude.statusline")["level"], "ok", "{doc:#}");
}

#[test]
fn hooks_running_a_deleted_binary_fail() {
    let mesh = Mesh::start();
    Plan::install(mesh.home.path(), Path::new("/nonexistent/bin/mesh"))
        .unwrap()
        .apply()
        .unwrap();
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    assert_check(&doc, "claude.hooks", "fail", "mesh install");
    let detail = check(&doc, "claude.hooks")["detail"].as_str().unwrap();
    assert!(detail.contains("/nonexistent/bin/mesh"), "{detail}");
    assert_check(&doc, "claude.mcp", "fail", "mesh install");
}

#[test]
fn missing_mcp_server_fails() {
    let mesh = Mesh::start();
    register(&mesh);
    edit_json(&claude_json_path(mesh.home.path()), |v| {
        v["mcpServers"]
            .as_object_mut()
            .unwrap()
            .remove("claude-mesh");
    });
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    assert_check(&doc, "claude.mcp", "fail", "mesh install");
    assert_eq!(check(&doc, "claude.hooks")["level"], "ok", "{doc:#}");
}

#[test]
fn someone_elses_status_line_is_fine_and_none_warns() {
    let mesh = Mesh::start();
    let settings = settings_path(mesh.home.path());
    fs::create_dir_all(settings.parent().unwrap()).unwrap();
    fs::write(
        &settings,
        r#"{"statusLine": {"type": "command", "command": "~/bin/my-line"}}"#,
    )
    .unwrap();
    register(&mesh);
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
    let line = check(&doc, "claude.statusline");
    assert_eq!(line["level"], "ok", "{line:#}");
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.contains("~/bin/my-line") && detail.contains("statusline"),
        "{detail}"
    );

    edit_json(&settings, |v| {
        v.as_object_mut().unwrap().remove("statusLine");
    });
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "a warning does not fail: {doc:#}");
    assert_check(&doc, "claude.statusline", "warn", "mesh install");
}

#[test]
fn invalid_settings_json_fails_naming_the_file() {
    let mesh = Mesh::start();
    let settings = settings_path(mesh.home.path());
    fs::create_dir_all(settings.parent().unwrap()).unwrap();
    fs::write(&settings, "{\"hooks\": {,}\n").unwrap();
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    let c = check(&doc, "claude.config");
    assert_eq!(c["level"], "fail", "{c:#}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains(settings.to_str().unwrap()),
        "{c:#}"
    );
    assert!(c["fix"].as_str().unwrap().contains("mesh install"), "{c:#}");
    assert_eq!(
        fs::read_to_string(&settings).unwrap(),
        "{\"hooks\": {,}\n",
        "health never writes"
    );
}

#[test]
fn corrupt_database_fails_the_integrity_check() {
    let mut mesh = Mesh::start();
    register(&mesh);
    assert!(mesh.stop().success());
    let db = mesh.state.db();
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + 13) as u8).collect();
    fs::write(&db, &garbage).unwrap();

    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    assert_check(&doc, "db.integrity", "fail", "mesh restart");
    let c = check(&doc, "db.integrity");
    assert!(
        c["detail"].as_str().unwrap().contains("not a database"),
        "{c:#}"
    );
    assert_eq!(check(&doc, "db.file")["level"], "ok", "{doc:#}");
    assert!(!names(&doc).contains(&"db.sessions".to_owned()), "{doc:#}");
    assert_eq!(fs::read(&db).unwrap(), garbage, "health never writes");

    // The fix works as printed: a restart moves the damaged database aside and starts afresh.
    // Health then fails on the copy set aside until it is removed (its mail was not delivered).
    let fix = c["fix"].as_str().unwrap().to_owned();
    let out = run_fix(&mesh, &fix);
    assert!(
        out.status.success(),
        "{fix}: {}",
        mesh_testkit::output_text(&out)
    );
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let _kill = KillDaemon(Some(started));
    let (code, doc) = health_json(&mesh);
    for name in ["db.file", "db.schema", "db.integrity"] {
        assert_eq!(check(&doc, name)["level"], "ok", "{doc:#}");
    }
    assert_failed(code, &doc);
    assert_check(&doc, "db.recovered", "fail", "rm -r ");
    let aside = mesh.set_aside();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(fs::read(aside[0].join("mesh.db")).unwrap(), garbage);
    fs::remove_dir_all(&aside[0]).unwrap();
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "{doc:#}");
}

#[test]
fn socket_activated_daemon_under_a_real_systemd_user_manager() {
    let mesh = Mesh::without_daemon();
    let home = mesh.home.path();
    let Some(manager) = UserManager::start_or_skip(home) else {
        return;
    };
    let bin = fs::canonicalize(mesh_bin()).unwrap();
    let systemd = SystemdUser::new(home.join(".config/systemd/user"), manager.env.clone());
    register(&mesh);
    let health = || {
        let out = mesh
            .mesh()
            .args(["health", "--json"])
            .envs(manager.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code().unwrap(), doc)
    };

    // A service manager but no unit (`mesh install --no-service`): the daemon starts on
    // demand, so not running yet is the normal state.
    let (code, doc) = health();
    assert_eq!(code, 0, "{doc:#}");
    let reachable = check(&doc, "daemon.reachable");
    assert_eq!(reachable["level"], "ok", "{reachable:#}");
    assert!(
        reachable["detail"]
            .as_str()
            .unwrap()
            .contains("starts on demand"),
        "{reachable:#}"
    );

    systemd
        .install(&render_systemd(&ServiceSpec::new(&bin, mesh.state.clone())).unwrap())
        .unwrap();
    assert_ne!(systemd.state("mesh.service").unwrap(), "active");

    // The socket listens, the daemon is not running yet: connecting starts it, and that is ok.
    let (code, doc) = health();
    assert_eq!(code, 0, "{doc:#}");
    let unit = check(&doc, "service.unit");
    assert_eq!(unit["level"], "ok", "{unit:#}");
    assert!(
        unit["detail"]
            .as_str()
            .unwrap()
            .contains("socket-activated"),
        "{unit:#}"
    );
    let reachable = check(&doc, "daemon.reachable");
    assert_eq!(reachable["level"], "ok", "{reachable:#}");
    assert!(
        reachable["detail"]
            .as_str()
            .unwrap()
            .contains("started by socket activation"),
        "{reachable:#}"
    );
    assert_eq!(systemd.state("mesh.service").unwrap(), "active");

    // With the socket stopped nothing can start the daemon: the fix is the manager's command.
    assert!(
        manager
            .systemctl(&["stop", "mesh.socket", "mesh.service"])
            .status
            .success()
    );
    let (code, doc) = health();
    assert_failed(code, &doc);
    assert_check(
        &doc,
        "daemon.reachable",
        "fail",
        "systemctl --user start mesh.socket",
    );
    assert_check(
        &doc,
        "service.unit",
        "fail",
        "systemctl --user start mesh.socket",
    );
    assert_check(
        &doc,
        "state.socket",
        "warn",
        "systemctl --user start mesh.socket",
    );
    assert!(!mesh.state.socket().exists(), "health started a daemon");

    // The fix works as printed.
    let fix = check(&doc, "daemon.reachable")["fix"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = run_fix_with(&mesh, &fix, &manager.env);
    assert!(
        out.status.success(),
        "{fix}: {}",
        mesh_testkit::output_text(&out)
    );
    let (code, doc) = health();
    assert_eq!(code, 0, "after `{fix}`: {doc:#}");
    assert_eq!(check(&doc, "daemon.reachable")["level"], "ok", "{doc:#}");

    // `mesh start` goes through the manager: the daemon is its mesh.service.
    assert!(
        manager
            .systemctl(&["stop", "mesh.socket", "mesh.service"])
            .status
            .success()
    );
    let start = || {
        let out = mesh
            .mesh()
            .args(["start", "--json"])
            .envs(manager.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let doc = start();
    assert_eq!(doc["started_by"], "systemd", "{doc:#}");
    assert_eq!(doc["already_running"], false, "{doc:#}");
    assert_eq!(systemd.state("mesh.service").unwrap(), "active");
    assert_eq!(systemd.state("mesh.socket").unwrap(), "active");
    assert_eq!(
        systemd.main_pid().unwrap(),
        Some(doc["pid"].as_u64().unwrap() as u32)
    );
    let again = start();
    assert_eq!(again["already_running"], true, "{again:#}");
    assert_eq!(again["pid"], doc["pid"]);
}

/// Run a fix `mesh health` printed, as a user would paste it into a shell (with this `mesh`
/// first on PATH).
fn run_fix(mesh: &Mesh, fix: &str) -> Output {
    run_fix_with(mesh, fix, &[])
}

/// [`run_fix`] with `env` added (e.g. the user manager's bus).
fn run_fix_with(
    mesh: &Mesh,
    fix: &str,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Output {
    let bin_dir = Path::new(mesh_bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = std::process::Command::new("sh");
    mesh_testkit::isolate(&mut sh, mesh.home.path(), &mesh.state);
    sh.arg("-c")
        .arg(fix)
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

/// Kills daemons that a fix started (they are detached).
struct KillDaemon(Option<u32>);

impl Drop for KillDaemon {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) of a daemon this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

#[test]
fn a_daemon_whose_socket_is_gone_is_named_and_the_fix_works() {
    let mut mesh = Mesh::start();
    let pid = mesh.daemon_pid();
    // Stopped, so that it cannot notice (it would exit within seconds) while health looks.
    // SAFETY: kill(2) touches no memory of ours; `pid` is the daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    fs::remove_file(mesh.state.socket()).unwrap();
    let (code, doc) = health_json(&mesh);
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    assert_failed(code, &doc);
    let c = check(&doc, "daemon.reachable");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("the daemon (pid {pid}) holds")) && detail.contains("deleted"),
        "{c:#}"
    );
    assert_check(&doc, "daemon.reachable", "fail", "mesh restart");
    let out = run_fix(&mesh, c["fix"].as_str().unwrap());
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let _kill = KillDaemon(Some(started));
    assert_ne!(started, pid);
    let (_, doc) = health_json(&mesh);
    assert_eq!(check(&doc, "daemon.reachable")["level"], "ok", "{doc:#}");
    let _ = mesh.daemon.take().map(|mut c| c.wait());
}

#[test]
fn a_symlinked_or_unwritable_database_or_state_dir_fails_with_a_fix_that_works() {
    // mesh.db a symbolic link to another program's database.
    let mut mesh = Mesh::start();
    mesh.stop();
    let other = mesh.home.path().join("other.db");
    fs::write(&other, "someone else's").unwrap();
    fs::remove_file(mesh.state.db()).unwrap();
    std::os::unix::fs::symlink(&other, mesh.state.db()).unwrap();
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    assert_check(&doc, "db.file", "fail", "rm ");
    let c = check(&doc, "db.file");
    assert!(
        c["detail"].as_str().unwrap().contains("symbolic link"),
        "{c:#}"
    );
    let out = run_fix(&mesh, c["fix"].as_str().unwrap());
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let mut kill = KillDaemon(Some(started));
    let (_, doc) = health_json(&mesh);
    assert_eq!(check(&doc, "db.file")["level"], "ok", "{doc:#}");
    assert_eq!(fs::read(&other).unwrap(), b"someone else's");
    // SAFETY: kill(2) of the daemon the fix started; then wait for it to be gone.
    unsafe { libc::kill(started as i32, libc::SIGTERM) };
    wait_for("the daemon to stop", Duration::from_secs(10), || {
        !mesh.state.socket().exists()
    });
    kill.0 = None;

    // The state directory a symbolic link.
    let real = mesh.home.path().join("real-state");
    fs::rename(mesh.state.root(), &real).unwrap();
    std::os::unix::fs::symlink(&real, mesh.state.root()).unwrap();
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    let c = check(&doc, "state.dir");
    assert_eq!(c["level"], "fail", "{c:#}");
    assert!(
        c["detail"].as_str().unwrap().contains("symbolic link"),
        "{c:#}"
    );
    let out = run_fix(&mesh, c["fix"].as_str().unwrap());
    assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let _kill = KillDaemon(Some(started));
    let (_, doc) = health_json(&mesh);
    assert_eq!(check(&doc, "state.dir")["level"], "ok", "{doc:#}");

    // An unwritable database (a read-only bind mount of the file: root writes anything else).
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED (unwritable part): needs root to mount");
        return;
    }
    let db = mesh.state.db();
    let bound = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&db)
        .arg(&db)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(&db)
            .status()
            .is_ok_and(|s| s.success());
    if !bound {
        let _ = std::process::Command::new("umount").arg(&db).status();
        eprintln!("SKIPPED (unwritable part): cannot bind-mount here");
        return;
    }
    let (code, doc) = health_json(&mesh);
    let _ = std::process::Command::new("umount").arg(&db).status();
    assert_failed(code, &doc);
    assert_check(&doc, "db.file", "fail", "findmnt -T");
    let c = check(&doc, "db.file");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("cannot write the database"),
        "{c:#}"
    );
}

/// The database's logical size in bytes (pages in the file and its WAL), read-only.
fn db_bytes(mesh: &Mesh) -> u64 {
    let conn = rusqlite::Connection::open_with_flags(
        mesh.state.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    let size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    (pages * size) as u64
}

fn kept_messages(mesh: &Mesh) -> u64 {
    mesh_daemon::store::inspect::inspect(&mesh.state.db())
        .unwrap()
        .kept
        .unwrap()
        .messages
}

#[test]
fn delivered_mail_is_pruned_undelivered_is_kept_and_the_database_stops_growing() {
    use mesh_proto::{Caller, Class, Consume, Kind, List, MessageStatus, Scope};
    let mesh = Mesh::without_daemon();
    let _daemon = in_process_daemon_with(&mesh, env!("CARGO_PKG_VERSION"), |c| {
        c.retain = Some(Duration::from_millis(300));
        c.sweep_interval = Duration::from_millis(100);
    });
    let reader = mesh.session("reader");
    let mut ended = mesh.session("ended");
    // The newest session (the highest key is never pruned, so that it is never reused).
    let mut offline = mesh.session("offline");
    let user = Caller::default();
    let never_read = mesh.send(&user, "offline", Kind::Task, "never read");
    offline.kill();
    ended.kill();
    let body = "x".repeat(20_000);
    let mut sizes = Vec::new();
    let mut first = None;
    for round in 0..12 {
        for _ in 0..50 {
            let id = mesh.send(&user, "reader", Kind::Task, &body);
            first.get_or_insert(id);
        }
        let mut conn = mesh.conn();
        while !conn
            .consume(Consume {
                caller: reader.caller.clone(),
                class: Class::All,
                peek: false,
                max_bytes: 0,
                handout: 0,
            })
            .unwrap()
            .messages
            .is_empty()
        {}
        wait_for(
            &format!("round {round}'s delivered mail to be pruned"),
            Duration::from_secs(30),
            || kept_messages(&mesh) == 1,
        );
        sizes.push(db_bytes(&mesh));
    }
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "12 rounds of 50 x 20 kB sent, read and pruned; database size after each (MB): {:?}",
        sizes.iter().map(|&b| mb(b)).collect::<Vec<_>>()
    );
    // 12 MB went through; the database holds about one round, and stops growing.
    let early = sizes[..3].iter().copied().max().unwrap();
    assert!(
        sizes[11] <= early + early / 10,
        "the database kept growing: {sizes:?}"
    );
    let mut conn = mesh.conn();
    // The undelivered task is kept, and so is the ended session it waits for; the session
    // without mail is pruned.
    let status = conn
        .message_status(MessageStatus {
            message_id: never_read,
        })
        .unwrap();
    assert_eq!(status.body, "never read");
    let err = conn
        .message_status(MessageStatus {
            message_id: first.unwrap(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("no message"), "{err}");
    let names: Vec<String> = conn
        .list(List {
            caller: Caller::default(),
            scope: Scope::Machine,
            include_offline: true,
        })
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["offline", "reader"]);
    // `mesh health` says what is kept and how old it is.
    let (_, doc) = health_json(&mesh);
    let file = check(&doc, "db.file")["detail"].as_str().unwrap();
    assert!(
        file.contains("1 message kept, the oldest") && file.contains("CLAUDE_MESH_RETAIN_DAYS"),
        "{file}"
    );
    assert!(file.contains("MiB") || file.contains("KiB"), "{file}");
}

#[test]
fn a_broken_claude_mesh_json_is_reported_by_health_and_whoami() {
    let mesh = Mesh::start();
    register(&mesh);
    let long = "x".repeat(100);
    for (name, body, said) in [
        (
            "badjson",
            "{\"name\": \"oops\",".to_owned(),
            "not valid JSON",
        ),
        (
            "emptyname",
            "{\"name\": \"  \"}".to_owned(),
            "no non-empty string field `name`",
        ),
        (
            "longname",
            format!("{{\"name\": \"{long}\"}}"),
            "cut to `xxxx",
        ),
    ] {
        let dir = mesh.project(name);
        fs::write(dir.join(".claude-mesh.json"), &body).unwrap();
        // `mesh health` run in the project: project.config warns (not a failure).
        let out = mesh
            .mesh()
            .args(["health", "--json"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {doc:#}");
        let c = check(&doc, "project.config");
        assert_eq!(c["level"], "warn", "{name}: {c:#}");
        let detail = c["detail"].as_str().unwrap();
        assert!(
            detail.contains(said) && detail.contains(".claude-mesh.json"),
            "{name}: {c:#}"
        );
        // `mesh whoami` in a session started there says it too.
        let s = mesh.session(name);
        let out = mesh
            .mesh()
            .arg("whoami")
            .env("CLAUDE_PID", s.pid().to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("config:") && l.contains(said)),
            "{name}: {text}"
        );
        let out = mesh
            .mesh()
            .args(["whoami", "--json"])
            .env("CLAUDE_PID", s.pid().to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
        let _: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(said),
            "{name}: {}",
            mesh_testkit::output_text(&out)
        );
    }
    // A sound file: ok, and whoami says nothing about it.
    let dir = mesh.project("good");
    fs::write(dir.join(".claude-mesh.json"), "{\"name\": \"api\"}").unwrap();
    let out = mesh
        .mesh()
        .args(["health", "--json"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = check(&doc, "project.config");
    assert_eq!(c["level"], "ok", "{c:#}");
    assert!(c["detail"].as_str().unwrap().contains("`api`"), "{c:#}");
    let s = mesh.session("good");
    let out = mesh
        .mesh()
        .arg("whoami")
        .env("CLAUDE_PID", s.pid().to_string())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("name:") && text.contains("api"), "{text}");
    assert!(!text.contains("config:"), "{text}");
}

#[test]
fn a_stuck_daemon_is_named_and_the_printed_fix_replaces_it() {
    let mut mesh = Mesh::start();
    register(&mesh);
    let pid = mesh.daemon_pid();
    // Stopped: it accepts connections (the kernel queues them) but never answers.
    // SAFETY: kill(2) of the daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    let c = check(&doc, "daemon.reachable");
    assert_eq!(c["level"], "fail", "{c:#}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("did not answer in time"),
        "{c:#}"
    );
    let fix = c["fix"].as_str().unwrap().to_owned();
    let out = run_fix(&mesh, &fix);
    assert!(
        out.status.success(),
        "{fix}: {}",
        mesh_testkit::output_text(&out)
    );
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let _kill = KillDaemon(Some(started));
    assert_ne!(started, pid);
    // The stuck one is gone.
    let status = mesh.daemon.take().map(|mut c| c.wait().unwrap());
    assert!(status.is_some(), "the old daemon was reaped");
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "after `{fix}`: {doc:#}");
    assert_eq!(check(&doc, "daemon.reachable")["level"], "ok", "{doc:#}");
}

#[test]
fn a_file_or_a_stranger_in_place_of_our_paths_fails_with_a_fix_that_works() {
    // A regular file where the state directory belongs.
    let mesh = Mesh::without_daemon();
    register(&mesh);
    fs::write(mesh.state.root(), "not a directory").unwrap();
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    let c = check(&doc, "state.dir");
    assert_eq!(c["level"], "fail", "{c:#}");
    let fix = c["fix"].as_str().unwrap().to_owned();
    let out = run_fix(&mesh, &fix);
    assert!(
        out.status.success(),
        "{fix}: {}",
        mesh_testkit::output_text(&out)
    );
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let mut kill = KillDaemon(Some(started));
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "after `{fix}`: {doc:#}");
    // SAFETY: kill(2) of the daemon the fix started; then wait for it to be gone.
    unsafe { libc::kill(started as i32, libc::SIGTERM) };
    wait_for("the daemon to stop", Duration::from_secs(10), || {
        !mesh.state.socket().exists()
    });
    kill.0 = None;

    // Another program listening on our socket path.
    let listener = std::os::unix::net::UnixListener::bind(mesh.state.socket()).unwrap();
    fs::set_permissions(mesh.state.socket(), fs::Permissions::from_mode(0o600)).unwrap();
    let stranger = std::thread::spawn(move || {
        use std::io::Write;
        // Answer the health probe with something that is not our handshake.
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(&[0xff; 64]);
        }
        listener
    });
    let (code, doc) = health_json(&mesh);
    let _listener = stranger.join().unwrap();
    assert_failed(code, &doc);
    let c = check(&doc, "daemon.reachable");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("does not speak the claude-mesh protocol"),
        "{c:#}"
    );
    let fix = c["fix"].as_str().unwrap().to_owned();
    let out = run_fix(&mesh, &fix);
    assert!(
        out.status.success(),
        "{fix}: {}",
        mesh_testkit::output_text(&out)
    );
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let _kill = KillDaemon(Some(started));
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "after `{fix}`: {doc:#}");
}

#[test]
fn a_unit_left_without_a_service_manager_fails_and_the_printed_fix_works() {
    let mesh = Mesh::without_daemon();
    register(&mesh);
    let bin = fs::canonicalize(mesh_bin()).unwrap();
    let units = render_systemd(&ServiceSpec::new(&bin, mesh.state.clone())).unwrap();
    let dir = mesh.home.path().join(".config/systemd/user");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("mesh.socket"), units.socket).unwrap();
    fs::write(dir.join("mesh.service"), units.service).unwrap();
    let (code, doc) = health_json(&mesh);
    assert_failed(code, &doc);
    let c = check(&doc, "service.unit");
    assert_eq!(c["level"], "fail", "{c:#}");
    let fix = c["fix"].as_str().unwrap().to_owned();
    let out = run_fix(&mesh, &fix);
    assert!(
        out.status.success(),
        "{fix}: {}",
        mesh_testkit::output_text(&out)
    );
    assert!(!dir.join("mesh.socket").exists());
    let started = Connection::connect(&mesh.state.socket(), &opts())
        .unwrap()
        .daemon_pid();
    let _kill = KillDaemon(Some(started));
    let (code, doc) = health_json(&mesh);
    assert_eq!(code, 0, "after `{fix}`: {doc:#}");
}
