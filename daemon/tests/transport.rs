//! The NATS transport against a real `nats-server` (Debian's 2.9.10, from /usr/sbin,
//! /usr/bin or PATH, and the one `CLAUDE_MESH_TEST_NATS_UPSTREAM` names, e.g. 2.15, when set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_daemon::federation::transport::{
    ConnectOptions, PresenceStream, StreamPlan, Transport, TransportError, stream_names,
};

const TEAM: &str = "0123456789abcdef";
const DEV_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const DEV_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const DEV_C: &str = "cccccccccccccccccccccccccccccccc";
const DEV_D: &str = "dddddddddddddddddddddddddddddddd";

/// The servers to run every test against.
fn servers() -> Vec<PathBuf> {
    let debian = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let mut out = vec![debian];
    if let Some(up) = std::env::var_os("CLAUDE_MESH_TEST_NATS_UPSTREAM") {
        out.push(PathBuf::from(up));
    }
    out
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A nats-server with JetStream on 127.0.0.1, its store in a temp dir.
struct Nats {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Nats {
    fn start(bin: &Path) -> Nats {
        Nats::start_with(bin, &[])
    }

    fn start_with(bin: &Path, extra: &[&str]) -> Nats {
        let mut n = Nats {
            bin: bin.to_path_buf(),
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["-js", "-sd"])
            .arg(self.dir.path().join("js"))
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn opts(&self) -> ConnectOptions {
        ConnectOptions {
            url: self.url(),
            name: "transport-test".into(),
            ..Default::default()
        }
    }

    async fn transport(&self) -> Transport {
        let t = Transport::connect(&self.opts()).await.unwrap();
        t.ensure_streams(&StreamPlan {
            team: TEAM.into(),
            replicas: None,
        })
        .await
        .unwrap();
        t
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `cond` until it holds (or fails the test after 30 s).
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn mail_count(t: &Transport) -> u64 {
    let states = t.stream_states(TEAM).await;
    states[0].2
}

#[tokio::test]
async fn connect_and_facts() {
    for bin in servers() {
        let nats = Nats::start(&bin);
        let t = Transport::connect(&nats.opts()).await.unwrap();
        assert!(t.is_connected());
        let facts = t.server_facts();
        assert!(facts.jetstream, "{facts:?}");
        assert_eq!(facts.cluster_size, 1, "{facts:?}");
        // `nats-server: v2.9.10`
        let out = Command::new(&bin).arg("--version").output().unwrap();
        let said = String::from_utf8(out.stdout).unwrap();
        let said = said.trim().rsplit('v').next().unwrap().to_string();
        assert_eq!(facts.version, said);
        if said.starts_with("2.9.") {
            assert_eq!(facts.version, "2.9.10");
            assert!(facts.features.is_empty(), "{facts:?}");
        } else {
            assert!(facts.features.contains(&"per-message-ttl"), "{facts:?}");
        }
    }
}

#[tokio::test]
async fn connect_to_a_closed_port_says_unreachable() {
    let port = free_port(); // bound then released: nobody listens there
    let opts = ConnectOptions {
        url: format!("nats://127.0.0.1:{port}"),
        ..Default::default()
    };
    let started = Instant::now();
    let err = Transport::connect(&opts).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn user_and_password_in_the_url() {
    for bin in servers() {
        let nats = Nats::start_with(&bin, &["--user", "mesh", "--pass", "s3cret"]);
        let good = ConnectOptions {
            url: format!("nats://mesh:s3cret@127.0.0.1:{}", nats.port),
            ..Default::default()
        };
        let t = Transport::connect(&good).await.unwrap();
        assert!(t.is_connected());

        let bad = ConnectOptions {
            url: format!("nats://mesh:wrong@127.0.0.1:{}", nats.port),
            ..Default::default()
        };
        let err = Transport::connect(&bad).await.unwrap_err();
        assert!(matches!(err, TransportError::AuthRefused { .. }), "{err:?}");
        assert!(!err.to_string().contains("wrong"), "password shown: {err}");
    }
}

#[tokio::test]
async fn ensure_streams_is_idempotent_and_updates() {
    for bin in servers() {
        let nats = Nats::start(&bin);
        let t = nats.transport().await;
        let plan = StreamPlan {
            team: TEAM.into(),
            replicas: None,
        };
        t.ensure_streams(&plan).await.unwrap();
        let (mail, keys) = stream_names(TEAM);
        assert_eq!(
            t.stream_states(TEAM).await,
            vec![(mail.clone(), true, 0), (keys.clone(), true, 0)]
        );
        assert_eq!(
            t.stream_states("ffffffffffffffff").await,
            vec![
                ("MESH_FFFFFFFFFFFFFFFF_MAIL".to_string(), false, 0),
                ("MESH_FFFFFFFFFFFFFFFF_KEYS".to_string(), false, 0)
            ]
        );

        // A stream someone changed is put back, not deleted: its message stays.
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut cfg = js
            .get_stream(&mail)
            .await
            .unwrap()
            .cached_info()
            .config
            .clone();
        cfg.duplicate_window = Duration::from_secs(60);
        js.update_stream(cfg).await.unwrap();
        t.publish_mail(TEAM, DEV_A, "m1", b"kept".to_vec())
            .await
            .unwrap();
        t.ensure_streams(&plan).await.unwrap();
        let info = js.get_stream(&mail).await.unwrap().cached_info().clone();
        assert_eq!(info.config.duplicate_window, Duration::from_secs(600));
        assert_eq!(
            info.config.retention,
            async_nats::jetstream::stream::RetentionPolicy::WorkQueue
        );
        assert_eq!(info.state.messages, 1);
    }
}

#[tokio::test]
async fn dedupe_then_ack_removes_the_mail() {
    for bin in servers() {
        let nats = Nats::start(&bin);
        let t = nats.transport().await;
        let first = t
            .publish_mail(TEAM, DEV_A, "g-1", b"hello".to_vec())
            .await
            .unwrap();
        assert!(!first.duplicate);
        let second = t
            .publish_mail(TEAM, DEV_A, "g-1", b"hello".to_vec())
            .await
            .unwrap();
        assert!(second.duplicate);
        assert_eq!(second.sequence, first.sequence);
        assert_eq!(mail_count(&t).await, 1);

        // Mail for another device is not this device's.
        t.publish_mail(TEAM, DEV_B, "g-2", b"for b".to_vec())
            .await
            .unwrap();

        let mut mail = t.mail(TEAM, DEV_A).await.unwrap();
        let d = mail.next().await.unwrap().unwrap();
        assert_eq!(d.payload, b"hello");
        assert_eq!(d.redelivered(), 0);
        d.ack().await.unwrap();
        assert_eq!(mail_count(&t).await, 1, "only b's mail is left");

        let mut mail_b = t.mail(TEAM, DEV_B).await.unwrap();
        let d = mail_b.next().await.unwrap().unwrap();
        assert_eq!(d.payload, b"for b");
        d.ack().await.unwrap();
        assert_eq!(mail_count(&t).await, 0);
    }
}

#[tokio::test]
async fn unacked_mail_is_delivered_again() {
    for bin in servers() {
        let nats = Nats::start(&bin);
        let t = nats.transport().await;
        t.publish_mail(TEAM, DEV_A, "r-1", b"again".to_vec())
            .await
            .unwrap();
        let mut mail = t.mail(TEAM, DEV_A).await.unwrap();
        let first = mail.next().await.unwrap().unwrap();
        assert_eq!(first.redelivered(), 0);
        drop(first); // never acked: comes back after the ack wait
        let again = mail.next().await.unwrap().unwrap();
        assert_eq!(again.payload, b"again");
        assert_eq!(again.redelivered(), 1);

        // A nak brings it back after the delay it asks for, not before.
        let naked = Instant::now();
        again.nak(Duration::from_secs(1)).await.unwrap();
        let third = tokio::time::timeout(Duration::from_secs(10), mail.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            naked.elapsed() >= Duration::from_millis(900),
            "{bin:?}: a nak with a 1 s delay came back after {:?}",
            naked.elapsed()
        );
        assert_eq!(third.redelivered(), 2);
        third.ack().await.unwrap();
        assert_eq!(mail_count(&t).await, 0);
    }
}

/// Publishes, retrying while the server comes back (the msg id makes a retry harmless).
async fn publish_retrying(t: &Transport, id: &str, payload: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match t.publish_mail(TEAM, DEV_A, id, payload.to_vec()).await {
            Ok(_) => return,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "publish {id} never succeeded: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn consumers_survive_a_server_sigkill() {
    for bin in servers() {
        let mut nats = Nats::start(&bin);
        let t = nats.transport().await;
        t.announce(TEAM, DEV_B, b"b-key-1".to_vec()).await.unwrap();
        let mut announcements = t.announcements(TEAM).await.unwrap();
        let a = announcements.next().await.unwrap().unwrap();
        assert_eq!(
            (a.device.as_str(), a.payload.as_slice()),
            (DEV_B, &b"b-key-1"[..])
        );
        let mut presence = t.presence(TEAM, DEV_A).await.unwrap();

        // Some mail before the kill, one of it acked.
        publish_retrying(&t, "k-0", b"before-0").await;
        publish_retrying(&t, "k-1", b"before-1").await;
        let mut mail = t.mail(TEAM, DEV_A).await.unwrap();
        let d = mail.next().await.unwrap().unwrap();
        assert_eq!(d.payload, b"before-0");
        d.ack().await.unwrap();

        // The consumer waits (in a task) while the server is SIGKILLed and restarted.
        let total = 50usize;
        let mut want: BTreeSet<String> = (0..total).map(|i| format!("after-{i}")).collect();
        want.insert("before-1".into());
        let wanted = want.clone();
        let reader = tokio::spawn(async move {
            let mut got = BTreeSet::new();
            let mut ack_failures = 0u32;
            while !wanted.is_subset(&got) {
                match mail.next().await {
                    Some(Ok(d)) => {
                        got.insert(String::from_utf8(d.payload.clone()).unwrap());
                        // An ack may fail while the server is away: the mail then comes again.
                        if d.ack().await.is_err() {
                            ack_failures += 1;
                        }
                    }
                    Some(Err(_)) => {}
                    None => panic!("mail stream ended"),
                }
            }
            (got, ack_failures, mail)
        });
        tokio::task::yield_now().await;
        nats.restart();
        wait_for("reconnect", || async { t.is_connected() }).await;
        for i in 0..total {
            publish_retrying(&t, &format!("after-{i}"), format!("after-{i}").as_bytes()).await;
        }
        let (mut got, ack_failures, mut mail) =
            tokio::time::timeout(Duration::from_secs(90), reader)
                .await
                .unwrap()
                .unwrap();
        // Everything published after the restart came; "before-0" may come again (see below).
        got.remove("before-0");
        assert_eq!(got, want);
        // What was delivered but whose ack did not reach the server comes again, and so may mail
        // acked just before the SIGKILL (the server had not written the consumer's ack state
        // yet): receivers must be idempotent. Nothing that was never published comes.
        let mut again = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while mail_count(&t).await > 0 {
            assert!(Instant::now() < deadline, "the mail stream never emptied");
            if let Ok(Some(Ok(d))) =
                tokio::time::timeout(Duration::from_millis(500), mail.next()).await
            {
                let p = std::str::from_utf8(&d.payload).unwrap();
                assert!(want.contains(p) || p == "before-0", "{p}");
                assert!(d.redelivered() > 0);
                again += 1;
                d.ack().await.unwrap();
            }
        }

        eprintln!(
            "{}: {again} redelivered after the restart, {ack_failures} acks failed",
            bin.display()
        );

        // Announcements continue after the restart with what is new, not the old ones again.
        t.announce(TEAM, DEV_C, b"c-key-1".to_vec()).await.unwrap();
        let a = loop {
            match announcements.next().await.unwrap() {
                Ok(a) => break a,
                Err(_) => continue,
            }
        };
        assert_eq!(
            (a.device.as_str(), a.payload.as_slice()),
            (DEV_C, &b"c-key-1"[..])
        );

        // Presence: the client subscribed again after the reconnect.
        let p = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                t.publish_presence(TEAM, DEV_A, b"here".to_vec())
                    .await
                    .unwrap();
                t.flush().await.unwrap();
                if let Ok(p) =
                    tokio::time::timeout(Duration::from_millis(200), presence.next()).await
                {
                    break p;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(p.as_deref(), Some(&b"here"[..]));
    }
}

async fn presence_until_received(
    from: &Transport,
    to: &str,
    payload: &[u8],
    sub: &mut PresenceStream,
) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            from.publish_presence(TEAM, to, payload.to_vec())
                .await
                .unwrap();
            from.flush().await.unwrap();
            if let Ok(p) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
                break p.unwrap();
            }
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn announcements_last_per_device_then_live() {
    for bin in servers() {
        let nats = Nats::start(&bin);
        let t = nats.transport().await;
        t.announce(TEAM, DEV_A, b"a-1".to_vec()).await.unwrap();
        t.announce(TEAM, DEV_B, b"b-1".to_vec()).await.unwrap();
        t.announce(TEAM, DEV_A, b"a-2".to_vec()).await.unwrap();
        // A subject without a device id (someone with publish rights) is dropped.
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.publish(format!("mesh.{TEAM}.keys.NOT-A-DEVICE"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();

        let mut s = t.announcements(TEAM).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let a = s.next().await.unwrap().unwrap();
            got.push((a.device, String::from_utf8(a.payload).unwrap()));
        }
        got.sort();
        assert_eq!(
            got,
            vec![
                (DEV_A.to_string(), "a-2".to_string()),
                (DEV_B.to_string(), "b-1".to_string())
            ]
        );

        t.announce(TEAM, DEV_C, b"c-1".to_vec()).await.unwrap();
        let a = s.next().await.unwrap().unwrap();
        assert_eq!(
            (a.device.as_str(), a.payload.as_slice()),
            (DEV_C, &b"c-1"[..])
        );
        assert_eq!(t.dropped(), 1, "the announcement without a device id");
        // The stream keeps one per subject.
        assert_eq!(t.stream_states(TEAM).await[1].2, 4);
        // Which devices announced a key at all, asked of the stream.
        for (device, expected) in [(DEV_A, Some(3)), (DEV_C, Some(5)), (DEV_D, None)] {
            assert_eq!(
                t.announced(TEAM, device).await.unwrap(),
                expected,
                "{bin:?}: announced({device})"
            );
        }
    }
}

#[tokio::test]
async fn presence_round_trip() {
    for bin in servers() {
        let nats = Nats::start(&bin);
        let a = nats.transport().await;
        let b = Transport::connect(&nats.opts()).await.unwrap();
        let mut to_a = a.presence(TEAM, DEV_A).await.unwrap();
        let mut to_b = b.presence(TEAM, DEV_B).await.unwrap();
        // Core NATS: a publish before the server registered the subscription is lost, so
        // publish until one arrives (presence is a heartbeat).
        assert_eq!(
            presence_until_received(&b, DEV_A, b"b is here", &mut to_a).await,
            b"b is here"
        );
        assert_eq!(
            presence_until_received(&a, DEV_B, b"a is here", &mut to_b).await,
            b"a is here"
        );
        // Nobody else's presence reaches a device.
        a.publish_presence(TEAM, DEV_C, b"for c".to_vec())
            .await
            .unwrap();
        assert_eq!(
            presence_until_received(&b, DEV_A, b"b again", &mut to_a).await,
            b"b again"
        );
    }
}

#[tokio::test]
async fn oversized_payloads_are_dropped_and_counted() {
    for bin in servers() {
        // The server's own limit is 1 MiB by default: raise it so that a peer can send more.
        let conf_dir = tempfile::tempdir().unwrap();
        let conf = conf_dir.path().join("nats.conf");
        std::fs::write(&conf, "max_payload: 4194304\n").unwrap();
        let nats = Nats::start_with(&bin, &["-c", conf.to_str().unwrap()]);
        let t = nats.transport().await;
        let big = vec![b'x'; (1 << 20) + 1];
        t.publish_mail(TEAM, DEV_A, "big", big.clone())
            .await
            .unwrap();
        t.publish_mail(TEAM, DEV_A, "small", b"small".to_vec())
            .await
            .unwrap();
        let mut mail = t.mail(TEAM, DEV_A).await.unwrap();
        let d = mail.next().await.unwrap().unwrap();
        assert_eq!(d.payload, b"small");
        d.ack().await.unwrap();
        assert_eq!(t.dropped(), 1);
        // The oversized one was terminated, not left to come again forever.
        let again = tokio::time::timeout(Duration::from_secs(12), mail.next()).await;
        assert!(again.is_err(), "something came again: {again:?}");
        assert_eq!(
            mail_count(&t).await,
            0,
            "terminated mail left the work queue"
        );

        // Announcements and presence drop theirs too.
        t.announce(TEAM, DEV_B, big.clone()).await.unwrap();
        t.announce(TEAM, DEV_C, b"c".to_vec()).await.unwrap();
        let mut keys = t.announcements(TEAM).await.unwrap();
        let a = keys.next().await.unwrap().unwrap();
        assert_eq!(a.device, DEV_C);
        assert_eq!(t.dropped(), 2);

        let mut presence = t.presence(TEAM, DEV_A).await.unwrap();
        // Publish the big one until a small one sent after it arrives: then the big one was
        // received (same connection, in order) and dropped.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "presence never arrived");
            t.publish_presence(TEAM, DEV_A, big.clone()).await.unwrap();
            t.publish_presence(TEAM, DEV_A, b"ok".to_vec())
                .await
                .unwrap();
            t.flush().await.unwrap();
            if let Ok(p) = tokio::time::timeout(Duration::from_millis(200), presence.next()).await {
                assert_eq!(p.as_deref(), Some(&b"ok"[..]));
                break;
            }
        }
        assert!(t.dropped() >= 3, "{}", t.dropped());
    }
}

/// The nkey user of the NATS documentation's example (a test key, nothing else uses it).
const DOC_NKEY_PUBLIC: &str = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
const DOC_NKEY_SEED: &str = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";

#[tokio::test]
async fn nkey_seed_file_and_missing_credentials() {
    for bin in servers() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!("authorization: {{ users: [ {{ nkey: {DOC_NKEY_PUBLIC} }} ] }}\n"),
        )
        .unwrap();
        let seed = dir.path().join("seed");
        std::fs::write(&seed, format!("{DOC_NKEY_SEED}\n")).unwrap();
        let nats = Nats::start_with(&bin, &["-c", conf.to_str().unwrap()]);

        let t = Transport::connect(&ConnectOptions {
            nkey: Some(seed.clone()),
            ..nats.opts()
        })
        .await
        .unwrap();
        t.ensure_streams(&StreamPlan {
            team: TEAM.into(),
            replicas: None,
        })
        .await
        .unwrap();
        assert!(t.is_connected());

        let err = Transport::connect(&nats.opts()).await.unwrap_err();
        assert!(matches!(err, TransportError::AuthRefused { .. }), "{err:?}");

        let missing = dir.path().join("no-such.creds");
        let err = Transport::connect(&ConnectOptions {
            creds: Some(missing.clone()),
            ..nats.opts()
        })
        .await
        .unwrap_err();
        assert!(matches!(err, TransportError::Credentials { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such.creds"), "{err}");
    }
}

#[tokio::test]
async fn a_stream_made_otherwise_is_left_not_deleted() {
    for bin in servers() {
        let nats = Nats::start(&bin);
        let (mail, _) = stream_names(TEAM);
        // Someone made the mail stream with Limits retention and put a message in it.
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: mail.clone(),
            subjects: vec![format!("mesh.{TEAM}.to.*")],
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish(format!("mesh.{TEAM}.to.{DEV_A}"), "theirs".into())
            .await
            .unwrap()
            .await
            .unwrap();

        let t = nats.transport().await; // ensure_streams: Ok, with a warning
        let info = js.get_stream(&mail).await.unwrap().cached_info().clone();
        assert_eq!(
            info.config.retention,
            async_nats::jetstream::stream::RetentionPolicy::Limits
        );
        assert_eq!(info.state.messages, 1);
        // The keys stream was still created.
        assert!(t.stream_states(TEAM).await[1].1);
    }
}

#[tokio::test]
async fn several_urls_one_of_them_up() {
    let nats = Nats::start(&servers()[0]);
    let closed = free_port();
    let t = Transport::connect(&ConnectOptions {
        url: format!("nats://127.0.0.1:{closed}, {}", nats.url()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(t.is_connected());
    let err = Transport::connect(&ConnectOptions {
        url: " , ".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::BadUrl { .. }), "{err:?}");
    let err = Transport::connect(&ConnectOptions {
        url: "http://u:hidden@127.0.0.1:1".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::BadUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains("hidden"), "{err}");
}
