//! `mesh run [claude args…]`: Claude Code in a pseudo-terminal, supervised.
//!
//! The user's terminal passes through unchanged: it is put in raw mode (restored on exit), every
//! byte goes both ways untouched, a resize is passed on (the kernel then sends the child
//! `SIGWINCH`), `SIGTERM`, `SIGINT`, `SIGHUP`, `SIGQUIT`, `SIGUSR1` and `SIGUSR2` sent to the
//! supervisor are passed to the child, and the child's exit code (or the signal that killed it)
//! becomes the supervisor's. Every argument is passed to the child as is. When the child stops
//! itself (Ctrl-Z), the supervisor gives the terminal back and stops too; `fg` continues both.
//!
//! Beside that, one connection to the daemon ([`mesh_proto::Request::Supervise`]) carries the
//! supervised session's state, pushed by the daemon whenever it changes. When a task or
//! question waits for the session while it is idle, and the user has an empty input line and
//! has not typed for 500 ms, the supervisor types a wake line and Enter ([`wake`]; as a
//! bracketed paste when the child has that on, [`paste`]); the
//! UserPromptSubmit hook then delivers the mail. The rules, and why a line the supervisor cannot
//! follow counts as half-typed, are in [`wake`] and [`typing`].
//!
//! Nothing of the supervisor's own is written to the terminal once the child runs: its log goes
//! to `~/.claude-mesh/run.log`. When the daemon cannot be reached the child runs unsupervised,
//! and the supervisor connects again in the background (0.25 s, doubling to 10 s).

pub mod paste;
pub mod term;
pub mod typing;
pub mod wake;

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use mesh_daemon::paths::StateDir;
use mesh_proto::{Supervise, Supervision};
use pty_process::Size;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use self::typing::Typing;
use self::wake::{Decision, Waker};
use mesh_client::{ConnectOptions, connect_or_start};

/// Names the program `mesh run` starts instead of `claude` (looked up on `PATH`).
pub const CLAUDE_BIN_ENV: &str = "CLAUDE_MESH_CLAUDE_BIN";

/// Between typing a wake line and pressing Enter, when the child has no bracketed paste on:
/// Claude Code takes a burst of more than about 64 bytes, and keys within about 100 ms of it, as
/// a paste, where Enter is a newline, not a submit. (With bracketed paste on, the line goes in
/// as a paste and the Enter right after it; see [`paste`].)
pub const SUBMIT_DELAY: Duration = Duration::from_millis(250);

/// The size the child's terminal gets when the user's is not a terminal.
const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// Signals passed on to the child.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub state: StateDir,
}

impl Options {
    /// `$CLAUDE_MESH_CLAUDE_BIN`, else `claude`.
    pub fn program_from_env() -> OsString {
        std::env::var_os(CLAUDE_BIN_ENV)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "claude".into())
    }
}

/// Run the child under supervision until it exits. The terminal is restored before this
/// returns, whatever happened.
pub fn run(opts: Options) -> anyhow::Result<Ended> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let ended = rt.block_on(supervise(opts));
    // The thread reading the terminal blocks in read(2); do not wait for it.
    rt.shutdown_background();
    ended
}

