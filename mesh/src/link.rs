//! Links to the daemon that outlive its restarts, shared by the MCP server and `mesh ask` (so it
//! sits below both). The client library is blocking: in the MCP server everything here runs on
//! tokio's blocking pool (`spawn_blocking`), never on the async workers; `mesh ask` waits with
//! the same [`ask`] on its main thread.
//!
//! - [`Daemon::call`]: ordinary requests share ONE connection, opened lazily. Before each use the
//!   socket is polled (zero timeout): a connection the daemon closed (it stopped, crashed or
//!   restarted) is readable at EOF, and is replaced by a new one, starting the daemon on demand
//!   like every other client. Idempotent requests are retried once after a connection failure.
//! - [`ask`]: every `ask_peer` gets a connection of its own, so a long wait never blocks the
//!   other tools. It queues the question with a zero wait (the daemon answers at once with the
//!   question and its id), then waits with `AwaitAnswer` on the same connection, woken by the
//!   answer the daemon pushes. Knowing the id from the start is what lets the wait resume
//!   (reconnect, `AwaitAnswer` again) when the daemon restarts during it. A cancelled call shuts
//!   the socket down through a cloned handle, so the daemon sees the asker leave at once.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mesh_client::connection::open_stream;
use mesh_client::{ClientError, ConnectOptions, Connection, connect_or_start};
use mesh_daemon::paths::StateDir;
use mesh_proto::{Ask, AskOutcome, AskResult, AwaitAnswer, Caller, ErrorCode, FrameError};

/// Pause between attempts to reach a daemon that went away during an ask.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// One handshaken connection plus a second handle on its socket (to poll or shut it down).
#[derive(Debug)]
struct Link {
    conn: Connection,
    socket: UnixStream,
}

impl Link {
    /// Connect and handshake; when nothing listens, start the daemon (or wait for its service)
    /// exactly as [`connect_or_start`] does, then connect again.
    fn open(state: &StateDir, opts: &ConnectOptions) -> Result<Self, ClientError> {
        let path = state.socket();
        let stream = match open_stream(&path) {
            Ok(s) => s,
            Err(e) if e.is_not_running() => {
                drop(connect_or_start(state, opts)?);
                open_stream(&path)?
            }
            Err(e) => return Err(e),
        };
        let socket = stream.try_clone().map_err(|e| ClientError::Io {
            context: "cannot duplicate the daemon socket".into(),
            source: e,
        })?;
        let conn = Connection::handshake(stream, &path, opts)?;
        Ok(Self { conn, socket })
    }

    /// Whether the daemon closed this connection (or sent something unasked): an idle,
    /// healthy connection has nothing to read.
    fn is_stale(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout; the fd is open while `self` lives.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n != 0
    }
}

/// Whether a request may be sent again after its connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reading, or setting the same value again: safe to repeat.
    Idempotent,
    /// Queues or consumes something: repeated only when it certainly never left.
    Once,
}

/// The daemon as the tools see it: where it is, who we are, and the shared connection.
#[derive(Debug)]
pub struct Daemon {
    state: StateDir,
    caller: Caller,
    opts: ConnectOptions,
    shared: Mutex<Option<Link>>,
}

impl Daemon {
    pub fn new(state: StateDir, caller: Caller) -> Self {
        Self {
            state,
            caller,
            opts: ConnectOptions::default(),
            shared: Mutex::new(None),
        }
    }

