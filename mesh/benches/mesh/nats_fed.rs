//! The mesh across machines (section `nats`, after the raw limits of `nats_raw`): two `mesh
//! daemon` processes (the binary the bench measures), each on its own HOME joined with `mesh
//! join` to a real `nats-server` on 127.0.0.1 as host `fed-a` and host `fed-b`, for each server
//! flavor:
//! - F1: an answer's commit on B → the asker's `ask` on A returns. The asker (a thread of this
//!   process, session `asker` on A) is blocked in `ask` to `answerer@fed-b`; the replier (this
//!   process, session `answerer` on B) polls B until the question is there and replies. Both
//!   daemons log the `mesh::latency` trace event (`CLAUDE_MESH_LOG`, that target only): B right
//!   after the answer's commit (before the forwarder publishes it), A right after it committed
//!   the received answer (before it wakes the asker). The two daemons and the bench run on one
//!   machine, so the events' log timestamps (the system clock, µs) and the asker's return
//!   (`SystemTime::now()`) are read on one clock.
//! - F2: durable federated messages/s: 8 threads, each with its own connection to A, send tasks
//!   to session `sink@fed-b` for the run's duration (each send returns once A committed it to
//!   its outbox); B's commits of them are counted by polling `max(id)` of B's `messages` table
//!   (a read-only SQLite connection) every 5 ms. The figure is all of them over the time from
//!   the first send to the poll that saw the last one committed on B. Then the sink takes its
//!   inbox: every message arrived exactly once. For reference, once A has every message's
//!   receipt, the same 8 senders send to a session on A itself for as long (the local durable
//!   path of part 4, no NATS). F2's target is against N2 (the issue's); where the server has
//!   it (2.11+), F2 is also given as a share of N2s, raw JetStream with every write fsync'd,
//!   as every mesh message is.
//!
//!   F2's CPU per message: the CPU time (all threads, exited ones included: each process's
//!   kernel CPU clock, `procs::process_cpu_us`) of daemon A, daemon B, the `nats-server` and
//!   this bench process (the 8 sender threads and the poller), over F2's window (the senders'
//!   start to the poll that saw the last message on B), each divided by the messages; and the
//!   same for A and the bench over the local sends. With N2's, from `nats_raw`, this gives the
//!   most each path could do on this machine's CPUs if it never waited (`procs::cpu_bound`). Outside F2's window, the CPU of
//!   the sink taking its inbox and of the receipts that go back to A (one per message handed
//!   out, a mail of its own), until A has every one; the local sends start after that.
//!
//!   F2's ceiling: every federated message is at least an N3 message (`nats_raw`: NATS alone
//!   publishing, consuming and acking it) plus a local send (the sender's round trip and A's
//!   durable commit), so the CPU bound of N3's CPU per message plus the local sends' is the
//!   most any implementation of F2 could reach on this machine; the note gives it against N2.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mesh_client::Connection;
use mesh_daemon::paths::StateDir;
use mesh_proto::{
    Ask, AskResult, Caller, Class, Consume, Kind, List, ListScoped, MeshPeers, Reach, Reply, Scope,
    SendMessage,
};
use mesh_testkit::nats::{NatsServer, flavors};
use mesh_testkit::{isolate, mesh_bin, output_text, wait_for};

use crate::Plan;
use crate::nats_raw::NatsRaw;
use crate::procs::{
    Daemon, Sleepers, cpu_bound, cpus, opts, process_cpu_us, register, thread_cpu_us,
};
use crate::report::{Report, Stats, fmt_stats, fmt_us, progress, row, stats, us};

const HOST_A: &str = "fed-a";
const HOST_B: &str = "fed-b";
const SENDERS: usize = 8;
/// The daemons log the latency events and warnings, nothing else.
const LOG: &str = "warn,mesh::latency=trace";
/// F1's target: at most this much above N1's median.
const F1_BUDGET_US: f64 = 3_000.0;

