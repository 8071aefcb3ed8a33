//! 3e: "reply commit → blocked asker receives it", timed directly. The daemon runs in this
//! process (`mesh_daemon::run` on a tokio runtime on a background thread), so its store thread
//! and the bench's asker thread read the same monotonic clock. Right after a reply's transaction
//! commits, and just before it wakes the blocked asker, the store thread emits the tracing event
//! `mesh::latency` with the question's id; a small `Layer` records `Instant::now()` for it. The
//! asker records `Instant::now()` when its `ask` returns. The subscriber enables that one
//! target at TRACE and nothing else, so the daemon pays for no other logging.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mesh_proto::Caller;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::Plan;
use crate::procs::{InProcessDaemon, Sleepers, register};
use crate::raw_socket::{raw_socket, raw_wake_chain};
use crate::reply::exchanges;
use crate::report::{Report, fmt_stats, fmt_us, progress, ratio, row, stats, us_between};

/// The target of the daemon's event (daemon/src/store/messages.rs, `reply`).
const TARGET: &str = "mesh::latency";

/// When each `mesh::latency` event was emitted, by its `question` field.
type Commits = Arc<Mutex<HashMap<i64, Instant>>>;

/// Records the time of each `mesh::latency` event; the clock is read before anything else.
struct Recorder(Commits);

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let at = Instant::now();
        if event.metadata().target() != TARGET {
            return;
        }
        let mut question = QuestionField(None);
        event.record(&mut question);
        if let Some(q) = question.0 {
            self.0.lock().unwrap().insert(q, at);
        }
    }
}

/// Picks the `question` field out of an event.
struct QuestionField(Option<i64>);

impl Visit for QuestionField {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "question" {
            self.0 = Some(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "question" {
            self.0 = i64::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

/// Install, for the rest of the process, a subscriber that only records `mesh::latency`
/// events at TRACE (every other target and level is off).
fn install() -> Commits {
    let commits = Commits::default();
    commits.lock().unwrap().reserve(1_024);
    let subscriber = tracing_subscriber::registry()
        .with(Targets::new().with_target(TARGET, LevelFilter::TRACE))
        .with(Recorder(commits.clone()));
    tracing::subscriber::set_global_default(subscriber)
        .expect("no other global tracing subscriber in the bench");
    commits
}

pub fn run(plan: &Plan, tmp: &Path, report: &mut Report) {
    progress("3e. commit → asker with an in-process daemon (commit timestamped by a trace event)");
    let commits = install();
    let daemon = InProcessDaemon::start(&tmp.join("inproc"));
    let mut sleepers = Sleepers::default();
    let answerer_pid = sleepers.spawn();
    register(
        &mut daemon.conn(),
        answerer_pid,
        "answerer-session-0001",
        &tmp.join("inproc-projects").join("answerer"),
    );
    let answerer = Caller {
        claude_pid: Some(answerer_pid),
        session_id: None,
    };
    let warmup = plan.warmup.min(20);
    let (ex, sizes) = exchanges(&daemon.socket, &answerer, plan.reply_iters, warmup);
    drop(daemon);
    drop(sleepers);

    let commits = commits.lock().unwrap();
    let commit_of = |q: u64| {
        *commits
            .get(&i64::try_from(q).unwrap())
            .unwrap_or_else(|| panic!("no `{TARGET}` event for question {q}"))
    };
    let to_asker = stats(
        ex.iter()
            .map(|e| us_between(commit_of(e.question), e.woke))
            .collect(),
    );
    let to_commit = stats(
        ex.iter()
            .map(|e| us_between(e.t0, commit_of(e.question)))
            .collect(),
    );
    let to_ack = stats(
        ex.iter()
            .map(|e| us_between(commit_of(e.question), e.ack))
            .collect(),
    );
    let whole = stats(ex.iter().map(|e| us_between(e.t0, e.woke)).collect());

    // The limit: the same hand-offs with none of the daemon's code.
    let chain = raw_wake_chain(sizes.asked, plan.send_iters, plan.warmup);
    let round_trip = raw_socket(sizes.asked, sizes.asked, plan.ping_iters, plan.warmup);
    let judged = if to_asker.p99 <= 1_000.0 {
        "met (median and p99)".to_owned()
    } else if to_asker.median <= 1_000.0 {
        format!(
            "met at the median; **not met** at p99 ({})",
            fmt_us(to_asker.p99)
        )
    } else {
        "**not met**".to_owned()
    };
    let mut r = row(
        "3e",
        format!(
            "**commit → asker's `ask` returns**, in-process daemon: the daemon's `{TARGET}` event (store thread, right after the commit) to the asker's return, same clock (n={})",
            to_asker.n
        ),
        fmt_stats(&to_asker),
        format!(
            "raw hand-off chain, no daemon code (a thread fires a tokio oneshot → a task on the daemon's one-thread runtime writes {} B to a Unix socket → a thread blocked in `read` returns; 2 wake-ups + 1 transfer, n={}): {} (cross-check: ½ raw round trip of {} B, one wake-up + one transfer, plus one more wake-up ≈ 1 raw round trip: {})",
            sizes.asked,
            chain.n,
            fmt_stats(&chain),
            sizes.asked,
            round_trip.describe()
        ),
        ratio(to_asker.median, chain.median),
    );
    r.target = "≤ 1 ms".into();
    r.met = judged;
    report.rows.push(r);
    report.notes.push(format!(
        "3e (in-process daemon, {} replies after {warmup} warm-up): reply sent → commit event {} (the reply's transaction, incl. its fsync); commit event → replier's ack {}; reply sent → asker's return {} (compare 3a); {} commit events recorded. The daemon is the same library code `mesh daemon` runs, built in the same profile, with the same runtime shape (one runtime thread + the store thread); the asker and replier are threads of the bench process, as in 3a–3d.",
        ex.len(),
        fmt_stats(&to_commit),
        fmt_stats(&to_ack),
        fmt_stats(&whole),
        commits.len()
    ));
}
