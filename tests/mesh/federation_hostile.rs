//! The mesh across machines, tried as an attacker would: what the NATS operator (or anyone on
//! the wire) can read, an impostor that takes another machine's host name, a process with the
//! NATS credentials publishing hand-made frames, a trusted peer announcing hostile presence,
//! and the local path (no federation, hooks) that must not touch the network at all. Real
//! daemons joined with `mesh join` to real NATS servers (every flavor); the attacker is the test,
//! speaking the NATS protocol itself (`mesh_testkit::nats::Client`) and sealing frames with the
//! daemon's own envelope code and whatever keys it holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use mesh_daemon::federation::config::{self, FederationConfig};
use mesh_daemon::federation::envelope::{
    self, Announce, Envelope, EnvelopeKind, Frame, Mail, Presence, PresenceSession, Receipt,
};
use mesh_daemon::federation::keys::{self, DeviceKey, PublicKey};
use mesh_daemon::federation::transport;
use mesh_proto::{
    AskResult, Caller, Class, Consume, Kind, List, ListScoped, Reach, Scope, SetSummary,
};
use mesh_testkit::nats::{self, Client, NatsServer, Tap};

use super::federation::{Machine, each_flavor};
use mesh_testkit::{Mesh, Session, output_text, poll, wait_for};
use serde_json::{Value, json};

