//! Part 5: a fresh `mesh daemon` with 1,000 registered sessions: its idle and loaded RSS, the
//! `list` round trip (against a raw transfer plus encode and decode of the same frame), and
//! `mesh list` as a process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mesh_proto::{Caller, List, Request, Response, Scope, read_frame, write_frame};

use crate::Plan;
use crate::procs::{Daemon, Sleepers, register, rss_kib, time_exec, timed};
use crate::raw_socket::{raw_socket, request_len, response_len};
use crate::report::{
    Report, Stats, fmt_bytes, fmt_mb, fmt_stats, fmt_us, progress, ratio, row, stats, us,
};

/// `idle`: the reference binary blocked in `read`; `empty_exec`: exec of the empty binary
/// (part 2), the limit for `mesh list` as a process.
pub fn run(plan: &Plan, tmp: &Path, idle: &Path, empty_exec: &Stats, report: &mut Report) {
    progress("5. starting a fresh daemon (B) for 1,000 sessions");
    let daemon = Daemon::start(tmp.join("b"));
    let mut conn = daemon.conn();
    conn.ping().unwrap();
    // The daemon's idle RSS, read once it has settled after its start: a fixed 300 ms, as in
    // the recorded runs (no one condition marks "settled").
    thread::sleep(Duration::from_millis(300));
    let (rss_idle, _) = rss_kib(daemon.pid());

    // The floor: any Rust process, idle.
    let mut idle_child = Command::new(idle)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let floor_pid = idle_child.id();
    mesh_testkit::wait_for(
        "the idle binary to block in read",
        Duration::from_secs(10),
        || mesh_testkit::blocked_in(floor_pid) == Some(libc::SYS_read),
    );
    let (rss_floor, _) = rss_kib(floor_pid);
    drop(idle_child.stdin.take());
    let _ = idle_child.wait();

    progress(&format!(
        "5. spawning and registering {} sleep processes",
        plan.sessions
    ));
    let mut fleet = Sleepers::default();
    let projects = daemon.home.join("projects");
    let reg_start = Instant::now();
    let mut reg_lat = Vec::new();
    for i in 0..plan.sessions {
        let pid = fleet.spawn();
        let t = Instant::now();
        register(
            &mut conn,
            pid,
            &format!("fleet-{i:04}-{pid}-session"),
            &projects.join(format!("p{i:04}")),
        );
        reg_lat.push(us(t.elapsed()));
    }
    let reg_total = reg_start.elapsed();
    let reg = stats(reg_lat);

    progress("5. list round trips with 1,000 sessions");
    let list_req = List {
        caller: Caller::default(),
        scope: Scope::Machine,
        include_offline: false,
    };
    let peers = conn.list(list_req.clone()).unwrap();
    assert_eq!(
        peers.sessions.len(),
        plan.sessions,
        "list shows every session"
    );
    let list_req_len = request_len(&Request::List(list_req.clone()));
    let peers_resp = Response::Peers(peers);
    let list_resp_len = response_len(&peers_resp);
    // The CPU cost of the response's frame on each side, measured here on the same bytes.
    let mut frame = Vec::new();
    write_frame(&mut frame, &peers_resp).unwrap();
    let encode = stats(
        (0..plan.list_iters)
            .map(|_| {
                let t = Instant::now();
                let mut v = Vec::new();
                write_frame(&mut v, &peers_resp).unwrap();
                let e = us(t.elapsed());
                assert_eq!(v.len(), frame.len());
                e
            })
            .collect(),
    );
    let decode = stats(
        (0..plan.list_iters)
            .map(|_| {
                let t = Instant::now();
                let r: Response = read_frame(&mut frame.as_slice()).unwrap();
                let e = us(t.elapsed());
                assert!(matches!(r, Response::Peers(_)));
                e
            })
            .collect(),
    );
    for _ in 0..plan.warmup.min(20) {
        conn.list(list_req.clone()).unwrap();
    }
    let (list, list_cpu) = timed(plan.list_iters, daemon.pid(), |_| {
        let p = conn.list(list_req.clone()).unwrap();
        assert_eq!(p.sessions.len(), plan.sessions);
    });
    let list_raw = raw_socket(
        list_req_len,
        list_resp_len,
        plan.list_iters.max(200),
        plan.warmup,
    );
    let mut list_cmd = daemon.mesh();
    list_cmd.arg("list");
    time_exec(&mut list_cmd);
    let list_exec = stats(
        (0..plan.list_exec_runs)
            .map(|_| time_exec(&mut list_cmd))
            .collect(),
    );
    let (rss_after, hwm_after) = rss_kib(daemon.pid());

    report.rows.push(row(
        "5a",
        format!(
            "`list` round trip, {} live sessions (n={}; daemon CPU {} per request)",
            plan.sessions,
            list.n,
            fmt_us(list_cpu)
        ),
        fmt_stats(&list),
        format!(
            "raw socket {list_req_len} B → {}: {}; + encode {} + decode {} of that frame = {}",
            fmt_bytes(list_resp_len),
            list_raw.describe(),
            fmt_us(encode.median),
            fmt_us(decode.median),
            fmt_us(list_raw.best().median + encode.median + decode.median)
        ),
        list_raw.vs(list.median, encode.median + decode.median),
    ));
    report.rows.push(row(
        "5b",
        format!(
            "`mesh list` process wall time, {} sessions (n={}, output to /dev/null)",
            plan.sessions, list_exec.n
        ),
        fmt_stats(&list_exec),
        format!("exec of empty Rust binary: {}", fmt_stats(empty_exec)),
        ratio(list_exec.median, empty_exec.median),
    ));
    report.rows.push(
        row(
            "5c",
            "daemon VmRSS, idle, before any registration",
            fmt_mb(rss_idle),
            format!(
                "idle Rust process (blocked in `read`): {}",
                fmt_mb(rss_floor)
            ),
            ratio(rss_idle as f64, rss_floor as f64),
        )
        .target("≤ 10 MB", rss_idle * 1024 <= 10_000_000),
    );
    report.rows.push(
        row(
            "5d",
            format!(
                "daemon VmRSS after {} sessions and {} lists (peak VmHWM {})",
                plan.sessions,
                list.n + 1 + plan.warmup.min(20) + list_exec.n + 1,
                fmt_mb(hwm_after)
            ),
            fmt_mb(rss_after),
            format!(
                "idle Rust process {} + one list payload {}",
                fmt_mb(rss_floor),
                fmt_bytes(list_resp_len)
            ),
            ratio(
                rss_after as f64,
                rss_floor as f64 + list_resp_len as f64 / 1024.0,
            ),
        )
        .target("≤ 20 MB", rss_after * 1024 <= 20_000_000),
    );
    report.notes.push(format!(
        "5: registering {} sessions took {:.2} s (one durable commit each; register round trip {}).",
        plan.sessions,
        reg_total.as_secs_f64(),
        fmt_stats(&reg)
    ));
    report.notes.push(format!(
        "5: the daemon's own handling time of `list` is not observable from outside; 5a is the client's round trip. Subtracting the socket transfer and the frame's encode and decode (measured in this process on the same bytes) leaves ≈ {} (median) for the daemon's work: the hand-off to the store thread, the SQL (a {}-row SELECT plus the pending counts, in a BEGIN IMMEDIATE transaction) and building the {} `SessionInfo`s.",
        fmt_us(list.median - list_raw.best().median - encode.median - decode.median),
        plan.sessions,
        plan.sessions
    ));
    drop(conn);
    daemon.stop();
    drop(fleet);
}