/// Answers timed for F1: 500 (50 with `--quick`), after the plan's warm-up (at most 20).
fn f1_iters(plan: &Plan) -> usize {
    if plan.quick { 50 } else { 500 }
}

/// A "machine": a HOME joined to the server as `host`, its daemon logging the latency events.
struct Machine {
    daemon: Daemon,
    host: &'static str,
}

impl Machine {
    fn join(dir: &Path, url: &str, host: &'static str) -> Machine {
        let home = dir.join(host);
        fs::create_dir_all(&home).unwrap();
        let state = StateDir::new(home.join(".claude-mesh"));
        let mesh = |args: &[&str]| {
            let mut cmd = Command::new(mesh_bin());
            isolate(&mut cmd, &home, &state);
            let out = cmd.args(args).stdin(Stdio::null()).output().unwrap();
            assert!(out.status.success(), "mesh {args:?}: {}", output_text(&out));
        };
        // `mesh join` writes federation.toml and the device key and starts a daemon of its
        // own; stop that one and run ours (a child of the bench, logging the events).
        mesh(&["join", url, "--host", host, "--json"]);
        mesh(&["stop"]);
        let daemon = Daemon::start_with(home, &[("CLAUDE_MESH_LOG", LOG)]);
        Machine { daemon, host }
    }

    fn socket(&self) -> PathBuf {
        self.daemon.state.socket()
    }