/// A marker no code path produces by chance: `<what>` and 16 random hex digits.
fn marker(what: &str) -> String {
    let id = DeviceKey::generate().device_id().to_string();
    format!("{what}{}", &id[..16])
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

pub(crate) fn mail_subject(team_id: &str, device: &str) -> String {
    format!("mesh.{team_id}.to.{device}")
}

/// A mail envelope from `from` on the sealer's machine to `to` (a session name) here.
pub(crate) fn mail(
    gid: &str,
    kind: Kind,
    to: &str,
    body: &str,
    in_reply_to: Option<String>,
) -> Envelope {
    Envelope::Mail(Mail {
        gid: gid.to_owned(),
        kind,
        from_name: "mallory".to_owned(),
        from_session_id: Some("mallory-session".to_owned()),
        to_name: to.to_owned(),
        to_session_id: None,
        body: body.to_owned(),
        in_reply_to,
        created_ms: now_ms(),
    })
}

/// A frame sealed by `from` for `to`, without the envelope being validated (as a hostile peer
/// could build it).
fn seal_unchecked(from: &DeviceKey, to: &PublicKey, env: &Envelope) -> Vec<u8> {
    let (kind, id) = (env.kind(), env.id());
    let plain = postcard::to_allocvec(env).unwrap();
    let frame = Frame {
        v: envelope::VERSION,
        kind,
        from: from.device_id(),
        to: to.device_id(),
        id: id.clone(),
        sealed: keys::seal(
            from,
            to,
            &envelope::aad(kind, &id, from.device_id(), to.device_id()),
            &plain,
        )
        .unwrap(),
    };
    postcard::to_allocvec(&frame).unwrap()
}

/// Wait until `device`'s mail consumer has nothing left to take or settle: everything published
/// to its subject has been handled (accepted or refused) by its daemon.
fn drained(c: &mut Client, team_id: &str, device: &str) {
    let (stream, _) = transport::stream_names(team_id);
    let consumer = transport::mail_consumer_name(device);
    wait_for(
        "the daemon to settle every frame published to its subject",
        Duration::from_secs(90),
        || {
            let Ok(info) = c.js_request(&format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"), b"")
            else {
                return false;
            };
            info.get("error").is_none()
                && info["num_pending"].as_u64() == Some(0)
                && info["num_ack_pending"].as_u64() == Some(0)
        },
    );
}

/// How many deliveries `device`'s mail consumer has made so far, redeliveries included (its
/// consumer sequence counts every delivery).
fn deliveries(c: &mut Client, team_id: &str, device: &str) -> u64 {
    let (stream, _) = transport::stream_names(team_id);
    let consumer = transport::mail_consumer_name(device);
    let info = c
        .js_request(&format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"), b"")
        .unwrap();
    info["delivered"]["consumer_seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no delivered.consumer_seq in {info}"))
}

/// Publish a key announcement for `key` as `host` (what `mesh join` makes a daemon do).
fn announce(c: &mut Client, team_id: &str, key: &DeviceKey, host: &str) {
    let a = Announce {
        v: envelope::VERSION,
        public_key: *key.public().as_bytes(),
        host: host.to_owned(),
        team: team_id.to_owned(),
        sent_ms: now_ms(),
    };
    c.js_publish(
        &format!("mesh.{team_id}.keys.{}", key.device_id()),
        None,
        &envelope::announce_bytes(&a),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. No plaintext at rest or on the wire.

#[test]
fn the_server_store_and_the_wire_carry_no_plaintext() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let tap = Tap::start(server.addr());
        let team = marker("team");
        let a = Machine::join_team(&tap.url(), "alphahost", &team);
        let b = Machine::join_team(&tap.url(), "bravohost", &team);
        let (name_a, name_b) = (marker("alice"), marker("bob"));
        let alice = a.mesh.session(&name_a);
        let bob = b.mesh.session(&name_b);
        let (summary_a, summary_b) = (marker("summaryA"), marker("summaryB"));
        for (m, s, summary) in [(&a, &alice, &summary_a), (&b, &bob, &summary_b)] {
            m.mesh
                .conn()
                .set_summary(SetSummary {
                    caller: s.caller.clone(),
                    summary: format!("working on {summary}"),
                })
                .unwrap();
        }
        // Presence flowed both ways, with the summaries.
        wait_for("the summaries to cross", Duration::from_secs(30), || {
            a.peers()
                .remote
                .iter()
                .any(|r| r.summary.contains(&summary_b))
                && b.peers()
                    .remote
                    .iter()
                    .any(|r| r.summary.contains(&summary_a))
        });

        let (note, task) = (marker("note"), marker("task"));
        let addr_b = format!("{name_b}@bravohost");
        a.mesh.send(&alice.caller, &addr_b, Kind::Note, &note);
        b.mesh.send(
            &bob.caller,
            &format!("{name_a}@alphahost"),
            Kind::Task,
            &task,
        );
        let mut bodies = Vec::new();
        wait_for("the mail to cross", Duration::from_secs(30), || {
            bodies.extend(b.take(&bob).into_iter().map(|m| m.body));
            bodies.extend(a.take(&alice).into_iter().map(|m| m.body));
            bodies.contains(&note) && bodies.contains(&task)
        });

        // A question and its answer, across.
        let (question, answer) = (marker("question"), marker("answer"));
        let asker = {
            let socket = a.mesh.state.socket();
            let caller = alice.caller.clone();
            let (to, question) = (addr_b.clone(), question.clone());
            std::thread::spawn(move || {
                let mut c =
                    mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
                c.ask(mesh_proto::Ask {
                    caller,
                    to,
                    question,
                    timeout_ms: 30_000,
                })
                .unwrap()
            })
        };
        let q = poll(Duration::from_secs(30), || {
            b.take(&bob).into_iter().find(|m| m.kind == Kind::Question)
        })
        .expect("the question crosses");
        assert_eq!(q.body, question);
        b.mesh
            .conn()
            .reply(mesh_proto::Reply {
                caller: bob.caller.clone(),
                message_id: q.id,
                body: answer.clone(),
            })
            .unwrap();
        match asker.join().unwrap().result {
            AskResult::Answered(m) => assert_eq!(m.body, answer),
            other => panic!("the ask ended with {other:?}"),
        }
        wait_for("both outboxes to drain", Duration::from_secs(30), || {
            a.report().outbox_depth == 0 && b.report().outbox_depth == 0
        });

        // The plaintext really was there to find: it is in the daemons' own databases.
        let all_markers = [
            name_a.as_str(),
            name_b.as_str(),
            &summary_a,
            &summary_b,
            &note,
            &task,
            &question,
            &answer,
        ];
        let here = nats::store_contains(b.mesh.state.root(), &all_markers);
        for m in [&name_a, &note, &question, &answer] {
            assert!(
                here.iter().any(|(found, _)| found == m),
                "{m} not in bravo's database: the check below would prove nothing"
            );
        }

        let mut secrets: Vec<&str> = all_markers.to_vec();
        // Folders: the sessions' working directories (named after the sessions, under temp
        // HOMEs whose names are random too).
        secrets.push(&alice.info.cwd);
        secrets.push(&bob.info.cwd);
        secrets.push(&team);
        let at_rest = nats::store_contains(server.store_dir(), &secrets);
        assert!(
            at_rest.is_empty(),
            "plaintext in the JetStream store: {at_rest:?}"
        );
        let wire = tap.bytes();
        assert!(
            wire.len() > 10_000,
            "the tap saw only {} bytes: did the daemons go through it?",
            wire.len()
        );
        // The wire did carry the opaque ids (so the search looks at the right bytes).
        let team_id = config::team_id(&team);
        assert!(contains(&wire, &team_id), "the team id is not on the wire");
        assert!(
            contains(&wire, &a.device()),
            "alpha's device id is not on the wire"
        );
        for s in &secrets {
            assert!(!contains(&wire, s), "`{s}` went over the wire in clear");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// 2. An untrusted key.

/// `mesh keys --json` of `m`: the entry of `host`.
fn keys_entry(m: &Machine, host: &str) -> Value {
    let out = m.run(&["keys", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
        .unwrap_or_else(|| panic!("no host {host} in {doc:#}"))
}

#[test]
fn an_impostor_with_a_known_host_name_reads_nothing_and_is_refused_until_trusted() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let team = "red";
        let team_id = config::team_id(team);
        let mut a = Machine::join_team(&server.url(), "laptop", team);
        let b = Machine::join_team(&server.url(), "devbox", team);
        let alice = a.mesh.session("alice");
        let x_on_b = b.mesh.session("x");
        a.sees("x", "devbox");
        b.sees("alice", "laptop");
        let pinned = b.report().fingerprint;

        // The impostor: a HOME of its own (its own key), joined under devbox's host name.
        let c = Machine::join_team(&server.url(), "devbox", team);
        let x_on_c = c.mesh.session("x");
        let offered = c.report().fingerprint;
        assert_ne!(offered, pinned);
        wait_for(
            "laptop to notice the second key offered for devbox",
            Duration::from_secs(30),
            || {
                a.report().hosts.iter().any(|h| {
                    h.host == "devbox" && h.offered_fingerprint.as_deref() == Some(&offered)
                })
            },
        );
        // Shown loudly: the report, `mesh keys`, `mesh health`.
        let r = a.report();
        let devbox = r.hosts.iter().find(|h| h.host == "devbox").unwrap();
        assert_eq!(devbox.fingerprint, pinned, "the pinned key stays: {r:?}");
        let entry = keys_entry(&a, "devbox");
        assert_eq!(entry["trusted"], false, "{entry:#}");
        assert_eq!(entry["fingerprint"], pinned.as_str(), "{entry:#}");
        assert_eq!(entry["offered_fingerprint"], offered.as_str(), "{entry:#}");
        let health = a.run(&["health"]);
        assert!(!health.status.success(), "{}", output_text(&health));
        let text = String::from_utf8_lossy(&health.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.contains("federation.keys"))
            .unwrap_or_else(|| panic!("no federation.keys line: {text}"));
        assert!(
            line.to_lowercase().contains("fail") || line.contains('✗'),
            "{line}"
        );

        // The impostor's mail to laptop's sessions (sealed with its key, published where the
        // daemon would publish it) is refused: never in alice's inbox, nowhere in laptop's
        // database.
        let mut attacker = server.client();
        let impostor_note = marker("impostor");
        let env = mail(
            &format!("{}-00000000000000aa", c.device()),
            Kind::Task,
            "alice",
            &impostor_note,
            None,
        );
        let frame = envelope::seal_frame(&c.key(), &a.key().public(), &env).unwrap();
        attacker
            .js_publish(
                &mail_subject(&team_id, &a.device()),
                Some(&env.id()),
                &frame,
            )
            .unwrap();
        drained(&mut attacker, &team_id, &a.device());
        assert!(a.take(&alice).is_empty());
        assert!(
            nats::store_contains(a.mesh.state.root(), &[&impostor_note]).is_empty(),
            "the impostor's mail reached laptop's database"
        );

        // Mail laptop sends to x@devbox still goes to devbox's pinned key: devbox gets it, the
        // impostor gets nothing.
        let for_b = marker("forb");
        a.mesh.send(&alice.caller, "x@devbox", Kind::Note, &for_b);
        let got = poll(Duration::from_secs(30), || {
            let m = b.take(&x_on_b);
            (!m.is_empty()).then_some(m)
        })
        .unwrap_or_else(|| panic!("devbox never got laptop's mail: {:?}", a.report()));
        assert_eq!(got[0].body, for_b);
        assert_eq!(got[0].from.name, "alice@laptop");
        drained(&mut attacker, &team_id, &c.device());
        assert!(c.take(&x_on_c).is_empty());
        assert!(
            nats::store_contains(c.mesh.state.root(), &[&for_b]).is_empty(),
            "the impostor could read mail meant for devbox"
        );
        a.alive();

        // The documented way to accept the new key: `mesh keys trust`. From then on mail goes to
        // the new device (and the old one reads none of it).
        let out = a.run(&["keys", "trust", "devbox", &offered]);
        assert!(out.status.success(), "{}", output_text(&out));
        let entry = keys_entry(&a, "devbox");
        assert_eq!(entry["trusted"], true, "{entry:#}");
        assert_eq!(entry["fingerprint"], offered.as_str(), "{entry:#}");
        // The new device's presence is accepted now: its session x is listed.
        wait_for(
            "laptop to list the newly trusted device's session",
            Duration::from_secs(30),
            || {
                a.peers()
                    .remote
                    .iter()
                    .any(|s| s.live && s.host == "devbox" && s.session_id == x_on_c.info.session_id)
            },
        );
        let for_c = marker("forc");
        a.mesh.send(&alice.caller, "x@devbox", Kind::Note, &for_c);
        let got = c.receive(&x_on_c, "the newly trusted device gets the mail");
        assert_eq!(got[0].body, for_c);
        drained(&mut attacker, &team_id, &b.device());
        assert!(b.take(&x_on_b).is_empty());
        assert!(nats::store_contains(b.mesh.state.root(), &[&for_c]).is_empty());
        // And the new device's mail is accepted.
        let from_c = marker("fromc");
        c.mesh
            .send(&x_on_c.caller, "alice@laptop", Kind::Note, &from_c);
        let got = a.receive(&alice, "the newly trusted device's mail is accepted");
        assert_eq!(got[0].body, from_c);
        assert_eq!(got[0].from.name, "x@devbox");
    });
}

#[test]
fn hand_made_frames_on_a_mail_subject_are_refused_and_change_nothing() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let team = "blue";
        let team_id = config::team_id(team);
        let mut a = Machine::join_team(&server.url(), "target", team);
        let mut b = Machine::join_team(&server.url(), "peer", team);
        let alice = a.mesh.session("alice");
        let bob = b.mesh.session("bob");
        a.sees("bob", "peer");
        b.sees("alice", "target");
        let (a_key, b_key) = (a.key(), b.key());
        let a_pub = a_key.public();
        let a_dev = a.device();
        let subject = mail_subject(&team_id, &a_dev);
        let mut attacker = server.client();

        // A frame really sent to peer, captured on the wire by a subscriber with the NATS
        // credentials, to be replayed to target's subject.
        attacker
            .subscribe(&mail_subject(&team_id, &b.device()), 2)
            .unwrap();
        attacker.flush().unwrap();
        let real = marker("real");
        a.mesh.send(&alice.caller, "bob@peer", Kind::Note, &real);
        let captured = attacker.next_msg(Duration::from_secs(20)).unwrap().payload;
        let got = poll(Duration::from_secs(30), || {
            let m = b.take(&bob);
            (!m.is_empty()).then_some(m)
        })
        .unwrap();
        assert_eq!(got[0].body, real);

        // A question alice asks of peer, pending while peer is away (its answer can only come
        // from peer's key).
        b.mesh.stop();
        let pending = a
            .mesh
            .send(&alice.caller, "bob@peer", Kind::Note, "waits for peer");
        // A question alice asks of peer meanwhile (she waits; the test does not).
        {
            let socket = a.mesh.state.socket();
            let caller = alice.caller.clone();
            std::thread::spawn(move || {
                let mut c =
                    mesh_client::Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
                let _ = c.ask(mesh_proto::Ask {
                    caller,
                    to: "bob@peer".into(),
                    question: "asked of peer".into(),
                    timeout_ms: 600_000,
                });
            });
        }
        let (question, question_gid): (u64, String) = poll(Duration::from_secs(20), || {
            let db = rusqlite::Connection::open_with_flags(
                a.mesh.state.db(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .ok()?;
            db.query_row(
                "SELECT id, gid FROM messages WHERE body = 'asked of peer'",
                [],
                |r| Ok((r.get::<_, i64>(0)?.unsigned_abs(), r.get(1)?)),
            )
            .ok()
        })
        .expect("the question is committed");
        // Another host of the team, trusted on first use like any other.
        let third = DeviceKey::generate();
        announce(&mut attacker, &team_id, &third, "third");
        wait_for("target to pin third", Duration::from_secs(30), || {
            a.report().hosts.iter().any(|h| h.host == "third")
        });
        wait_for("the outbox to drain", Duration::from_secs(20), || {
            a.report().outbox_depth == 0
        });

        drained(&mut attacker, &team_id, &a_dev);
        let delivered_before = deliveries(&mut attacker, &team_id, &a_dev);
        // A key announced under target's own host name, refused once read (its refusal is the
        // first line this test makes target log: such lines are rate-limited).
        let impostor = DeviceKey::generate();
        announce(&mut attacker, &team_id, &impostor, "target");
        wait_for(
            "target to refuse an announcement of its own name",
            Duration::from_secs(30),
            || {
                a.mesh.log().contains(&format!(
                    "another device ({})",
                    impostor.public().fingerprint()
                ))
            },
        );
        let mut secrets = Vec::new();
        let published = std::cell::Cell::new(0u64);
        let publish = |c: &mut Client, what: &str, id: &str, bytes: &[u8]| {
            c.js_publish(&subject, Some(id), bytes)
                .unwrap_or_else(|e| panic!("publish {what}: {e}"));
            published.set(published.get() + 1);
        };
        // An envelope sealed by `key` for target, under its own id.
        let publish_sealed = |c: &mut Client, what: &str, key: &DeviceKey, env: &Envelope| {
            publish(
                c,
                what,
                &env.id(),
                &envelope::seal_frame(key, &a_pub, env).unwrap(),
            );
        };
        // Garbage.
        publish(&mut attacker, "garbage", "g1", b"hello, daemon");
        publish(&mut attacker, "zeros", "g2", &[0u8; 4096]);
        // Over the frame limit (under the server's payload limit).
        let big = vec![0x5au8; envelope::MAX_FRAME + 1024];
        publish(&mut attacker, "oversized", "g3", &big);
        // Over the server's payload limit: the server refuses it (and drops that client).
        {
            let mut other = server.client();
            let huge = vec![0x5au8; transport::MAX_PAYLOAD + 1];
            assert!(other.js_publish(&subject, Some("g4"), &huge).is_err());
        }
        // A valid frame sealed with a key nobody announced.
        let stranger = DeviceKey::generate();
        let s = marker("stranger");
        let env = mail(
            &format!("{}-0000000000000001", stranger.device_id()),
            Kind::Task,
            "alice",
            &s,
            None,
        );
        publish_sealed(&mut attacker, "unknown key", &stranger, &env);
        secrets.push(s);
        // The frame captured on peer's subject, replayed to target's.
        publish(&mut attacker, "replay", "g5", &captured);
        // A valid frame from peer whose kind or id was altered on the way.
        let s = marker("altered");
        let env = mail(
            &format!("{}-0000000000000002", b_key.device_id()),
            Kind::Task,
            "alice",
            &s,
            None,
        );
        let good =
            envelope::read_frame(&envelope::seal_frame(&b_key, &a_pub, &env).unwrap()).unwrap();
        for (what, f) in [
            (
                "id",
                Frame {
                    id: format!("{}-0000000000000003", b_key.device_id()),
                    ..good.clone()
                },
            ),
            (
                "kind",
                Frame {
                    kind: EnvelopeKind::Receipt,
                    ..good.clone()
                },
            ),
            (
                "recipient",
                Frame {
                    to: DeviceKey::generate().device_id(),
                    ..good.clone()
                },
            ),
        ] {
            publish(
                &mut attacker,
                what,
                &format!("alt-{what}"),
                &postcard::to_allocvec(&f).unwrap(),
            );
        }
        secrets.push(s);
        // A frame sealed by peer's key for another device, relabelled for target.
        let s = marker("relabel");
        let env = mail(
            &format!("{}-0000000000000004", b_key.device_id()),
            Kind::Task,
            "alice",
            &s,
            None,
        );
        let other = DeviceKey::generate();
        let f = envelope::read_frame(&envelope::seal_frame(&b_key, &other.public(), &env).unwrap())
            .unwrap();
        let f = Frame {
            to: a_key.device_id(),
            ..f
        };
        publish(
            &mut attacker,
            "relabelled",
            "relabel",
            &postcard::to_allocvec(&f).unwrap(),
        );
        secrets.push(s);
        // An answer, from peer's own key, to a question target never asked.
        let s = marker("answer");
        let env = mail(
            &format!("{}-0000000000000005", b_key.device_id()),
            Kind::Answer,
            "alice",
            &s,
            Some(format!("{a_dev}-00000000deadbeef")),
        );
        publish_sealed(&mut attacker, "stray answer", &b_key, &env);
        secrets.push(s);
        // An answer to the question asked of peer, from another (trusted) host.
        let s = marker("thirdanswer");
        let env = mail(
            &format!("{}-0000000000000006", third.device_id()),
            Kind::Answer,
            "alice",
            &s,
            Some(question_gid.clone()),
        );
        publish_sealed(&mut attacker, "answer from another host", &third, &env);
        secrets.push(s);
        // A receipt from third for the question asked of peer.
        let env = Envelope::Receipt(Receipt {
            gid: question_gid.clone(),
            delivered_ms: Some(now_ms()),
            answered_ms: Some(now_ms()),
        });
        publish_sealed(&mut attacker, "receipt from another host", &third, &env);
        // Receipts from peer's key for mail target never sent (one with target's prefix, one
        // with peer's), and one from a stranger.
        for (key, gid) in [
            (&b_key, format!("{a_dev}-00000000deadbeef")),
            (&b_key, format!("{}-0000000000000001", b_key.device_id())),
            (&stranger, format!("{a_dev}-0000000000000001")),
        ] {
            let env = Envelope::Receipt(Receipt {
                gid,
                delivered_ms: Some(now_ms()),
                answered_ms: Some(now_ms()),
            });
            publish_sealed(&mut attacker, "receipt", key, &env);
        }
        // A valid frame from a key announced under target's own host name (announced first
        // below): an announcement target has read and refused, so the mail is refused at once.
        let s = marker("impostor");
        let env = mail(
            &format!("{}-0000000000000001", impostor.device_id()),
            Kind::Task,
            "alice",
            &s,
            None,
        );
        publish_sealed(&mut attacker, "announced impostor", &impostor, &env);
        secrets.push(s);
        // Presence sent as mail.
        let s = marker("presence");
        let env = Envelope::Presence(Presence {
            host: "peer".to_owned(),
            sent_ms: now_ms(),
            leaving: false,
            sessions: vec![PresenceSession {
                session_id: "p1".to_owned(),
                name: s.clone(),
                summary: String::new(),
                idle: true,
                pending: 0,
            }],
        });
        publish_sealed(&mut attacker, "presence as mail", &b_key, &env);
        secrets.push(s);

        drained(&mut attacker, &team_id, &a_dev);
        a.alive();
        // Each was settled on its first delivery: junk, even from a key nobody announced,
        // costs the receiver one delivery, not a burst of them.
        assert_eq!(
            deliveries(&mut attacker, &team_id, &a_dev) - delivered_before,
            published.get(),
            "deliveries of the {} hand-made frames",
            published.get()
        );
        assert!(a.take(&alice).is_empty(), "a hand-made frame was accepted");
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let found = nats::store_contains(a.mesh.state.root(), &secret_refs);
        assert!(
            found.is_empty(),
            "refused mail in target's database: {found:?}"
        );
        assert!(!a.peers().remote.iter().any(|s| secrets.contains(&s.name)));
        // The mail waiting for peer is still waiting: no forged receipt moved it.
        let status = a
            .mesh
            .conn()
            .message_status(mesh_proto::MessageStatus {
                message_id: pending,
            })
            .unwrap();
        assert_eq!(status.status, mesh_proto::Status::Queued, "{status:?}");
        let status = a
            .mesh
            .conn()
            .message_status(mesh_proto::MessageStatus {
                message_id: question,
            })
            .unwrap();
        assert_eq!(
            status.status,
            mesh_proto::Status::Queued,
            "another host answered or receipted a question asked of peer: {status:?}"
        );

        // The same path does deliver what peer's key really seals (so the refusals above are
        // the daemon's doing, not a broken forgery).
        let ok = marker("genuine");
        let env = mail(
            &format!("{}-0000000000000009", b_key.device_id()),
            Kind::Task,
            "alice",
            &ok,
            None,
        );
        publish_sealed(&mut attacker, "genuine", &b_key, &env);
        let got = a.receive(&alice, "a genuine frame from peer's key is accepted");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, ok);
        assert_eq!(got[0].from.name, "mallory@peer");
        // Published again (a replay with a fresh dedupe id): not delivered twice.
        publish(
            &mut attacker,
            "genuine again",
            "genuine-again",
            &envelope::seal_frame(&b_key, &a_pub, &env).unwrap(),
        );
        drained(&mut attacker, &team_id, &a_dev);
        assert!(
            a.take(&alice).is_empty(),
            "a replayed mail was delivered twice"
        );
        a.alive();

        // Peer, back, still gets the mail that waited, once, and the captured frame that was
        // replayed to its own subject again is not delivered twice.
        b.mesh.spawn_daemon();
        attacker
            .js_publish(
                &mail_subject(&team_id, &b.device()),
                Some("replay-b"),
                &captured,
            )
            .unwrap();
        let mut bodies = Vec::new();
        wait_for(
            "peer to get the waiting mail",
            Duration::from_secs(30),
            || {
                bodies.extend(b.take(&bob).into_iter().map(|m| m.body));
                bodies.iter().any(|m| m == "waits for peer")
                    && bodies.iter().any(|m| m == "asked of peer")
            },
        );
        drained(&mut attacker, &team_id, &b.device());
        bodies.extend(b.take(&bob).into_iter().map(|m| m.body));
        assert_eq!(
            bodies,
            vec!["waits for peer".to_owned(), "asked of peer".to_owned()]
        );
    });
}

/// Retention forgets delivered mail, and its global id with it: a captured envelope published
/// again after that must not be delivered a second time.
#[test]
fn mail_replayed_after_retention_forgot_it_is_refused() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let team = "grey";
        let team_id = config::team_id(team);
        // Delivered mail is kept 6 s here (the sweep runs every 30 s).
        let days = format!("{}", 6.0 / 86_400.0);
        let a = Machine::join_env(
            &server.url(),
            "forgetful",
            &["--team".as_ref(), team.as_ref()],
            &[("CLAUDE_MESH_RETAIN_DAYS", days.as_str())],
        );
        let b = Machine::join_team(&server.url(), "sender", team);
        let alice = a.mesh.session("alice");
        let bob = b.mesh.session("bob");
        a.sees("bob", "sender");
        b.sees("alice", "forgetful");
        let mut spy = server.client();
        spy.subscribe(&mail_subject(&team_id, &a.device()), 2)
            .unwrap();
        spy.flush().unwrap();
        b.mesh
            .send(&bob.caller, "alice@forgetful", Kind::Task, "do it once");
        let captured = spy.next_msg(Duration::from_secs(20)).unwrap().payload;
        let gid = envelope::read_frame(&captured).unwrap().id;
        let got = a.receive(&alice, "the task arrives");
        assert_eq!(got[0].body, "do it once");
        let kept = |gid: &str| -> bool {
            let db = rusqlite::Connection::open_with_flags(
                a.mesh.state.db(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            db.query_row("SELECT count(*) FROM messages WHERE gid = ?1", [gid], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
                > 0
        };
        assert!(kept(&gid));
        wait_for(
            "retention to forget the task",
            Duration::from_secs(90),
            || !kept(&gid),
        );
        spy.js_publish(
            &mail_subject(&team_id, &a.device()),
            Some("replayed-after-retention"),
            &captured,
        )
        .unwrap();
        drained(&mut spy, &team_id, &a.device());
        assert!(
            a.take(&alice).is_empty(),
            "mail forgotten by retention was delivered again"
        );
        // Fresh mail still arrives.
        b.mesh
            .send(&bob.caller, "alice@forgetful", Kind::Task, "fresh");
        let got = a.receive(&alice, "fresh mail arrives");
        assert_eq!(got[0].body, "fresh");
    });
}

/// The `Nats-Msg-Id` header of a message, if any.
fn msg_id(m: &nats::Msg) -> Option<String> {
    m.headers.as_deref()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("Nats-Msg-Id")
            .then(|| v.trim().to_owned())
    })
}

