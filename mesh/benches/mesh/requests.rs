//! Part 1: request round trips through the client library to a `mesh daemon` process: `ping`
//! (answered on the tokio worker), `send` (durable, one fsync), and `message_status` (read-only,
//! the store thread's path without the fsync).

use mesh_client::Connection;
use mesh_proto::{Caller, Kind, MessageStatus, Ping, Request, Response, SendMessage};

use crate::Plan;
use crate::procs::{Daemon, timed};
use crate::raw_socket::{raw_socket, request_len, response_len};
use crate::raw_sqlite::Sqlite;
use crate::report::{Report, fmt_stats, fmt_us, progress, row};

pub fn run(plan: &Plan, daemon: &Daemon, conn: &mut Connection, raw: &Sqlite, report: &mut Report) {
    progress("1. ping and send round trips");
    let pong = conn.ping().unwrap();
    let ping_req = request_len(&Request::Ping(Ping {}));
    let ping_resp = response_len(&Response::Pong(pong));
    for _ in 0..plan.warmup {
        conn.ping().unwrap();
    }
    let dpid = daemon.pid();
    let (ping, ping_cpu) = timed(plan.ping_iters, dpid, |_| {
        conn.ping().unwrap();
    });
    let ping_raw = raw_socket(ping_req, ping_resp, plan.ping_iters, plan.warmup);

    let send_req = |i: usize| SendMessage {
        caller: Caller::default(),
        to: "sink".into(),
        kind: Kind::Task,
        body: format!("benchmark task {i:06}"),
    };
    let sent = conn.send(send_req(0)).unwrap();
    let probe_id = sent.messages[0].id;
    let send_req_len = request_len(&Request::SendMessage(send_req(0)));
    let send_resp_len = response_len(&Response::Sent(sent));
    for i in 0..plan.warmup.min(20) {
        conn.send(send_req(i)).unwrap();
    }
    let (send, send_cpu) = timed(plan.send_iters, dpid, |i| {
        conn.send(send_req(i)).unwrap();
    });
    let send_raw = raw_socket(send_req_len, send_resp_len, plan.ping_iters, plan.warmup);

    report.rows.push(row(
        "1a",
        format!(
            "`ping` round trip, client library (n={}; daemon CPU {} per request)",
            ping.n,
            fmt_us(ping_cpu)
        ),
        fmt_stats(&ping),
        format!(
            "raw socket ping-pong {ping_req} B → {ping_resp} B: {}",
            ping_raw.describe()
        ),
        ping_raw.vs(ping.median, 0.0),
    ));
    report.rows.push(row(
        "1b",
        format!(
            "`send` round trip, durable (n={}; daemon CPU {} per request)",
            send.n,
            fmt_us(send_cpu)
        ),
        fmt_stats(&send),
        format!(
            "raw socket {send_req_len} B → {send_resp_len} B: {}; + 1 raw SQLite commit: {} (with the daemon's schema and INSERT: {})",
            send_raw.describe(),
            fmt_us(send_raw.best().median + raw.commit.median),
            fmt_us(send_raw.best().median + raw.mesh_commit.median)
        ),
        send_raw.vs(send.median, raw.commit.median),
    ));

    // A read-only request through the store thread: the same path as `send` (tokio worker →
    // store thread → BEGIN IMMEDIATE … COMMIT → tokio worker) but with nothing to fsync.
    let status_req = MessageStatus {
        message_id: probe_id,
    };
    let status_msg = conn.message_status(status_req.clone()).unwrap();
    let status_req_len = request_len(&Request::MessageStatus(status_req.clone()));
    let status_resp_len = response_len(&Response::Message(status_msg));
    for _ in 0..plan.warmup {
        conn.message_status(status_req.clone()).unwrap();
    }
    let (status, status_cpu) = timed(plan.send_iters, dpid, |_| {
        conn.message_status(status_req.clone()).unwrap();
    });
    let status_raw = raw_socket(
        status_req_len,
        status_resp_len,
        plan.ping_iters,
        plan.warmup,
    );
    report.rows.push(row(
        "1c",
        format!(
            "`message_status` round trip: read-only, through the store thread, no fsync (n={}; daemon CPU {} per request)",
            status.n,
            fmt_us(status_cpu)
        ),
        fmt_stats(&status),
        format!(
            "raw socket {status_req_len} B → {status_resp_len} B: {}",
            status_raw.describe()
        ),
        status_raw.vs(status.median, 0.0),
    ));
}
