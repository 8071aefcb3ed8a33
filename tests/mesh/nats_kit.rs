//! mesh-testkit's NATS harness itself (`mesh_testkit::nats`), against each server flavor found
//! (Debian's 2.9 and upstream 2.15; under CI both must be there): a server starts with
//! JetStream, a restart (graceful or SIGKILL) keeps its store, a three-node cluster names a
//! stream leader and elects another when it is killed, and the recording proxy sees the bytes
//! and can cut the connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use mesh_testkit::nats::{Client, Cluster, Flavor, NatsServer, Tap, flavors, jwt, store_contains};
use mesh_testkit::wait_for;
use serde_json::json;

/// A WorkQueue stream on file storage, like the mesh's mail stream.
fn work_queue(name: &str, subject: &str, replicas: u32) -> serde_json::Value {
    json!({
        "name": name,
        "subjects": [subject],
        "retention": "workqueue",
        "storage": "file",
        "num_replicas": replicas,
        "duplicate_window": 120_000_000_000u64,
    })
}

fn messages(c: &mut Client, stream: &str) -> u64 {
    c.stream_info(stream).unwrap()["state"]["messages"]
        .as_u64()
        .unwrap()
}

#[test]
fn each_flavor_starts_with_jetstream() {
    let found = flavors();
    for (flavor, bin) in &found {
        let server = NatsServer::start(bin);
        let mut c = server.client();
        let version = c.server_version();
        let expect = match flavor {
            Flavor::Debian => "2.9.",
            Flavor::Upstream => "2.15.",
        };
        assert!(
            version.starts_with(expect),
            "{flavor}: {} says version {version}",
            bin.display()
        );
        assert_eq!(c.info()["jetstream"], json!(true), "{flavor}: {}", c.info());
        let info = c.js_request("$JS.API.INFO", b"").unwrap();
        assert!(info.get("error").is_none(), "{flavor}: {info}");
        assert!(server.url().ends_with(&format!(":{}", server.port())));
        assert!(server.log().contains("Server is ready"), "{flavor}");
        // Subscribe and receive, with headers; a second client publishes.
        c.subscribe("kit.sub.*", 2).unwrap();
        c.flush().unwrap();
        let mut other = server.client();
        other
            .publish_with("kit.sub.one", None, &[("X-Kit", "1")], b"hello")
            .unwrap();
        other.flush().unwrap();
        let got = c.next_msg(Duration::from_secs(5)).unwrap();
        assert_eq!(got.subject, "kit.sub.one", "{flavor}");
        assert_eq!(got.payload, b"hello", "{flavor}");
        assert!(got.headers.unwrap().contains("X-Kit: 1"), "{flavor}");
        // Request/reply through the tiny client, and "no responders" as an error.
        let err = c.request("nobody.serves.this", b"x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{flavor}: {err}");
    }
}

#[test]
fn restart_and_kill9_keep_the_store() {
    for (flavor, bin) in flavors() {
        let mut server = NatsServer::start(&bin);
        let port = server.port();
        let mut c = server.client();
        c.create_stream(&work_queue("KIT", "kit.>", 1)).unwrap();
        let ack = c
            .js_publish("kit.a", Some("id-1"), b"marker-persisted-7f3a")
            .unwrap();
        assert_eq!(ack["seq"], json!(1), "{flavor}: {ack}");
        // Dedupe by Nats-Msg-Id.
        let dup = c
            .js_publish("kit.a", Some("id-1"), b"marker-persisted-7f3a")
            .unwrap();
        assert_eq!(dup["duplicate"], json!(true), "{flavor}: {dup}");
        drop(c);

        let old_pid = server.pid();
        server.restart();
        assert_ne!(server.pid(), old_pid);
        assert_eq!(server.port(), port);
        let mut c = server.client();
        assert_eq!(messages(&mut c, "KIT"), 1, "{flavor} after restart");
        c.js_publish("kit.b", None, b"second").unwrap();
        drop(c);

        server.kill9();
        assert!(!server.running());
        assert!(
            TcpStream::connect(server.addr()).is_err(),
            "{flavor}: still accepting"
        );
        server.start_again();
        let mut c = server.client();
        assert_eq!(messages(&mut c, "KIT"), 2, "{flavor} after SIGKILL");
        assert_eq!(c.stream_get("KIT", 1).unwrap(), b"marker-persisted-7f3a");

        let found = store_contains(
            server.store_dir(),
            &["marker-persisted-7f3a", "never-sent-9e1"],
        );
        assert!(
            found.iter().any(|(n, _)| n == "marker-persisted-7f3a"),
            "{flavor}: the payload is not in the store files: {found:?}"
        );
        assert!(
            found
                .iter()
                .all(|(n, p)| n != "never-sent-9e1" && p.starts_with(server.store_dir())),
            "{flavor}: {found:?}"
        );
    }
}

