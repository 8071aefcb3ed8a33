//! NATS limits (section `nats`): the raw figures the federated measurements are compared with,
//! on a real `nats-server` (each flavor mesh-testkit finds: Debian's 2.9, upstream 2.15) on
//! 127.0.0.1 with JetStream and a file store in the system temp dir, through `async-nats` on a
//! multi-threaded tokio runtime, with none of the mesh's code:
//! - N1: a core NATS request/reply round trip (requester and responder on two connections of
//!   this process; the responder echoes the payload);
//! - N2: JetStream acked publishes per second, 8 publishers on one connection (as one daemon
//!   has one), each waiting for its ack before the next publish, with a `Nats-Msg-Id` (the
//!   mesh dedupes by it) to a WorkQueue stream on file storage, like the mesh's mail stream;
//! - N2s (servers 2.11 and later only: 2.9 refuses the setting): N2 again, on a fresh server of
//!   the same flavor whose JetStream fsyncs every write (`jetstream { sync_interval: always }`
//!   in its configuration file), checked in the server's `/varz` (`sync_always: true`) before
//!   it is measured. N2's server syncs every 2 minutes (its default), while the mesh fsyncs
//!   every message on both daemons: N2s is the durable counterpart, for comparison with F2.
//! - N3: N2's 8 publishers with a consumer on a second connection (the receiving machine's):
//!   a durable pull consumer with explicit acks that takes what has arrived, up to 256 at a
//!   time, and acks each with a confirmed ack (a request the server answers), as the mesh's
//!   receiver does, minus opening and committing. Counted at the confirmed ack: messages
//!   published and consumed per second. This is what F2's path costs in NATS alone, so it
//!   bounds F2 from above on this machine whatever the mesh does.
//!
//! Payloads are 256 bytes, about an encrypted mesh envelope of a short message.
//!
//! N2 and N2s also give the CPU time per acked publish over their timed window: the server
//! process's and this bench process's (all threads: the 8 publisher tasks and the async-nats
//! runtime), from each process's kernel CPU clock (`procs::process_cpu_us`), divided by the
//! acked publishes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use futures::{FutureExt, StreamExt};
use mesh_testkit::nats::{NatsServer, flavors};

use crate::Plan;
use crate::procs::{cpu_bound, cpus, process_cpu_us};
use crate::report::{Report, Stats, fmt_stats, fmt_us, progress, row, stats, us};

const PAYLOAD: usize = 256;
const PUBLISHERS: usize = 8;

/// The raw NATS figures of one server flavor.
#[derive(Debug, Clone)]
pub struct NatsRaw {
    /// "debian 2.9" or "upstream 2.15", and the version the server reports.
    pub flavor: String,
    pub version: String,
    /// Core request/reply round trip (µs).
    pub request: Stats,
    /// JetStream acked publishes per second, 8 publishers.
    pub js_rate: f64,
    /// Each acked publish's latency (µs), across the 8 publishers.
    pub js_ack: Stats,
    /// N2's CPU time per acked publish.
    pub js_cpu: RawCpu,
    /// N2s: the same against a server that fsyncs every JetStream write; `None` for a server
    /// older than 2.11 (no `sync_interval: always`).
    pub js_sync: Option<JsRate>,
    /// N3: published and consumed (acked, confirmed) per second, and the CPU per message.
    pub js_e2e: JsRate,
}

/// JetStream acked publishes per second and each publish's latency.
#[derive(Debug, Clone, Copy)]
pub struct JsRate {
    /// Acked publishes per second, 8 publishers.
    pub rate: f64,
    /// Each acked publish's latency (µs), across the 8 publishers.
    pub ack: Stats,
    /// CPU time per acked publish over the timed window.
    pub cpu: RawCpu,
}

/// CPU time per acked publish (µs) over N2's (or N2s's) timed window, from the scheduler's
/// accounting of each process (all threads).
#[derive(Debug, Clone, Copy)]
pub struct RawCpu {
    /// The `nats-server` process.
    pub server: f64,
    /// This bench process: the 8 publisher tasks, the async-nats runtime, the timing task.
    pub client: f64,
}

impl RawCpu {
    pub fn total(&self) -> f64 {
        self.server + self.client
    }

    /// "server 11.2 µs + client 9.1 µs = 20.3 µs (on 2 CPUs at most 98500/s with no wait at
    /// all)".
    pub fn describe(&self) -> String {
        format!(
            "server {} + client {} = {} (on {} CPUs at most {:.0}/s with no wait at all)",
            fmt_us(self.server),
            fmt_us(self.client),
            fmt_us(self.total()),
            cpus(),
            cpu_bound(self.total())
        )
    }
}

