//! The mesh across machines from the command line, on one machine: `mesh join` / `mesh leave`
//! (the files they write, the daemon they restart, what they refuse), `mesh keys`, `mesh list
//! --scope machine|mesh`, `list_peers`' scope and `mesh health`'s `federation` lines. Always the
//! real `mesh` binary and a real daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use mesh_daemon::federation::config::{self, FederationConfig};
use mesh_daemon::federation::keys::DeviceKey;
use mesh_testkit::mcp::Mcp;
use mesh_testkit::nats::{Flavor, NatsServer};
use mesh_testkit::{Mesh, wait_for};

use crate::lifecycle::{Reaper, daemons_of};

fn text(out: &Output) -> String {
    mesh_testkit::output_text(out)
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(out));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// The cells of the table row whose first cell is `name` (names have no spaces).
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name}: {table}"))
}

#[test]
fn list_on_a_machine_outside_any_mesh_has_a_host_column_and_no_remote_rows() {
    let mesh = Mesh::start();
    let _api = mesh.session("api");
    let _web = mesh.session("web");
    for scope in ["machine", "mesh"] {
        let table = stdout(
            &mesh
                .mesh()
                .args(["list", "--scope", scope])
                .output()
                .unwrap(),
        );
        let header = row(&table, "NAME");
        assert_eq!(header[1], "HOST", "{table}");
        for name in ["api", "web"] {
            let cells = row(&table, name);
            assert_eq!(cells[1], "-", "not joined: no host: {table}");
        }
        assert_eq!(table.lines().count(), 3, "{table}");
        let out = mesh
            .mesh()
            .args(["list", "--scope", scope])
            .output()
            .unwrap();
        let note = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            note.contains("not part of a mesh"),
            scope == "mesh",
            "{scope}: {note}"
        );

        let doc = json(
            &mesh
                .mesh()
                .args(["list", "--scope", scope, "--json"])
                .output()
                .unwrap(),
        );
        assert_eq!(doc["scope"], scope, "{doc:#}");
        let sessions = doc["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 2, "{doc:#}");
        for s in sessions {
            assert!(s["host"].is_null(), "{doc:#}");
            assert_eq!(s["remote"], false, "{doc:#}");
            assert!(
                s["pid"].as_u64().is_some(),
                "the local fields stay: {doc:#}"
            );
        }
    }
    // The scopes that existed before still work, and still have their own names.
    let doc = json(
        &mesh
            .mesh()
            .args(["list", "--scope", "repo", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(doc["scope"], "repo", "{doc:#}");
    let out = mesh
        .mesh()
        .args(["list", "--scope", "galaxy"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn config_path(mesh: &Mesh) -> std::path::PathBuf {
    mesh.state.root().join(config::FILE)
}

fn key_path(mesh: &Mesh) -> std::path::PathBuf {
    FederationConfig::key_path(mesh.state.root())
}

/// `mesh <args> --json`, which must succeed.
fn ok_json(mesh: &Mesh, args: &[&str]) -> serde_json::Value {
    let out = mesh.mesh().args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    json(&out)
}

#[test]
fn join_writes_both_files_0600_restarts_the_daemon_and_a_second_join_keeps_the_key() {
    let mut mesh = Mesh::start();
    let old_pid = mesh.daemon_pid();
    let mut old_daemon = mesh.daemon.take().unwrap();
    let _reaper = Reaper(&mesh);

    let doc = ok_json(
        &mesh,
        &[
            "join",
            "nats://127.0.0.1:4222",
            "--host",
            "laptop",
            "--team",
            "alpha",
        ],
    );
    assert_eq!(doc["host"], "laptop", "{doc:#}");
    assert_eq!(doc["team"], "alpha", "{doc:#}");
    assert_eq!(doc["url"], "nats://127.0.0.1:4222", "{doc:#}");
    assert_eq!(doc["key_created"], true, "{doc:#}");
    assert_eq!(doc["rejoined"], false, "{doc:#}");
    assert_eq!(doc["restarted"], true, "{doc:#}");
    // The old daemon was stopped (cleanly) and another one runs.
    assert!(old_daemon.wait().unwrap().success());
    let new_pid = doc["daemon_pid"].as_u64().unwrap() as u32;
    assert_ne!(new_pid, old_pid);
    assert_eq!(daemons_of(&mesh), vec![new_pid]);

    // Both files, 0600, with what was asked.
    assert_eq!(mode(&config_path(&mesh)), 0o600);
    assert_eq!(mode(&key_path(&mesh)), 0o600);
    let config = FederationConfig::load(mesh.state.root()).unwrap().unwrap();
    assert_eq!(
        (
            config.url.as_str(),
            config.host.as_str(),
            config.team.as_str()
        ),
        ("nats://127.0.0.1:4222", "laptop", "alpha")
    );
    let key = DeviceKey::load(&key_path(&mesh)).unwrap();
    assert_eq!(doc["fingerprint"], key.fingerprint().to_string(), "{doc:#}");
    assert_eq!(doc["device_id"], key.device_id().to_string(), "{doc:#}");
    let key_bytes = std::fs::read(key_path(&mesh)).unwrap();

    // Again, with other values: the file is rewritten, the key kept, the changes named.
    let out = mesh
        .mesh()
        .args([
            "join",
            "nats://127.0.0.1:4333",
            "--host",
            "laptop",
            "--team",
            "beta",
        ])
        .output()
        .unwrap();
    let said = stdout(&out);
    assert!(
        said.contains("changed url: nats://127.0.0.1:4222 -> nats://127.0.0.1:4333"),
        "{said}"
    );
    assert!(said.contains("changed team: alpha -> beta"), "{said}");
    assert!(said.contains("kept this device's key"), "{said}");
    assert!(said.contains(&key.fingerprint().to_string()), "{said}");
    assert!(
        said.contains("mesh keys") && said.contains("mesh health"),
        "{said}"
    );
    assert_eq!(std::fs::read(key_path(&mesh)).unwrap(), key_bytes);
    let config = FederationConfig::load(mesh.state.root()).unwrap().unwrap();
    assert_eq!(
        (config.url.as_str(), config.team.as_str()),
        ("nats://127.0.0.1:4333", "beta")
    );
    assert_eq!(daemons_of(&mesh).len(), 1, "one daemon after the restart");

    // Once more with the url alone: host and team stay what they were.
    let said = stdout(
        &mesh
            .mesh()
            .args(["join", "nats://127.0.0.1:4333"])
            .output()
            .unwrap(),
    );
    assert!(
        said.contains("joined before with the same settings"),
        "{said}"
    );
    assert!(said.contains("as host laptop, team beta"), "{said}");
}

#[test]
fn join_with_no_daemon_running_starts_one_and_takes_files_as_absolute_paths() {
    let mesh = Mesh::without_daemon();
    let _reaper = Reaper(&mesh);
    assert!(daemons_of(&mesh).is_empty());
    let creds = mesh.home.path().join("laptop.creds");
    mesh_testkit::nats::jwt::Operator::new()
        .user("laptop")
        .write(&creds)
        .unwrap();
    let out = mesh
        .mesh()
        .current_dir(mesh.home.path())
        .args([
            "join",
            "nats://127.0.0.1:4222",
            "--creds",
            "laptop.creds",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["restarted"], false, "none ran: {doc:#}");
    let pid = doc["daemon_pid"].as_u64().unwrap() as u32;
    assert_eq!(daemons_of(&mesh), vec![pid]);
    let config = FederationConfig::load(mesh.state.root()).unwrap().unwrap();
    assert_eq!(config.creds.as_deref(), Some(creds.as_path()));
    // The default host: this machine's short host name.
    assert_eq!(
        config.host,
        mesh_daemon::federation::config::short_hostname()
    );
    assert_eq!(config.team, "default");

    // A password in the url is kept in the file, never printed.
    let out = mesh
        .mesh()
        .args(["join", "nats://me:s3cret@127.0.0.1:4222", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        json(&out)["url"],
        "nats://***@127.0.0.1:4222",
        "{}",
        text(&out)
    );
    let config = FederationConfig::load(mesh.state.root()).unwrap().unwrap();
    assert_eq!(config.url, "nats://me:s3cret@127.0.0.1:4222");
    let out = mesh
        .mesh()
        .args(["join", "nats://me:0ther@127.0.0.1:4222"])
        .output()
        .unwrap();
    assert!(
        !text(&out).contains("s3cret") && !text(&out).contains("0ther"),
        "{}",
        text(&out)
    );
    let out = mesh.mesh().args(["health", "--json"]).output().unwrap();
    assert!(!text(&out).contains("0ther"), "{}", text(&out));
    assert!(text(&out).contains("***@127.0.0.1:4222"), "{}", text(&out));
}

#[test]
fn leave_removes_the_config_keeps_the_key_and_leaving_twice_is_fine() {
    let mesh = Mesh::start();
    let _reaper = Reaper(&mesh);
    ok_json(
        &mesh,
        &["join", "nats://127.0.0.1:4222", "--host", "laptop"],
    );
    let key_bytes = std::fs::read(key_path(&mesh)).unwrap();

    let doc = ok_json(&mesh, &["leave"]);
    assert_eq!(doc["left"], true, "{doc:#}");
    assert_eq!(doc["restarted"], true, "{doc:#}");
    assert_eq!(
        doc["key"],
        key_path(&mesh).to_string_lossy().as_ref(),
        "{doc:#}"
    );
    assert!(!config_path(&mesh).exists());
    assert_eq!(std::fs::read(key_path(&mesh)).unwrap(), key_bytes);
    assert_eq!(daemons_of(&mesh).len(), 1);

    let said = stdout(&mesh.mesh().arg("leave").output().unwrap());
    assert!(said.contains("nothing to leave"), "{said}");
    assert!(
        said.contains("kept this device's key") && said.contains("rm "),
        "{said}"
    );
    let doc = ok_json(&mesh, &["leave"]);
    assert_eq!(
        (doc["left"].as_bool(), doc["restarted"].as_bool()),
        (Some(false), Some(false))
    );

    // Joining again: the same identity.
    let doc = ok_json(
        &mesh,
        &["join", "nats://127.0.0.1:4222", "--host", "laptop"],
    );
    assert_eq!(doc["key_created"], false, "{doc:#}");
    assert_eq!(std::fs::read(key_path(&mesh)).unwrap(), key_bytes);
}

#[test]
fn join_refuses_bad_input_with_exit_7_and_changes_nothing() {
    let mesh = Mesh::start();
    let pid = mesh.daemon_pid();
    let missing = mesh.home.path().join("nowhere.creds");
    let missing = missing.to_str().unwrap();
    let dir = mesh.home.path().to_str().unwrap();
    // Files that exist but cannot work: the join refuses them rather than a daemon that then
    // fails every connection.
    let file = |name: &str, content: &[u8]| {
        let path = mesh.home.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let half_creds = file("half.creds", b"-----BEGIN NATS USER JWT-----\n");
    let seedless = file(
        "seedless.creds",
        b"-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n------END NATS USER JWT------\n",
    );
    let not_seed = file("not.nk", b"SUnot-a-seed\n");
    let account_seed = file(
        "account.nk",
        b"SAAJ6SJ7CAMS2AQBDJQVLVDTHDEQIXTZMQ3KOT4UIHQ2C7GM6DVMHNAVM4\n",
    );
    let huge = file("huge.creds", &vec![b'x'; 65 * 1024]);
    let binary = file("binary.nk", &[0xff, 0xfe, 0x00, 0x01]);
    let no_pem = file("ca.pem", b"this is not a certificate\n");
    let cases: [(&[&str], &str); 13] = [
        (
            &["nats://127.0.0.1:4222", "--host", "my laptop"],
            "my laptop",
        ),
        (&["nats://127.0.0.1:4222", "--host=-x"], "-x"),
        (&["nats://127.0.0.1:4222", "--team", "a/b"], "a/b"),
        (&["http://127.0.0.1:4222"], "http://127.0.0.1:4222"),
        (
            &["nats://127.0.0.1:4222", "--creds", missing],
            "nowhere.creds",
        ),
        (&["nats://127.0.0.1:4222", "--tls-ca", dir], "--tls-ca"),
        (
            &["nats://127.0.0.1:4222", "--creds", &half_creds],
            "half.creds",
        ),
        (&["nats://127.0.0.1:4222", "--creds", &seedless], "seed"),
        (
            &["nats://127.0.0.1:4222", "--nkey", &not_seed],
            "not a valid nkey seed",
        ),
        (
            &["nats://127.0.0.1:4222", "--nkey", &account_seed],
            "not a user nkey seed",
        ),
        (
            &["nats://127.0.0.1:4222", "--creds", &huge],
            "over 65536 bytes",
        ),
        (&["nats://127.0.0.1:4222", "--nkey", &binary], "not text"),
        (
            &["nats://127.0.0.1:4222", "--tls-ca", &no_pem],
            "no PEM certificate",
        ),
    ];
    for (args, named) in cases {
        let out = mesh.mesh().arg("join").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(named),
            "{args:?}: the message names the culprit: {err}"
        );
        let out = mesh
            .mesh()
            .arg("join")
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7), "{args:?}: {}", text(&out));
        assert_eq!(
            json(&out)["error"]["code"],
            "invalid_argument",
            "{}",
            text(&out)
        );
    }
    assert!(!config_path(&mesh).exists());
    assert!(!key_path(&mesh).exists());
    assert_eq!(mesh.conn().daemon_pid(), pid, "not restarted");

    // A device key others can read is not used, and not replaced: nothing is written.
    std::fs::write(key_path(&mesh), [7u8; 32]).unwrap();
    std::fs::set_permissions(key_path(&mesh), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = mesh
        .mesh()
        .args(["join", "nats://127.0.0.1:4222"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!config_path(&mesh).exists());
    assert_eq!(std::fs::read(key_path(&mesh)).unwrap(), [7u8; 32]);
    assert_eq!(mesh.conn().daemon_pid(), pid, "not restarted");
}

#[test]
fn keys_shows_the_fingerprint_of_the_key_file() {
    let mesh = Mesh::start();
    let _reaper = Reaper(&mesh);
    // Outside a mesh: no key yet.
    let doc = ok_json(&mesh, &["keys"]);
    assert_eq!(doc["joined"], false, "{doc:#}");
    assert!(doc["fingerprint"].is_null(), "{doc:#}");
    let said = stdout(&mesh.mesh().arg("keys").output().unwrap());
    assert!(
        said.contains("not part of a mesh") && said.contains("mesh join"),
        "{said}"
    );

    ok_json(
        &mesh,
        &[
            "join",
            "nats://127.0.0.1:4222",
            "--host",
            "laptop",
            "--team",
            "t1",
        ],
    );
    let key = DeviceKey::load(&key_path(&mesh)).unwrap();
    let fingerprint = key.fingerprint().to_string();
    let doc = ok_json(&mesh, &["keys"]);
    assert_eq!(doc["joined"], true, "{doc:#}");
    assert_eq!(doc["fingerprint"], fingerprint.as_str(), "{doc:#}");
    assert_eq!(doc["device_id"], key.device_id().to_string(), "{doc:#}");
    assert_eq!(doc["host"], "laptop", "{doc:#}");
    assert!(doc["hosts"].is_array(), "the daemon answered: {doc:#}");
    assert!(doc["daemon_joined"].is_boolean(), "{doc:#}");
    let said = stdout(&mesh.mesh().arg("keys").output().unwrap());
    assert!(said.contains(&fingerprint), "{said}");
    assert!(said.contains("laptop (team t1)"), "{said}");

    // A fingerprint that is not one: bad input, before the daemon is asked.
    let out = mesh
        .mesh()
        .args(["keys", "trust", "ci", "not-a-fingerprint", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        json(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fingerprint")
    );
}

#[test]
fn keys_trust_outside_a_mesh_is_refused() {
    let mesh = Mesh::start();
    let out = mesh
        .mesh()
        .args(["keys", "trust", "ci", &"ab".repeat(32)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mesh join"), "{err}");
}

/// `mesh health --json`'s checks whose name starts with `federation`.
pub(crate) fn federation_checks(mesh: &Mesh) -> Vec<serde_json::Value> {
    let out = mesh.mesh().args(["health", "--json"]).output().unwrap();
    let doc = json(&out);
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with("federation"))
        .cloned()
        .collect()
}

#[test]
fn health_has_one_federation_line_outside_a_mesh_and_checks_the_files_inside() {
    let mesh = Mesh::start();
    let _reaper = Reaper(&mesh);
    let checks = federation_checks(&mesh);
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert_eq!(checks[0]["name"], "federation");
    assert_eq!(checks[0]["level"], "ok");
    assert_eq!(checks[0]["detail"], "not joined (local only)");
    let said = String::from_utf8(mesh.mesh().arg("health").output().unwrap().stdout).unwrap();
    assert!(
        said.lines().any(|l| l.starts_with("ok")
            && l.contains("federation")
            && l.contains("not joined (local only)")),
        "{said}"
    );

    // Joined to a server that is not there: the files are fine, the server is not.
    ok_json(&mesh, &["join", "nats://127.0.0.1:9", "--host", "laptop"]);
    let checks = federation_checks(&mesh);
    let get = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {checks:#?}"))
            .clone()
    };
    let config = get("federation.config");
    assert_eq!(config["level"], "ok", "{checks:#?}");
    assert!(
        config["detail"].as_str().unwrap().contains("laptop"),
        "{checks:#?}"
    );
    let server = get("federation.server");
    assert_ne!(server["level"], "ok", "nothing listens there: {checks:#?}");
    assert!(server["fix"].is_string(), "{checks:#?}");

    // A key others can read fails, with the fix.
    std::fs::set_permissions(key_path(&mesh), std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = federation_checks(&mesh)
        .into_iter()
        .find(|c| c["name"] == "federation.config")
        .unwrap();
    assert_eq!(config["level"], "fail", "{config:#}");
    assert!(
        config["detail"].as_str().unwrap().contains("chmod 600"),
        "{config:#}"
    );

    // The file gone while the daemon still runs joined: one line, a warning, `mesh restart`.
    std::fs::remove_file(config_path(&mesh)).unwrap();
    let checks = federation_checks(&mesh);
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert_eq!(checks[0]["name"], "federation", "{checks:#?}");
    assert_eq!(checks[0]["level"], "warn", "{checks:#?}");
    assert_eq!(checks[0]["fix"], "mesh restart", "{checks:#?}");
}

#[test]
fn keys_shows_this_devices_fingerprint_when_no_daemon_answers() {
    let mesh = Mesh::start();
    let reaper = Reaper(&mesh);
    ok_json(&mesh, &["join", "nats://127.0.0.1:9", "--host", "laptop"]);
    drop(reaper);
    wait_for("the daemon to be killed", Duration::from_secs(10), || {
        daemons_of(&mesh).is_empty()
    });
    // Something that is not a daemon holds the socket: none can be reached or started.
    let _ = std::fs::remove_file(mesh.state.socket());
    let _squatter = std::os::unix::net::UnixListener::bind(mesh.state.socket()).unwrap();
    let fingerprint = DeviceKey::load(&key_path(&mesh))
        .unwrap()
        .fingerprint()
        .to_string();
    let out = mesh.mesh().args(["keys", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["fingerprint"], fingerprint.as_str(), "{doc:#}");
    assert!(doc["hosts"].is_null(), "{doc:#}");
    assert!(doc["daemon_error"].is_string(), "{doc:#}");
    let out = mesh.mesh().arg("keys").output().unwrap();
    assert!(stdout(&out).contains(&fingerprint), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot list the other hosts"), "{err}");
    assert!(daemons_of(&mesh).is_empty(), "no daemon was started");
}

/// The check `name` of `mesh health --json`, if it ran.
pub(crate) fn check(mesh: &Mesh, name: &str) -> Option<serde_json::Value> {
    federation_checks(mesh)
        .into_iter()
        .find(|c| c["name"] == name)
}

/// `mesh keys --json`'s entry for `host`, if the daemon knows it.
fn known_host(mesh: &Mesh, host: &str) -> Option<serde_json::Value> {
    let doc = ok_json(mesh, &["keys"]);
    doc["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
}

fn fingerprint_of(mesh: &Mesh) -> String {
    DeviceKey::load(&key_path(mesh))
        .unwrap()
        .fingerprint()
        .to_string()
}

const ACROSS: Duration = Duration::from_secs(30);

/// Two daemons (two HOMEs, hosts `a` and `b`) joined to one real nats-server, per server
/// flavor: `mesh keys` shows each other's fingerprint as the key files hold it, `mesh health`'s
/// federation lines are all ok, `mesh list --scope mesh` and `list_peers` show the other
/// machine's session with its host; then b gets a new key: a's health fails naming b and both
/// fingerprints, `mesh keys` shows it refused, and `mesh keys trust` accepts it.
#[test]
fn keys_health_and_list_across_two_daemons_on_a_real_nats_server() {
    for (flavor, bin) in mesh_testkit::nats::flavors() {
        eprintln!("nats-server {flavor}: {}", bin.display());
        let nats = NatsServer::start(&bin);
        let url = nats.url();
        let a = Mesh::start();
        let _reap_a = Reaper(&a);
        let b = Mesh::start();
        let _reap_b = Reaper(&b);
        ok_json(&a, &["join", &url, "--host", "a", "--team", "crew"]);
        ok_json(&b, &["join", &url, "--host", "b", "--team", "crew"]);
        let (fa, fb) = (fingerprint_of(&a), fingerprint_of(&b));

        // Each sees the other's key, as the other's key file holds it.
        for (me, other, theirs) in [(&a, "b", &fb), (&b, "a", &fa)] {
            wait_for("the other host's key", ACROSS, || {
                known_host(me, other).is_some()
            });
            let h = known_host(me, other).unwrap();
            assert_eq!(h["fingerprint"], theirs.as_str(), "{flavor}: {h:#}");
            assert_eq!(h["trusted"], true, "{flavor}: {h:#}");
            let said = stdout(&me.mesh().arg("keys").output().unwrap());
            assert!(said.contains(theirs.as_str()), "{flavor}: {said}");
        }
        let doc = ok_json(&a, &["keys"]);
        assert_eq!(doc["daemon_joined"], true, "{flavor}: {doc:#}");
        assert_eq!(doc["fingerprint"], fa.as_str(), "{flavor}: {doc:#}");

        // Health: every federation line ok once the daemon is connected.
        wait_for("a's federation checks to pass", ACROSS, || {
            federation_checks(&a).iter().all(|c| c["level"] == "ok")
        });
        let checks = federation_checks(&a);
        let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "federation.config",
                "federation.server",
                "federation.jetstream",
                "federation.features",
                "federation.streams",
                "federation.keys",
                "federation.outbox"
            ],
            "{flavor}: {checks:#?}"
        );
        let detail = |name: &str| {
            checks.iter().find(|c| c["name"] == name).unwrap()["detail"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(
            detail("federation.server").contains(&url),
            "{flavor}: {checks:#?}"
        );
        let version = detail("federation.features");
        let expected = match flavor {
            Flavor::Debian => "server 2.9",
            Flavor::Upstream => "server 2.1",
        };
        assert!(version.contains(expected), "{flavor}: {version}");
        assert!(
            detail("federation.streams").contains("_MAIL"),
            "{flavor}: {checks:#?}"
        );
        let keys = detail("federation.keys");
        assert!(
            keys.contains(&fa) && keys.contains("b ("),
            "{flavor}: {keys}"
        );

        // b's session appears on a, with b's host.
        let _api = b.session("api");
        // On b itself: b's own host in the HOST column and in `host`.
        let doc = ok_json(&b, &["list"]);
        assert_eq!(doc["sessions"][0]["host"], "b", "{flavor}: {doc:#}");
        assert_eq!(doc["sessions"][0]["remote"], false, "{flavor}: {doc:#}");
        let table = stdout(&b.mesh().arg("list").output().unwrap());
        assert_eq!(row(&table, "api")[1], "b", "{flavor}: {table}");
        wait_for("b's session in a's list", ACROSS, || {
            let doc = ok_json(&a, &["list", "--scope", "mesh"]);
            doc["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["address"] == "api@b" && s["host"] == "b" && s["remote"] == true)
        });
        let table = stdout(&a.mesh().args(["list", "--scope", "mesh"]).output().unwrap());
        assert_eq!(row(&table, "api")[1], "b", "{flavor}: {table}");
        let doc = ok_json(&a, &["list", "--scope", "machine"]);
        assert!(
            doc["sessions"].as_array().unwrap().is_empty(),
            "{flavor}: {doc:#}"
        );
        let mut mcp = Mcp::started(&a);
        let peers = mcp.call("list_peers", serde_json::json!({"scope": "mesh"}));
        assert_eq!(peers["host"], "a", "{flavor}: {peers}");
        assert!(
            peers["peers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "api@b" && p["host"] == "b"),
            "{flavor}: {peers}"
        );
        drop(mcp);

        // b starts over with a new key under the same host name: refused on a until trusted.
        ok_json(&b, &["leave"]);
        std::fs::remove_file(key_path(&b)).unwrap();
        let doc = ok_json(&b, &["join", &url, "--host", "b", "--team", "crew"]);
        assert_eq!(doc["key_created"], true, "{flavor}: {doc:#}");
        let fb2 = fingerprint_of(&b);
        assert_ne!(fb2, fb);
        wait_for("a to refuse b's new key", ACROSS, || {
            check(&a, "federation.keys").is_some_and(|c| c["level"] == "fail")
        });
        let keys = check(&a, "federation.keys").unwrap();
        let said = keys["detail"].as_str().unwrap();
        assert!(
            said.contains("host b") && said.contains(&fb) && said.contains(&fb2),
            "{flavor}: {keys:#}"
        );
        let fix = format!("mesh keys trust b {fb2}");
        assert!(
            keys["fix"].as_str().unwrap().contains(&fix),
            "{flavor}: {keys:#}"
        );
        let h = known_host(&a, "b").unwrap();
        assert_eq!(h["trusted"], false, "{flavor}: {h:#}");
        assert_eq!(h["offered_fingerprint"], fb2.as_str(), "{flavor}: {h:#}");
        let said = stdout(&a.mesh().arg("keys").output().unwrap());
        assert!(
            said.contains("REFUSED") && said.contains(&fix),
            "{flavor}: {said}"
        );

        // Not the key b offers, or a host nobody announced: refused, nothing changes.
        let out = a.mesh().args(["keys", "trust", "b", &fa]).output().unwrap();
        assert_eq!(out.status.code(), Some(7), "{flavor}: {}", text(&out));
        let out = a
            .mesh()
            .args(["keys", "trust", "zeta", &fb2])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "{flavor}: {}", text(&out));
        assert_eq!(known_host(&a, "b").unwrap()["trusted"], false);

        // Accepted as printed.
        let doc = ok_json(&a, &["keys", "trust", "b", &fb2]);
        assert_eq!(doc["changed"], true, "{flavor}: {doc:#}");
        assert_eq!(
            doc["previous_fingerprint"],
            fb.as_str(),
            "{flavor}: {doc:#}"
        );
        assert_eq!(doc["fingerprint"], fb2.as_str(), "{flavor}: {doc:#}");
        let h = known_host(&a, "b").unwrap();
        assert_eq!(
            (h["trusted"].as_bool(), h["fingerprint"].as_str()),
            (Some(true), Some(fb2.as_str())),
            "{flavor}: {h:#}"
        );
        assert_eq!(check(&a, "federation.keys").unwrap()["level"], "ok");
    }
}