async fn supervise(opts: Options) -> anyhow::Result<Ended> {
    let (pty, pts) = pty_process::open().map_err(pty_error("cannot open a pseudo-terminal"))?;
    let (rows, cols) = term::size().map_or(DEFAULT_SIZE, |w| (w.ws_row, w.ws_col));
    pty.resize(Size::new(rows, cols))
        .map_err(pty_error("cannot size the pseudo-terminal"))?;
    let raw = term::RawMode::enable().context("cannot put the terminal in raw mode")?;
    if let Some(raw) = &raw {
        term::copy_settings(raw.saved(), &pts).context("cannot set up the pseudo-terminal")?;
    }
    let program = opts.program.to_string_lossy().into_owned();
    let mut child = pty_process::Command::new(&opts.program)
        .args(&opts.args)
        .spawn(pts)
        .map_err(|e| match e {
            pty_process::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => anyhow!(
                "cannot start `{program}`: not found. Install Claude Code \
                 (`npm install -g @anthropic-ai/claude-code`), or set {CLAUDE_BIN_ENV} to its path"
            ),
            e => anyhow!("cannot start `{program}`: {e}"),
        })?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("`{program}` exited as it started"))?;
    tracing::info!(pid, program, "supervising");

    let (input_tx, mut input) = mpsc::channel::<Vec<u8>>(64);
    std::thread::Builder::new()
        .name("mesh-run-stdin".into())
        .spawn(move || read_stdin(&input_tx))
        .context("cannot start the input thread")?;
    // `None`: the connection broke, and the last state no longer holds.
    let (link_tx, mut link) = mpsc::channel::<Option<Supervision>>(16);
    let state = opts.state.clone();
    std::thread::Builder::new()
        .name("mesh-run-daemon".into())
        .spawn(move || daemon_link(&state, pid, &link_tx))
        .context("cannot start the daemon link")?;
    let (sig_tx, mut signals) = mpsc::channel::<libc::c_int>(16);
    for sig in FORWARDED {
        let mut stream = signal(SignalKind::from_raw(sig))
            .with_context(|| format!("cannot handle signal {sig}"))?;
        let tx = sig_tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).await.is_err() {
                    return;
                }
            }
        });
    }
    let mut winch = signal(SignalKind::window_change()).context("cannot handle SIGWINCH")?;
    let mut cont = signal(SignalKind::from_raw(libc::SIGCONT)).context("cannot handle SIGCONT")?;
    let mut chld = signal(SignalKind::child()).context("cannot handle SIGCHLD")?;

    let (mut from_child, mut to_child) = pty.into_split();
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    let mut typing = Typing::default();
    let mut paste = paste::PasteMode::default();
    let mut waker = Waker::default();
    let mut latest: Option<Supervision> = None;
    let mut wake_at: Option<Instant> = None;
    let mut input_open = true;
    let mut link_open = true;
    let status = loop {
        tokio::select! {
            read = from_child.read(&mut buf) => match read {
                // EIO once the child and everything it started closed the terminal.
                Ok(0) | Err(_) => break child.wait().await,
                Ok(n) => {
                    paste.feed(&buf[..n]);
                    if stdout.write_all(&buf[..n]).await.is_err() || stdout.flush().await.is_err() {
                        tracing::debug!("the terminal is gone; output is dropped");
                    }
                }
            },
            bytes = input.recv(), if input_open => match bytes {
                Some(bytes) => {
                    typing.feed(&bytes, Instant::now());
                    let _ = to_child.write_all(&bytes).await;
                }
                None => input_open = false,
            },
            got = link.recv(), if link_open => match got {
                Some(Some(s)) => {
                    waker.update(&s, &mut typing);
                    latest = Some(s);
                }
                Some(None) => latest = None,
                None => {
                    link_open = false;
                    latest = None;
                }
            },
            Some(sig) = signals.recv() => {
                tracing::debug!(sig, "passing a signal on");
                // SAFETY: kill has no memory-safety preconditions; `pid` is our own child,
                // not yet reaped (we reap it only below).
                unsafe { libc::kill(pid as libc::pid_t, sig) };
            },
            _ = winch.recv() => follow_size(&to_child),
            _ = cont.recv() => {
                if let Some(raw) = &raw {
                    raw.reapply();
                }
            },
            _ = chld.recv() => {
                if child_stopped(pid) {
                    suspend_with_child(pid, raw.as_ref(), &to_child);
                }
            },
            () = sleep_until(wake_at) => {}
            status = child.wait() => {
                drain(&mut from_child, &mut stdout, &mut buf).await;
                break status;
            },
        }
        let Some(s) = &latest else {
            wake_at = None;
            continue;
        };
        // Keys already typed count before anything is decided (and go first).
        while let Ok(bytes) = input.try_recv() {
            typing.feed(&bytes, Instant::now());
            let _ = to_child.write_all(&bytes).await;
        }
        wake_at = match waker.decide(s, &typing, Instant::now()) {
            Decision::Nothing => None,
            Decision::At(t) => Some(t),
            Decision::Type(line) => {
                tracing::info!(line, paste = paste.on(), "waking the session");
                type_line(&mut to_child, &line, paste.on()).await;
                waker.woke(s);
                None
            }
        };
    };
    drop(raw);
    let status = status.context("cannot wait for the child")?;
    tracing::info!(?status, "child exited");
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => Ended::Code(code),
        (None, Some(sig)) => Ended::Signal(sig),
        (None, None) => Ended::Code(1),
    })
}

