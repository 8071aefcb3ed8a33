//! The service definitions of `mesh install` (mesh/src/service/): the rendered systemd units
//! pass `systemd-analyze verify`, work under `systemd-socket-activate` and under a real systemd
//! user manager (socket 0600, activation on the first connection, re-activation after an idle
//! exit with queued mail intact, restart after `kill -9`), and the rendered LaunchAgent parses as
//! a plist with the keys launchd needs. Tools that are missing make a test print SKIPPED.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mesh::service::{ServiceSpec, SystemdUser, render_launchd, render_systemd};
use mesh_daemon::paths::StateDir;
use mesh_proto::{Class, Consume, Kind, SendMessage};
use mesh_testkit::user_manager::{UserManager, runtime_dir};
use mesh_testkit::{Mesh, mesh_bin, wait_for};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn text(out: &Output) -> String {
    mesh_testkit::output_text(out)
}

/// `systemd-analyze verify --user` on the units rendered for `bin` and `state`.
fn verify(tmp: &Path, bin: &Path, state: &StateDir) {
    let units = render_systemd(&ServiceSpec::new(bin, state.clone())).unwrap();
    let dir = tmp.join("units");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("mesh.socket"), &units.socket).unwrap();
    fs::write(dir.join("mesh.service"), &units.service).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--user"])
        .arg(dir.join("mesh.socket"))
        .arg(dir.join("mesh.service"))
        .env("XDG_RUNTIME_DIR", runtime_dir(tmp))
        .env("HOME", tmp)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        text(&out),
        units.socket,
        units.service
    );
    // Warnings about our units (unknown keys, bad quoting) do not fail verify: refuse them too.
    assert!(
        !stderr.contains("mesh.s"),
        "{}\n{}\n{}",
        text(&out),
        units.socket,
        units.service
    );
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian package `systemd`)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    verify(
        tmp.path(),
        Path::new(mesh_bin()),
        &StateDir::new(tmp.path().join(".claude-mesh")),
    );
    // A binary and a state directory whose paths need systemd's quoting: spaces, specifiers,
    // a dollar; quotes and a backslash in the state directory (Environment= is C-unescaped).
    // verify fails if ExecStart's binary does not exist, so this also proves the quoted path
    // resolves to the real file.
    let odd = tmp.path().join("my bins %h $HOME");
    fs::create_dir_all(&odd).unwrap();
    fs::copy(mesh_bin(), odd.join("mesh")).unwrap();
    verify(
        tmp.path(),
        &odd.join("mesh"),
        &StateDir::new(tmp.path().join(r#"st %i $x 'q' "d" \b"#)),
    );
    // systemd refuses quotes and backslashes in an executable name: so does the renderer.
    let refused = ServiceSpec::new(tmp.path().join("it's/mesh"), StateDir::new(tmp.path()));
    assert!(render_systemd(&refused).is_err());
    // The check bites: a missing binary fails verify.
    let tmp2 = tempfile::tempdir().unwrap();
    let units = render_systemd(&ServiceSpec::new(
        tmp2.path().join("no such/mesh"),
        StateDir::new(tmp2.path().join("s")),
    ))
    .unwrap();
    fs::write(tmp2.path().join("mesh.socket"), &units.socket).unwrap();
    fs::write(tmp2.path().join("mesh.service"), &units.service).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--user"])
        .arg(tmp2.path().join("mesh.socket"))
        .arg(tmp2.path().join("mesh.service"))
        .env("XDG_RUNTIME_DIR", runtime_dir(tmp2.path()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
}

/// The value of `key=` in a rendered unit (all occurrences), with `%%` unescaped.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.replace("%%", "%"))
        .collect()
}

#[test]
fn rendered_socket_activates_the_daemon_on_the_first_connection() {
    if !have("systemd-socket-activate") {
        eprintln!("SKIPPED: systemd-socket-activate is not installed (Debian package `systemd`)");
        return;
    }
    let mesh = Mesh::without_daemon();
    let units = render_systemd(&ServiceSpec::new(mesh_bin(), mesh.state.clone())).unwrap();
    // Take the socket path and the environment from the rendered units, as systemd would.
    let [listen] = unit_values(&units.socket, "ListenStream")
        .try_into()
        .unwrap();
    assert_eq!(Path::new(&listen), mesh.state.socket());
    let env: Vec<String> = unit_values(&units.service, "Environment")
        .into_iter()
        .map(|v| v.trim_matches('"').to_owned())
        .collect();
    assert_eq!(
        env,
        [format!("CLAUDE_MESH_HOME={}", mesh.state.root().display())]
    );
    // DirectoryMode=0700 makes systemd create the directory; systemd-socket-activate does not.
    fs::create_dir_all(mesh.state.root()).unwrap();
    fs::set_permissions(mesh.state.root(), fs::Permissions::from_mode(0o700)).unwrap();

    let mut cmd = Command::new("systemd-socket-activate");
    mesh_testkit::isolate(&mut cmd, mesh.home.path(), &mesh.state);
    cmd.args(["-l", &listen, "--fdname=mesh"]);
    for e in &env {
        cmd.args(["-E", e]); // it passes on only a few variables unless told
    }
    let mut child = cmd
        .args([
            "-E",
            "CLAUDE_MESH_IDLE_TIMEOUT=1",
            "--",
            mesh_bin(),
            "daemon",
        ])
        .stderr(fs::File::create(mesh.log_path()).unwrap())
        .spawn()
        .unwrap();
    wait_for("the socket", Duration::from_secs(10), || {
        mesh.state.socket().exists()
    });
    let comm = || fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap_or_default();
    // Under test: nothing starts the daemon before the first connection (200 ms to show it).
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        comm().starts_with("systemd-socket"),
        "no daemon before the first connection: {}",
        comm()
    );
    // The first client, the real CLI, gets its answer from the daemon it caused to start.
    let out = mesh.mesh().args(["list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), mesh.log());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc.is_object(), "{doc}");
    assert_eq!(comm().trim(), "mesh", "the daemon now runs in its place");
    assert_eq!(mesh.conn().ping().unwrap().pid, child.id());
    // An idle exit is a successful exit: Restart=on-failure / SuccessfulExit=false leave it be.
    wait_for("the idle exit", Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(child.wait().unwrap().success(), "{}", mesh.log());
}

#[test]
fn rendered_plist_parses_with_the_keys_launchd_needs() {
    let state = StateDir::new("/Users/a b/.claude-mesh");
    let bin = "/Users/a b/bin/me&sh<1>";
    let xml = render_launchd(&ServiceSpec::new(bin, state.clone()).env("CLAUDE_MESH_LOG", "debug"))
        .unwrap();
    let value =
        plist::Value::from_reader_xml(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let d = value.as_dictionary().unwrap();
    let s = |k: &str| {
        d.get(k)
            .and_then(|v| v.as_string())
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert_eq!(s("Label"), "com.claude-mesh.daemon");
    let args: Vec<&str> = d["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(args, [bin, "daemon"]);
    let sock = d["Sockets"].as_dictionary().unwrap()["mesh"]
        .as_dictionary()
        .unwrap();
    assert_eq!(
        sock["SockPathName"].as_string().unwrap(),
        "/Users/a b/.claude-mesh/mesh.sock"
    );
    assert_eq!(sock["SockPathMode"].as_signed_integer(), Some(384)); // 0600
    let keep = d["KeepAlive"].as_dictionary().unwrap();
    assert_eq!(keep.len(), 1);
    assert_eq!(keep["SuccessfulExit"].as_boolean(), Some(false));
    assert_eq!(d["RunAtLoad"].as_boolean(), Some(true));
    assert_eq!(s("StandardOutPath"), "/Users/a b/.claude-mesh/mesh.log");
    assert_eq!(s("StandardErrorPath"), "/Users/a b/.claude-mesh/mesh.log");
    let env = d["EnvironmentVariables"].as_dictionary().unwrap();
    assert_eq!(
        env["CLAUDE_MESH_HOME"].as_string(),
        Some("/Users/a b/.claude-mesh")
    );
    assert_eq!(env["CLAUDE_MESH_LOG"].as_string(), Some("debug"));
    assert_eq!(env.len(), 2);
}

#[test]
fn real_user_manager_runs_the_installed_units() {
    let mesh = Mesh::without_daemon();
    let home = mesh.home.path();
    let Some(manager) = UserManager::start_or_skip(home) else {
        return;
    };
    let systemd = SystemdUser::new(home.join(".config/systemd/user"), manager.env.clone());
    systemd.usable().unwrap();
    let spec =
        ServiceSpec::new(mesh_bin(), mesh.state.clone()).env("CLAUDE_MESH_IDLE_TIMEOUT", "2");
    let changes = systemd.install(&render_systemd(&spec).unwrap()).unwrap();
    assert_eq!(changes.written.len(), 2, "{changes:?}");
    assert!(
        changes
            .commands
            .iter()
            .any(|c| c.ends_with("enable --now mesh.socket"))
    );
    // Installed where the client's autostart looks for it.
    let installed = mesh_client::ServiceUnit::find(
        mesh_client::ServiceManager::Systemd,
        Some(home),
        Some(&home.join(".config")),
    );
    assert!(installed.is_some());
    // Idempotent: nothing rewritten, the daemon not bounced.
    assert!(
        systemd
            .install(&render_systemd(&spec).unwrap())
            .unwrap()
            .written
            .is_empty()
    );

    // The socket listens with mode 0600 in a 0700 directory; no daemon yet.
    let meta = fs::metadata(mesh.state.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(mesh.state.root())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(systemd.state("mesh.socket").unwrap(), "active");
    assert_ne!(systemd.state("mesh.service").unwrap(), "active");

    // The first connection starts the service.
    let out = mesh.mesh().args(["list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let pid1 = systemd.main_pid().unwrap().expect("the daemon runs");
    assert_eq!(mesh.conn().ping().unwrap().pid, pid1);

    // Queue a message, let the daemon idle out, and find it again after re-activation.
    let a = mesh.session("alpha");
    let b = mesh.session("beta");
    mesh.conn()
        .send(SendMessage {
            caller: a.caller.clone(),
            to: "beta".into(),
            kind: Kind::Task,
            body: "survive the idle exit".into(),
        })
        .unwrap();
    wait_for("the idle exit", Duration::from_secs(30), || {
        systemd.main_pid().unwrap().is_none()
    });
    assert_eq!(
        systemd.state("mesh.service").unwrap(),
        "inactive",
        "a clean exit, not failed"
    );
    assert_eq!(systemd.state("mesh.socket").unwrap(), "active");
    let inbox = mesh
        .conn()
        .consume(Consume {
            caller: b.caller.clone(),
            class: Class::All,
            peek: false,
            max_bytes: 0,
            handout: 0,
        })
        .unwrap();
    let pid2 = systemd.main_pid().unwrap().expect("re-activated");
    assert_ne!(pid1, pid2);
    assert_eq!(inbox.messages.len(), 1);
    assert_eq!(inbox.messages[0].body, "survive the idle exit");

    // kill -9: Restart=on-failure brings it back by itself (RestartSec=1).
    // SAFETY: plain kill(2) on the daemon the manager started for this test.
    unsafe { libc::kill(pid2 as i32, libc::SIGKILL) };
    wait_for("the restart after kill -9", Duration::from_secs(20), || {
        systemd.main_pid().unwrap().is_some_and(|p| p != pid2)
            && systemd.state("mesh.service").unwrap() == "active"
    });
    let pid3 = systemd.main_pid().unwrap().unwrap();
    assert_eq!(mesh.conn().ping().unwrap().pid, pid3);

    // stop: the daemon exits, the socket stays and starts it again on demand.
    systemd.stop().unwrap();
    assert!(systemd.main_pid().unwrap().is_none());
    assert!(
        mesh.mesh()
            .args(["list"])
            .output()
            .unwrap()
            .status
            .success()
    );
    assert!(systemd.main_pid().unwrap().is_some());

    // Uninstall: units stopped and gone, the socket file removed (RemoveOnStop=yes).
    let changes = systemd.uninstall().unwrap();
    assert_eq!(changes.removed.len(), 2, "{changes:?}");
    assert!(changes.warnings.is_empty(), "{changes:?}");
    assert!(!systemd.is_installed());
    assert!(!mesh.state.socket().exists());
    assert_ne!(systemd.state("mesh.socket").unwrap(), "active");
    assert!(systemd.main_pid().unwrap().is_none());
    let out = manager.systemctl(&["list-unit-files", "mesh.*", "--no-legend"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{}",
        text(&out)
    );
    // Uninstalling again is a no-op.
    assert!(systemd.uninstall().unwrap().removed.is_empty());
}