/// The configuration of N2s's server: JetStream fsyncs every write (2.11+), and the HTTP
/// monitor on a port of the server's choosing (read back from its log) to check that it took.
/// Address, port, store and `-js` come from the command line (`NatsServer::with_config`).
const SYNC_ALWAYS_CONF: &str = "jetstream { sync_interval: always }\nhttp: \"127.0.0.1:-1\"\n";

/// Measure each flavor found; rows N1 and N2 per flavor. Returns the figures, for the
/// federated measurements to compare with.
pub fn run(plan: &Plan, report: &mut Report) -> Vec<NatsRaw> {
    let found = flavors();
    if found.is_empty() {
        report.notes.push(
            "NATS limits (N1–N3) skipped: no nats-server found (see mesh_testkit::nats::flavors)."
                .into(),
        );
        return Vec::new();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for (flavor, bin) in found {
        progress(&format!("NATS limits on {flavor} ({})", bin.display()));
        let server = NatsServer::start(&bin);
        let (version, request, js) = rt.block_on(measure(plan, &server.url(), server.pid()));
        drop(server);
        progress(&format!(
            "NATS limit N3 on {flavor}: publish, consume and ack, no mesh code"
        ));
        let server = NatsServer::start(&bin);
        let js_e2e = rt.block_on(async {
            let publisher = async_nats::connect(server.url()).await.unwrap();
            let receiver = async_nats::connect(server.url()).await.unwrap();
            js_rate(plan, publisher, server.pid(), Some(receiver)).await
        });
        drop(server);
        let js_sync = has_sync_always(&version).then(|| {
            progress(&format!(
                "NATS limit N2s on {flavor}: a server with `sync_interval: always`"
            ));
            let server = NatsServer::with_config(&bin, SYNC_ALWAYS_CONF);
            let varz = varz(&server);
            let config = &varz["jetstream"]["config"];
            assert_eq!(
                config["sync_always"],
                serde_json::Value::Bool(true),
                "N2s's server does not sync every write; its /varz JetStream config: {config}"
            );
            rt.block_on(async {
                let client = async_nats::connect(server.url()).await.unwrap();
                js_rate(plan, client, server.pid(), None).await
            })
        });
        let raw = NatsRaw {
            flavor: flavor.to_string(),
            version,
            request,
            js_rate: js.rate,
            js_ack: js.ack,
            js_cpu: js.cpu,
            js_sync,
            js_e2e,
        };
        report.rows.push(row(
            "N1",
            format!(
                "NATS {} (v{}): core request/reply round trip, {PAYLOAD} B, async-nats, loopback",
                raw.flavor, raw.version
            ),
            fmt_stats(&raw.request),
            "—",
            "—",
        ));
        report.rows.push(row(
            "N2",
            format!(
                "NATS {} (v{}): JetStream acked publishes/s, {PUBLISHERS} publishers, file \
                 WorkQueue stream, {PAYLOAD} B + Nats-Msg-Id",
                raw.flavor, raw.version
            ),
            format!("{:.0}/s", raw.js_rate),
            "—",
            format!(
                "ack {}; CPU per publish: {}",
                fmt_stats(&raw.js_ack),
                raw.js_cpu.describe()
            ),
        ));
        if let Some(sync) = &raw.js_sync {
            report.rows.push(row(
                "N2s",
                format!(
                    "NATS {} (v{}): N2 against a server whose JetStream **fsyncs every write** \
                     (`sync_interval: always`; its `/varz` says `sync_always: true`)",
                    raw.flavor, raw.version
                ),
                format!("{:.0}/s", sync.rate),
                format!("N2: {:.0}/s", raw.js_rate),
                format!(
                    "{:.0} % of N2; ack {}; CPU per publish: {}",
                    100.0 * sync.rate / raw.js_rate,
                    fmt_stats(&sync.ack),
                    sync.cpu.describe()
                ),
            ));
        } else {
            report.notes.push(format!(
                "N2s skipped on {} (v{}): `sync_interval: always` needs nats-server 2.11 or \
                 later (2.9 refuses the field).",
                raw.flavor, raw.version
            ));
        }
        report.rows.push(row(
            "N3",
            format!(
                "NATS {} (v{}): JetStream **published and consumed**/s: N2's {PUBLISHERS} \
                 publishers to one subject, a durable pull consumer on a second connection \
                 taking up to 256 at a time and acking each (confirmed), counted at the ack",
                raw.flavor, raw.version
            ),
            format!("{:.0}/s", raw.js_e2e.rate),
            format!("N2: {:.0}/s", raw.js_rate),
            format!(
                "{:.0} % of N2; CPU per message: {}",
                100.0 * raw.js_e2e.rate / raw.js_rate,
                raw.js_e2e.cpu.describe()
            ),
        ));
        out.push(raw);
    }
    report.notes.push(format!(
        "N1–N2 are raw NATS with none of the mesh's code (`nats_raw.rs`): N1 over {} round trips \
         after {} of warm-up, N2 for {:?}; the server runs on 127.0.0.1 with its JetStream \
         store in the system temp dir (`$TMPDIR`), with the server's default sync (an ack \
         means stored, fsync'd every 2 minutes; SQLite's commits above are fsync'd each). \
         N2s (2.11+) is the same measurement for as long on a fresh server of the flavor \
         started with `{}` in its configuration file, which fsyncs the stream's file on every \
         write before it acks (checked in the server's `/varz` before the run). CPU per \
         publish (N2, N2s): the CPU time (user + kernel, all threads including exited ones, \
         from the process's kernel CPU clock, `clock_getcpuclockid`) of the `nats-server` process and of this bench \
         process (client: the 8 publisher tasks, the async-nats runtime's threads, the timing \
         task) from the publishers' start to the last one's stop, divided by the acked \
         publishes; \"at most …/s\" is {} CPUs × 1 s ÷ that total, the rate the two could \
         reach if nothing ever waited (no I/O, no wake-up latency). N3 (a fresh server of the \
         flavor): N2's publishers for as long, all to one subject (as F2's senders all write to \
         one session on B), and on a second connection of this process a durable pull \
         consumer (explicit ack, the mesh's pull settings) that takes what has arrived, up to \
         256, and acks each with a request the server answers, all of a batch at once, before \
         the next (the mesh's receiver, minus opening and committing); counted from the \
         publishers' start to the last confirmed ack, after which the stream must be empty; \
         its CPU per message (server, and this process: publishers and consumer) over that \
         window. N3 is NATS's own cost of F2's path on this machine: F2 cannot exceed it.",
        nats_iters(plan),
        plan.warmup,
        plan.throughput_for,
        SYNC_ALWAYS_CONF.lines().next().unwrap_or_default(),
        cpus()
    ));
    out
}

/// Whether a server of this version (`2.15.1`) has `jetstream { sync_interval: always }`:
/// 2.11 and later.
fn has_sync_always(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .unwrap_or(0)
    });
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 11)
}