/// The JetStream dedupe window is the stream's, across subjects: a dedupe id someone can read
/// or derive from the wire can be used up first, and the genuine publish is then dropped as a
/// duplicate. A process with the credentials sees every mail's id in clear; a receipt's id must
/// not follow from it.
#[test]
fn dedupe_ids_seen_on_the_wire_cannot_suppress_a_receipt() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let team = "amber";
        let team_id = config::team_id(team);
        let a = Machine::join_team(&server.url(), "origin", team);
        let b = Machine::join_team(&server.url(), "dest", team);
        let alice = a.mesh.session("alice");
        let bob = b.mesh.session("bob");
        a.sees("bob", "dest");
        b.sees("alice", "origin");
        let mut spy = server.client();
        spy.subscribe(&mail_subject(&team_id, &b.device()), 2)
            .unwrap();
        spy.flush().unwrap();
        let id = a
            .mesh
            .send(&alice.caller, "bob@dest", Kind::Task, "watched");
        let seen = spy.next_msg(Duration::from_secs(20)).unwrap();
        let mail_id = msg_id(&seen).expect("mail is published with a dedupe id");
        let frame_id = envelope::read_frame(&seen.payload).unwrap().id;
        // Use up every id the receipt could be published under if it followed from what is on
        // the wire (the mail's dedupe id, its frame id), before dest hands the mail out.
        for base in [&mail_id, &frame_id] {
            for guess in [format!("{base}.r"), base.to_string()] {
                spy.js_publish(
                    &mail_subject(&team_id, &a.device()),
                    Some(&guess),
                    b"used up",
                )
                .unwrap();
            }
        }
        let got = b.receive(&bob, "dest gets the task");
        assert_eq!(got[0].body, "watched");
        wait_for(
            "the receipt to reach origin",
            Duration::from_secs(30),
            || {
                a.mesh
                    .conn()
                    .message_status(mesh_proto::MessageStatus { message_id: id })
                    .unwrap()
                    .status
                    == mesh_proto::Status::Delivered
            },
        );
    });
}

