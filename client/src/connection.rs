//! A blocking connection to the daemon: connect, version handshake, then typed request/response
//! calls, one response per request, in order. Blocking std I/O only: hooks use this and must cost
//! about an exec of a small binary, so no async runtime is ever started here.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_proto::{
    Ask, AskOutcome, AwaitAnswer, Call, ClientHello, Consume, ConsumeBy, Deregister, FrameError,
    GiveBack, Inbox, List, MAGIC, MessageStatus, PROTOCOL_VERSION, Ping, Poll, PollBy, Polled,
    Pong, Register, RegisterNamed, Reply, Request, Response, SendMessage, ServerHello, SetIdle,
    SetSummary, Supervise, Supervision, WhoAmI, read_frame, write_frame,
};

use crate::error::ClientError;

/// One-line typed calls: `name(Request)` sends the request and returns its [`Call::Reply`].
macro_rules! typed_calls {
    ($($(#[$m:meta])* $method:ident($req:ident);)*) => {
        $(
            $(#[$m])*
            pub fn $method(&mut self, req: $req) -> Result<<$req as Call>::Reply, ClientError> {
                self.call_typed(req)
            }
        )*
    };
}

/// How long the daemon gets to answer the handshake, by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the daemon gets to answer an ordinary request, by default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long before a reader gives up the daemon must have sent a hand-out ([`ConsumeBy`],
/// [`PollBy`]): time for the answer to be written and read. Only a daemon that stalls for longer
/// than this between its last check and its write can hand out mail nobody reads.
pub const READER_MARGIN: Duration = Duration::from_millis(300);
/// Extra time an `ask` waits beyond its own timeout, for the daemon to report the time-out.
pub const ASK_MARGIN: Duration = Duration::from_secs(5);
/// How long `connect_or_start` may take in total, by default (the CLI's budget).
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// How to connect, and whether to start a daemon when none runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Start a daemon (or wait for the service manager's) when none is listening.
    pub autostart: bool,
    /// Bound on the whole connect-or-start, including waiting for a service or a spawned
    /// daemon to come up.
    pub deadline: Duration,
    /// Bound on reading the daemon's [`ServerHello`].
    pub handshake_timeout: Duration,
    /// Read/write timeout of ordinary requests; `None` waits forever. `ask` uses its own.
    pub request_timeout: Option<Duration>,
}

impl Default for ConnectOptions {
    /// The CLI's options: autostart within 5 s, 2 s handshake, 30 s per request.
    fn default() -> Self {
        Self {
            autostart: true,
            deadline: CONNECT_DEADLINE,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            request_timeout: Some(REQUEST_TIMEOUT),
        }
    }
}

/// A handshaken connection to the daemon.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    server: ServerHello,
    request_timeout: Option<Duration>,
    /// Set when the byte stream can no longer be trusted (a timeout or a broken frame).
    broken: bool,
    /// Pipelined handshake: our hello is sent but the daemon's is still unread (the socket
    /// path, for error messages).
    hello_pending: Option<PathBuf>,
}

impl Connection {
    /// Connect to `socket` and handshake; no autostart (see
    /// [`connect_or_start`](crate::connect_or_start)). A missing socket or a refused connect is
    /// [`ClientError::NotRunning`].
    pub fn connect(socket: &Path, opts: &ConnectOptions) -> Result<Self, ClientError> {
        let stream = open_stream(socket)?;
        Self::handshake(stream, socket, opts)
    }

    /// Like [`connect`](Self::connect), but pipelined: the hello is sent and the daemon's
    /// answer is read only together with the first request's response, saving a round trip
    /// (hooks run on every tool call). Handshake errors surface from that first call;
    /// [`daemon_pid`](Self::daemon_pid) and friends are zero/empty until then.
    pub fn connect_pipelined(socket: &Path, opts: &ConnectOptions) -> Result<Self, ClientError> {
        let mut stream = open_stream(socket)?;
        set_timeouts(
            &stream,
            opts.request_timeout.or(Some(opts.handshake_timeout)),
        )?;
        if let Err(e) = write_frame(
            &mut stream,
            &ClientHello::current(env!("CARGO_PKG_VERSION")),
        ) {
            return Err(refusal(&mut stream, socket).unwrap_or_else(|| {
                frame_error(
                    e,
                    "the daemon to accept the handshake",
                    opts.handshake_timeout,
                )
            }));
        }
        let placeholder = ServerHello {
            magic: 0,
            protocol: 0,
            program_version: String::new(),
            pid: 0,
            error: None,
        };
        Ok(Self {
            stream,
            server: placeholder,
            request_timeout: opts.request_timeout,
            broken: false,
            hello_pending: Some(socket.to_owned()),
        })
    }

    /// Run the version handshake on an already connected stream. `socket` is only used in
    /// error messages.
    pub fn handshake(
        mut stream: UnixStream,
        socket: &Path,
        opts: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        set_timeouts(&stream, Some(opts.handshake_timeout))?;
        let hello = ClientHello::current(env!("CARGO_PKG_VERSION"));
        // A daemon refusing us may answer and close before reading our hello, so a failed
        // write is only reported when no ServerHello can be read either.
        let written = write_frame(&mut stream, &hello);
        let server: ServerHello = match read_frame(&mut stream) {
            Ok(server) => server,
            // A payload that does not decode as a ServerHello: not our protocol at all.
            Err(FrameError::Malformed(_) | FrameError::TooLarge { .. }) => {
                return Err(ClientError::NotAMeshDaemon {
                    socket: PathBuf::from(socket),
                });
            }
            Err(e) => {
                let e = written.err().unwrap_or(e);
                return Err(frame_error(
                    e,
                    "the daemon's handshake",
                    opts.handshake_timeout,
                ));
            }
        };
        check_server_hello(&server, socket)?;
        set_timeouts(&stream, opts.request_timeout)?;
        Ok(Self {
            stream,
            server,
            request_timeout: opts.request_timeout,
            broken: false,
            hello_pending: None,
        })
    }

    /// The daemon's process id, as it announced in the handshake.
    pub fn daemon_pid(&self) -> u32 {
        self.server.pid
    }

    /// The daemon's program version, e.g. `0.1.0`.
    pub fn daemon_version(&self) -> &str {
        &self.server.program_version
    }

    /// The daemon's whole handshake answer.
    pub fn server_hello(&self) -> &ServerHello {
        &self.server
    }

    /// The moment, in ms since the Unix epoch, after which this connection's next answer would
    /// come too late to be read: the request timeout from now, less [`READER_MARGIN`] (or a
    /// quarter of a short timeout) for the answer to travel. `None` without a timeout.
    fn reader_deadline_ms(&self) -> Option<u64> {
        let timeout = self.request_timeout?;
        let margin = READER_MARGIN.min(timeout / 4);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        Some((now + timeout - margin).as_millis() as u64)
    }

    /// `req` as is, or, with a request timeout, wrapped with this reader's deadline.
    fn bounded<R: Into<Request>>(&self, req: R, wrap: impl FnOnce(R, u64) -> Request) -> Request {
        match self.reader_deadline_ms() {
            Some(deadline_ms) => wrap(req, deadline_ms),
            None => req.into(),
        }
    }

    /// Change the read/write timeout of later requests (`None`: wait forever).
    pub fn set_request_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        set_timeouts(&self.stream, timeout)?;
        self.request_timeout = timeout;
        Ok(())
    }

    /// Send one request and read its response. [`Response::Error`] becomes
    /// [`ClientError::Remote`]; the connection stays usable after it.
    pub fn call(&mut self, req: impl Into<Request>) -> Result<Response, ClientError> {
        let timeout = self.request_timeout;
        self.call_with_timeout(req.into(), timeout)
    }

    fn call_with_timeout(
        &mut self,
        req: Request,
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        if self.broken {
            return Err(ClientError::io(
                "the connection to the mesh daemon is unusable after an earlier error",
                io::Error::from(io::ErrorKind::NotConnected),
            ));
        }
        let waited = timeout.unwrap_or(Duration::ZERO);
        if let Err(e) = write_frame(&mut self.stream, &req) {
            if let FrameError::TooLarge { len, max } = e {
                // Checked before anything was written: the stream is still in sync.
                return Err(ClientError::TooLarge { len, max });
            }
            self.broken = true;
            if let Some(socket) = self.hello_pending.take()
                && let Some(refused) = refusal(&mut self.stream, &socket)
            {
                return Err(refused);
            }
            return Err(frame_error(e, "the daemon to accept a request", waited));
        }
        if let Some(socket) = self.hello_pending.take() {
            let server: ServerHello = match read_frame(&mut self.stream) {
                Ok(server) => server,
                Err(FrameError::Malformed(_) | FrameError::TooLarge { .. }) => {
                    self.broken = true;
                    return Err(ClientError::NotAMeshDaemon { socket });
                }
                Err(e) => {
                    self.broken = true;
                    return Err(frame_error(e, "the daemon's handshake", waited));
                }
            };
            if let Err(e) = check_server_hello(&server, &socket) {
                self.broken = true;
                return Err(e);
            }
            self.server = server;
        }
        match read_frame::<_, Response>(&mut self.stream) {
            Ok(Response::Error(w)) => Err(ClientError::Remote(w)),
            Ok(resp) => Ok(resp),
            Err(e) => {
                self.broken |= !e.is_recoverable();
                Err(frame_error(e, "the daemon's answer", waited))
            }
        }
    }

    /// Like [`call`](Self::call), with another read timeout for this one call.
    fn call_waiting(
        &mut self,
        req: Request,
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        set_timeouts(&self.stream, timeout)?;
        let result = self.call_with_timeout(req, timeout);
        let restored = set_timeouts(&self.stream, self.request_timeout);
        let resp = result?;
        restored?;
        Ok(resp)
    }

    /// Send `req` and return its typed answer (the pairing is the protocol's, [`Call`]). Any
    /// other response is [`ClientError::Unexpected`].
    pub fn call_typed<C: Call>(&mut self, req: C) -> Result<C::Reply, ClientError> {
        self.call_as::<C>(req.into())
    }

    /// Send `req` (a wrapped form of `C`, e.g. [`PollBy`] for [`Poll`]) and return `C`'s typed
    /// answer; errors name `C`.
    fn call_as<C: Call>(&mut self, req: Request) -> Result<C::Reply, ClientError> {
        typed::<C>(self.call(req)?)
    }

    /// Liveness and latency check.
    pub fn ping(&mut self) -> Result<Pong, ClientError> {
        self.call_typed(Ping {})
    }

    typed_calls! {
        /// Register (or re-register) a session.
        register(Register);
        /// Register a session named by the client ([`RegisterNamed`]).
        register_named(RegisterNamed);
        /// Remove a registration if its session id still matches.
        deregister(Deregister);
        /// Mark the caller's session busy or idle.
        set_idle(SetIdle);
        /// Set the caller's session summary (the caller must be a session).
        set_summary(SetSummary);
        /// Who is the caller? `Me::session` is `None` outside a session.
        whoami(WhoAmI);
        /// Sessions, live or all.
        list(List);
        /// Queue a task or note; one message per recipient.
        send(SendMessage);
        /// Answer a question.
        reply(Reply);
        /// One message and its status.
        message_status(MessageStatus);
        /// Put a hand-out that never reached its reader back in the queue ([`GiveBack`]).
        give_back(GiveBack);
    }

    /// Ask and block until answered, timed out or the peer is gone. The socket waits for the
    /// ask's own timeout plus [`ASK_MARGIN`].
    pub fn ask(&mut self, req: Ask) -> Result<AskOutcome, ClientError> {
        let timeout_ms = req.timeout_ms;
        self.waiting_for_answer(req, timeout_ms)
    }

    /// Wait again for the answer to an earlier question, like [`ask`](Self::ask).
    pub fn await_answer(&mut self, req: AwaitAnswer) -> Result<AskOutcome, ClientError> {
        let timeout_ms = req.timeout_ms;
        self.waiting_for_answer(req, timeout_ms)
    }

    /// An ask or an await: the socket waits for the request's own timeout plus [`ASK_MARGIN`].
    fn waiting_for_answer<C: Call<Reply = AskOutcome>>(
        &mut self,
        req: C,
        timeout_ms: u64,
    ) -> Result<AskOutcome, ClientError> {
        let wait = Duration::from_millis(timeout_ms).saturating_add(ASK_MARGIN);
        typed::<C>(self.call_waiting(req.into(), Some(wait))?)
    }

    /// Take (or peek at) the caller's pending messages.
    ///
    /// With a request timeout, the request carries the moment this reader stops waiting
    /// ([`ConsumeBy`]): the daemon hands nothing out that would arrive after it.
    pub fn consume(&mut self, req: Consume) -> Result<Inbox, ClientError> {
        let req = self.bounded(req, |consume, deadline_ms| {
            ConsumeBy {
                consume,
                deadline_ms,
            }
            .into()
        });
        self.call_as::<Consume>(req)
    }

    /// A hook's poll: the caller's session and, when it is current, its pending messages of a
    /// class, taken (see [`Poll`]).
    /// Bounded by the request timeout like [`consume`](Self::consume) ([`PollBy`]).
    pub fn poll(&mut self, req: Poll) -> Result<Polled, ClientError> {
        let req = self.bounded(req, |poll, deadline_ms| PollBy { poll, deadline_ms }.into());
        self.call_as::<Poll>(req)
    }

    /// Watch the session of the process `mesh run` started: the first [`Supervision`] now, the
    /// next ones from [`Supervisions::recv`] as the daemon pushes them. The connection carries
    /// nothing else afterwards.
    pub fn supervise(mut self, req: Supervise) -> Result<Supervisions, ClientError> {
        let first = self.call_typed(req)?;
        set_timeouts(&self.stream, None)?;
        Ok(Supervisions {
            conn: self,
            first: Some(first),
        })
    }
}

