//! Part 2c–2i: whole-process wall time of the Claude Code hook shim (`mesh hook <event>`) and
//! the status line (`mesh statusline`), run as Claude Code runs them: Claude Code's JSON on
//! stdin, `CLAUDE_PID` set to a registered stand-in `sleep`, against the running daemon A. Each
//! is interleaved with exec of the empty Rust binary under the same stdio (the limit), and with
//! `mesh hook bogus-event` (the `mesh` binary's own start-up, for the breakdown). For the
//! breakdown too, the bench process issues each hook's own requests over the client library
//! (connect, pipelined handshake, the same requests with the same caller), in the same rounds.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use mesh_client::{ClientError, Connection};
use mesh_proto::{
    Caller, Class, Consume, Kind, List, Poll, Register, Scope, SendMessage, SetIdle, WhoAmI,
};
use serde_json::{Value, json};

use crate::Plan;
use crate::procs::{Daemon, Sleepers, cpu_us, opts, register};
use crate::raw_sqlite::{RAW_INSERT, RAW_SCHEMA, raw_open};
use crate::report::{Report, Stats, fmt_bytes, fmt_stats, fmt_us, progress, row, stats, us};

/// The target: a hook's wall time at most this many times an empty binary's exec.
const TARGET: f64 = 1.5;
/// The hook's consume budget (`mesh hook`'s `CONSUME_BYTES`).
const CONSUME_BYTES: u32 = 6000;
/// The index of the raw SQLite commit among the measured slots.
const RAW: usize = 14;
/// The stand-in session.
const SESSION_ID: &str = "hook-bench-session-0001";

/// What a run must have printed: checked after every timed run, outside the timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Exit 0, nothing on stdout or stderr (the empty binary; a hook with nothing to say).
    Silent,
    /// Exit 0, no stdout, one `mesh hook: unknown hook event` line on stderr.
    Unknown,
    /// Exit 0, one `hookSpecificOutput` JSON object carrying the task queued for this run.
    Task,
    /// Exit 0, one badge line with no mail in it.
    Badge,
}

/// One command of the rounds: a process, or the same hook's requests from this process.
#[derive(Debug)]
enum Slot {
    Process {
        cmd: Box<Command>,
        stdin: Vec<u8>,
        expect: Expect,
    },
    InProcess(Requests),
    /// One raw SQLite commit (WAL, `synchronous=FULL`, one row) in the daemon's directory,
    /// at the same moments in the rounds as a hook's: what 2d's hand-out must wait for.
    RawCommit(rusqlite::Connection),
}

/// A hook's requests, as `mesh hook` issues them on its one pipelined connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requests {
    /// post-tool-use: `Poll(Urgent)` (answered from a read: nothing to take).
    PostToolUse,
    /// post-tool-use with mail: `Poll(Urgent)` (takes the task, one commit).
    PostToolUsePending,
    /// user-prompt-submit: `SetIdle(busy)`, `Consume(All)`.
    UserPromptSubmit,
    /// stop: `WhoAmI`, `SetIdle(idle)`.
    Stop,
    /// session-start: `Register` (pending 0: done).
    SessionStart,
    /// statusline: `WhoAmI`, `List(Machine, live)`.
    Statusline,
}

impl Requests {
    fn pending(self) -> bool {
        self == Self::PostToolUsePending
    }
}

/// One line of the measurement: its samples and the daemon's CPU over its runs.
#[derive(Debug)]
struct Measured {
    slot: Slot,
    wall: Vec<f64>,
    daemon_cpu: f64,
}

/// The stand-in session and what its hooks need.
struct Session<'a> {
    socket: &'a Path,
    caller: Caller,
    name: String,
    cwd: String,
    transcript: String,
    pid: u32,
}