/// The server's `/varz` (its HTTP monitor, at the address its log names), as JSON.
fn varz(server: &NatsServer) -> serde_json::Value {
    const MARK: &str = "Starting http monitor on ";
    let log = server.log();
    let addr = log
        .lines()
        .find_map(|l| l.split_once(MARK).map(|(_, a)| a.trim().to_string()))
        .unwrap_or_else(|| panic!("no HTTP monitor in the server's log:\n{log}"));
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.write_all(format!("GET /varz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP reply from {addr}/varz: {reply:?}"));
    assert!(head.contains(" 200 "), "{addr}/varz: {head}");
    serde_json::from_str(body).unwrap()
}

/// Round trips for N1: 2,000 (200 with `--quick`).
fn nats_iters(plan: &Plan) -> usize {
    if plan.quick { 200 } else { 2_000 }
}

async fn measure(plan: &Plan, url: &str, server_pid: u32) -> (String, Stats, JsRate) {
    let requester = async_nats::connect(url).await.unwrap();
    let version = requester.server_info().version;

    // N1: an echo responder on its own connection.
    let responder = async_nats::connect(url).await.unwrap();
    let mut sub = responder.subscribe("bench.echo").await.unwrap();
    responder.flush().await.unwrap();
    let echo = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                responder.publish(reply, msg.payload).await.unwrap();
            }
        }
    });
    let payload = vec![b'x'; PAYLOAD];
    // `flush` only empties the client's buffer: the server may not have the echo's
    // subscription yet (a request then fails with "no responders", seen on a loaded machine).
    // Wait until one request is answered.
    let ready = Instant::now();
    while requester
        .request("bench.echo", payload.clone().into())
        .await
        .is_err()
    {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "the echo responder never answered"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let iters = nats_iters(plan);
    let mut lat = Vec::with_capacity(iters);
    for i in 0..plan.warmup + iters {
        let t = Instant::now();
        let reply = requester
            .request("bench.echo", payload.clone().into())
            .await
            .unwrap();
        let took = t.elapsed();
        assert_eq!(reply.payload.len(), PAYLOAD);
        if i >= plan.warmup {
            lat.push(us(took));
        }
    }
    echo.abort();
    let request = stats(lat);
    let js = js_rate(plan, requester, server_pid, None).await;
    (version, request, js)
}

