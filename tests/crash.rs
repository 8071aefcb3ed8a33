//! Crash safety: 10 rounds of `kill -9` of the daemon while 8 senders send and a consumer
//! consumes. Every message whose id was returned is delivered exactly once in the end: none is
//! lost, none is handed out twice. The consumer uses hand-out tokens: when a kill cuts off the
//! answer to a consume, it sends the same request again, and gets the same messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mesh, wait_for};
use mesh_client::Connection;
use mesh_proto::{Class, Consume, Kind, MessageStatus, Send};

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

    // Senders and a consumer that reconnect whenever the daemon is down, forever until `stop`.
    let mut threads = Vec::new();
    for t in 0..SENDERS {
        let (socket, caller) = (mesh.state.socket(), a.caller.clone());
        let (acked, stop, sends) = (acked.clone(), stop.clone(), sends.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut conn) = Connection::connect(&socket, &common::opts()) else {
                    std::thread::yield_now();
                    continue;
                };
                while !stop.load(Ordering::SeqCst) {
                    let req = Send {
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
        let (consumed, stop) = (consumed.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            // The request whose answer a kill cut off: sent again, same token, until answered.
            let mut unanswered: Option<Consume> = None;
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut conn) = Connection::connect(&socket, &common::opts()) else {
                    std::thread::yield_now();
                    continue;
                };
                while !stop.load(Ordering::SeqCst) {
                    let req = unanswered.take().unwrap_or_else(|| Consume {
                        caller: caller.clone(),
                        class: Class::All,
                        peek: false,
                        max_bytes: 256,
                        handout: mesh_client::handout_token(),
                    });
                    match conn.consume(req.clone()) {
                        Ok(inbox) => consumed
                            .lock()
                            .unwrap()
                            .extend(inbox.messages.iter().map(|m| m.id)),
                        Err(e) => {
                            assert!(e.is_connection_lost(), "{e}");
                            unanswered = Some(req);
                            break;
                        }
                    }
                }
            }
            // Stopping: one last answer for a request still in doubt.
            while let Some(req) = unanswered.take() {
                let Ok(mut conn) = Connection::connect(&socket, &common::opts()) else {
                    unanswered = Some(req);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                match conn.consume(req.clone()) {
                    Ok(inbox) => consumed
                        .lock()
                        .unwrap()
                        .extend(inbox.messages.iter().map(|m| m.id)),
                    Err(_) => unanswered = Some(req),
                }
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
    // (A received id that was never acknowledged is fine: its send committed, and the kill cut
    // off the answer to the sender.)
    eprintln!(
        "{} acknowledged, {} received exactly once, over {ROUNDS} kills",
        acked.len(),
        unique.len()
    );
}