// ---------------------------------------------------------------------------------------------
// 3. Hostile presence and names.

/// Hostile session names and summaries: control characters, escapes, `@`, quotes, bidi.
fn hostile_name(i: usize) -> String {
    match i % 6 {
        0 => format!("\x1b[31mred{i}\x1b[0m"),
        1 => format!("a@b{i}"),
        2 => format!("\"q'{i}`\\"),
        3 => format!("\u{202e}rtl{i}\u{2066}"),
        4 => format!("line\nbreak\r{i}\t\u{7}"),
        _ => format!("same{}", i % 2),
    }
}

fn presence(host: &str, sent_ms: i64, sessions: Vec<PresenceSession>) -> Envelope {
    Envelope::Presence(Presence {
        host: host.to_owned(),
        sent_ms,
        leaving: false,
        sessions,
    })
}

fn session(id: &str, name: &str, summary: &str) -> PresenceSession {
    PresenceSession {
        session_id: id.to_owned(),
        name: name.to_owned(),
        summary: summary.to_owned(),
        idle: false,
        pending: u32::MAX,
    }
}

/// Publishes sealed presence to one daemon's presence subject, from one connection (so that what
/// it publishes arrives in order).
struct Presenter {
    c: Client,
    subject: String,
    to: PublicKey,
    /// A second peer whose presence marks points in the stream.
    sync: DeviceKey,
    tick: i64,
}