    /// Who every request says it is.
    pub fn caller(&self) -> Caller {
        self.caller.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Option<Link>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on the shared connection, (re)connecting first when there is none or the daemon
    /// closed it. A connection-level failure drops the connection (the next call reconnects)
    /// and is retried once when `retry` allows it.
    pub fn call<T>(
        &self,
        retry: Retry,
        f: impl Fn(&mut Connection, Caller) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut guard = self.lock();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if guard.as_ref().is_some_and(Link::is_stale) {
                tracing::debug!("the daemon closed the MCP server's connection: reconnecting");
                *guard = None;
            }
            let link = match guard.as_mut() {
                Some(link) => link,
                None => guard.insert(Link::open(&self.state, &self.opts)?),
            };
            match f(&mut link.conn, self.caller()) {
                Ok(v) => return Ok(v),
                // The daemon answered: the connection is fine.
                Err(e @ (ClientError::Remote(_) | ClientError::TooLarge { .. })) => return Err(e),
                Err(e) => {
                    *guard = None;
                    let again = match retry {
                        // A daemon that did not answer in time would likely not answer again.
                        Retry::Idempotent => !matches!(e, ClientError::Timeout { .. }),
                        Retry::Once => never_sent(&e),
                    };
                    if attempt >= 2 || !again {
                        return Err(e);
                    }
                    tracing::debug!("request failed on a dead connection, retrying: {e}");
                }
            }
        }
    }

    /// Open a connection of its own (for an ask).
    fn open(&self) -> Result<Link, ClientError> {
        Link::open(&self.state, &self.opts)
    }
}

/// Whether reconnecting may fix this (a daemon restarting), unlike a daemon that refuses us or
/// speaks another protocol version.
fn transient(e: &ClientError) -> bool {
    !matches!(
        e,
        ClientError::Refused(_)
            | ClientError::VersionMismatch { .. }
            | ClientError::NotAMeshDaemon { .. }
    )
}

/// The request may have been carried out though no answer came: it timed out waiting, or the
/// connection broke after the request could have left. For a send, sending again may deliver
/// it twice, and the error must say so.
pub fn unconfirmed(e: &ClientError) -> bool {
    matches!(e, ClientError::Timeout { .. })
        || (e.is_connection_lost() && !e.is_not_running() && !never_sent(e))
}

/// What became of a request after [`unconfirmed`], in a few words (not the general advice of
/// the error, which says to run the command again).
pub fn unconfirmed_why(e: &ClientError) -> String {
    match e {
        ClientError::Timeout { after, .. } => {
            format!("no answer within {:.1}s", after.as_secs_f64())
        }
        _ => "the connection to it broke before its answer arrived".to_owned(),
    }
}

/// What to tell whoever is about to send again after [`unconfirmed`].
pub const MAYBE_SENT: &str = "the daemon may have queued it before it stopped answering, so \
    sending it again may deliver it twice: the peer's pending count (`mesh list`, list_peers) \
    shows whether it arrived";

/// Writing the request failed because the daemon had closed the socket: it never saw it.
fn never_sent(e: &ClientError) -> bool {
    matches!(e, ClientError::Frame(FrameError::Io(io)) if io.kind() == io::ErrorKind::BrokenPipe)
}

/// Lets another thread end an ask: marks it cancelled and shuts its socket down, which wakes
/// the blocked read and tells the daemon the asker left.
#[derive(Debug, Default)]
pub struct AskSwitch {
    inner: Mutex<SwitchState>,
}

#[derive(Debug, Default)]
struct SwitchState {
    cancelled: bool,
    socket: Option<UnixStream>,
    /// The question's id, once the daemon has queued it.
    question: Option<u64>,
}

