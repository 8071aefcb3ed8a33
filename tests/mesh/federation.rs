//! The mesh across machines: several daemons, each on its own HOME with its own host name,
//! joined to a real NATS server (Debian's 2.9 and upstream's 2.15, each test against both),
//! sending, asking and answering across; servers and daemons killed mid-stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mesh_proto::{
    AskResult, Caller, Class, Consume, FederationReport, FederationStatus, Kind, List, ListScoped,
    MeshPeers, Reach, Scope,
};
use mesh_testkit::nats::{self, Flavor, NatsServer};
use mesh_testkit::{Mesh, Session, output_text, wait_for};

/// A "machine": a HOME with a daemon joined to the mesh as `host`.
struct Machine {
    mesh: Mesh,
    host: String,
}

impl Machine {
    /// A fresh HOME joined to `url` as `host` (`mesh join`), its daemon running.
    fn join(url: &str, host: &str) -> Machine {
        let mut mesh = Mesh::without_daemon();
        let out = mesh
            .mesh()
            .args(["join", url, "--host", host, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "mesh join: {}", output_text(&out));
        if mesh.daemon.is_none() {
            // `mesh join` started (or restarted) a daemon of its own, outside our handle:
            // stop it, and run ours, so that the test can kill it.
            let _ = mesh.mesh().arg("stop").output();
            mesh.spawn_daemon();
        }
        Machine {
            mesh,
            host: host.to_owned(),
        }
    }

    fn report(&self) -> FederationReport {
        self.mesh.conn().call_typed(FederationStatus {}).unwrap()
    }

    fn peers(&self) -> MeshPeers {
        self.mesh
            .conn()
            .call_typed(ListScoped {
                list: List {
                    caller: Caller::default(),
                    scope: Scope::Machine,
                    include_offline: false,
                },
                reach: Reach::Mesh,
            })
            .unwrap()
    }

    /// Wait until this machine lists `name@host` as live.
    fn sees(&self, name: &str, host: &str) {
        wait_for(
            &format!("{} to list {name}@{host}", self.host),
            Duration::from_secs(30),
            || {
                self.peers()
                    .remote
                    .iter()
                    .any(|s| s.live && s.name == name && s.host == host)
            },
        );
    }

    /// Everything pending for `session`, taken.
    fn take(&self, session: &Session) -> Vec<mesh_proto::Message> {
        self.mesh
            .conn()
            .consume(Consume {
                caller: session.caller.clone(),
                class: Class::All,
                peek: false,
                max_bytes: 0,
                handout: 0,
            })
            .unwrap()
            .messages
    }
}

/// Each server flavor this machine has (both, under CI).
fn each_flavor(mut test: impl FnMut(Flavor, &std::path::Path)) {
    for (flavor, bin) in nats::flavors() {
        eprintln!("--- against {flavor}");
        test(flavor, &bin);
    }
}

#[test]
fn send_broadcast_ask_reply_status_and_presence_across_two_machines() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let a = Machine::join(&server.url(), "laptop");
        let b = Machine::join(&server.url(), "devbox");
        let alice = a.mesh.session("alice");
        let bob = b.mesh.session("bob");
        a.sees("bob", "devbox");
        b.sees("alice", "laptop");

