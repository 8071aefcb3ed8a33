//! One function per request: resolve the caller, run the operation in the store, build the
//! response. No socket I/O here; [`crate::conn`] owns the connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_proto::{
    AskResult, Caller, Deregistered, ErrorCode, Inbox, MAX_PATH_LEN, MAX_SESSION_ID_LEN, Me, Peers,
    Pong, Reach, Replied, Request, Response, Scope, Sent, SessionInfo, WireError,
};
use tokio::sync::oneshot;

use crate::federation::Setup;
use crate::monitor::Monitor;
use crate::naming;
use crate::procinfo::{self, LazyLineage};
use crate::store::messages;
use crate::store::sessions::{self, CallerProcs, Registration, SessionRow};
use crate::store::{Ctx, Reader, Store};
use crate::supervise::{Supervisors, Target};

/// The longest an ask may wait, whatever the client asks for (one day).
pub const MAX_ASK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    pub monitor: Monitor,
    pub started: Instant,
    pub pid: u32,
    /// The program version announced in the handshake ([`crate::Config::program_version`]).
    pub version: String,
    /// The `mesh run` supervisors connected now.
    pub supervisors: Arc<Supervisors>,
    /// Whether this machine is part of a mesh across machines (`federation.toml`).
    pub federation: crate::federation::Setup,
}

/// The connecting process, as the kernel reported it.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub pid: Option<u32>,
    /// The peer and its ancestors, read at most once per connection and only when needed.
    pub lineage: LazyLineage,
}

impl Peer {
    pub fn from_pid(pid: Option<u32>) -> Self {
        Self {
            pid,
            lineage: LazyLineage::new(pid),
        }
    }
}

/// An ask whose answer the connection must wait for.
#[derive(Debug)]
pub struct PendingAsk {
    pub question: mesh_proto::Message,
    pub rx: oneshot::Receiver<AskResult>,
    pub timeout: Duration,
}

/// A handler's outcome: a response now, or an ask to wait for.
#[derive(Debug)]
pub enum Outcome {
    Now(Response),
    Wait(PendingAsk),
    /// The connection now carries pushed [`mesh_proto::Supervision`]s for this process.
    Supervise(Target),
}

impl From<Result<Response, WireError>> for Outcome {
    fn from(r: Result<Response, WireError>) -> Self {
        Outcome::Now(r.unwrap_or_else(Response::Error))
    }
}

fn caller_procs(caller: &Caller, peer: &Peer) -> CallerProcs {
    let claude = caller
        .claude_pid
        .and_then(procinfo::info)
        .filter(|p| !p.zombie)
        .map(|p| (p.pid, p.start));
    CallerProcs {
        claude,
        lineage: peer.lineage.clone(),
        session_id: caller.session_id.clone().filter(|s| !s.is_empty()),
    }
}

fn need_session(row: Option<SessionRow>) -> Result<SessionRow, WireError> {
    row.ok_or_else(|| {
        WireError::new(
            ErrorCode::NotASession,
            "this needs a Claude Code session, and the caller is not inside one",
        )
    })
}

fn info_of(ctx: &Reader<'_>, row: &sessions::SessionRow) -> Result<SessionInfo, WireError> {
    Ok(row.info(sessions::pending_of(ctx, row)?))
}

fn invalid(msg: impl Into<String>) -> WireError {
    WireError::new(ErrorCode::InvalidArgument, msg)
}