impl AskSwitch {
    fn lock(&self) -> MutexGuard<'_, SwitchState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn cancel(&self) {
        let mut s = self.lock();
        s.cancelled = true;
        if let Some(sock) = s.socket.take() {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// The id of the question being waited on, once it is queued (to say what became of it
    /// after a cancel).
    pub fn question(&self) -> Option<u64> {
        self.lock().question
    }

    /// Watch a new connection's socket; false (and the socket shut down) if already cancelled.
    fn arm(&self, link: &Link) -> bool {
        let mut s = self.lock();
        let clone = link.socket.try_clone().ok();
        if s.cancelled {
            let _ = link.socket.shutdown(Shutdown::Both);
            return false;
        }
        s.socket = clone;
        true
    }
}

/// What to ask, of whom, until when.
#[derive(Debug, Clone)]
pub struct AskPlan {
    pub to: String,
    pub question: String,
    pub deadline: Instant,
}

/// How an ask ended, short of an error.
#[derive(Debug)]
pub enum AskEnd {
    Done(Box<AskOutcome>),
    Cancelled,
    /// The daemon went away after the question was sent and before its id came back: it may
    /// or may not have been queued, and without its id the wait cannot resume.
    LostWhileQueuing(ClientError),
}

/// Ask and wait until answered, timed out, the peer is gone, or `switch` cancels. Blocking.
pub fn ask(daemon: &Daemon, plan: AskPlan, switch: &AskSwitch) -> Result<AskEnd, ClientError> {
    let mut link = daemon.open()?;
    if !switch.arm(&link) {
        return Ok(AskEnd::Cancelled);
    }
    // Queue the question; a zero wait returns it (with its id) at once, unless it is already
    // settled (the peer is offline or gone).
    let queued = link.conn.ask(Ask {
        caller: daemon.caller(),
        to: plan.to.clone(),
        question: plan.question,
        timeout_ms: 0,
    });
    let question = match queued {
        Ok(AskOutcome {
            question,
            result: AskResult::TimedOut,
        }) => question,
        Ok(settled) => return Ok(AskEnd::Done(Box::new(settled))),
        Err(_) if switch.is_cancelled() => return Ok(AskEnd::Cancelled),
        Err(e @ (ClientError::Remote(_) | ClientError::TooLarge { .. })) => return Err(e),
        Err(e) if never_sent(&e) => return Err(e),
        Err(e) => return Ok(AskEnd::LostWhileQueuing(e)),
    };
    switch.lock().question = Some(question.id);
    // At the deadline the daemon is asked once more, with the shortest wait: it then hands
    // over an answer already there, or times out at once, withdrawing a question the peer has
    // not seen and saying so in the question it returns.
    let mut last_try = false;
    loop {
        let left = plan.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if last_try {
                return Ok(AskEnd::Done(Box::new(AskOutcome {
                    question,
                    result: AskResult::TimedOut,
                })));
            }
            last_try = true;
        }
        let waited = link.conn.await_answer(AwaitAnswer {
            caller: daemon.caller(),
            question_id: question.id,
            timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1),
        });
        match waited {
            Ok(outcome) => return Ok(AskEnd::Done(Box::new(outcome))),
            Err(_) if switch.is_cancelled() => return Ok(AskEnd::Cancelled),
            Err(ClientError::Remote(w)) if w.code != ErrorCode::ShuttingDown => {
                return Err(ClientError::Remote(w));
            }
            Err(e) => {
                // The daemon went away (stopped, restarted, crashed): the question is in its
                // database, so reconnect and wait again until the deadline.
                // Not the error's own advice ("run the command again"): the wait goes on.
                tracing::warn!(
                    question = question.id,
                    "lost the daemon while waiting for the answer; reconnecting, the question \
                     is kept"
                );
                tracing::debug!("the wait ended with: {e}");
                link = match reconnect(daemon, plan.deadline, switch) {
                    Some(Ok(l)) => l,
                    Some(Err(e)) => return Err(e),
                    None if switch.is_cancelled() => return Ok(AskEnd::Cancelled),
                    None => {
                        return Ok(AskEnd::Done(Box::new(AskOutcome {
                            question,
                            result: AskResult::TimedOut,
                        })));
                    }
                };
            }
        }
    }
}

/// A new armed connection, retrying until `deadline`. `None`: cancelled, or the deadline passed
/// without an error worth reporting; `Some(Err)`: the last error once the deadline passed.
fn reconnect(
    daemon: &Daemon,
    deadline: Instant,
    switch: &AskSwitch,
) -> Option<Result<Link, ClientError>> {
    loop {
        if switch.is_cancelled() {
            return None;
        }
        match daemon.open() {
            Ok(link) => return switch.arm(&link).then_some(Ok(link)),
            Err(e) if Instant::now() >= deadline || !transient(&e) => return Some(Err(e)),
            Err(e) => tracing::debug!("daemon not back yet: {e}"),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::sleep(RECONNECT_PAUSE.min(left));
    }
}
