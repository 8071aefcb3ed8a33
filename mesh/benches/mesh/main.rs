//! `cargo bench -p mesh --bench mesh [-- --quick]`: claude-mesh's performance, each
//! figure printed next to its physical limit measured in the same run (see BENCHMARKS.md).
//!
//! Everything is real: `mesh daemon` processes (the binary cargo just built) on a temp HOME,
//! a real SQLite file, real `sleep` processes as sessions, the blocking client library over the
//! real Unix socket. The limits are measured the same way on the same machine: a raw
//! `UnixStream` ping-pong of the very byte sizes the protocol exchanges, raw SQLite commits in
//! the directory of the daemon's database, and exec of an empty Rust binary. One measurement
//! (3e, commit → asker) runs the daemon in this process instead, to read the commit's time on
//! the same clock as the asker's.
//!
//! Sections: `cargo bench -p mesh --bench mesh -- [--quick] [SECTION…]` runs the sections named
//! (all without a name): `local` (parts 1–5, one machine) and `nats` (the raw NATS limits N1,
//! N2 and, on servers 2.11+, N2s (N2 with every JetStream write fsync'd), then the federated
//! figures F1, F2 of two daemons joined to the same server, compared with them).
//!
//! Progress goes to stderr, the markdown report to stdout. The temp dir is made under
//! `$MESH_BENCH_DIR` if set (to measure another disk), else the system temp dir.
//!
//! Modules: `report` (statistics, formatting, the table), `machine` (the header), `procs`
//! (`/proc` accounting, reference binaries), `raw_socket` and `raw_sqlite` (the limits), and
//! one module per measurement group: `requests` (1), `cli` (2a, 2b), `hooks` (2c–2i), `reply`
//! (3a–3d), `reply_inproc` (3e), `throughput` (4, 4b), `fleet` (5), `nats_raw` (N1, N2, N2s), `nats_fed` (F1, F2). The daemon and session
//! guards are mesh-testkit's (`mesh_testkit::procs`), shared with the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod fleet;
mod hooks;
mod machine;
mod nats_fed;
mod nats_raw;
mod procs;
mod raw_socket;
mod raw_sqlite;
mod reply;
mod reply_inproc;
mod report;
mod requests;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_proto::Caller;

use crate::procs::{Daemon, Sleepers, compile, register, rss_kib};
use crate::report::{Report, fmt_mb, progress};

/// Iteration counts and durations; `--quick` shrinks them for a smoke run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub quick: bool,
    pub ping_iters: usize,
    pub send_iters: usize,
    pub exec_runs: usize,
    pub hook_runs: usize,
    pub reply_iters: usize,
    pub throughput_for: Duration,
    pub sessions: usize,
    pub list_iters: usize,
    pub list_exec_runs: usize,
    pub warmup: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                ping_iters: 1_000,
                send_iters: 200,
                exec_runs: 30,
                hook_runs: 30,
                reply_iters: 30,
                throughput_for: Duration::from_secs(1),
                sessions: 1_000,
                list_iters: 20,
                list_exec_runs: 5,
                warmup: 20,
            }
        } else {
            Self {
                quick,
                ping_iters: 10_000,
                send_iters: 2_000,
                exec_runs: 200,
                hook_runs: 300,
                reply_iters: 300,
                throughput_for: Duration::from_secs(5),
                sessions: 1_000,
                list_iters: 200,
                list_exec_runs: 30,
                warmup: 100,
            }
        }
    }
}