/// The binary of `flavor`, if found (else skipped, or a panic under CI: see `flavors`).
fn flavor_bin(flavor: Flavor) -> Option<std::path::PathBuf> {
    flavors()
        .into_iter()
        .find(|(f, _)| *f == flavor)
        .map(|(_, bin)| bin)
}

// One test per flavor, so that the two clusters (seconds each: a meta leader election at
// start, another election after the kill) run in parallel.
#[test]
fn cluster_names_a_leader_and_elects_another_debian() {
    cluster_names_a_leader_and_elects_another(Flavor::Debian);
}

#[test]
fn cluster_names_a_leader_and_elects_another_upstream() {
    cluster_names_a_leader_and_elects_another(Flavor::Upstream);
}

fn cluster_names_a_leader_and_elects_another(flavor: Flavor) {
    if let Some(bin) = flavor_bin(flavor) {
        let mut cluster = Cluster::start(&bin);
        assert_eq!(cluster.urls().split(',').count(), 3);
        let mut c = cluster.client().unwrap();
        c.create_stream(&work_queue("KITC", "kitc.>", 3)).unwrap();
        for i in 0..20 {
            c.js_publish("kitc.x", Some(&format!("m{i}")), b"clustered")
                .unwrap();
        }
        drop(c);
        let mut leader = None;
        wait_for(
            &format!("{flavor}: a leader for KITC"),
            Duration::from_secs(20),
            || {
                leader = cluster.leader_of("KITC");
                leader.is_some()
            },
        );
        let old = leader.unwrap();
        cluster.server(old).kill9();
        let mut new = None;
        wait_for(
            &format!("{flavor}: a new leader for KITC after n{old} was killed"),
            Duration::from_secs(30),
            || {
                new = cluster.leader_of("KITC").filter(|&n| n != old);
                new.is_some()
            },
        );
        let new = new.unwrap();
        let url = cluster.servers()[new].url();
        let mut c = Client::connect(&url).unwrap();
        assert_eq!(messages(&mut c, "KITC"), 20, "{flavor}: lost messages");
        // The killed one comes back and catches up.
        cluster.server(old).start_again();
        assert!(cluster.server(old).running());
    }
}

#[test]
fn tap_records_the_bytes_and_pauses() {
    let Some((flavor, bin)) = flavors().into_iter().next() else {
        return;
    };
    let server = NatsServer::start(&bin);
    let tap = Tap::start(server.addr());
    let mut c = Client::connect(&tap.url()).unwrap();
    c.publish("tap.subject", b"plaintext-marker-51c").unwrap();
    c.flush().unwrap();
    let seen = tap.bytes();
    let has = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"plaintext-marker-51c"),
        "{flavor}: client to server not recorded"
    );
    assert!(has(b"INFO {"), "{flavor}: server to client not recorded");

    tap.pause();
    assert!(tap.paused());
    // The open connection is closed, and new ones are refused.
    let mut raw = c;
    let err = raw.flush().unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{flavor}: {err}"
    );
    wait_for("the tap's port to refuse", Duration::from_secs(5), || {
        match TcpStream::connect(tap.addr()) {
            Err(_) => true,
            // Accepted by a listener about to close: it must not reach the server.
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut b = [0u8; 1];
                matches!(s.read(&mut b), Ok(0))
            }
        }
    });
    assert!(Client::connect(&tap.url()).is_err());

    tap.resume();
    let mut c = None;
    wait_for("the tap to accept again", Duration::from_secs(5), || {
        c = Client::connect(&tap.url()).ok();
        c.is_some()
    });
    let mut c = c.unwrap();
    c.publish("tap.subject", b"after-resume-77d").unwrap();
    c.flush().unwrap();
    let seen = tap.bytes();
    assert!(seen.windows(16).any(|w| w == b"after-resume-77d"));
}