/// The states of a supervised session, as the daemon pushes them ([`Connection::supervise`]).
#[derive(Debug)]
pub struct Supervisions {
    conn: Connection,
    first: Option<Supervision>,
}

impl Supervisions {
    /// The next state: the first one at once, then each change, blocking until it comes. An
    /// error ends the stream (the daemon stopped or restarted): connect again.
    pub fn recv(&mut self) -> Result<Supervision, ClientError> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        match read_frame::<_, Response>(&mut self.conn.stream) {
            Ok(Response::Error(w)) => Err(ClientError::Remote(w)),
            Ok(resp) => typed::<Supervise>(resp),
            Err(e) => Err(frame_error(
                e,
                "the daemon's next supervision",
                Duration::ZERO,
            )),
        }
    }
}

/// `resp` as the answer to a `C`: its reply, or [`ClientError::Unexpected`] naming both.
fn typed<C: Call>(resp: Response) -> Result<C::Reply, ClientError> {
    C::reply(resp).map_err(|other| ClientError::unexpected(C::NAME, other))
}

/// The connection's socket (for a shim's alarm handler, which may write a last frame on it).
impl std::os::fd::AsFd for Connection {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Connect the socket; nothing listening (no socket file, or connect refused) is
/// [`ClientError::NotRunning`].
pub fn open_stream(socket: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
            socket: socket.to_owned(),
            reason: e,
        },
        _ => ClientError::io(format!("cannot connect to {}", socket.display()), e),
    })
}