fn main() {
    // The `mesh` binary to measure: mesh-testkit takes it from `$CARGO_BIN_EXE_mesh`, which
    // `cargo bench` sets to the one it built; `$MESH_BENCH_BIN` (for instance the statically
    // linked binary `./install.sh` installs) replaces it.
    if let Some(bin) = std::env::var_os("MESH_BENCH_BIN").filter(|b| !b.is_empty()) {
        // SAFETY: first thing in main, before the bench starts any thread; nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var(mesh_testkit::MESH_BIN_ENV, bin) };
    }
    // `cargo bench` passes `--bench`; of the options only `--quick` means anything here. The
    // other arguments name sections.
    let quick = std::env::args().any(|a| a == "--quick");
    let sections = sections(std::env::args().skip(1).filter(|a| !a.starts_with('-')));
    let plan = Plan::new(quick);
    let base = std::env::var_os("MESH_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("mesh-bench")
        .tempdir_in(&base)
        .unwrap();
    let info = machine::machine(tmp.path());
    let mut report = Report::default();
    if sections.contains(&"local") {
        run_local(&plan, tmp.path(), &mut report);
    }
    if sections.contains(&"nats") {
        let raw = nats_raw::run(&plan, &mut report);
        nats_fed::run(&plan, tmp.path(), &raw, &mut report);
    }
    progress("done");
    report::print(&plan, &info, &report);
}

/// The sections a run can select, in the order they run.
const SECTIONS: [&str; 2] = ["local", "nats"];

/// The sections named on the command line (all when none is); panics on an unknown name.
fn sections(named: impl Iterator<Item = String>) -> Vec<&'static str> {
    let named: Vec<String> = named.collect();
    for n in &named {
        assert!(
            SECTIONS.contains(&n.as_str()),
            "unknown bench section {n:?}; the sections are {SECTIONS:?}"
        );
    }
    SECTIONS
        .into_iter()
        .filter(|s| named.is_empty() || named.iter().any(|n| n == s))
        .collect()
}

/// Parts 1–5: one machine, no network.
fn run_local(plan: &Plan, tmp: &Path, report: &mut Report) {
    progress("compiling the empty and idle reference binaries");
    let empty = compile(tmp, "empty", "fn main() {}\n");
    let idle = compile(
        tmp,
        "idle",
        "use std::io::Read;\nfn main() { let mut b = [0u8; 1]; let _ = std::io::stdin().read(&mut b); }\n",
    );

    // A database with the daemon's real schema, written by a real daemon that then stopped.
    progress("creating a mesh database with the daemon's schema (start and stop a daemon)");
    let schema_daemon = Daemon::start(tmp.join("schema"));
    let schema_db = schema_daemon.state.db();
    schema_daemon.stop();

    progress("starting `mesh daemon` (A) for parts 1–4");
    let mut sleepers = Sleepers::default();
    let daemon = Daemon::start(tmp.join("a"));
    let projects = daemon.home.join("projects");
    let mut conn = daemon.conn();
    let sink_pid = sleepers.spawn();
    register(
        &mut conn,
        sink_pid,
        "sink-session-0001",
        &projects.join("sink"),
    );
    let answerer_pid = sleepers.spawn();
    register(
        &mut conn,
        answerer_pid,
        "answerer-session-0001",
        &projects.join("answerer"),
    );
    let answerer = Caller {
        claude_pid: Some(answerer_pid),
        session_id: None,
    };

    // Limits for 1, 3, 4: raw SQLite in the directory of the daemon's database.
    let raw = raw_sqlite::measure(daemon.state.root(), &schema_db, plan.throughput_for);

    requests::run(plan, &daemon, &mut conn, &raw, report);
    let questions = reply::run(plan, &daemon, &answerer, &raw, report);
    reply_inproc::run(plan, tmp, report);
    let sent_total = throughput::run(plan, &daemon, &raw, report);
    throughput::queued_list(plan, &daemon, &mut conn, sink_pid, report);
    // Part 2 runs with the queue of part 4 drained.
    let empty_exec = cli::run(plan, &daemon, &empty, report);
    // Right after, on the same daemon: the hook shim and the status line as processes.
    let hook_tasks = hooks::run(plan, &daemon, &mut sleepers, &empty, report);

    let (rss_a, hwm_a) = rss_kib(daemon.pid());
    report.notes.push(format!(
        "Daemon A (parts 1–4) after its workload (~{} messages stored): VmRSS {}, VmHWM {}.",
        plan.send_iters + sent_total + plan.exec_runs + hook_tasks + questions * 2,
        fmt_mb(rss_a),
        fmt_mb(hwm_a)
    ));
    drop(conn);
    daemon.stop();
    drop(sleepers);

    fleet::run(plan, tmp, &idle, &empty_exec, report);
}