impl Presenter {
    /// A fresh `sent_ms`, later than every one before.
    fn next(&mut self) -> i64 {
        self.tick += 1;
        self.tick
    }

    /// Seal `env` from `key` (unvalidated) and publish it; the bytes published.
    fn send(&mut self, key: &DeviceKey, env: &Envelope) -> Vec<u8> {
        let bytes = seal_unchecked(key, &self.to, env);
        self.raw(&bytes);
        bytes
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.c.publish(&self.subject, bytes).unwrap();
        self.c.flush().unwrap();
    }

    /// `sync` lists `name`; wait until `m` lists it (everything published before was handled).
    /// Presence is core NATS (nothing kept for a subscriber not there yet, as a daemon that
    /// just started may not be): published again, with a later time, every second until seen.
    fn mark(&mut self, m: &Machine, name: &str) {
        let mut last: Option<std::time::Instant> = None;
        wait_for(
            &format!("{} to list {name}@sync", m.host),
            Duration::from_secs(30),
            || {
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    let t = self.next();
                    let bytes = seal_unchecked(
                        &self.sync,
                        &self.to,
                        &presence("sync", t, vec![session(name, name, "")]),
                    );
                    self.raw(&bytes);
                    last = Some(std::time::Instant::now());
                }
                m.lists(name, "sync")
            },
        );
    }
}