/// Type `line` and Enter into the child: one bracketed paste and Enter when it has that on,
/// else the text, [`SUBMIT_DELAY`], Enter. The user's keys wait in their channel meanwhile.
async fn type_line(to_child: &mut pty_process::OwnedWritePty, line: &str, paste: bool) {
    let _ = to_child.write_all(&paste::typed(line, paste)).await;
    if !paste {
        tokio::time::sleep(SUBMIT_DELAY).await;
        let _ = to_child.write_all(b"\r").await;
    }
}

/// Give the child's terminal the user's terminal's size (the kernel then sends it SIGWINCH).
fn follow_size(to_child: &pty_process::OwnedWritePty) {
    if let Some(w) = term::size() {
        let _ = to_child.resize(Size::new(w.ws_row, w.ws_col));
    }
}

/// Whether the child has stopped (a SIGSTOP), taking that stop's report. Exits are left for
/// tokio's reaper (`WEXITED` is not asked for).
fn child_stopped(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data, all-zero is a valid value; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `pid` is our child.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WSTOPPED | libc::WNOHANG,
        )
    };
    // SAFETY: waitid filled `info` (si_pid stays 0 when nothing was reported).
    r == 0 && unsafe { info.si_pid() } != 0
}

/// The child stopped itself: give the terminal back and stop too, as if the user's shell had
/// stopped both; when continued, take the terminal again, continue the child and have it
/// redraw. Where nobody could continue us (an orphaned process group), the kernel discards the
/// stop and the child is continued at once.
fn suspend_with_child(
    pid: u32,
    raw: Option<&term::RawMode>,
    to_child: &pty_process::OwnedWritePty,
) {
    tracing::info!("the child stopped; stopping too");
    if let Some(raw) = raw {
        raw.restore();
    }
    // SAFETY: raise and kill have no memory-safety preconditions. SIGTSTP keeps its default
    // action (stop): no handler is installed for it.
    unsafe { libc::raise(libc::SIGTSTP) };
    if let Some(raw) = raw {
        raw.reapply();
    }
    follow_size(to_child);
    // SAFETY: as above; the child is not reaped while stopped.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGCONT);
        libc::kill(pid as libc::pid_t, libc::SIGWINCH);
    }
    tracing::info!("continued");
}

/// Copy what the child wrote just before it exited (briefly: a grandchild may hold the
/// terminal open).
async fn drain(
    from_child: &mut pty_process::OwnedReadPty,
    stdout: &mut tokio::io::Stdout,
    buf: &mut [u8],
) {
    let until = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, from_child.read(buf)).await {
        if n == 0 || stdout.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = stdout.flush().await;
}

/// Standard input to the channel, chunk by chunk, until it ends.
fn read_stdin(tx: &mpsc::Sender<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    loop {
        match rustix::io::read(rustix::stdio::stdin(), &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::debug!("reading the terminal: {e}");
                return;
            }
        }
    }
}

/// The supervising connection, reconnected with a backoff whenever it breaks, until the
/// supervisor is done.
fn daemon_link(state: &StateDir, pid: u32, tx: &mpsc::Sender<Option<Supervision>>) {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(10);
    let opts = ConnectOptions::default();
    let mut backoff = FIRST;
    loop {
        match connect_or_start(state, &opts).and_then(|c| c.supervise(Supervise { pid })) {
            Ok(mut states) => loop {
                match states.recv() {
                    Ok(s) => {
                        backoff = FIRST;
                        if tx.blocking_send(Some(s)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::info!("the daemon connection ended: {e}");
                        break;
                    }
                }
            },
            Err(e) => tracing::info!("cannot supervise through the daemon: {e}"),
        }
        if tx.blocking_send(None).is_err() {
            return;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn pty_error(what: &'static str) -> impl Fn(pty_process::Error) -> anyhow::Error {
    move |e| anyhow!("{what}: {e}")
}