        // A task by name@host, committed here before its id came back.
        let sent = a
            .mesh
            .conn()
            .send(mesh_proto::SendMessage {
                caller: alice.caller.clone(),
                to: "bob@devbox".into(),
                kind: Kind::Task,
                body: "run the migrations".into(),
            })
            .unwrap();
        assert_eq!(sent.messages.len(), 1);
        assert_eq!(sent.messages[0].to.name, "bob@devbox");
        let task_id = sent.messages[0].id;
        let got = mesh_testkit::poll(Duration::from_secs(20), || {
            let m = b.take(&bob);
            (!m.is_empty()).then_some(m)
        })
        .expect("the task reaches devbox");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "run the migrations");
        assert_eq!(got[0].from.name, "alice@laptop");
        assert_eq!(got[0].kind, Kind::Task);
        // Its receipt comes back: the sender sees it delivered.
        wait_for("the receipt", Duration::from_secs(20), || {
            a.mesh
                .conn()
                .message_status(mesh_proto::MessageStatus {
                    message_id: task_id,
                })
                .unwrap()
                .status
                == mesh_proto::Status::Delivered
        });

        // A bare name that only the other machine has resolves there.
        let bare = a.mesh.send(&alice.caller, "bob", Kind::Note, "bare name");
        assert!(bare > 0);
        let got = mesh_testkit::poll(Duration::from_secs(20), || {
            let m = b.take(&bob);
            (!m.is_empty()).then_some(m)
        })
        .unwrap();
        assert_eq!(got[0].body, "bare name");

        // Ask across: blocks, and the answer is pushed.
        let asker = {
            let socket = a.mesh.state.socket();
            let caller = alice.caller.clone();
            std::thread::spawn(move || {
                let mut c =
                    mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
                c.ask(mesh_proto::Ask {
                    caller,
                    to: "bob@devbox".into(),
                    question: "which port?".into(),
                    timeout_ms: 30_000,
                })
                .unwrap()
            })
        };
        let question = mesh_testkit::poll(Duration::from_secs(20), || {
            b.take(&bob).into_iter().find(|m| m.kind == Kind::Question)
        })
        .expect("the question reaches devbox");
        assert_eq!(question.from.name, "alice@laptop");
        assert_eq!(question.body, "which port?");
        let replied = b
            .mesh
            .conn()
            .reply(mesh_proto::Reply {
                caller: bob.caller.clone(),
                message_id: question.id,
                body: "8080".into(),
            })
            .unwrap();
        assert_eq!(replied.answer.to.name, "alice@laptop");
        let outcome = asker.join().unwrap();
        match outcome.result {
            AskResult::Answered(m) => {
                assert_eq!(m.body, "8080");
                assert_eq!(m.from.name, "bob@devbox");
            }
            other => panic!("the ask ended with {other:?}"),
        }

        // Broadcast to the team reaches the other machine's sessions (and this machine's).
        let carol = a.mesh.session("carol");
        let sent = a
            .mesh
            .conn()
            .send(mesh_proto::SendMessage {
                caller: alice.caller.clone(),
                to: "*@*".into(),
                kind: Kind::Note,
                body: "deploy at five".into(),
            })
            .unwrap();
        let to: HashSet<String> = sent.messages.iter().map(|m| m.to.name.clone()).collect();
        assert_eq!(
            to,
            HashSet::from(["bob@devbox".to_owned(), "carol".to_owned()]),
            "{sent:?}"
        );
        let got = mesh_testkit::poll(Duration::from_secs(20), || {
            let m = b.take(&bob);
            (!m.is_empty()).then_some(m)
        })
        .unwrap();
        assert_eq!(got[0].body, "deploy at five");
        assert_eq!(a.take(&carol)[0].body, "deploy at five");

        // Health-facing report: connected, both hosts, nothing stuck.
        let r = a.report();
        assert!(r.configured && r.connected && r.jetstream, "{r:?}");
        assert_eq!(r.host, "laptop");
        assert!(r.hosts.iter().any(|h| h.host == "devbox"), "{r:?}");
        wait_for("the outbox to drain", Duration::from_secs(20), || {
            a.report().outbox_depth == 0
        });
    });
}

#[test]
fn a_machine_that_disappears_leaves_the_lists_within_30_seconds() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let a = Machine::join(&server.url(), "alpha");
        let mut b = Machine::join(&server.url(), "beta");
        let _x = a.mesh.session("xavier");
        let _y = b.mesh.session("yolanda");
        a.sees("yolanda", "beta");
        b.mesh.kill9();
        let gone = Instant::now();
        wait_for(
            "beta to leave alpha's list",
            Duration::from_secs(30),
            || !a.peers().remote.iter().any(|s| s.host == "beta"),
        );
        assert!(gone.elapsed() <= Duration::from_secs(30));
    });
}

