//! Crash safety: 10 rounds of `kill -9` of the daemon while 8 senders send and a consumer
//! consumes. Every message whose id was returned is delivered exactly once in the end: none is
//! lost, none is handed out twice. The consumer uses hand-out tokens: when a kill cuts off the
//! answer to a consume, it sends the same request again, and gets the same messages. It takes
//! its mail in turn with `Consume` (as `mesh inbox` and the prompt hooks do) and `Poll` (as
//! post-tool-use does), so both ways of taking mail, with the daemon's mail hints fresh,
//! stale and lost in a restart, are held to the same promise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_client::{ClientError, Connection};
use mesh_proto::{Caller, Class, Consume, Kind, MessageStatus, Poll, SendMessage};
use mesh_testkit::{Mesh, wait_for};

/// One request that takes mail: the two kinds the daemon answers.
#[derive(Clone)]
enum Take {
    Consume(Consume),
    Poll(Poll),
}

impl Take {
    /// The `n`th request of the consumer: `Consume` and `Poll` in turn, each with a new
    /// hand-out token and a small byte budget (so that mail is often left behind).
    fn nth(n: usize, caller: &Caller) -> Self {
        let (caller, handout) = (caller.clone(), mesh_client::handout_token());
        if n.is_multiple_of(2) {
            Take::Consume(Consume {
                caller,
                class: Class::All,
                peek: false,
                max_bytes: 256,
                handout,
            })
        } else {
            Take::Poll(Poll {
                caller,
                class: Class::Urgent,
                max_bytes: 256,
                handout,
            })
        }
    }

    /// The ids of the messages it took; those taken by a `Poll` are counted in `by_poll`.
    fn run(&self, conn: &mut Connection, by_poll: &AtomicUsize) -> Result<Vec<u64>, ClientError> {
        let inbox = match self {
            Take::Consume(c) => conn.consume(c.clone())?,
            Take::Poll(p) => {
                let polled = conn.poll(p.clone())?;
                assert!(polled.session.is_some(), "the consumer is a session");
                by_poll.fetch_add(polled.inbox.messages.len(), Ordering::SeqCst);
                polled.inbox
            }
        };
        Ok(inbox.messages.iter().map(|m| m.id).collect())
    }
}

#[test]
fn kill_9_mid_stream_loses_nothing_and_duplicates_nothing() {
    const SENDERS: usize = 8;
    const ROUNDS: usize = 10;
    let mut mesh = Mesh::start();
    let a = mesh.session("sender");
    let b = mesh.session("receiver");

    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let consumed = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sends = Arc::new(AtomicUsize::new(0));
    // Messages taken by `Poll` (the rest by `Consume`).
    let by_poll = Arc::new(AtomicUsize::new(0));

    // Senders and a consumer that reconnect whenever the daemon is down, forever until `stop`.
    let mut threads = Vec::new();
    for t in 0..SENDERS {
        let (socket, caller) = (mesh.state.socket(), a.caller.clone());
        let (acked, stop, sends) = (acked.clone(), stop.clone(), sends.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut conn) = Connection::connect(&socket, &mesh_testkit::opts()) else {
                    std::thread::yield_now();
                    continue;
                };
                while !stop.load(Ordering::SeqCst) {
                    let req = SendMessage {
                        caller: caller.clone(),
                        to: "receiver".into(),
                        kind: Kind::Task,
                        body: format!("{t}-{n}"),
                    };
                    match conn.send(req) {
                        // Only an id we were given counts as accepted.
                        Ok(sent) => acked
                            .lock()
                            .unwrap()
                            .extend(sent.messages.iter().map(|m| m.id)),
                        Err(_) => break,
                    }
                    n += 1;
                    sends.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    {
        let (socket, caller) = (mesh.state.socket(), b.caller.clone());
        let (consumed, stop, by_poll) = (consumed.clone(), stop.clone(), by_poll.clone());
        threads.push(std::thread::spawn(move || {
            // The request whose answer a kill cut off: sent again, same token, until answered.
            let mut unanswered: Option<Take> = None;
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut conn) = Connection::connect(&socket, &mesh_testkit::opts()) else {
                    std::thread::yield_now();
                    continue;
                };
                while !stop.load(Ordering::SeqCst) {
                    let req = unanswered.take().unwrap_or_else(|| {
                        n += 1;
                        Take::nth(n, &caller)
                    });
                    match req.run(&mut conn, &by_poll) {
                        Ok(ids) => consumed.lock().unwrap().extend(ids),
                        Err(e) => {
                            assert!(e.is_connection_lost(), "{e}");
                            unanswered = Some(req);
                            break;
                        }
                    }
                }
            }
            // Stopping: one last answer for a request still in doubt.
            if let Some(req) = unanswered.take() {
                let ids = mesh_testkit::poll(Duration::from_secs(20), || {
                    let mut conn = Connection::connect(&socket, &mesh_testkit::opts()).ok()?;
                    req.run(&mut conn, &by_poll).ok()
                })
                .expect("the request in doubt is answered");
                consumed.lock().unwrap().extend(ids);
            }
        }));
    }

    for round in 0..ROUNDS {
        let before = sends.load(Ordering::SeqCst);
        wait_for("sends to flow", Duration::from_secs(20), || {
            sends.load(Ordering::SeqCst) >= before + 100
        });
        mesh.kill9();
        mesh.spawn_daemon();
        eprintln!(
            "round {round}: {} sends acknowledged so far",
            acked.lock().unwrap().len()
        );
    }
    let before = sends.load(Ordering::SeqCst);
    wait_for(
        "sends to flow after the last restart",
        Duration::from_secs(20),
        || sends.load(Ordering::SeqCst) >= before + 100,
    );
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }

    // Collect what is still queued.
    let mut conn = mesh.conn();
    loop {
        let inbox = conn
            .consume(Consume {
                caller: b.caller.clone(),
                class: Class::All,
                peek: false,
                max_bytes: 0,
                handout: 0,
            })
            .unwrap();
        if inbox.messages.is_empty() {
            break;
        }
        consumed
            .lock()
            .unwrap()
            .extend(inbox.messages.iter().map(|m| m.id));
    }

    let acked: HashSet<u64> = acked.lock().unwrap().iter().copied().collect();
    let consumed = consumed.lock().unwrap().clone();
    let unique: HashSet<u64> = consumed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        consumed.len(),
        "a message was handed out twice"
    );
    assert!(
        acked.len() >= 700,
        "too few sends to mean anything: {}",
        acked.len()
    );
    // Every acknowledged message survived the crashes and reached the consumer: exactly once.
    let lost: Vec<u64> = acked.difference(&unique).copied().collect();
    for id in &lost {
        let m = conn.message_status(MessageStatus { message_id: *id });
        eprintln!("message {id} acknowledged but never received: {m:?}");
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never received",
        lost.len()
    );
    // Both ways of taking mail were put to the test (the final drain above is a `Consume`).
    let polled = by_poll.load(Ordering::SeqCst);
    assert!(
        polled >= 10,
        "only {polled} of {} messages taken by Poll",
        unique.len()
    );
    // (A received id that was never acknowledged is fine: its send committed, and the kill cut
    // off the answer to the sender.)
    eprintln!(
        "{} acknowledged, {} received exactly once ({polled} by Poll), over {ROUNDS} kills",
        acked.len(),
        unique.len()
    );
}