#[test]
fn hostile_presence_is_bounded_sanitized_and_never_resurrects_a_departed_session() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let team = "green";
        let team_id = config::team_id(team);
        let mut a = Machine::join_team(&server.url(), "home", team);
        let _alice = a.mesh.session("alice");
        let a_pub = a.key().public();
        // Two peers of the team (anyone with the credentials may join under a new name; trust on
        // first use pins them): `evil` says hostile things, `sync` marks points in the stream of
        // presence (one connection publishes both, so they arrive in order).
        let (evil, sync) = (DeviceKey::generate(), DeviceKey::generate());
        let mut c = server.client();
        announce(&mut c, &team_id, &evil, "evil");
        announce(&mut c, &team_id, &sync, "sync");
        drop(c);
        wait_for("home to pin evil and sync", Duration::from_secs(30), || {
            let hosts: HashSet<String> = a.report().hosts.into_iter().map(|h| h.host).collect();
            hosts.contains("evil") && hosts.contains("sync")
        });
        let mut p = Presenter {
            c: server.client(),
            subject: format!("mesh.{team_id}.presence.{}", a.device()),
            to: a_pub,
            sync,
            tick: now_ms(),
        };
        // 256 sessions (the most a presence may list), every name and summary hostile, the
        // summaries at their limit, duplicate ids and duplicate names.
        let summary_unit = "\x1b]0;pwned\x07\u{202e}\x1b[2J@'\"\n";
        let summary: String = summary_unit
            .repeat(mesh_proto::MAX_SUMMARY_LEN / summary_unit.len() + 1)
            .chars()
            .take(mesh_proto::MAX_SUMMARY_LEN / 4)
            .collect();
        assert!(summary.len() <= mesh_proto::MAX_SUMMARY_LEN);
        let sessions: Vec<PresenceSession> = (0..envelope::MAX_PRESENCE_SESSIONS)
            .map(|i| {
                let id = if i >= 250 {
                    "dup-id".to_owned()
                } else {
                    format!("s{i}")
                };
                session(&id, &hostile_name(i), &summary)
            })
            .collect();
        let t = p.next();
        p.send(&evil, &presence("evil", t, sessions));
        p.mark(&a, "sync1");
        a.alive();
        let listed: Vec<_> = a
            .peers()
            .remote
            .into_iter()
            .filter(|s| s.host == "evil")
            .collect();
        assert!(
            listed.len() >= 200 && listed.len() <= envelope::MAX_PRESENCE_SESSIONS,
            "{} listed",
            listed.len()
        );
        for s in &listed {
            assert!(!s.name.contains('@'), "{:?}", s.name);
            assert!(
                !s.name
                    .chars()
                    .any(|c| c.is_control() || mesh_proto::sanitize::is_hidden(c)),
                "{:?}",
                s.name
            );
        }
        let out = a.run(&["list", "--scope", "mesh"]);
        assert!(out.status.success(), "{}", output_text(&out));
        let table = String::from_utf8(out.stdout).unwrap();
        assert!(
            !table
                .chars()
                .any(|c| (c.is_control() && c != '\n') || mesh_proto::sanitize::is_hidden(c)),
            "control or bidi characters reached the terminal: {table:?}"
        );
        let rows: Vec<&str> = table.lines().filter(|l| l.contains(" evil ")).collect();
        assert_eq!(rows.len(), listed.len(), "{table}");
        let widest = table.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest < 400, "a row of {widest} characters: {table}");
        for needle in ["red0", "rtl3", "a-b1", "same1"] {
            assert!(table.contains(needle), "{needle} not listed: {table}");
        }
        let out = a.run(&["list", "--scope", "mesh", "--json"]);
        assert!(out.status.success(), "{}", output_text(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(doc["sessions"].as_array().unwrap().len() > listed.len());

        // Over the limits: refused whole (what `evil` listed before stays).
        let t = p.next();
        let mut over = vec![session("o1", "overnamed", "ok")];
        over.push(session(
            "o2",
            "oversummary",
            &"x".repeat(mesh_proto::MAX_SUMMARY_LEN + 1),
        ));
        p.send(&evil, &presence("evil", t, over));
        let t = p.next();
        let many: Vec<_> = (0..=envelope::MAX_PRESENCE_SESSIONS)
            .map(|i| session(&format!("m{i}"), "toomany", ""))
            .collect();
        p.send(&evil, &presence("evil", t, many));
        let t = p.next();
        // A summary of almost a megabyte: over the frame limit, refused before it is opened.
        p.send(
            &evil,
            &presence(
                "evil",
                t,
                vec![session("big", "bigsummary", &"s".repeat(940 * 1024))],
            ),
        );
        // A megabyte: the server itself refuses it (and drops that client).
        {
            let mut other = server.client();
            let t = p.next();
            let bytes = seal_unchecked(
                &evil,
                &a_pub,
                &presence(
                    "evil",
                    t,
                    vec![session("mb", "megabyte", &"m".repeat(1 << 20))],
                ),
            );
            let _ = other.publish(&p.subject, &bytes);
            assert!(other.flush().is_err(), "the server took a frame over 1 MB");
        }
        p.mark(&a, "sync2");
        a.alive();
        let names: HashSet<String> = a
            .peers()
            .remote
            .into_iter()
            .filter(|s| s.host == "evil")
            .map(|s| s.name)
            .collect();
        for refused in [
            "overnamed",
            "oversummary",
            "toomany",
            "bigsummary",
            "megabyte",
        ] {
            assert!(!names.contains(refused), "{refused} listed: {names:?}");
        }
        assert!(
            names.contains("same1"),
            "evil's valid list was dropped: {names:?}"
        );

        // Fresh session ids at every heartbeat: what a host's presences leave behind (ended
        // sessions, kept so that mail to them can still be addressed) stays bounded.
        for round in 0..6 {
            let t = p.next();
            let sessions = (0..envelope::MAX_PRESENCE_SESSIONS)
                .map(|i| session(&format!("r{round}-{i}"), &format!("n{i}"), ""))
                .collect();
            p.send(&evil, &presence("evil", t, sessions));
        }
        p.mark(&a, "sync-rounds");
        let kept = a
            .mesh
            .conn()
            .call_typed(ListScoped {
                list: List {
                    caller: Caller::default(),
                    scope: Scope::Machine,
                    include_offline: true,
                },
                reach: Reach::Mesh,
            })
            .unwrap()
            .remote
            .into_iter()
            .filter(|s| s.host == "evil")
            .count();
        assert!(
            (envelope::MAX_PRESENCE_SESSIONS
                ..=envelope::MAX_PRESENCE_SESSIONS
                    + mesh_daemon::store::remote::MAX_UNLISTED_PER_HOST)
                .contains(&kept),
            "{kept} sessions of evil kept"
        );

        // A presence replayed later (an older sent_ms) does not bring back a departed session.
        let t = p.next();
        let old = p.send(
            &evil,
            &presence("evil", t, vec![session("ghost", "ghost", "")]),
        );
        a.sees("ghost", "evil");
        let t = p.next();
        p.send(
            &evil,
            &presence("evil", t, vec![session("alive", "alive", "")]),
        );
        a.sees("alive", "evil");
        assert!(!a.lists("ghost", "evil"));
        p.raw(&old);
        p.mark(&a, "sync3");
        assert!(
            !a.lists("ghost", "evil"),
            "a replayed presence resurrected ghost"
        );
        assert!(a.lists("alive", "evil"));

        // Nor after the daemon restarted (it forgot what it heard, not what it stored).
        a.mesh.kill9();
        a.mesh.spawn_daemon();
        p.mark(&a, "sync4");
        p.raw(&old);
        p.mark(&a, "sync5");
        assert!(
            !a.lists("ghost", "evil"),
            "a replayed presence resurrected ghost after a restart"
        );
        a.alive();
    });
}