#[test]
fn with_config_applies_the_file() {
    for (flavor, bin) in flavors() {
        let conf = r#"
authorization {
  users = [
    { user: "alice", password: "s3cret", permissions: { publish: { deny: ["forbidden.>"] } } }
  ]
}
"#;
        let server = NatsServer::with_config(&bin, conf);
        let err = Client::connect(&server.url()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{flavor}: {err}");
        assert!(Client::connect_user(&server.url(), "alice", "wrong").is_err());
        let mut c = Client::connect_user(&server.url(), "alice", "s3cret").unwrap();
        // JetStream is on (from the command line) under the file's settings.
        let info = c.js_request("$JS.API.INFO", b"").unwrap();
        assert!(info.get("error").is_none(), "{flavor}: {info}");
        c.publish("forbidden.x", b"no").unwrap();
        let err = c.flush().unwrap_err();
        assert!(
            err.to_string().contains("Permissions Violation"),
            "{flavor}: {err}"
        );
    }
}

/// The operator-mode setup (`nats::jwt`): a server trusting the operator takes its users'
/// `.creds` (JetStream on for their account), refuses a user of another operator's account, a
/// revoked user and an expired one, and enforces the permissions a user JWT carries.
#[test]
fn operator_mode_takes_creds_and_refuses_foreign_revoked_and_expired_users() {
    assert_eq!(jwt::base64url(b"foobar"), "Zm9vYmFy");
    assert_eq!(jwt::base64url(b"fooba"), "Zm9vYmE");
    assert_eq!(jwt::base64url(&[0xfb, 0xff]), "-_8");
    for (flavor, bin) in flavors() {
        let mut op = jwt::Operator::new();
        let alice = op.user("alice");
        let revoked = op.user("revoked");
        op.revoke(&revoked);
        let expired = op.user_with(
            "expired",
            &jwt::UserSpec {
                expires: Some(jwt::now_secs() - 60),
                ..Default::default()
            },
        );
        let narrow = op.user_with(
            "narrow",
            &jwt::UserSpec {
                permissions: Some(jwt::Permissions {
                    publish: vec!["ok.>".into()],
                    subscribe: vec!["_INBOX.>".into()],
                }),
                ..Default::default()
            },
        );
        let server = NatsServer::with_config(&bin, &op.server_config());
        let url = server.url();

        let mut c = Client::connect_creds(&url, &alice).unwrap();
        let info = c.js_request("$JS.API.INFO", b"").unwrap();
        assert!(info.get("error").is_none(), "{flavor}: {info}");
        c.create_stream(&work_queue("JWTQ", "jwt.q", 1)).unwrap();
        c.js_publish("jwt.q", None, b"stored").unwrap();
        assert_eq!(messages(&mut c, "JWTQ"), 1, "{flavor}");

        // No credentials, another operator's user, a revoked and an expired one: refused.
        let other = jwt::Operator::new().user("alice");
        assert!(Client::connect(&url).is_err(), "{flavor}: anonymous");
        for (what, creds) in [
            ("foreign", &other),
            ("revoked", &revoked),
            ("expired", &expired),
        ] {
            let err = Client::connect_creds(&url, creds).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::PermissionDenied,
                "{flavor} {what}: {err}"
            );
            assert!(
                err.to_string().contains("Authorization Violation"),
                "{flavor} {what}: {err}"
            );
        }
        // A user's seed that does not match its JWT cannot sign for it.
        let forged = jwt::Creds {
            seed: alice.seed.clone(),
            ..narrow.clone()
        };
        assert!(Client::connect_creds(&url, &forged).is_err(), "{flavor}");

        // The user JWT's permissions hold.
        let mut n = Client::connect_creds(&url, &narrow).unwrap();
        n.publish("ok.fine", b"yes").unwrap();
        n.flush().unwrap();
        n.publish("elsewhere", b"no").unwrap();
        let err = n.flush().unwrap_err();
        assert!(
            err.to_string().contains("Permissions Violation"),
            "{flavor}: {err}"
        );
    }
}

/// A user revoked on a running operator-mode server (the account JWT reloaded) is cut off at
/// once and refused from then on; another user of the account is not, and JetStream stays on.
#[test]
fn revoking_a_connected_user_cuts_it_off() {
    for (flavor, bin) in flavors() {
        let mut op = jwt::Operator::new();
        let alice = op.user("alice");
        let bob = op.user("bob");
        let mut server = NatsServer::with_config(&bin, &op.server_config());
        let mut a = Client::connect_creds(&server.url(), &alice).unwrap();
        let mut b = Client::connect_creds(&server.url(), &bob).unwrap();
        a.publish("x", b"before").unwrap();
        a.flush().unwrap();
        op.revoke(&alice);
        server.reload(&op.server_config());
        let err = a.flush().unwrap_err();
        assert!(
            err.to_string().contains("User Authentication Revoked"),
            "{flavor}: {err}"
        );
        let err = Client::connect_creds(&server.url(), &alice).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{flavor}: {err}");
        b.publish("x", b"after").unwrap();
        b.flush().unwrap();
        // JetStream is still on after the reload (2.9 shuts it down unless the file says so).
        let info = b.js_request("$JS.API.INFO", b"").unwrap();
        assert!(info.get("error").is_none(), "{flavor}: {info}");
    }
}