/// N2 (and N2s): a WorkQueue stream on file storage, 8 publishers on `client`'s connection;
/// the server (`server_pid`) and this process's CPU time over the timed window. With
/// `consumer` (N3), the publishers all write to one subject and a durable pull consumer on that
/// second connection takes and acks every message; the window ends at the last confirmed ack
/// and the rate counts consumed messages.
async fn js_rate(
    plan: &Plan,
    client: async_nats::Client,
    server_pid: u32,
    consumer: Option<async_nats::Client>,
) -> JsRate {
    let me = std::process::id();
    let payload = vec![b'x'; PAYLOAD];
    let js = jetstream::new(client);
    let stream = js
        .create_stream(Config {
            name: "BENCH_MAIL".into(),
            subjects: vec!["bench.to.*".into()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    let one_subject = consumer.is_some();
    let subject = |p: usize| {
        if one_subject {
            "bench.to.b".to_string()
        } else {
            format!("bench.to.d{p}")
        }
    };
    // Warm-up: the store's first block.
    for i in 0..plan.warmup {
        js.send_publish(
            subject(0),
            PublishMessage::build()
                .payload(payload.clone().into())
                .message_id(format!("warm-{i}")),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let (consumed_tx, mut consumed) = tokio::sync::watch::channel(0u64);
    let receiver = match consumer {
        Some(conn) => {
            // The warm-up messages are consumed too: the consumer starts at the stream's start.
            let pull = stream
                .create_consumer(pull::Config {
                    durable_name: Some("b".into()),
                    filter_subject: "bench.to.b".into(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_deliver: -1,
                    deliver_policy: DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .unwrap();
            let name = pull.cached_info().name.clone();
            // The consumer reads on its own connection, as the receiving daemon does.
            let pull: PullConsumer = jetstream::new(conn)
                .get_stream("BENCH_MAIL")
                .await
                .unwrap()
                .get_consumer(&name)
                .await
                .unwrap();
            Some(tokio::spawn(consume(pull, consumed_tx)))
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let (server0, client0) = (process_cpu_us(server_pid), process_cpu_us(me));
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (js, stop, total, payload) =
                (js.clone(), stop.clone(), total.clone(), payload.clone());
            let subject = subject(p);
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ack = js
                        .send_publish(
                            subject.clone(),
                            PublishMessage::build()
                                .payload(payload.clone().into())
                                .message_id(format!("p{p}-{n}")),
                        )
                        .await
                        .unwrap()
                        .await
                        .unwrap();
                    assert!(!ack.duplicate);
                    lat.push(us(t.elapsed()));
                    n += 1;
                }
                total.fetch_add(n, Ordering::Relaxed);
                (lat, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(plan.throughput_for).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut end = start;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        end = end.max(e);
    }
    let n = total.load(Ordering::Relaxed);
    if let Some(receiver) = receiver {
        // N3's window ends at the last confirmed ack.
        let all_in = n + plan.warmup as u64;
        let all_acked = consumed.wait_for(|c| *c >= all_in);
        let acked = tokio::time::timeout(Duration::from_secs(60), all_acked)
            .await
            .map(|_| ());
        assert!(
            acked.is_ok(),
            "N3: {} of {all_in} consumed a minute after the publishers stopped",
            *consumed.borrow()
        );
        end = Instant::now();
        receiver.abort();
    }
    // The last publisher (or N3's consumer) stopped at `end`; the joins after it take a few µs.
    let (server1, client1) = (process_cpu_us(server_pid), process_cpu_us(me));
    let rate = n as f64 / (end - start).as_secs_f64();
    let mut stream = js.get_stream("BENCH_MAIL").await.unwrap();
    let stored = stream.info().await.unwrap().state.messages;
    if one_subject {
        // N3: every message was acked, so the work queue is empty.
        assert_eq!(stored, 0, "N3: acked messages left in the work queue");
    } else {
        // Every acked publish is in the stream (nothing consumed it).
        assert_eq!(
            stored,
            n + plan.warmup as u64,
            "acked publishes missing from the stream"
        );
    }
    JsRate {
        rate,
        ack: stats(all),
        cpu: RawCpu {
            server: (server1 - server0) / n as f64,
            client: (client1 - client0) / n as f64,
        },
    }
}

/// N3's consumer: what has arrived, up to 256 at a time, each acked with a request the server
/// answers (all of a batch at once), before the next batch; `consumed` counts confirmed acks.
async fn consume(pull: PullConsumer, consumed: tokio::sync::watch::Sender<u64>) {
    let mut messages = pull
        .stream()
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .unwrap();
    while let Some(first) = messages.next().await {
        let mut batch = vec![first.unwrap()];
        while batch.len() < 256 {
            match messages.next().now_or_never() {
                Some(Some(m)) => batch.push(m.unwrap()),
                _ => break,
            }
        }
        let acks = batch.into_iter().map(|m| {
            let client = m.context.client();
            let reply = m.reply.clone().expect("a delivery without a reply subject");
            async move { client.request(reply, "+ACK".into()).await.unwrap() }
        });
        let done = futures::future::join_all(acks).await.len() as u64;
        consumed.send_modify(|c| *c += done);
    }
}