/// Anyone with the credentials can publish junk to a device's subjects, and each piece is refused
/// with a log line: at most `quiet::BURST` such lines a minute, so a flood of junk is not a flood
/// of log lines (an on-demand daemon's `mesh.log` has no bound); the daemon goes on as usual.
#[test]
fn a_flood_of_junk_is_not_a_flood_of_log_lines() {
    use mesh_daemon::federation::quiet;
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let team = "blue";
        let team_id = config::team_id(team);
        let a = Machine::join_team(&server.url(), "target", team);
        let alice = a.mesh.session("alice");
        let a_dev = a.device();
        let mut attacker = server.client();
        let flood = 300;
        for i in 0..flood {
            attacker
                .js_publish(
                    &mail_subject(&team_id, &a_dev),
                    Some(&format!("junk-{i}")),
                    format!("junk {i}").as_bytes(),
                )
                .unwrap();
        }
        drained(&mut attacker, &team_id, &a_dev);
        let log = a.mesh.log();
        let lines = log.matches("dropped a malformed envelope").count();
        assert!(
            (1..=quiet::BURST as usize).contains(&lines),
            "{lines} log lines for {flood} junk frames"
        );
        // Still serving: local mail goes on.
        let ann = a.mesh.session("ann");
        a.mesh.send(&alice.caller, "ann", Kind::Note, "still here");
        assert_eq!(a.take(&ann)[0].body, "still here");
    });
}

/// The key announcements are public and anyone with the credentials can publish one: someone
/// else's public key announced again under another name does not pin that name (a device is
/// one host), and its mail and presence stay that host's.
#[test]
fn a_known_key_announced_under_another_name_is_not_pinned_again() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let team_id = config::team_id("default");
        let a = Machine::join_team(&server.url(), "watcher", "default");
        let b = Machine::join_team(&server.url(), "honest", "default");
        let alice = a.mesh.session("alice");
        let bob = b.mesh.session("bob");
        a.sees("bob", "honest");
        let mut c = server.client();
        let b_key = b.key();
        let forged = Announce {
            v: envelope::VERSION,
            public_key: *b_key.public().as_bytes(),
            host: "aaa-decoy".to_owned(),
            team: team_id.clone(),
            sent_ms: now_ms(),
        };
        c.js_publish(
            &format!("mesh.{team_id}.keys.{}", b_key.device_id()),
            None,
            &envelope::announce_bytes(&forged),
        )
        .unwrap();
        // A later announcement, to know the forged one was handled.
        let marker_key = DeviceKey::generate();
        announce(&mut c, &team_id, &marker_key, "zzz-marker");
        wait_for("watcher to pin zzz-marker", Duration::from_secs(30), || {
            a.report().hosts.iter().any(|h| h.host == "zzz-marker")
        });
        let hosts: Vec<String> = a.report().hosts.into_iter().map(|h| h.host).collect();
        assert!(
            !hosts.iter().any(|h| h == "aaa-decoy"),
            "honest's key pinned under a second name: {hosts:?}"
        );
        // honest's mail is still honest's.
        b.mesh
            .send(&bob.caller, "alice@watcher", Kind::Note, "signed honest");
        let got = a.receive(&alice, "honest's mail arrives");
        assert_eq!(got[0].from.name, "bob@honest");
        // honest put its own announcement back: a machine joining now pins its key under its
        // own name.
        let d = Machine::join_team(&server.url(), "newcomer", "default");
        d.sees("bob", "honest");
        let hosts: Vec<String> = d.report().hosts.into_iter().map(|h| h.host).collect();
        assert!(
            !hosts.iter().any(|h| h == "aaa-decoy"),
            "the newcomer pinned honest's key under the forged name: {hosts:?}"
        );
    });
}