    fn peers(&self) -> MeshPeers {
        self.daemon
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

    /// Wait until this machine lists every one of `names` on `host` as live.
    fn sees(&self, names: &[&str], host: &str) {
        wait_for(
            &format!("{} to list {names:?} on {host}", self.host),
            Duration::from_secs(60),
            || {
                let remote = self.peers().remote;
                names.iter().all(|n| {
                    remote
                        .iter()
                        .any(|s| s.live && s.name == *n && s.host == host)
                })
            },
        );
    }

    /// The `mesh::latency` events of this daemon's log: question id → when (µs since the
    /// epoch, the log's timestamp).
    fn latency_events(&self) -> HashMap<i64, f64> {
        latency_events(&self.daemon.log())
    }
}

/// `2026-12-06T00:19:25.123456Z TRACE mesh::latency: … question=12 …` lines: question → µs.
fn latency_events(log: &str) -> HashMap<i64, f64> {
    log.lines()
        .filter(|l| l.contains(" mesh::latency: "))
        .filter_map(|l| {
            let at = parse_rfc3339_us(l.split_whitespace().next()?)?;
            let q = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("question="))?
                .parse()
                .ok()?;
            Some((q, at))
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (tracing-subscriber's `SystemTime`) → µs since the epoch.
fn parse_rfc3339_us(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let frac_us = format!("{frac:0<6}")[..6].parse::<i64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3_600 + mm * 60 + ss;
    Some(secs as f64 * 1e6 + frac_us as f64)
}

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as f64
}

/// F1 and F2 for each flavor found, next to that flavor's N1 and N2 from `raw`.
pub fn run(plan: &Plan, tmp: &Path, raw: &[NatsRaw], report: &mut Report) {
    let found = flavors();
    for (flavor, bin) in found {
        let flavor = flavor.to_string();
        let Some(limits) = raw.iter().find(|r| r.flavor == flavor) else {
            continue;
        };
        progress(&format!(
            "F1, F2: two daemons joined to NATS {flavor} ({})",
            bin.display()
        ));
        let server = NatsServer::start(&bin);
        let dir = tmp.join(format!("fed-{}", flavor.replace(' ', "-")));
        let a = Machine::join(&dir, &server.url(), HOST_A);
        let b = Machine::join(&dir, &server.url(), HOST_B);
        let mut sleepers = Sleepers::default();
        let projects = dir.join("projects");
        let asker = Caller {
            claude_pid: Some(sleepers.spawn()),
            session_id: None,
        };
        register(
            &mut a.daemon.conn(),
            asker.claude_pid.unwrap(),
            "asker-session-0001",
            &projects.join("asker"),
        );
        let sender = Caller {
            claude_pid: Some(sleepers.spawn()),
            session_id: None,
        };
        register(
            &mut a.daemon.conn(),
            sender.claude_pid.unwrap(),
            "sender-session-0001",
            &projects.join("sender"),
        );
        let answerer = Caller {
            claude_pid: Some(sleepers.spawn()),
            session_id: None,
        };
        register(
            &mut b.daemon.conn(),
            answerer.claude_pid.unwrap(),
            "answerer-session-0001",
            &projects.join("answerer"),
        );
        let sink = Caller {
            claude_pid: Some(sleepers.spawn()),
            session_id: None,
        };
        register(
            &mut b.daemon.conn(),
            sink.claude_pid.unwrap(),
            "sink-session-0001",
            &projects.join("sink"),
        );
        let local_sink = sleepers.spawn();
        register(
            &mut a.daemon.conn(),
            local_sink,
            "local-sink-session-0001",
            &projects.join("local-sink"),
        );
        a.sees(&["answerer", "sink"], HOST_B);
        b.sees(&["asker", "sender"], HOST_A);

        f1(plan, &a, &b, &asker, &answerer, limits, report);
        f2(plan, &a, &b, server.pid(), &sender, &sink, limits, report);

        drop(a);
        drop(b);
        drop(sleepers);
        drop(server);
        let _ = fs::remove_dir_all(&dir);
    }
}

/// One answer across, as the replier and the asker saw it.
struct Exchange {
    /// The question's id on B (the answer's commit event names it) and on A (A's event).
    q_b: i64,
    q_a: i64,
    /// µs since the epoch: the reply sent (B), the asker's `ask` returned (A).
    sent: f64,
    woke: f64,
}

fn f1(
    plan: &Plan,
    a: &Machine,
    b: &Machine,
    asker: &Caller,
    answerer: &Caller,
    limits: &NatsRaw,
    report: &mut Report,
) {
    progress(&format!(
        "F1 on {}: answer committed on {HOST_B} → asker on {HOST_A} returns",
        limits.flavor
    ));
    let warmup = plan.warmup.min(20);
    let iters = f1_iters(plan);
    let total = warmup + iters;
    let (woke_tx, woke_rx) = mpsc::channel::<(i64, f64, String)>();
    let socket = a.socket();
    let caller = asker.clone();
    let asking = thread::spawn(move || {
        let mut c = Connection::connect(&socket, &opts()).unwrap();
        for i in 0..total {
            let out = c
                .ask(Ask {
                    caller: caller.clone(),
                    to: format!("answerer@{HOST_B}"),
                    question: format!("question {i:06}?"),
                    timeout_ms: 30_000,
                })
                .unwrap();
            let woke = now_us();
            let AskResult::Answered(answer) = out.result else {
                panic!("ask {i} ended with {:?}", out.result);
            };
            let q = i64::try_from(out.question.id).unwrap();
            woke_tx.send((q, woke, answer.body)).unwrap();
        }
    });
    let mut replier = b.daemon.conn();
    let mut out = Vec::with_capacity(iters);
    for i in 0..total {
        let question = mesh_testkit::poll(Duration::from_secs(30), || {
            replier
                .consume(Consume {
                    caller: answerer.clone(),
                    class: Class::Urgent,
                    peek: true,
                    max_bytes: 0,
                    handout: 0,
                })
                .unwrap()
                .messages
                .into_iter()
                .find(|m| m.kind == Kind::Question)
        })
        .unwrap_or_else(|| panic!("question {i} did not reach {HOST_B}"));
        assert_eq!(question.body, format!("question {i:06}?"));
        let body = format!("answer {i:06}");
        let sent = now_us();
        replier
            .reply(Reply {
                caller: answerer.clone(),
                message_id: question.id,
                body: body.clone(),
            })
            .unwrap();
        let (q_a, woke, got) = woke_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(got, body, "the asker got the answer to its question");
        if i >= warmup {
            out.push(Exchange {
                q_b: i64::try_from(question.id).unwrap(),
                q_a,
                sent,
                woke,
            });
        }
    }
    asking.join().unwrap();

    // The daemons' events (they log as they go; wait until the last one is written).
    let last = out.last().unwrap();
    let (ev_a, ev_b) = mesh_testkit::poll(Duration::from_secs(10), || {
        let (ea, eb) = (a.latency_events(), b.latency_events());
        (ea.contains_key(&last.q_a) && eb.contains_key(&last.q_b)).then_some((ea, eb))
    })
    .expect("both daemons logged their `mesh::latency` events");
    let at = |events: &HashMap<i64, f64>, q: i64, who: &str| {
        *events
            .get(&q)
            .unwrap_or_else(|| panic!("no `mesh::latency` event on {who} for question {q}"))
    };
    let across = stats(
        out.iter()
            .map(|e| e.woke - at(&ev_b, e.q_b, HOST_B))
            .collect(),
    );
    let transit = stats(
        out.iter()
            .map(|e| at(&ev_a, e.q_a, HOST_A) - at(&ev_b, e.q_b, HOST_B))
            .collect(),
    );
    let wake = stats(
        out.iter()
            .map(|e| e.woke - at(&ev_a, e.q_a, HOST_A))
            .collect(),
    );
    let to_commit = stats(
        out.iter()
            .map(|e| at(&ev_b, e.q_b, HOST_B) - e.sent)
            .collect(),
    );
    let whole = stats(out.iter().map(|e| e.woke - e.sent).collect());
    let n1 = &limits.request;
    let ok = across.median <= n1.median + F1_BUDGET_US;
    report.rows.push(
        row(
            "F1",
            format!(
                "NATS {} (v{}): **answer's commit on one daemon → the asker's `ask` returns on \
                 the other**: B's `mesh::latency` event (right after the commit) to A's return, \
                 one clock; two `mesh daemon` processes joined to the server (n={})",
                limits.flavor, limits.version, across.n
            ),
            fmt_stats(&across),
            format!("N1, raw core request/reply: {}", fmt_stats(n1)),
            format!("+{} (median)", fmt_us(across.median - n1.median)),
        )
        .target(format!("≤ N1 + {} median", fmt_us(F1_BUDGET_US)), ok),
    );
    report.notes.push(format!(
        "F1 on {} ({} answers after {warmup} warm-up): B's commit → A's commit of the received \
         answer (B's forwarder: seal, publish, PubAck; the server; A's receiver: open, commit \
         incl. its fsync) {}; A's commit → the asker's return {}; for context, reply sent → \
         B's commit (the reply's transaction, incl. its fsync) {} and reply sent → asker's \
         return {}. Timestamps: the daemons' log lines (`CLAUDE_MESH_LOG={LOG}`, µs of the \
         system clock) and `SystemTime::now()` in the bench, all on this one machine.",
        limits.flavor,
        out.len(),
        fmt_stats(&transit),
        fmt_stats(&wake),
        fmt_stats(&to_commit),
        fmt_stats(&whole)
    ));
}

/// The CPU time so far (µs, all threads) of each process on F2's path.
#[derive(Debug, Clone, Copy)]
struct CpuNow {
    a: f64,
    b: f64,
    server: f64,
    bench: f64,
}

/// The pids of F2's processes: daemon A, daemon B, the server, this bench.
#[derive(Debug, Clone, Copy)]
struct Pids {
    a: u32,
    b: u32,
    server: u32,
    bench: u32,
}

impl Pids {
    fn now(&self) -> CpuNow {
        CpuNow {
            a: process_cpu_us(self.a),
            b: process_cpu_us(self.b),
            server: process_cpu_us(self.server),
            bench: process_cpu_us(self.bench),
        }
    }
}

impl CpuNow {
    /// µs per message of each process from `earlier` to `self`, over `n` messages.
    fn per_message(&self, earlier: &CpuNow, n: f64) -> CpuNow {
        CpuNow {
            a: (self.a - earlier.a) / n,
            b: (self.b - earlier.b) / n,
            server: (self.server - earlier.server) / n,
            bench: (self.bench - earlier.bench) / n,
        }
    }

    fn total(&self) -> f64 {
        self.a + self.b + self.server + self.bench
    }
}

/// `max(id)` of B's `messages` table, read-only.
fn max_id(db: &rusqlite::Connection) -> i64 {
    db.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| {
        r.get(0)
    })
    .unwrap()
}

#[allow(clippy::too_many_arguments)]
fn f2(
    plan: &Plan,
    a: &Machine,
    b: &Machine,
    server_pid: u32,
    sender: &Caller,
    sink: &Caller,
    limits: &NatsRaw,
    report: &mut Report,
) {
    progress(&format!(
        "F2 on {}: durable messages/s, {SENDERS} senders on {HOST_A} → a session on {HOST_B}",
        limits.flavor
    ));
    let db = rusqlite::Connection::open_with_flags(
        b.daemon.state.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let base = max_id(&db);
    // A's own rows of the messages it sends (remote_host = B), for their receipts.
    let a_db = rusqlite::Connection::open_with_flags(
        a.daemon.state.db(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let a_base = max_id(&a_db);
    let dur = plan.throughput_for;
    let pids = Pids {
        a: a.daemon.pid(),
        b: b.daemon.pid(),
        server: server_pid,
        bench: std::process::id(),
    };
    let barrier = Arc::new(Barrier::new(SENDERS + 1));
    let handles: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (socket, barrier, caller) = (a.socket(), barrier.clone(), sender.clone());
            thread::spawn(move || {
                let mut c = Connection::connect(&socket, &opts()).unwrap();
                barrier.wait();
                let start = Instant::now();
                let mut lat = Vec::new();
                while start.elapsed() < dur {
                    let t = Instant::now();
                    let sent = c
                        .send(SendMessage {
                            caller: caller.clone(),
                            to: format!("sink@{HOST_B}"),
                            kind: Kind::Task,
                            body: format!("sender {s} message {:06}", lat.len()),
                        })
                        .unwrap();
                    assert_eq!(sent.messages.len(), 1);
                    lat.push(us(t.elapsed()));
                }
                (lat, Instant::now())
            })
        })
        .collect();
    // B's commits, sampled every 5 ms until the senders are done and B has them all.
    let sending = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sending = sending.clone();
        let barrier = barrier.clone();
        thread::spawn(move || {
            barrier.wait();
            let start = Instant::now();
            // The window's CPU starts here, with the senders' first sends.
            let cpu0 = pids.now();
            let poller0 = thread_cpu_us();
            let mut samples = vec![(start, 0i64)];
            let cpu1 = loop {
                thread::sleep(Duration::from_millis(5));
                let n = max_id(&db) - base;
                samples.push((Instant::now(), n));
                if !sending.load(Ordering::Relaxed) {
                    // Right after this poll: the window ends here if it saw every message.
                    break pids.now();
                }
            };
            let poller = thread_cpu_us() - poller0;
            (start, samples, db, cpu0, cpu1, poller)
        })
    };
    let mut end_send = None;
    let mut lat = Vec::new();
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        end_send = Some(end_send.map_or(e, |x: Instant| x.max(e)));
    }
    sending.store(false, Ordering::Relaxed);
    let (start, mut samples, db, cpu0, mut cpu1, mut poller) = sampler.join().unwrap();
    let sent = lat.len() as i64;
    let end_send = end_send.unwrap();
    // Then until B has every one of them (this thread is the poller now).
    let give_up = Instant::now() + Duration::from_secs(300);
    let drain0 = thread_cpu_us();
    while samples.last().unwrap().1 < sent {
        assert!(
            Instant::now() < give_up,
            "{HOST_B} committed {} of the {sent} messages within 5 minutes",
            samples.last().unwrap().1
        );
        thread::sleep(Duration::from_millis(5));
        samples.push((Instant::now(), max_id(&db) - base));
        if samples.last().unwrap().1 >= sent {
            cpu1 = pids.now();
        }
    }
    poller += thread_cpu_us() - drain0;
    drop(db);
    // CPU per message over the window (the senders' start to the poll that saw the last).
    let cpu = cpu1.per_message(&cpu0, sent as f64);
    let poller = poller / sent as f64;
    let (done_at, committed) = *samples.last().unwrap();
    assert_eq!(
        committed, sent,
        "{HOST_B} committed more messages than were sent"
    );
    let whole = (done_at - start).as_secs_f64();
    let rate = sent as f64 / whole;
    let send_rate = sent as f64 / (end_send - start).as_secs_f64();
    // B's rate while the senders were sending, after the first second (the pipeline full).
    let steady = {
        let from = samples
            .iter()
            .find(|(t, _)| *t >= start + Duration::from_secs(1).min(dur / 5))
            .copied();
        let to = samples.iter().rev().find(|(t, _)| *t <= end_send).copied();
        match (from, to) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                Some((n1 - n0) as f64 / (t1 - t0).as_secs_f64())
            }
            _ => None,
        }
    };
    let behind = samples
        .iter()
        .rev()
        .find(|(t, _)| *t <= end_send)
        .map_or(0, |(_, n)| sent - n);

    // Every message arrived exactly once: the sink takes its inbox. Each message handed out
    // on B sends its sender a receipt (B's outbox → the server → A commits `delivered_ms`):
    // that CPU is measured too, from here to the poll that saw every receipt on A.
    let read_start = Instant::now();
    let read_cpu0 = pids.now();
    let mut conn = b.daemon.conn();
    let mut bodies = HashSet::new();
    let mut taken = 0usize;
    loop {
        let inbox = conn
            .consume(Consume {
                caller: sink.clone(),
                class: Class::All,
                peek: false,
                max_bytes: 0,
                handout: 0,
            })
            .unwrap();
        if inbox.messages.is_empty() {
            break;
        }
        for m in inbox.messages {
            assert_eq!(m.from.name, format!("sender@{HOST_A}"));
            taken += 1;
            bodies.insert(m.body);
        }
    }
    assert_eq!(
        taken,
        lat.len(),
        "the sink's inbox holds every message sent"
    );
    assert_eq!(bodies.len(), lat.len(), "no message was delivered twice");
    let give_up = Instant::now() + Duration::from_secs(300);
    loop {
        let (rows, receipted): (i64, i64) = a_db
            .query_row(
                "SELECT count(*), count(delivered_ms) FROM messages
                 WHERE id > ?1 AND remote_host IS NOT NULL",
                [a_base],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(rows, sent, "{HOST_A}'s rows of the messages it sent");
        if receipted == sent {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "{HOST_A} had the receipts of {receipted} of the {sent} messages within 5 minutes"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let read_cpu = pids.now().per_message(&read_cpu0, sent as f64);
    let read_took = read_start.elapsed().as_secs_f64();
    drop(a_db);

    // For reference, the same 8 senders to a session on A itself (part 4's path, no NATS):
    // the durable commit rate of A's own sends in this run, once the receipts are in (so that
    // A is not also receiving them).
    let local = {
        let barrier = Arc::new(Barrier::new(SENDERS + 1));
        let handles: Vec<_> = (0..SENDERS)
            .map(|s| {
                let (socket, barrier, caller) = (a.socket(), barrier.clone(), sender.clone());
                thread::spawn(move || {
                    let mut c = Connection::connect(&socket, &opts()).unwrap();
                    barrier.wait();
                    let start = Instant::now();
                    let mut n = 0usize;
                    while start.elapsed() < dur {
                        c.send(SendMessage {
                            caller: caller.clone(),
                            to: "local-sink".into(),
                            kind: Kind::Task,
                            body: format!("sender {s} local message {n:06}"),
                        })
                        .unwrap();
                        n += 1;
                    }
                    (n, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let cpu0 = pids.now();
        let mut end = start;
        let mut n = 0;
        for h in handles {
            let (k, e) = h.join().unwrap();
            n += k;
            end = end.max(e);
        }
        let cpu = pids.now().per_message(&cpu0, n as f64);
        (n as f64 / (end - start).as_secs_f64(), cpu)
    };
    let (local, local_cpu) = local;

    let n2 = limits.js_rate;
    let ok = rate >= n2 / 2.0;
    let send_lat: Stats = stats(lat);
    // Beside the limit (N2, acks not fsync'd), the durable one where the server has it.
    let (n2s_limit, n2s_vs) = limits.js_sync.map_or((String::new(), String::new()), |s| {
        (
            format!(
                "; N2s, the same against a server that fsyncs every write: {:.0}/s",
                s.rate
            ),
            format!("; {:.0} % of N2s", 100.0 * rate / s.rate),
        )
    });
    report.rows.push(
        row(
            "F2",
            format!(
                "NATS {} (v{}): **durable federated messages/s**, {SENDERS} senders on A (own \
                 connections) → 1 session on B, counted at B's commit ({sent} msgs; from the \
                 first send to the last commit on B, {whole:.2} s)",
                limits.flavor, limits.version
            ),
            format!("{rate:.0} msg/s"),
            format!(
                "N2, raw JetStream acked publishes/s, 8 publishers: {n2:.0}/s{n2s_limit} (for \
                 reference, the same 8 senders to a session on A itself, no NATS, right after, \
                 once A had their receipts: {local:.0}/s)"
            ),
            format!(
                "{:.0} % of N2{n2s_vs} ({:.0} % of the local sends; {:.0} % of N3, NATS alone \
                 on this path: {:.0}/s = {:.0} % of N2); CPU per message {} (N2 {}): on {} CPUs \
                 at most {:.0} msg/s with no wait at all",
                100.0 * rate / n2,
                100.0 * rate / local,
                100.0 * rate / limits.js_e2e.rate,
                limits.js_e2e.rate,
                100.0 * limits.js_e2e.rate / n2,
                fmt_us(cpu.total()),
                fmt_us(limits.js_cpu.total()),
                cpus(),
                cpu_bound(cpu.total())
            ),
        )
        .target("≥ 50 % of N2", ok),
    );
    report.notes.push(format!(
        "F2 on {}: {sent} messages sent in {:.2} s ({send_rate:.0}/s committed to A's outbox; \
         each send's round trip {}); B's commit rate while they were sent, after the first \
         second: {}; {behind} were not yet on B when the senders stopped, and B had all of \
         them {:.2} s later. The sink then took its inbox: {taken} messages, {} distinct \
         bodies, every one from `sender@{HOST_A}`.",
        limits.flavor,
        (end_send - start).as_secs_f64(),
        fmt_stats(&send_lat),
        steady.map_or("—".into(), |r| format!("{r:.0}/s")),
        (done_at - end_send).as_secs_f64(),
        bodies.len()
    ));
    let n2s_cpu = limits.js_sync.map_or(String::new(), |s| {
        format!(
            "; N2s: {} per publish, F2 {:.1}× that",
            fmt_us(s.cpu.total()),
            cpu.total() / s.cpu.total()
        )
    });
    report.notes.push(format!(
        "F2 on {}, CPU per message (each process's CPU time, user + kernel, all threads \
         including exited ones, from its kernel CPU clock (`clock_getcpuclockid`), from the \
         senders' start to the poll that saw the last \
         message on B ({whole:.2} s), ÷ {sent} messages): daemon A {}, daemon B {}, \
         nats-server {}, bench {} (the 8 sender threads and the poller; the poller alone {}) \
         = **{}**. N2 on this flavor: server {} + client {} = {}; F2 costs {:.1}× N2's CPU per \
         message{n2s_cpu}. **On {} CPUs at most {:.0} msg/s with no wait at all** (CPUs × 1 s ÷ \
         the total; N2's: {:.0}/s), against 50 % of N2 = {:.0}/s. During F2's window the four \
         processes used {:.2} of the {} CPUs ({:.0} %). Not in F2's window: the sink taking \
         its inbox on B and, for each message handed out, a receipt that crosses back to A like \
         a mail (B's outbox, the server, A's commit of `delivered_ms`); over that phase (the \
         sink's first take to the poll that saw the last receipt on A, {read_took:.2} s): A {}, \
         B {}, server {}, bench {} (the sink's takes and the checks) = **{}** per message, so \
         a message sent, delivered, read and receipted costs {} in all. The local sends (the \
         reference, {local:.0}/s, once the receipts were in), over their own window: A {} + \
         bench {} = {} per message (B {} and the server {} in that window), at most {:.0}/s.",
        limits.flavor,
        fmt_us(cpu.a),
        fmt_us(cpu.b),
        fmt_us(cpu.server),
        fmt_us(cpu.bench),
        fmt_us(poller),
        fmt_us(cpu.total()),
        fmt_us(limits.js_cpu.server),
        fmt_us(limits.js_cpu.client),
        fmt_us(limits.js_cpu.total()),
        cpu.total() / limits.js_cpu.total(),
        cpus(),
        cpu_bound(cpu.total()),
        cpu_bound(limits.js_cpu.total()),
        n2 / 2.0,
        cpu.total() * rate / 1e6,
        cpus(),
        100.0 * cpu.total() * rate / 1e6 / cpus() as f64,
        fmt_us(read_cpu.a),
        fmt_us(read_cpu.b),
        fmt_us(read_cpu.server),
        fmt_us(read_cpu.bench),
        fmt_us(read_cpu.total()),
        fmt_us(cpu.total() + read_cpu.total()),
        fmt_us(local_cpu.a),
        fmt_us(local_cpu.bench),
        fmt_us(local_cpu.a + local_cpu.bench),
        fmt_us(local_cpu.b),
        fmt_us(local_cpu.server),
        cpu_bound(local_cpu.a + local_cpu.bench),
    ));
    // What any implementation of F2 must do at least: NATS's part (N3: publish, consume, ack)
    // and a local send's (the sender's round trip and A's durable commit before the id
    // returns), so the CPU bound of their sum is a ceiling for F2 on this machine.
    let floor = limits.js_e2e.cpu.total() + local_cpu.a + local_cpu.bench;
    report.notes.push(format!(
        "F2's ceiling on {} (this machine, this run): every federated message is at least an \
         N3 message (published with its ack, consumed, acked with its confirmation: NATS \
         alone, {:.0}/s = **{:.0} % of N2**, CPU {} per message) and a local send (the \
         sender's round trip and A's durable commit before the id returns: {} per message \
         above). Their sum, {} per message, allows at most **{:.0}/s on {} CPUs with no wait \
         at all = {:.0} % of N2**, before any sealing, opening, outbox or commit on B. F2 \
         measured {rate:.0}/s, {:.0} % of that ceiling.",
        limits.flavor,
        limits.js_e2e.rate,
        100.0 * limits.js_e2e.rate / n2,
        fmt_us(limits.js_e2e.cpu.total()),
        fmt_us(local_cpu.a + local_cpu.bench),
        fmt_us(floor),
        cpu_bound(floor),
        cpus(),
        100.0 * cpu_bound(floor) / n2,
        100.0 * rate / cpu_bound(floor),
    ));
}