/// Part 2c–2i. Returns the number of messages sent (queued for the pending runs).
pub fn run(
    plan: &Plan,
    daemon: &Daemon,
    sleepers: &mut Sleepers,
    empty: &Path,
    report: &mut Report,
) -> usize {
    progress("2c–2i. whole-process wall time: mesh hook <event>, mesh statusline, empty binary");
    let pid = sleepers.spawn();
    let cwd = daemon.home.join("projects").join("hooked");
    let mut conn = daemon.conn();
    let info = register(&mut conn, pid, SESSION_ID, &cwd);
    let socket = daemon.state.socket();
    let s = Session {
        socket: &socket,
        caller: Caller {
            claude_pid: Some(pid),
            session_id: Some(SESSION_ID.to_owned()),
        },
        name: info.name.clone(),
        cwd: info.cwd.clone(),
        transcript: format!("/tmp/transcripts/{SESSION_ID}.jsonl"),
        pid,
    };

    let input = |event: &str, extra: Value| {
        let mut v = json!({
            "session_id": SESSION_ID,
            "transcript_path": s.transcript,
            "cwd": s.cwd,
            "hook_event_name": event,
            "permission_mode": "default",
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string().into_bytes()
    };
    // A typical Bash tool call with about 1 kB of output.
    let listing: String = (0..40).map(|i| format!("src/module_{i:02}.rs\n")).collect();
    let post_tool_use = input(
        "PostToolUse",
        json!({
            "tool_name": "Bash",
            "tool_input": {"command": "ls src", "description": "List the sources"},
            "tool_response": {"stdout": listing, "stderr": "", "interrupted": false, "isImage": false},
            "tool_use_id": "toolu_01BenchBenchBenchBenchBench",
        }),
    );
    let prompt = input(
        "UserPromptSubmit",
        json!({"prompt": "run the tests and fix what fails"}),
    );
    let stop = input(
        "Stop",
        json!({"stop_hook_active": false, "last_assistant_message": "All tests pass."}),
    );
    let start = input("SessionStart", json!({"source": "resume"}));
    let status = json!({"session_id": SESSION_ID, "cwd": s.cwd})
        .to_string()
        .into_bytes();
    // Written into the pipe whole before the child is waited for: must fit its buffer.
    for v in [&post_tool_use, &prompt, &stop, &start, &status] {
        assert!(v.len() < 4096, "stdin of {} B may not fit a pipe", v.len());
    }

    let hook = |event: &str| {
        let mut cmd = daemon.mesh();
        cmd.args(["hook", event]).env("CLAUDE_PID", pid.to_string());
        cmd
    };
    let mut statusline = daemon.mesh();
    statusline
        .arg("statusline")
        .env("CLAUDE_PID", pid.to_string());
    let proc = |cmd: Command, stdin: &[u8], expect: Expect| Measured {
        slot: Slot::Process {
            cmd: Box::new(cmd),
            stdin: stdin.to_vec(),
            expect,
        },
        wall: Vec::new(),
        daemon_cpu: 0.0,
    };
    let inproc = |r: Requests| Measured {
        slot: Slot::InProcess(r),
        wall: Vec::new(),
        daemon_cpu: 0.0,
    };
    // Indices below name these.
    let mut m = vec![
        proc(Command::new(empty), &post_tool_use, Expect::Silent),
        proc(hook("bogus-event"), &post_tool_use, Expect::Unknown),
        proc(hook("post-tool-use"), &post_tool_use, Expect::Silent),
        proc(hook("post-tool-use"), &post_tool_use, Expect::Task),
        proc(hook("user-prompt-submit"), &prompt, Expect::Silent),
        proc(hook("stop"), &stop, Expect::Silent),
        proc(hook("session-start"), &start, Expect::Silent),
        proc(statusline, &status, Expect::Badge),
        inproc(Requests::PostToolUse),
        inproc(Requests::PostToolUsePending),
        inproc(Requests::UserPromptSubmit),
        inproc(Requests::Stop),
        inproc(Requests::SessionStart),
        inproc(Requests::Statusline),
        Measured {
            slot: Slot::RawCommit({
                let raw = raw_open(&daemon.state.root().join("raw-in-rounds.db"));
                raw.execute_batch(RAW_SCHEMA).unwrap();
                raw
            }),
            wall: Vec::new(),
            daemon_cpu: 0.0,
        },
    ];
    assert!(matches!(m[RAW].slot, Slot::RawCommit(_)));
    for x in &mut m {
        if let Slot::Process { cmd, .. } = &mut x.slot {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
    }

    assert_eq!(whoami_pending(&mut conn, &s.caller), 0, "inbox not empty");
    let dpid = daemon.pid();
    let mut sent = 0;
    let warmup_rounds = 5;
    let mut order = Shuffle::new(m.len());
    for round in 0..warmup_rounds + plan.hook_runs {
        // Round robin: every command once per round, each round in a new order, so that no
        // command always follows the same one (or inherits the same one's tail).
        for &i in order.next() {
            let x = &mut m[i];
            let body = match &x.slot {
                Slot::Process {
                    expect: Expect::Task,
                    ..
                } => Some(queue(&mut conn, &s, sent)),
                Slot::InProcess(r) if r.pending() => Some(queue(&mut conn, &s, sent)),
                _ => None,
            };
            sent += usize::from(body.is_some());
            let cpu0 = cpu_us(dpid);
            let wall = match &mut x.slot {
                Slot::Process { cmd, stdin, expect } => {
                    let (wall, out) = exec(cmd, stdin);
                    check(cmd, *expect, &out, body.as_deref());
                    wall
                }
                Slot::InProcess(r) => requests(*r, &s),
                Slot::RawCommit(raw) => {
                    let t = Instant::now();
                    raw.prepare_cached(RAW_INSERT)
                        .and_then(|mut i| {
                            i.execute(rusqlite::params!["in the rounds", round as i64])
                        })
                        .unwrap();
                    us(t.elapsed())
                }
            };
            let cpu = cpu_us(dpid) - cpu0;
            if round >= warmup_rounds {
                x.wall.push(wall);
                x.daemon_cpu += cpu;
            }
        }
    }
    assert_eq!(whoami_pending(&mut conn, &s.caller), 0, "mail left over");
    let one_by_one = per_request(plan, &s, dpid);

    let st: Vec<Stats> = m.iter().map(|x| stats(x.wall.clone())).collect();
    let cpu: Vec<f64> = m
        .iter()
        .map(|x| x.daemon_cpu / x.wall.len() as f64)
        .collect();
    let e = st[0];
    let limit = format!(
        "exec of empty Rust binary, same stdio (stdin {} piped in, stdout and stderr captured): {}",
        fmt_bytes(post_tool_use.len()),
        fmt_stats(&e)
    );
    let vs = |s: &Stats| format!("{:.2}× (p99 {:.2}×)", s.median / e.median, s.p99 / e.p99);
    let rows: [(&'static str, usize, String); 6] = [
        (
            "2c",
            2,
            format!(
                "`mesh hook post-tool-use`, empty inbox: the hot path, every tool call (stdin {}; requests: `Poll`)",
                fmt_bytes(post_tool_use.len())
            ),
        ),
        (
            "2d",
            3,
            "`mesh hook post-tool-use`, one task pending (queued before each run, not timed; requests: `Poll`, which takes it with one commit; prints the task)".to_owned(),
        ),
        (
            "2e",
            4,
            format!(
                "`mesh hook user-prompt-submit`, empty inbox (stdin {}; requests: `SetIdle`, `Consume`)",
                fmt_bytes(prompt.len())
            ),
        ),
        (
            "2f",
            5,
            format!(
                "`mesh hook stop`, empty inbox, `stop_hook_active: false` (stdin {}; requests: `WhoAmI`, `SetIdle`)",
                fmt_bytes(stop.len())
            ),
        ),
        (
            "2g",
            6,
            format!(
                "`mesh hook session-start`, re-register of the same session (stdin {}; requests: `Register`)",
                fmt_bytes(start.len())
            ),
        ),
        (
            "2h",
            7,
            format!(
                "`mesh statusline` (stdin `{{session_id, cwd}}`, {}; requests: `WhoAmI`, `List`)",
                fmt_bytes(status.len())
            ),
        ),
    ];
    // 2d must commit its hand-out (one fsync) between the request and the answer: the same
    // hook finding nothing (2c) plus that commit is its reference.
    let reference = st[2].median + st[RAW].median;
    for (id, i, what) in rows {
        let ok = st[i].median <= TARGET * e.median;
        let target = if id == "2h" {
            format!("≤ {TARGET}× empty exec, median (the hooks' bar, applied to it too)")
        } else {
            format!("≤ {TARGET}× empty exec, median")
        };
        report.rows.push(
            row(
                id,
                format!(
                    "{what} (n={}; daemon CPU {} per call)",
                    st[i].n,
                    fmt_us(cpu[i])
                ),
                fmt_stats(&st[i]),
                match i {
                    2 => limit.clone(),
                    3 => format!(
                        "same: {}; for reference, as each hand-out is fsync'd before it is printed: 2c + one raw SQLite commit in the same rounds ({}) = {} = {:.2}×",
                        fmt_stats(&e),
                        fmt_stats(&st[RAW]),
                        fmt_us(reference),
                        reference / e.median
                    ),
                    _ => format!("same: {}", fmt_stats(&e)),
                },
                vs(&st[i]),
            )
            .target(target, ok),
        );
    }
    report.rows.push(row(
        "2i",
        format!(
            "`mesh hook bogus-event`, for context: reads nothing, one warning line, exit 0 (the `mesh` binary's start-up and exit) (n={})",
            st[1].n
        ),
        fmt_stats(&st[1]),
        format!("same: {}", fmt_stats(&e)),
        vs(&st[1]),
    ));

    let startup = st[1].median - e.median;
    let mut parts = Vec::new();
    for (name, p, r) in [
        ("post-tool-use (empty)", 2, 8),
        ("post-tool-use (pending)", 3, 9),
        ("user-prompt-submit", 4, 10),
        ("stop", 5, 11),
        ("session-start", 6, 12),
        ("statusline", 7, 13),
    ] {
        parts.push(format!(
            "{name} {} − bogus-event = {}, of which its requests from the bench process {} (p99 {}; daemon CPU {})",
            fmt_us(st[p].median),
            fmt_us(st[p].median - st[1].median),
            fmt_us(st[r].median),
            fmt_us(st[r].p99),
            fmt_us(cpu[r]),
        ));
    }
    report.notes.push(format!(
        "2c–2i: session `{}` (a `sleep` stand-in, pid {}, `CLAUDE_PID`) on daemon A, with the 2 sessions of parts 1–4 live beside it; {} rounds (after 5 warm-up rounds) of 8 processes, 6 in-process request sequences and one raw SQLite commit (2d's reference: one row, WAL, `synchronous=FULL`, in the daemon's directory), round robin, every command once per round, each round in a new random order (fixed seed); {} tasks queued in all (one before each pending run, not timed). Every run's exit status, stdout and stderr were checked (empty inbox: no output; pending: the task printed; statusline: a badge without mail).",
        s.name, s.pid, plan.hook_runs, sent
    ));
    report.notes.push(format!(
        "2c–2i, where the time goes (medians of the same rounds): empty binary {}; the `mesh` binary's start-up and exit (bogus-event − empty) {}; {}. \"Its requests from the bench process\" is the same hook's requests over the client library, interleaved in the same rounds: connect, the handshake pipelined with the first request, the same requests with the same caller (`CLAUDE_PID` and session id). The daemon's CPU during runs that do not talk to it: {} per empty-binary run, {} per bogus-event run.",
        fmt_us(e.median),
        fmt_us(startup),
        parts.join("; "),
        fmt_us(cpu[0]),
        fmt_us(cpu[1])
    ));
    report.notes.push(one_by_one);
    sent
}

/// The order of the next round: a permutation of `0..n`, new each round (Fisher–Yates on
/// xorshift64, a fixed seed: runs are comparable).
#[derive(Debug)]
struct Shuffle {
    order: Vec<usize>,
    state: u64,
}

impl Shuffle {
    fn new(n: usize) -> Self {
        Self {
            order: (0..n).collect(),
            state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn next(&mut self) -> &[usize] {
        for i in (1..self.order.len()).rev() {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let j = (self.state % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
        &self.order
    }
}

/// Spawn `cmd`, write `stdin` into its pipe, read its stdout and stderr to the end and reap it:
/// the wall time of all that, in µs.
fn exec(cmd: &mut Command, stdin: &[u8]) -> (f64, Output) {
    let t = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // Fits the pipe's buffer, so this never waits for the child. A child that reads nothing
    // may already be gone (EPIPE): that is fine.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (us(t.elapsed()), out)
}

fn check(cmd: &Command, expect: Expect, out: &Output, body: Option<&str>) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success()
        && match expect {
            Expect::Silent => stdout.is_empty() && stderr.is_empty(),
            Expect::Unknown => {
                stdout.is_empty()
                    && stderr.starts_with("mesh hook: unknown hook event")
                    && stderr.lines().count() == 1
            }
            Expect::Task => {
                stderr.is_empty()
                    && serde_json::from_str::<Value>(&stdout).is_ok_and(|v| {
                        v["hookSpecificOutput"]["additionalContext"]
                            .as_str()
                            .is_some_and(|c| c.contains(body.unwrap()))
                    })
            }
            Expect::Badge => {
                stderr.is_empty()
                    && stdout.starts_with('[')
                    && stdout.ends_with("]\n")
                    && !stdout.contains('✉')
            }
        };
    assert!(
        ok,
        "{cmd:?}: expected {expect:?}, got {}: stdout {stdout:?}, stderr {stderr:?}",
        out.status
    );
}

/// Queue the task for the next pending run, from the user; returns its body.
fn queue(conn: &mut Connection, s: &Session<'_>, i: usize) -> String {
    let body = format!("hook bench task {i:06}");
    conn.send(SendMessage {
        caller: Caller::default(),
        to: s.name.clone(),
        kind: Kind::Task,
        body: body.clone(),
    })
    .unwrap();
    body
}

fn whoami_pending(conn: &mut Connection, caller: &Caller) -> u32 {
    conn.whoami(WhoAmI {
        caller: caller.clone(),
    })
    .unwrap()
    .session
    .unwrap()
    .pending
}

/// The single requests the hooks are made of, round robin on one open connection (plus a new
/// connection with its handshake and a `ping`): the note that splits the hooks' daemon time.
fn per_request(plan: &Plan, s: &Session<'_>, dpid: u32) -> String {
    const NAMES: [&str; 9] = [
        "new connection + pipelined handshake + `Ping`",
        "`Ping`",
        "`WhoAmI`",
        "`Poll(Urgent)`, nothing pending",
        "`Consume(Urgent)`, nothing pending",
        "`Consume(All)`, nothing pending",
        "`SetIdle` (busy and idle alternately; writes, so 1 commit)",
        "`Register`, the same session again (1 commit)",
        "`List`, 3 live sessions",
    ];
    let mut c = Connection::connect(s.socket, &opts()).unwrap();
    let caller = || s.caller.clone();
    let consume = |class| Consume {
        caller: caller(),
        class,
        peek: false,
        max_bytes: CONSUME_BYTES,
        handout: 0,
    };
    let mut wall = vec![Vec::new(); NAMES.len()];
    let mut cpu = vec![0.0; NAMES.len()];
    let mut idle = false;
    let mut order = Shuffle::new(NAMES.len());
    for round in 0..5 + plan.hook_runs {
        for &i in order.next() {
            let cpu0 = cpu_us(dpid);
            let t = Instant::now();
            match i {
                0 => {
                    let mut fresh = Connection::connect_pipelined(s.socket, &opts()).unwrap();
                    fresh.ping().unwrap();
                }
                1 => {
                    c.ping().unwrap();
                }
                2 => {
                    c.whoami(WhoAmI { caller: caller() }).unwrap();
                }
                3 => {
                    c.poll(Poll {
                        caller: caller(),
                        class: Class::Urgent,
                        max_bytes: CONSUME_BYTES,
                        handout: 0,
                    })
                    .unwrap();
                }
                4 => {
                    c.consume(consume(Class::Urgent)).unwrap();
                }
                5 => {
                    c.consume(consume(Class::All)).unwrap();
                }
                6 => {
                    idle = !idle;
                    c.set_idle(SetIdle {
                        caller: caller(),
                        idle,
                    })
                    .unwrap();
                }
                7 => {
                    c.register(Register {
                        session_id: SESSION_ID.to_owned(),
                        pid: Some(s.pid),
                        cwd: s.cwd.clone(),
                        project_dir: None,
                        transcript_path: Some(s.transcript.clone()),
                    })
                    .unwrap();
                }
                _ => {
                    c.list(List {
                        caller: caller(),
                        scope: Scope::Machine,
                        include_offline: false,
                    })
                    .unwrap();
                }
            }
            let e = us(t.elapsed());
            let d = cpu_us(dpid) - cpu0;
            if round >= 5 {
                wall[i].push(e);
                cpu[i] += d;
            }
        }
    }
    let parts: Vec<String> = NAMES
        .iter()
        .zip(wall)
        .zip(cpu)
        .map(|((name, w), c)| {
            let n = w.len() as f64;
            format!(
                "{name} {} (daemon CPU {})",
                fmt_stats(&stats(w)),
                fmt_us(c / n)
            )
        })
        .collect();
    format!(
        "2c–2i, the hooks' requests one at a time from the bench process, round robin on one open connection, each round in a new random order ({} rounds after 5 warm-up; median / p99): {}.",
        plan.hook_runs,
        parts.join("; ")
    )
}

/// The hook's requests from this process, on a new pipelined connection: wall time in µs.
fn requests(r: Requests, s: &Session<'_>) -> f64 {
    let t = Instant::now();
    let mut c = Connection::connect_pipelined(s.socket, &opts()).unwrap();
    let caller = || s.caller.clone();
    let whoami = |c: &mut Connection| -> Result<u32, ClientError> {
        Ok(c.whoami(WhoAmI { caller: caller() })?
            .session
            .unwrap()
            .pending)
    };
    let consume = |c: &mut Connection, class| {
        c.consume(Consume {
            caller: caller(),
            class,
            peek: false,
            max_bytes: CONSUME_BYTES,
            handout: 0,
        })
        .map(|inbox| inbox.messages.len())
    };
    let handed_out = match r {
        Requests::PostToolUse | Requests::PostToolUsePending => c
            .poll(Poll {
                caller: caller(),
                class: Class::Urgent,
                max_bytes: CONSUME_BYTES,
                handout: 0,
            })
            .map(|p| p.inbox.messages.len()),
        Requests::UserPromptSubmit => c
            .set_idle(SetIdle {
                caller: caller(),
                idle: false,
            })
            .and_then(|()| consume(&mut c, Class::All)),
        Requests::Stop => whoami(&mut c).and_then(|p| {
            c.set_idle(SetIdle {
                caller: caller(),
                idle: true,
            })
            .map(|()| p as usize)
        }),
        Requests::SessionStart => c
            .register(Register {
                session_id: SESSION_ID.to_owned(),
                pid: Some(s.pid),
                cwd: s.cwd.clone(),
                project_dir: None,
                transcript_path: Some(s.transcript.clone()),
            })
            .map(|me| me.pending as usize),
        Requests::Statusline => whoami(&mut c).and_then(|p| {
            c.list(List {
                caller: caller(),
                scope: Scope::Machine,
                include_offline: false,
            })
            .map(|_| p as usize)
        }),
    };
    drop(c);
    let wall = us(t.elapsed());
    let handed_out = handed_out.unwrap();
    assert_eq!(handed_out, usize::from(r.pending()), "{r:?}");
    wall
}