/// Anyone with the credentials can announce keys under as many host names as they like: the
/// hosts a daemon pins are bounded.
#[test]
fn announcing_endless_host_names_pins_a_bounded_number() {
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let team_id = config::team_id("default");
        let mut a = Machine::join_team(&server.url(), "target", "default");
        let mut c = server.client();
        let n = mesh_daemon::store::hosts::MAX_HOSTS + 8;
        let mut last_key = DeviceKey::generate();
        for i in 0..n {
            last_key = DeviceKey::generate();
            announce(&mut c, &team_id, &last_key, &format!("h{i:05}"));
        }
        let last = format!("h{:05}", n - 1);
        // Mail from the last one is dropped only once target has read (and refused) its
        // announcement, and so every one before it: then target's consumer is drained.
        let env = mail(
            &format!("{}-0000000000000001", last_key.device_id()),
            Kind::Task,
            "alice",
            "from the last",
            None,
        );
        c.js_publish(
            &mail_subject(&team_id, &a.device()),
            Some("from-the-last"),
            &envelope::seal_frame(&last_key, &a.key().public(), &env).unwrap(),
        )
        .unwrap();
        drained(&mut c, &team_id, &a.device());
        let r = a.report();
        assert_eq!(r.hosts.len(), mesh_daemon::store::hosts::MAX_HOSTS);
        assert!(!r.hosts.iter().any(|h| h.host == last));
        a.alive();
    });
}

// ---------------------------------------------------------------------------------------------
// 4. The local path is unchanged.

/// The inet sockets (TCP, UDP, raw; v4 and v6) among `pid`'s open files: each socket inode of
/// its fds looked up in its network namespace's tables.
fn inet_sockets(pid: u32) -> Vec<String> {
    let mut inodes = HashSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(e.path())
            && let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    assert!(
        !inodes.is_empty(),
        "pid {pid} has no socket at all (not even its own)"
    );
    let mut found = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6", "raw", "raw6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && inodes.contains(cols[9]) {
                found.push(format!("{table}: {line}"));
            }
        }
    }
    found
}

#[test]
fn a_daemon_outside_any_mesh_opens_no_network_socket() {
    let mesh = Mesh::start();
    let a = mesh.session("alpha");
    let _b = mesh.session("beta");
    mesh.send(&a.caller, "beta", Kind::Task, "local only");
    let out = mesh
        .mesh()
        .args(["list", "--scope", "mesh"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let found = inet_sockets(mesh.daemon_pid());
    assert!(
        found.is_empty(),
        "a daemon without federation.toml: {found:?}"
    );

    // The same check finds the connection of a joined daemon (so it can fail).
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let joined = Machine::join_team(&server.url(), "netcheck", "default");
        wait_for("the daemon to connect", Duration::from_secs(20), || {
            joined.report().connected
        });
        let found = inet_sockets(joined.mesh.daemon_pid());
        assert!(
            found.iter().any(|l| l.starts_with("tcp")),
            "a joined daemon shows no TCP socket: the check is blind"
        );
    });
}

/// `mesh hook post-tool-use` of `s` in `m`, optionally inside a network namespace of its own
/// (`unshare -rn`: no interface up, so no connection to anything but Unix sockets can succeed).
fn post_tool_use(m: &Mesh, s: &Session, isolated: bool) -> (bool, String) {
    let input = json!({
        "session_id": s.info.session_id,
        "transcript_path": "/tmp/transcripts/x.jsonl",
        "cwd": s.info.cwd,
        "hook_event_name": "PostToolUse",
        "permission_mode": "default",
        "tool_name": "Bash",
        "tool_input": {"command": "ls"},
        "tool_response": {"stdout": "", "stderr": ""},
        "tool_use_id": "toolu_1",
    });
    let template = m.mesh();
    let mut cmd = if isolated {
        let mut c = Command::new("unshare");
        c.arg("-rn").arg(template.get_program());
        c
    } else {
        Command::new(template.get_program())
    };
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.args(["hook", "post-tool-use"])
        .env("CLAUDE_PID", s.pid().to_string());
    let child = crate::hooks::spawn_with_input(cmd, Stdio::piped(), &input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn hooks_on_a_joined_machine_never_touch_the_network() {
    // `unshare -rn` needs unprivileged user namespaces.
    let userns = Command::new("unshare")
        .args(["-rn", "true"])
        .status()
        .is_ok_and(|s| s.success());
    each_flavor(|_, bin| {
        let server = NatsServer::start(bin);
        let a = Machine::join_team(&server.url(), "hooked", "default");
        let b = Machine::join_team(&server.url(), "sender", "default");
        let alice = a.mesh.session("alice");
        let bob = b.mesh.session("bob");
        a.sees("bob", "sender");
        b.sees("alice", "hooked");

        // Every later connection to the mesh's server goes to a trap: federation.toml now names
        // a port this test listens on (the daemon read the file at its start and keeps its
        // connection). A hook that read federation.toml and connected would be caught here.
        let trap = TcpListener::bind("127.0.0.1:0").unwrap();
        trap.set_nonblocking(true).unwrap();
        let path = FederationConfig::path(a.mesh.state.root());
        let original = std::fs::read_to_string(&path).unwrap();
        let url = FederationConfig::load(a.mesh.state.root())
            .unwrap()
            .unwrap()
            .url;
        let trapped = original.replace(&url, &format!("nats://{}", trap.local_addr().unwrap()));
        assert_ne!(trapped, original);
        std::fs::write(&path, trapped).unwrap();

        for (i, isolated) in [false, true].into_iter().enumerate() {
            if isolated && !userns {
                eprintln!("SKIPPED the hook in a network namespace: unshare -rn is not allowed");
                continue;
            }
            let body = format!("remote task {i}");
            let id = b.mesh.send(&bob.caller, "alice@hooked", Kind::Task, &body);
            wait_for("the task to reach hooked", Duration::from_secs(30), || {
                a.mesh
                    .conn()
                    .consume(Consume {
                        caller: alice.caller.clone(),
                        class: Class::All,
                        peek: true,
                        max_bytes: 0,
                        handout: 0,
                    })
                    .unwrap()
                    .messages
                    .iter()
                    .any(|m| m.body == body)
            });
            let (ok, text) = post_tool_use(&a.mesh, &alice, isolated);
            assert!(ok, "isolated={isolated}: {text}");
            assert!(text.contains(&body), "isolated={isolated}: {text}");
            assert!(text.contains("bob@sender"), "isolated={isolated}: {text}");
            // Its receipt went back through the daemon.
            wait_for("the receipt", Duration::from_secs(30), || {
                b.mesh
                    .conn()
                    .message_status(mesh_proto::MessageStatus { message_id: id })
                    .unwrap()
                    .status
                    == mesh_proto::Status::Delivered
            });
        }
        assert!(
            matches!(trap.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "something connected to the federation URL during the hooks"
        );
        std::fs::write(&path, original).unwrap();
    });
}