/// A tmpfs mounted over a directory for the length of a test (root only).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_refuses_sends_clearly_keeps_what_was_accepted_and_recovers() {
    let mut mesh = Mesh::without_daemon();
    // The state dir (database, WAL, socket) on a 16 MB filesystem, a 6 MB filler beside it
    // (the WAL grows to ~4 MB between checkpoints, and a checkpoint needs room in the database
    // file too, so "space returns" must mean a few MB).
    let _fs = match Tmpfs::mount(mesh.state.root(), "16m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): {why}");
            return;
        }
    };
    let filler = mesh.state.root().join("filler");
    std::fs::write(&filler, vec![0u8; 6 << 20]).unwrap();
    mesh.spawn_daemon();
    let a = mesh.session("writer");
    let b = mesh.session("reader");
    let mut conn = mesh.conn();
    let body = "x".repeat(200 * 1024);
    let send = |conn: &mut Connection| {
        conn.send(SendMessage {
            caller: a.caller.clone(),
            to: "reader".into(),
            kind: Kind::Note,
            body: body.clone(),
        })
    };
    let mut acked = Vec::new();
    let err = loop {
        match send(&mut conn) {
            Ok(sent) => acked.push(sent.messages[0].id),
            Err(e) => break e,
        }
        assert!(acked.len() < 200, "the 16 MB filesystem never filled up");
    };
    assert_eq!(
        err.wire_code(),
        Some(mesh_proto::ErrorCode::DiskFull),
        "{err}"
    );
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(
        !acked.is_empty(),
        "nothing was accepted before the disk filled"
    );
    // Still up, still refusing clearly, and reads still work.
    assert!(mesh.conn().ping().is_ok());
    let again = send(&mut mesh.conn()).unwrap_err();
    assert_eq!(
        again.wire_code(),
        Some(mesh_proto::ErrorCode::DiskFull),
        "{again}"
    );
    assert!(mesh.daemon.as_mut().unwrap().try_wait().unwrap().is_none());

    // Space comes back: sends are accepted again, on the same daemon.
    std::fs::remove_file(&filler).unwrap();
    let after = send(&mut mesh.conn()).unwrap_or_else(|e| panic!("{e}: {}", mesh.log()));
    acked.push(after.messages[0].id);

    // Everything accepted is delivered, once.
    let mut received = Vec::new();
    loop {
        let inbox = mesh
            .conn()
            .consume(Consume {
                caller: b.caller.clone(),
                class: Class::All,
                peek: false,
                max_bytes: 0,
                handout: mesh_client::handout_token(),
            })
            .unwrap_or_else(|e| panic!("{e}: {}", mesh.log()));
        if inbox.messages.is_empty() {
            break;
        }
        received.extend(inbox.messages.iter().map(|m| m.id));
    }
    assert_eq!(received, acked);
    eprintln!(
        "disk full: {} sends of 200 kB accepted on a 16 MB filesystem before `{err}`; after freeing 6 MB one more was accepted; all {} received once",
        acked.len() - 1,
        received.len()
    );
    mesh.kill9();
}
