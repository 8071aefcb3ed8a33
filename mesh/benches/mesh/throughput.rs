//! Part 4: durable messages/s with 8 concurrent senders (group commit), against raw SQLite
//! measured before and after; 4b: `list` with part 4's queue still pending, then drained.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use mesh_client::Connection;
use mesh_proto::{Caller, Class, Consume, Kind, List, Response, Scope, SendMessage};

use crate::Plan;
use crate::procs::{Daemon, cpu_us, opts, rss_kib, timed};
use crate::raw_socket::response_len;
use crate::raw_sqlite::{RAW_INSERT, RAW_SCHEMA, Sqlite, raw_sqlite_single};
use crate::report::{
    Report, fmt_bytes, fmt_mb, fmt_stats, fmt_us, progress, ratio, row, stats, us,
};

/// Part 4. Returns the number of messages sent.
pub fn run(plan: &Plan, daemon: &Daemon, raw: &Sqlite, report: &mut Report) -> usize {
    progress("4. durable messages/s with 8 concurrent senders");
    let senders = 8;
    let barrier = Arc::new(Barrier::new(senders + 1));
    let dur = plan.throughput_for;
    let handles: Vec<_> = (0..senders)
        .map(|sender| {
            let (socket, barrier) = (daemon.state.socket(), barrier.clone());
            thread::spawn(move || {
                let mut c = Connection::connect(&socket, &opts()).unwrap();
                barrier.wait();
                let start = Instant::now();
                let mut lat = Vec::new();
                while start.elapsed() < dur {
                    let t = Instant::now();
                    c.send(SendMessage {
                        caller: Caller::default(),
                        to: "sink".into(),
                        kind: Kind::Task,
                        body: format!("sender {sender} message {:06}", lat.len()),
                    })
                    .unwrap();
                    lat.push(us(t.elapsed()));
                }
                (lat, Instant::now())
            })
        })
        .collect();
    let cpu0 = cpu_us(daemon.pid());
    barrier.wait();
    let start = Instant::now();
    let mut end = start;
    let mut lat = Vec::new();
    for h in handles {
        let (l, e) = h.join().unwrap();
        lat.extend(l);
        end = end.max(e);
    }
    let sent_total = lat.len();
    let send8_cpu = (cpu_us(daemon.pid()) - cpu0) / sent_total as f64;
    let mesh_rate = sent_total as f64 / (end - start).as_secs_f64();
    // The disk's speed drifts (other tenants, write-back): measure the limit again right after,
    // and hold the daemon to the faster of the two.
    progress("raw SQLite commits again, right after part 4");
    let (raw_rate_after, _, _) = raw_sqlite_single(
        &raw.dir.join("raw-after.db"),
        RAW_SCHEMA,
        RAW_INSERT,
        plan.throughput_for,
    );
    let raw_best = raw.rate.max(raw_rate_after);
    let under_load = stats(lat);
    report.rows.push(
        row(
            "4",
            format!(
                "durable messages/s, 8 threads × own connection → 1 session ({} msgs in {:.1} s; each send's round trip {}; daemon CPU {} per message)",
                sent_total,
                (end - start).as_secs_f64(),
                fmt_stats(&under_load),
                fmt_us(send8_cpu)
            ),
            format!("{mesh_rate:.0} msg/s"),
            format!(
                "raw SQLite, 1 connection, 1 INSERT per commit: **{raw_best:.0} commits/s** (the faster of {:.0} before and {raw_rate_after:.0} after; commit {}, CPU {} per commit); 8 threads × own connection: {:.0} commits/s; daemon's schema and INSERT, 1 connection: {:.0} commits/s (commit {}, CPU {} per commit)",
                raw.rate,
                fmt_stats(&raw.commit),
                fmt_us(raw.cpu),
                raw.rate8,
                raw.mesh_rate,
                fmt_stats(&raw.mesh_commit),
                fmt_us(raw.mesh_cpu)
            ),
            format!("{:.0} %", 100.0 * mesh_rate / raw_best),
        )
        .target("≥ 50 % of raw", mesh_rate >= 0.5 * raw_best),
    );
    sent_total
}

/// 4b: `list` with a long queue (every list counts the pending messages), then the queue
/// drained with `consume` at the default budget, then `list` again.
pub fn queued_list(
    plan: &Plan,
    daemon: &Daemon,
    conn: &mut Connection,
    sink_pid: u32,
    report: &mut Report,
) {
    progress("list round trips with the queue of part 4, then with the queue drained");
    let dpid = daemon.pid();
    let sink = Caller {
        claude_pid: Some(sink_pid),
        session_id: None,
    };
    let queued = conn
        .consume(Consume {
            caller: sink.clone(),
            class: Class::All,
            peek: true,
            max_bytes: 1,
            handout: 0,
        })
        .unwrap();
    let queued = queued.remaining as usize + queued.messages.len();
    let small_list = List {
        caller: Caller::default(),
        scope: Scope::Machine,
        include_offline: false,
    };
    let (list_queued, _) = timed(plan.list_iters.min(50), dpid, |_| {
        conn.list(small_list.clone()).unwrap();
    });
    let (rss_before_drain, _) = rss_kib(dpid);
    let (mut drain_calls, mut drain_max, mut drain_max_bytes) = (0, 0, 0);
    let drain_start = Instant::now();
    loop {
        let t = Instant::now();
        let inbox = conn
            .consume(Consume {
                caller: sink.clone(),
                class: Class::All,
                peek: false,
                max_bytes: 0,
                handout: 0,
            })
            .unwrap();
        let e = t.elapsed();
        drain_calls += 1;
        if inbox.messages.len() > drain_max {
            drain_max = inbox.messages.len();
            drain_max_bytes = response_len(&Response::Inbox(inbox.clone()));
            progress(&format!(
                "drain: one consume returned {drain_max} messages ({}) in {}",
                fmt_bytes(drain_max_bytes),
                fmt_us(us(e))
            ));
        }
        if inbox.remaining == 0 {
            break;
        }
    }
    let drain_time = drain_start.elapsed();
    let (rss_after_drain, _) = rss_kib(dpid);
    report.notes.push(format!(
        "4b: the {queued} queued messages were consumed (default byte budget) in {drain_calls} `consume` call(s), {:.2} s in all; the largest returned {drain_max} messages in one {} frame. Daemon A's VmRSS went from {} before to {} after.",
        drain_time.as_secs_f64(),
        fmt_bytes(drain_max_bytes),
        fmt_mb(rss_before_drain),
        fmt_mb(rss_after_drain)
    ));
    let (list_drained, _) = timed(plan.list_iters, dpid, |_| {
        conn.list(small_list.clone()).unwrap();
    });
    report.rows.push(row(
        "4b",
        format!(
            "`list` round trip, 2 sessions, {queued} messages queued for one of them (n={})",
            list_queued.n
        ),
        fmt_stats(&list_queued),
        format!(
            "the same `list` after that queue was consumed: {}",
            fmt_stats(&list_drained)
        ),
        ratio(list_queued.median, list_drained.median),
    ));
}