#[test]
fn mail_to_an_offline_machine_waits_and_arrives_when_it_returns() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let a = Machine::join(&server.url(), "one");
        let mut b = Machine::join(&server.url(), "two");
        let sender = a.mesh.session("sender");
        let receiver = b.mesh.session("receiver");
        a.sees("receiver", "two");
        b.mesh.stop();
        let ids: Vec<u64> = (0..20)
            .map(|i| {
                a.mesh
                    .send(&sender.caller, "receiver@two", Kind::Note, &format!("n{i}"))
            })
            .collect();
        // They leave this machine (the server holds them) while two is away.
        wait_for("the outbox to drain", Duration::from_secs(20), || {
            a.report().outbox_depth == 0
        });
        b.mesh.spawn_daemon();
        let mut bodies = Vec::new();
        wait_for("all 20 to arrive", Duration::from_secs(30), || {
            bodies.extend(b.take(&receiver).into_iter().map(|m| m.body));
            bodies.len() >= 20
        });
        let expected: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
        assert_eq!(bodies, expected);
        assert_eq!(ids.len(), 20);
    });
}

/// 1,000 messages with the NATS server killed and restarted mid-stream, then with the
/// receiving daemon killed mid-stream: every returned id arrives exactly once.
#[test]
fn a_thousand_messages_survive_server_and_daemon_kills_exactly_once() {
    each_flavor(|_, bin| {
        let mut server = NatsServer::start(bin);
        let a = Machine::join(&server.url(), "src");
        let mut b = Machine::join(&server.url(), "dst");
        let s = a.mesh.session("s");
        let d = b.mesh.session("d");
        a.sees("d", "dst");
        let mut sent = HashMap::new();
        let mut conn = a.mesh.conn();
        for i in 0..1000u32 {
            if i == 300 {
                server.kill9();
            }
            if i == 400 {
                server.restart();
            }
            if i == 700 {
                b.mesh.kill9();
            }
            if i == 800 {
                b.mesh.spawn_daemon();
            }
            let body = format!("m{i:04}");
            let r = conn
                .send(mesh_proto::SendMessage {
                    caller: s.caller.clone(),
                    to: "d@dst".into(),
                    kind: Kind::Note,
                    body: body.clone(),
                })
                .unwrap();
            sent.insert(body, r.messages[0].id);
        }
        let mut got: Vec<String> = Vec::new();
        wait_for("all 1,000 to arrive", Duration::from_secs(90), || {
            got.extend(b.take(&d).into_iter().map(|m| m.body));
            got.len() >= 1000
        });
        // Nothing more is coming (no duplicates in flight): the outbox is empty and the
        // stream holds nothing.
        wait_for("the outbox to drain", Duration::from_secs(30), || {
            a.report().outbox_depth == 0
        });
        got.extend(b.take(&d).into_iter().map(|m| m.body));
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "a message arrived twice");
        assert_eq!(got.len(), 1000);
        for body in sent.keys() {
            assert!(unique.contains(body), "{body} lost");
        }
    });
}

/// NATS unreachable for a minute while mail is sent: all of it arrives after.
#[test]
fn the_outbox_drains_after_the_server_was_down_for_a_minute() {
    each_flavor(|_, bin| {
        let mut server = NatsServer::start(bin);
        let a = Machine::join(&server.url(), "east");
        let b = Machine::join(&server.url(), "west");
        let s = a.mesh.session("s");
        let d = b.mesh.session("d");
        a.sees("d", "west");
        server.stop();
        let down = Instant::now();
        let mut n = 0;
        while down.elapsed() < Duration::from_secs(60) {
            a.mesh
                .send(&s.caller, "d@west", Kind::Note, &format!("x{n}"));
            n += 1;
            std::thread::sleep(Duration::from_millis(500));
        }
        let r = a.report();
        assert!(r.outbox_depth >= n, "{r:?}");
        assert!(r.outbox_oldest_ms.is_some());
        server.restart();
        let mut got = Vec::new();
        wait_for(
            "the mail sent while down to arrive",
            Duration::from_secs(60),
            || {
                got.extend(b.take(&d).into_iter().map(|m| m.body));
                got.len() as u64 >= n
            },
        );
        assert_eq!(got.len() as u64, n);
    });
}