/// Accept the daemon's hello, or say precisely why not.
fn check_server_hello(server: &ServerHello, socket: &Path) -> Result<(), ClientError> {
    if server.magic != MAGIC {
        return Err(ClientError::NotAMeshDaemon {
            socket: socket.to_owned(),
        });
    }
    if server.protocol != PROTOCOL_VERSION {
        return Err(ClientError::VersionMismatch {
            daemon_version: server.program_version.clone(),
            daemon_protocol: server.protocol,
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            client_protocol: PROTOCOL_VERSION,
        });
    }
    match &server.error {
        Some(w) => Err(ClientError::Refused(w.clone())),
        None => Ok(()),
    }
}

/// After a failed write of a pipelined handshake or request: the refusal a daemon sent before
/// closing without reading on ("busy", another user's daemon…), which says why, rather than
/// the broken pipe. `None`: no refusal to read.
fn refusal(stream: &mut UnixStream, socket: &Path) -> Option<ClientError> {
    let server: ServerHello = read_frame(stream).ok()?;
    check_server_hello(&server, socket).err()
}

fn set_timeouts(stream: &UnixStream, timeout: Option<Duration>) -> Result<(), ClientError> {
    // A zero duration is an error for std; treat it as the shortest possible wait.
    let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| ClientError::io("cannot set the socket timeout", e))
}

/// A socket timeout becomes [`ClientError::Timeout`]; everything else [`ClientError::Frame`].
fn frame_error(e: FrameError, waiting_for: &str, after: Duration) -> ClientError {
    match e {
        FrameError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            ClientError::Timeout {
                waiting_for: waiting_for.to_owned(),
                after,
            }
        }
        e => ClientError::Frame(e),
    }
}

#[cfg(test)]
mod tests;
