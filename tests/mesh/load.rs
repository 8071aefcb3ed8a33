//! Load: many clients at once with zero errors, the connection caps (per process and in all)
//! with a clear "busy", no file descriptors leaked by 10,000 connections, and a daemon whose memory stays flat over
//! 1,000,000 requests. Each test prints its figures (RELIABILITY.md records them); run with
//! `cargo test -p mesh --test mesh load:: -- --nocapture`. These run the test profile's (debug)
//! daemon, so the throughput figures are far below a release build's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mesh_client::{ClientError, Connection};
use mesh_proto::{
    Caller, Class, Consume, ErrorCode, Kind, List, MessageStatus, Scope, SendMessage, WhoAmI,
};
use mesh_testkit::Mesh;

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Resident set size of a process, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn connect(mesh: &Mesh) -> Connection {
    Connection::connect(&mesh.state.socket(), &mesh_testkit::opts()).unwrap()
}

#[test]
fn two_hundred_clients_times_a_thousand_requests_without_an_error() {
    const CLIENTS: usize = 200;
    const REQUESTS: usize = 1_000;
    // All 200 clients are threads of this one process: lift the per-process limit.
    let mesh = Mesh::start_with(&[("CLAUDE_MESH_MAX_CONNECTIONS_PER_PROCESS", "0")]);
    let sink = mesh.session("sink");
    let peer = mesh.session("peer");
    let socket = mesh.state.socket();
    let start = Arc::new(Barrier::new(CLIENTS + 1));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (socket, start) = (socket.clone(), start.clone());
            let me = if c % 2 == 0 {
                peer.caller.clone()
            } else {
                Caller::default()
            };
            std::thread::spawn(move || -> Result<(usize, Vec<u64>), ClientError> {
                let mut conn = Connection::connect(&socket, &mesh_testkit::opts())?;
                start.wait();
                let mut sent = Vec::new();
                let mut answered = 0;
                for i in 0..REQUESTS {
                    // A mix: mostly the reads hooks and status lines make, one durable send
                    // in ten, and a status query on what this client sent.
                    match i % 10 {
                        0 => {
                            let s = conn.send(SendMessage {
                                caller: me.clone(),
                                to: "sink".into(),
                                kind: Kind::Note,
                                body: format!("client {c} request {i}"),
                            })?;
                            sent.push(s.messages[0].id);
                        }
                        1 | 2 => {
                            conn.whoami(WhoAmI { caller: me.clone() })?;
                        }
                        3 => {
                            conn.list(List {
                                caller: me.clone(),
                                scope: Scope::Machine,
                                include_offline: false,
                            })?;
                        }
                        4 if !sent.is_empty() => {
                            conn.message_status(MessageStatus {
                                message_id: sent[sent.len() - 1],
                            })?;
                        }
                        _ => {
                            conn.ping()?;
                        }
                    }
                    answered += 1;
                }
                Ok((answered, sent))
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    let mut answered = 0;
    let mut sent = Vec::new();
    let mut errors = Vec::new();
    for th in threads {
        match th.join().unwrap() {
            Ok((n, ids)) => {
                answered += n;
                sent.extend(ids);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let elapsed = t.elapsed();
    assert!(
        errors.is_empty(),
        "{} clients failed: {:?}",
        errors.len(),
        errors
    );
    assert_eq!(answered, CLIENTS * REQUESTS);
    // Every send was committed: the sink receives each exactly once.
    let mut received = Vec::new();
    let mut conn = connect(&mesh);
    loop {
        let inbox = conn
            .consume(Consume {
                caller: sink.caller.clone(),
                class: Class::All,
                peek: false,
                max_bytes: 0,
                handout: mesh_client::handout_token(),
            })
            .unwrap();
        if inbox.messages.is_empty() {
            break;
        }
        received.extend(inbox.messages.iter().map(|m| m.id));
    }
    received.sort_unstable();
    sent.sort_unstable();
    assert_eq!(received, sent);
    eprintln!(
        "load: {CLIENTS} clients x {REQUESTS} requests = {answered} answered, 0 errors, {} durable sends, in {:.2} s ({:.0} requests/s, debug daemon)",
        sent.len(),
        elapsed.as_secs_f64(),
        answered as f64 / elapsed.as_secs_f64()
    );
}

#[test]
fn past_the_connection_caps_clients_get_a_clear_busy_and_nothing_leaks() {
    // mesh_daemon::Config's defaults.
    const CAP: usize = mesh_daemon::server::DEFAULT_MAX_CONNECTIONS;
    const PER_PROCESS: usize = mesh_daemon::server::DEFAULT_MAX_CONNECTIONS_PER_PROCESS;
    let mut mesh = Mesh::start();
    let pid = mesh.daemon_pid();
    // A first `mesh list` opens what the daemon keeps open for it from then on.
    let list = || {
        let out = mesh.mesh().args(["list", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", mesh_testkit::output_text(&out));
    };
    list();
    let base_fds = fds(pid);
    // One process takes all it may; its next connection is refused, saying why...
    let held: Vec<Connection> = (0..PER_PROCESS).map(|_| connect(&mesh)).collect();
    let err = Connection::connect(&mesh.state.socket(), &mesh_testkit::opts()).unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::Busy), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "this process already holds {PER_PROCESS} connections"
        )),
        "{err}"
    );
    eprintln!("per-process cap: {PER_PROCESS} connections held; the next one: {err}");
    // ... and another process still gets in.
    list();
    // One leaves, the next one gets in.
    drop(held);
    mesh_testkit::wait_for(
        "the held connections to close",
        Duration::from_secs(20),
        || fds(pid) <= base_fds + 1,
    );
    connect(&mesh).ping().unwrap();

    // 10,000 connections opened and dropped: half after a request, a quarter after the
    // handshake only, a quarter before sending anything.
    for i in 0..10_000 {
        match i % 4 {
            0 | 1 => {
                connect(&mesh).ping().unwrap();
            }
            2 => drop(connect(&mesh)),
            _ => drop(std::os::unix::net::UnixStream::connect(mesh.state.socket()).unwrap()),
        }
    }
    let mut after = 0;
    mesh_testkit::wait_for(
        "every dropped connection to close",
        Duration::from_secs(20),
        || {
            after = fds(pid);
            after <= base_fds
        },
    );
    eprintln!("fds: daemon had {base_fds} open before, {after} after 10,000 connections");
    assert!(mesh.daemon.as_mut().unwrap().try_wait().unwrap().is_none());

    // All processes together: a daemon without the per-process limit, so that this one
    // process can take every slot.
    let mesh = Mesh::start_with(&[("CLAUDE_MESH_MAX_CONNECTIONS_PER_PROCESS", "0")]);
    let held: Vec<Connection> = (0..CAP).map(|_| connect(&mesh)).collect();
    let err = Connection::connect(&mesh.state.socket(), &mesh_testkit::opts()).unwrap_err();
    assert_eq!(err.wire_code(), Some(ErrorCode::Busy), "{err}");
    assert!(err.to_string().contains("too many connections"), "{err}");
    eprintln!("cap: {CAP} connections held; the next one: {err}");
    drop(held);
}

#[test]
fn memory_stays_flat_over_a_million_requests() {
    const TOTAL: usize = 1_000_000;
    const THREADS: usize = 4;
    let mesh = Mesh::start();
    let s = mesh.session("steady");
    let pid = mesh.daemon_pid();
    let per_thread = TOTAL / THREADS;
    let mut samples = Vec::new();
    let t = Instant::now();
    // Ten slices of 100,000; RSS after each.
    for _ in 0..10 {
        let threads: Vec<_> = (0..THREADS)
            .map(|k| {
                let socket = mesh.state.socket();
                let caller = s.caller.clone();
                std::thread::spawn(move || {
                    let mut conn = Connection::connect(&socket, &mesh_testkit::opts()).unwrap();
                    for i in 0..per_thread / 10 {
                        if (i + k) % 4 == 0 {
                            conn.whoami(WhoAmI {
                                caller: caller.clone(),
                            })
                            .unwrap();
                        } else {
                            conn.ping().unwrap();
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        samples.push(rss_kb(pid));
    }
    let elapsed = t.elapsed();
    eprintln!(
        "rss: {TOTAL} requests in {:.1} s; daemon VmRSS after each 100,000 (kB): {samples:?}",
        elapsed.as_secs_f64()
    );
    // After the first slice has warmed everything up, memory must not keep growing: the last
    // sample within 1 MB of the second.
    let (second, last) = (samples[1], samples[samples.len() - 1]);
    assert!(
        last <= second + 1024,
        "RSS grew from {second} kB to {last} kB: {samples:?}"
    );
}