/// Resolve the caller and run `f` with its session (`None`: the user), in one store job, so the
/// identity and the operation see the same state.
async fn as_caller<T, F>(
    shared: &Shared,
    caller: &Caller,
    peer: &Peer,
    f: F,
) -> Result<T, WireError>
where
    T: Send + 'static,
    F: FnOnce(&mut Ctx<'_>, Option<SessionRow>) -> Result<T, WireError> + Send + 'static,
{
    store_job(shared, caller_procs(caller, peer), true, f).await
}

/// [`as_caller`] for a caller whose processes were already read from the OS; with
/// `durable: false` a write of soft state ([`Store::call_soft`]).
async fn store_job<T, F>(
    shared: &Shared,
    who: CallerProcs,
    durable: bool,
    f: F,
) -> Result<T, WireError>
where
    T: Send + 'static,
    F: FnOnce(&mut Ctx<'_>, Option<SessionRow>) -> Result<T, WireError> + Send + 'static,
{
    let job = move |ctx: &mut Ctx<'_>| {
        let me = sessions::resolve_caller(ctx, &who)?;
        f(ctx, me)
    };
    if durable {
        shared.store.call(job).await
    } else {
        shared.store.call_soft(job).await
    }
}

/// Like [`as_caller`] for requests that only read: on this thread, off the store thread
/// ([`Store::read`]), so a hook's `WhoAmI` costs one socket round trip and a query.
fn as_caller_read<T>(
    shared: &Shared,
    caller: &Caller,
    peer: &Peer,
    f: impl FnOnce(&Reader<'_>, Option<SessionRow>) -> Result<T, WireError>,
) -> Result<T, WireError> {
    read_job(shared, &caller_procs(caller, peer), f)
}

/// [`as_caller_read`] for a caller whose processes were already read from the OS.
fn read_job<T>(
    shared: &Shared,
    who: &CallerProcs,
    f: impl FnOnce(&Reader<'_>, Option<SessionRow>) -> Result<T, WireError>,
) -> Result<T, WireError> {
    shared.store.read(|r| {
        let me = sessions::resolve_caller(r, who)?;
        f(r, me)
    })
}

fn asked(question: mesh_proto::Message, result: AskResult) -> Outcome {
    Outcome::Now(Response::Asked(mesh_proto::AskOutcome { question, result }))
}

/// Handle one request.
pub async fn handle(shared: &Arc<Shared>, peer: &Peer, req: Request) -> Outcome {
    let store = &shared.store;
    match req {
        Request::Ping(_) => Outcome::Now(Response::Pong(Pong {
            pid: shared.pid,
            uptime_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })),
        Request::Register(r) => register(shared, peer, r, None).await.into(),
        Request::RegisterNamed(r) => {
            let named = named_by_client(&r);
            register(shared, peer, r.register, Some(named)).await.into()
        }
        Request::Deregister(d) => store
            .call(move |ctx| {
                Ok(Response::Deregistered(Deregistered {
                    removed: sessions::deregister(ctx, &d.session_id)?.is_some(),
                }))
            })
            .await
            .into(),
        // Busy/idle is soft state: every hook call sets it again.
        Request::SetIdle(s) => store_job(
            shared,
            caller_procs(&s.caller, peer),
            false,
            move |ctx, me| {
                sessions::set_idle(ctx, need_session(me)?.key, s.idle)?;
                Ok(Response::Done)
            },
        )
        .await
        .into(),
        Request::WhoAmI(w) => as_caller_read(shared, &w.caller, peer, |r, me| {
            let session = me.map(|row| info_of(r, &row)).transpose()?;
            Ok(Response::Me(Me { session }))
        })
        .into(),
        Request::List(l) => list(shared, peer, l).await.into(),
        Request::SetSummary(s) => as_caller(shared, &s.caller, peer, move |ctx, me| {
            sessions::set_summary(ctx, need_session(me)?.key, &s.summary)?;
            Ok(Response::Done)
        })
        .await
        .into(),
        Request::SendMessage(s) => as_caller(shared, &s.caller, peer, move |ctx, me| {
            let mut messages = messages::send(ctx, me.as_ref(), &s.to, s.kind, &s.body)?;
            // The sender has the text: repeated per recipient, a broadcast's answer could
            // outgrow a frame, and a committed send must never be reported as failed.
            for m in &mut messages {
                m.body = String::new();
            }
            Ok(Response::Sent(Sent { messages }))
        })
        .await
        .into(),
        Request::Ask(a) => {
            let timeout = Duration::from_millis(a.timeout_ms).min(MAX_ASK_TIMEOUT);
            let (tx, rx) = oneshot::channel();
            // A zero wait only queues the question (the MCP server then waits with
            // AwaitAnswer): leave no live waiter behind for a reply to race with.
            let rx = (!timeout.is_zero()).then_some(rx);
            let res = as_caller(shared, &a.caller, peer, move |ctx, me| {
                messages::ask(ctx, me.as_ref(), &a.to, &a.question, tx)
            })
            .await;
            match (res, rx) {
                (Ok((question, true)), Some(rx)) => Outcome::Wait(PendingAsk {
                    question,
                    rx,
                    timeout,
                }),
                (Ok((question, true)), None) => asked(question, AskResult::TimedOut),
                (Ok((question, false)), _) => asked(question, AskResult::PeerGone),
                (Err(e), _) => Outcome::Now(Response::Error(e)),
            }
        }
        Request::AwaitAnswer(a) => {
            let timeout = Duration::from_millis(a.timeout_ms).min(MAX_ASK_TIMEOUT);
            let (tx, rx) = oneshot::channel();
            let res = as_caller(shared, &a.caller, peer, move |ctx, me| {
                messages::await_answer(ctx, me.as_ref(), a.question_id, tx)
            })
            .await;
            match res {
                Ok((question, None)) => Outcome::Wait(PendingAsk {
                    question,
                    rx,
                    timeout,
                }),
                Ok((question, Some(result))) => asked(question, result),
                Err(e) => Outcome::Now(Response::Error(e)),
            }
        }
        Request::Reply(r) => as_caller(shared, &r.caller, peer, move |ctx, me| {
            let answer = messages::reply(ctx, me.as_ref(), r.message_id, &r.body)?;
            Ok(Response::Replied(Replied { answer }))
        })
        .await
        .into(),
        Request::Consume(c) => consume_request(shared, peer, c, None).await.into(),
        Request::ConsumeBy(c) => consume_request(shared, peer, c.consume, Some(c.deadline_ms))
            .await
            .into(),
        Request::Poll(p) => poll(shared, peer, p, None).await.into(),
        Request::PollBy(p) => poll(shared, peer, p.poll, Some(p.deadline_ms)).await.into(),
        Request::Supervise(s) => match supervised(s.pid) {
            Ok(target) => Outcome::Supervise(target),
            Err(e) => Outcome::Now(Response::Error(e)),
        },
        Request::MessageStatus(m) => shared
            .store
            .read(|r| Ok(Response::Message(messages::status(r, m.message_id)?)))
            .into(),
        Request::ListScoped(l) => list_scoped(shared, peer, l).await.into(),
        Request::FederationStatus(_) => {
            let report = match &shared.federation {
                Setup::Off => mesh_proto::FederationReport::default(),
                Setup::Broken { reason } => crate::federation::broken_report(reason),
                Setup::On(fed) => fed.report(&shared.store).await,
            };
            Outcome::Now(Response::Federation(report))
        }
        Request::GiveBack(g) => store
            .call(move |ctx| messages::give_back(ctx, g.handout))
            .await
            .map(|messages| Response::GivenBack(mesh_proto::GivenBack { messages }))
            .into(),
        Request::TrustKey(t) => {
            if shared.federation.federation().is_none() {
                return Outcome::Now(Response::Error(WireError::new(
                    ErrorCode::InvalidArgument,
                    "this machine is not part of a mesh (`mesh join <nats-url>` joins one)",
                )));
            }
            store
                .call(move |ctx| {
                    let before =
                        crate::store::hosts::host_named(ctx, &t.host)?.map(|h| h.device_id);
                    let trusted = crate::store::hosts::trust_key(ctx, &t.host, &t.fingerprint)?;
                    // What went to the old key, which the new device cannot open, goes again.
                    if before.as_deref() != Some(trusted.device_id.as_str())
                        && let Some(me) = ctx.store().identity()
                    {
                        let n = messages::resend_unconfirmed(ctx, &me, &trusted.host)?;
                        if n > 0 {
                            tracing::info!(
                                host = %trusted.host,
                                n,
                                "sending again, sealed for the key just trusted, the mail that host had not confirmed"
                            );
                        }
                    }
                    Ok(Response::Trusted(trusted))
                })
                .await
                .into()
        }
    }
}

/// Fail when the reader's deadline ([`mesh_proto::PollBy`]) has passed: nothing is handed out
/// to a reader that no longer waits.
pub fn check_deadline(deadline_ms: Option<u64>) -> Result<(), WireError> {
    match deadline_ms {
        Some(d) if past(d) => Err(WireError::new(
            ErrorCode::DeadlineExceeded,
            "the daemon could not answer before the reader's deadline; nothing was taken, the \
             mail stays queued",
        )),
        _ => Ok(()),
    }
}

/// Whether the wall-clock moment `deadline_ms` (ms since the Unix epoch) has passed.
pub fn past(deadline_ms: u64) -> bool {
    u64::try_from(crate::store::now_ms()).unwrap_or(0) > deadline_ms
}

/// [`mesh_proto::Consume`]: most hook calls find nothing, and a read answers those, with no
/// write and no wait for the store thread. Anything else (a retried hand-out among them, which
/// the store answers again) is consumed in the store.
async fn consume_request(
    shared: &Arc<Shared>,
    peer: &Peer,
    c: mesh_proto::Consume,
    deadline_ms: Option<u64>,
) -> Result<Response, WireError> {
    check_deadline(deadline_ms)?;
    let retry = c.handout;
    let who = caller_procs(&c.caller, peer);
    let empty = read_job(shared, &who, |r, me| match me {
        Some(row) => {
            Ok(sessions::pending_of(r, &row)? == 0 && !messages::handout_exists(r, retry)?)
        }
        None => Ok(false),
    })?;
    if empty {
        return Ok(Response::Inbox(Inbox {
            messages: Vec::new(),
            remaining: 0,
        }));
    }
    consume(shared, who, c, deadline_ms).await
}

/// A hook's poll ([`mesh_proto::Poll`]). A read answers it when there is nothing to take (no
/// session, another session id, an empty inbox): no write, no store thread. Otherwise the
/// store resolves the caller again and consumes, in one job. When the store has marked the
/// session as having urgent mail queued ([`crate::store::MailHints`]), the poll goes to the
/// store at once: the read would only find the mail and add its time to the hand-out.
async fn poll(
    shared: &Arc<Shared>,
    peer: &Peer,
    p: mesh_proto::Poll,
    deadline_ms: Option<u64>,
) -> Result<Response, WireError> {
    check_deadline(deadline_ms)?;
    fn empty() -> Inbox {
        Inbox {
            messages: Vec::new(),
            remaining: 0,
        }
    }
    let wanted = p.caller.session_id.clone().filter(|s| !s.is_empty());
    // Mail was queued for this session since its last consume: the read would only find it.
    let skip_read = wanted
        .as_deref()
        .is_some_and(|id| shared.store.hints().maybe_waiting(id));
    let current = move |row: &SessionRow| wanted.as_ref().is_none_or(|id| *id == row.session_id);
    // The caller's processes are read from the OS once, for the read and the store job.
    let who = caller_procs(&p.caller, peer);
    let quick = if skip_read {
        None
    } else {
        let current = current.clone();
        read_job(shared, &who, move |r, me| {
            let Some(row) = me else {
                return Ok(Some(None));
            };
            let pending = sessions::pending_of(r, &row)?;
            let nothing = pending == 0 && !messages::handout_exists(r, p.handout)?;
            Ok((nothing || !current(&row)).then(|| Some(row.info(pending))))
        })?
    };
    if let Some(session) = quick {
        return Ok(Response::Polled(mesh_proto::Polled {
            session,
            inbox: empty(),
        }));
    }
    store_job(shared, who, true, move |ctx, me| {
        // The job may have waited behind a slow batch or a locked database.
        check_deadline(deadline_ms)?;
        let (session, inbox) = match me {
            Some(row) if current(&row) => {
                let inbox = messages::consume(
                    ctx,
                    Some(&row),
                    p.class,
                    false,
                    wire_bytes(p.max_bytes),
                    p.handout,
                )?;
                (Some(info_of(ctx, &row)?), inbox)
            }
            Some(row) => (Some(info_of(ctx, &row)?), empty()),
            None => (None, empty()),
        };
        Ok(Response::Polled(mesh_proto::Polled { session, inbox }))
    })
    .await
}

/// A byte budget from the wire (`max_bytes`) as a `usize`; the store clamps it anyway. Exact on
/// every platform with a 32- or 64-bit `usize`.
fn wire_bytes(max_bytes: u32) -> usize {
    usize::try_from(max_bytes).unwrap_or(usize::MAX)
}

async fn consume(
    shared: &Arc<Shared>,
    who: CallerProcs,
    c: mesh_proto::Consume,
    deadline_ms: Option<u64>,
) -> Result<Response, WireError> {
    store_job(shared, who, true, move |ctx, me| {
        check_deadline(deadline_ms)?;
        let inbox = messages::consume(
            ctx,
            me.as_ref(),
            c.class,
            c.peek,
            wire_bytes(c.max_bytes),
            c.handout,
        )?;
        Ok(Response::Inbox(inbox))
    })
    .await
}

/// The naming a client worked out itself ([`mesh_proto::RegisterNamed`]), made safe: the name
/// cleaned by the daemon's own rule ([`naming::clean_name`]; none left: the cwd's cleaned
/// basename),
/// a root that is not an absolute path within [`MAX_PATH_LEN`] dropped, the default summary
/// cut to [`mesh_proto::MAX_SUMMARY_LEN`].
fn named_by_client(r: &mesh_proto::RegisterNamed) -> naming::Resolved {
    let root = |p: &Option<String>| {
        p.as_ref()
            .filter(|p| p.len() <= MAX_PATH_LEN && Path::new(p).is_absolute())
            .map(PathBuf::from)
    };
    let mut summary = r.default_summary.clone();
    if summary.len() > mesh_proto::MAX_SUMMARY_LEN {
        let mut end = mesh_proto::MAX_SUMMARY_LEN;
        while !summary.is_char_boundary(end) {
            end -= 1;
        }
        summary.truncate(end);
    }
    naming::Resolved {
        naming: naming::Naming {
            name: naming::clean_name(&r.name)
                .unwrap_or_else(|| naming::folder_name(Path::new(&r.register.cwd))),
            project_root: root(&r.project_root),
            git_root: root(&r.git_root),
        },
        default_summary: summary,
    }
}

/// Register a session; `named`: the naming its client worked out (else the daemon looks at
/// the session's folder itself, off this thread).
async fn register(
    shared: &Arc<Shared>,
    peer: &Peer,
    r: mesh_proto::Register,
    named: Option<naming::Resolved>,
) -> Result<Response, WireError> {
    if r.session_id.trim().is_empty() || r.session_id.len() > MAX_SESSION_ID_LEN {
        return Err(invalid(format!(
            "session_id must be 1 to {MAX_SESSION_ID_LEN} bytes"
        )));
    }
    // Every field a client registers is bounded: each one is repeated in every `list`.
    for (what, path) in [
        ("cwd", Some(&r.cwd)),
        ("project_dir", r.project_dir.as_ref()),
    ] {
        if let Some(path) = path
            && (path.len() > MAX_PATH_LEN || !Path::new(path).is_absolute())
        {
            return Err(invalid(format!(
                "{what} must be an absolute path of at most {MAX_PATH_LEN} bytes (got {} bytes)",
                path.len()
            )));
        }
    }
    // A transcript path Claude Code gave that we cannot use only costs `mesh history`.
    let transcript_path = r
        .transcript_path
        .filter(|p| p.len() <= MAX_PATH_LEN && Path::new(p).is_absolute());
    // Named off this thread, bounded (the paths are the client's, the files anyone's), while
    // this thread reads the process.
    let lookup = match named {
        Some(named) => naming::Lookup::ready(named),
        None => naming::Lookup::start(
            PathBuf::from(&r.cwd),
            r.project_dir.as_deref().map(PathBuf::from),
        ),
    };
    let proc_ = match r.pid {
        Some(pid) => {
            procinfo::info(pid).ok_or_else(|| invalid(format!("process {pid} does not exist")))?
        }
        None => peer
            .pid
            .and_then(procinfo::session_process_for)
            .ok_or_else(|| {
                invalid("cannot find the Claude Code process: pass its pid (CLAUDE_PID)")
            })?,
    };
    if proc_.zombie {
        return Err(invalid(format!("process {} has exited", proc_.pid)));
    }
    ensure_own(&proc_)?;
    let naming::Resolved {
        naming,
        default_summary,
    } = lookup.finish(naming::RESOLVE_TIMEOUT).await;
    let reg = Registration {
        session_id: r.session_id,
        pid: proc_.pid,
        start_time: proc_.start,
        name: naming.name,
        cwd: r.cwd,
        project_root: naming
            .project_root
            .map(|p| p.to_string_lossy().into_owned()),
        git_root: naming.git_root.map(|p| p.to_string_lossy().into_owned()),
        transcript_path,
        default_summary,
    };
    // Soft: a registration lost to a power loss is made again by the session's next hook (they
    // all re-register a session the daemon does not know), and any durable write that names it
    // (mail to it) makes it durable first.
    let (key, info) = shared
        .store
        .call_soft(move |ctx| {
            let row = sessions::register(ctx, reg)?;
            Ok((row.key, info_of(ctx, &row)?))
        })
        .await?;
    shared.monitor.watch(key, info.pid, proc_.start);
    Ok(Response::Registered(info))
}

/// [`mesh_proto::ListScoped`]: this machine's sessions as `list` shows them, and with
/// [`Reach::Mesh`] the sessions other machines list.
async fn list_scoped(
    shared: &Arc<Shared>,
    peer: &Peer,
    l: mesh_proto::ListScoped,
) -> Result<Response, WireError> {
    let include_offline = l.list.include_offline;
    let local = match list(shared, peer, l.list).await? {
        Response::Peers(p) => p.sessions,
        other => return Ok(other),
    };
    let fed = shared.federation.federation();
    let remote = match (l.reach, fed) {
        (Reach::Mesh, Some(_)) => {
            let now = crate::store::now_ms();
            shared
                .store
                .read(|r| crate::store::remote::remote_sessions(r, now, include_offline))?
        }
        _ => Vec::new(),
    };
    Ok(Response::MeshPeers(mesh_proto::MeshPeers {
        host: fed.map(|f| f.identity().host.clone()),
        local,
        remote,
    }))
}

async fn list(
    shared: &Arc<Shared>,
    peer: &Peer,
    l: mesh_proto::List,
) -> Result<Response, WireError> {
    // For a caller outside any session, scope by the directory the command runs in.
    let cwd = match l.scope {
        Scope::Machine => None,
        _ => peer.pid.and_then(process_cwd),
    };
    let peer_dir = match cwd {
        None => None,
        Some(cwd) => {
            // Off this thread and bounded, as for a registration.
            let git = naming::resolve_bounded(cwd.clone(), None, naming::RESOLVE_TIMEOUT)
                .await
                .naming
                .git_root
                .map(|g| g.to_string_lossy().into_owned());
            Some((cwd.to_string_lossy().into_owned(), git))
        }
    };
    as_caller_read(shared, &l.caller, peer, |ctx, me| {
        let (cwd, git) = match (&me, peer_dir) {
            (Some(row), _) => (Some(row.cwd.clone()), row.git_root.clone()),
            (None, Some((cwd, git))) => (Some(cwd), git),
            (None, None) => (None, None),
        };
        let sessions = sessions::list(
            ctx,
            l.scope,
            cwd.as_deref(),
            git.as_deref(),
            l.include_offline,
        )?;
        Ok(Response::Peers(Peers { sessions }))
    })
}

/// A process a client names (a session's, a supervised one) must be the daemon's user's own.
fn ensure_own(p: &procinfo::ProcInfo) -> Result<(), WireError> {
    if p.uid != rustix::process::geteuid().as_raw() {
        return Err(WireError::new(
            ErrorCode::PermissionDenied,
            format!("process {} belongs to another user", p.pid),
        ));
    }
    Ok(())
}

/// The process a supervisor names: it must exist and be the user's own.
fn supervised(pid: u32) -> Result<Target, WireError> {
    let p = procinfo::info(pid)
        .filter(|p| !p.zombie)
        .ok_or_else(|| invalid(format!("process {pid} does not exist")))?;
    ensure_own(&p)?;
    Ok(Target {
        pid: p.pid,
        start: p.start,
    })
}

/// What an answer hands out, and until when its reader waits: the messages a take marked
/// delivered must reach a reader, or go back to the queue ([`put_back`]).
#[derive(Debug, Clone, Default)]
pub struct Handout {
    /// The reader's deadline (ms since the Unix epoch), if it stated one.
    pub deadline_ms: Option<u64>,
    /// The hand-out token ([`mesh_proto::Consume::handout`]), 0 for none.
    pub token: u64,
}

impl Handout {
    /// The hand-out a request may make: `None` for requests that take nothing (a peek
    /// included).
    pub fn of(req: &Request) -> Option<Handout> {
        let (token, deadline_ms) = match req {
            Request::Poll(p) => (p.handout, None),
            Request::PollBy(p) => (p.poll.handout, Some(p.deadline_ms)),
            Request::Consume(c) if !c.peek => (c.handout, None),
            Request::ConsumeBy(c) if !c.consume.peek => (c.consume.handout, Some(c.deadline_ms)),
            _ => return None,
        };
        Some(Handout { deadline_ms, token })
    }

    /// The ids of the messages `resp` hands out.
    pub fn taken(resp: &Response) -> Vec<u64> {
        let inbox = match resp {
            Response::Inbox(i) => i,
            Response::Polled(p) => &p.inbox,
            _ => return Vec::new(),
        };
        inbox.messages.iter().map(|m| m.id).collect()
    }

    /// Whether the reader stopped waiting.
    pub fn expired(&self) -> bool {
        self.deadline_ms.is_some_and(past)
    }
}

/// Put the messages of a hand-out that never reached its reader back in the queue, and forget
/// its token (a retry takes afresh).
pub fn put_back(store: &Store, ids: Vec<u64>, token: u64) {
    tracing::info!(
        ?ids,
        "a hand-out did not reach its reader in time; the messages are queued again"
    );
    store.spawn(move |ctx| messages::put_back(ctx, &ids, token));
}

/// The asker of `question` stopped waiting before an answer came: withdraw it if the peer has
/// not seen it yet ([`messages::withdraw`]). Returns the question as it now stands (as it was,
/// should the store fail).
pub async fn gave_up(store: &Store, question: mesh_proto::Message) -> mesh_proto::Message {
    let id = question.id;
    match store.call(move |ctx| messages::withdraw(ctx, id)).await {
        Ok(Some(now)) => now,
        Ok(None) => question,
        Err(e) => {
            tracing::warn!(question = id, "withdrawing a question: {}", e.message);
            question
        }
    }
}

/// [`gave_up`] without waiting: for an asker that has left.
pub fn gave_up_later(store: &Store, id: u64) {
    store.spawn(move |ctx| messages::withdraw(ctx, id).map(drop));
}

/// Undo the delivery of an answer that could not be written to its asker.
pub fn undeliver(store: &Store, id: u64) {
    store.spawn(move |ctx| messages::undeliver(ctx, id));
}

/// The working directory of a process (Linux only; elsewhere narrower scopes need a session).
fn process_cwd(pid: u32) -> Option<std::path::PathBuf> {
    if cfg!(target_os = "linux") {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
    } else {
        None
    }
}
