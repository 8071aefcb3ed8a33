//! Crash safety: `kill -9` of the daemon in the middle of a stream of sends. Every message
//! whose id was returned is there after the restart, and none is handed out twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mesh, wait_for};
use mesh_client::Connection;
use mesh_proto::{Class, Consume, Kind, MessageStatus, Send, Status};

#[test]
fn kill_9_mid_stream_loses_nothing_and_duplicates_nothing() {
    const SENDERS: usize = 4;
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
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut conn) = Connection::connect(&socket, &common::opts()) else {
                    std::thread::yield_now();
                    continue;
                };
                while !stop.load(Ordering::SeqCst) {
                    let req = Consume {
                        caller: caller.clone(),
                        class: Class::All,
                        peek: false,
                        max_bytes: 256,
                    };
                    match conn.consume(req) {
                        Ok(inbox) => consumed
                            .lock()
                            .unwrap()
                            .extend(inbox.messages.iter().map(|m| m.id)),
                        Err(_) => break,
                    }
                }
            }
        }));
    }

    for round in 0..3 {
        let before = sends.load(Ordering::SeqCst);
        wait_for("sends to flow", Duration::from_secs(20), || {
            sends.load(Ordering::SeqCst) >= before + 200
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
    // Every acknowledged message survived the crashes. One that is not in our hands was
    // committed as delivered by a consume whose response the kill cut off: it is there, marked
    // delivered, never handed out again.
    let mut in_flight = 0;
    for id in acked.difference(&unique) {
        let m = conn
            .message_status(MessageStatus { message_id: *id })
            .unwrap_or_else(|e| panic!("message {id} lost: {e}"));
        assert_eq!(
            m.status,
            Status::Delivered,
            "message {id} is neither consumed nor delivered"
        );
        in_flight += 1;
    }
    eprintln!(
        "{} acknowledged, {} received, {in_flight} cut off in flight by a kill",
        acked.len(),
        unique.len()
    );
}
