//! One client connection: credentials check, version handshake under a timeout, then a loop of
//! one response per request. A frame that fails to decode gets a typed error and the loop goes
//! on; an oversize or truncated frame ends the connection (the stream is out of sync).

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mesh_proto::{
    AskOutcome, AskResult, ClientHello, ErrorCode, FrameCodec, FrameError, LenientCodec, MAGIC,
    PROTOCOL_VERSION, Request, Response, ServerHello, Supervision, WireError,
};
use tokio::net::UnixStream;
use tokio::net::unix::UCred;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::handlers::{self, Handout, Outcome, Peer, PendingAsk, Shared};
use crate::supervise::{Target, same_for_supervisor};

/// This build's version: the default of [`crate::Config::program_version`], which is what the
/// handshake announces.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

type RequestFramed = Framed<UnixStream, LenientCodec<Request, Response>>;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub handshake_timeout: Duration,
    /// A connection that sends no request for this long after its last answer is closed
    /// (`None`: never). A connection waiting for an answer or supervising is not idle.
    pub idle_timeout: Option<Duration>,
}

fn hello(shared: &Shared, error: Option<WireError>) -> ServerHello {
    ServerHello {
        magic: MAGIC,
        protocol: PROTOCOL_VERSION,
        program_version: shared.version.clone(),
        pid: shared.pid,
        error,
    }
}

/// Send a refusal in place of the handshake answer and close (best effort, bounded).
pub async fn refuse(stream: UnixStream, shared: &Shared, error: WireError) {
    let mut framed = Framed::new(stream, FrameCodec::<ClientHello, ServerHello>::new());
    let answer = hello(shared, Some(error));
    let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(answer)).await;
}

/// Serve one connection until the client closes it, an error ends it, or shutdown. `cred`: the
/// peer's credentials (`SO_PEERCRED`), read by the accept loop.
pub async fn serve(
    stream: UnixStream,
    cred: UCred,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let me = rustix::process::geteuid().as_raw();
    if cred.uid() != me {
        tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "refused a connection from another user");
        let err = WireError::new(
            ErrorCode::PermissionDenied,
            "this daemon serves only its own user",
        );
        refuse(stream, &shared, err).await;
        return;
    }
    let peer_pid = cred.pid().and_then(|p| u32::try_from(p).ok());
    let Some(mut framed) = handshake(stream, &shared, limits).await else {
        return;
    };
    let peer = Peer::from_pid(peer_pid);
    loop {
        let frame = tokio::select! {
            frame = next_frame(&mut framed, limits) => frame,
            () = shutdown.cancelled() => break,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(stalled) => {
                tracing::debug!(pid = ?peer_pid, "{}", stalled.message);
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    framed.send(Response::Error(stalled)),
                )
                .await;
                break;
            }
        };
        let req = match frame {
            None => break,
            Some(Ok(Ok(req))) => req,
            // The payload did not decode, but the stream is still in sync: answer and go on.
            Some(Ok(Err(e))) => {
                tracing::debug!(pid = ?peer_pid, "undecodable request: {e}");
                if framed.send(Response::Error(frame_error(&e))).await.is_err() {
                    break;
                }
                continue;
            }
            // Oversize or truncated: the stream is out of sync; say why and close.
            Some(Err(e)) => {
                tracing::debug!(pid = ?peer_pid, "bad frame: {e}");
                let _ = framed.send(Response::Error(frame_error(&e))).await;
                break;
            }
        };
        let handout = Handout::of(&req);
        let response = match handlers::handle(&shared, &peer, req).await {
            Outcome::Now(r) => r,
            Outcome::Supervise(target) => {
                supervise(&mut framed, &shared, target, &shutdown).await;
                break;
            }
            Outcome::Wait(ask) => match wait_for_answer(&mut framed, &shared, ask, &shutdown).await
            {
                Some(r) => r,
                None => break,
            },
        };
        if !send_answer(&mut framed, &shared, handout, response).await {
            break;
        }
    }
}

/// Write one answer. Mail it hands out counts as delivered only if its reader gets it: when the
/// reader's deadline passed while the daemon worked (a stall, a locked database, a slow disk),
/// or the answer cannot be written, the mail goes back to the queue. An answer larger than a
/// frame (which the handlers never build) becomes an error, and the connection goes on.
/// False: the connection is unusable.
async fn send_answer(
    framed: &mut RequestFramed,
    shared: &Shared,
    handout: Option<Handout>,
    mut response: Response,
) -> bool {
    let taken = match &handout {
        Some(_) => Handout::taken(&response),
        None => Vec::new(),
    };
    let token = handout.as_ref().map_or(0, |h| h.token);
    if !taken.is_empty() && handout.as_ref().is_some_and(Handout::expired) {
        handlers::put_back(&shared.store, taken.clone(), token);
        response = Response::Error(WireError::new(
            ErrorCode::DeadlineExceeded,
            "the daemon finished after the reader's deadline; nothing was handed out, the mail \
             stays queued",
        ));
        return framed.send(response).await.is_ok();
    }
    let answer_id = match &response {
        Response::Asked(AskOutcome {
            result: AskResult::Answered(m),
            ..
        }) => Some(m.id),
        _ => None,
    };
    let undo = |shared: &Shared| {
        if !taken.is_empty() {
            handlers::put_back(&shared.store, taken.clone(), token);
        }
        if let Some(id) = answer_id {
            handlers::undeliver(&shared.store, id);
        }
    };
    match framed.send(response).await {
        Ok(()) => true,
        // Refused by the encoder before a byte was written: the stream is still in sync.
        Err(e @ FrameError::TooLarge { .. }) => {
            tracing::error!("an answer was too large to send: {e}");
            undo(shared);
            let err = WireError::new(
                ErrorCode::Internal,
                format!("the daemon's answer was too large to send ({e}); nothing was handed out"),
            );
            framed.send(Response::Error(err)).await.is_ok()
        }
        Err(e) => {
            tracing::debug!("writing a response failed: {e}");
            undo(shared);
            false
        }
    }
}

/// The next frame. A connection may sit idle between requests for `limits.idle_timeout`; then
/// it is closed (`Ok(None)`, silently: an answer nobody asked for would be read as the answer
/// to the client's next request), and its client connects again when it next needs the daemon
/// (the MCP server does so by itself). Once a frame has begun, the rest of it must arrive
/// within `limits.handshake_timeout`: a client that sends half a frame and stalls gets an error
/// and is closed, rather than holding its connection slot forever.
async fn next_frame(
    framed: &mut RequestFramed,
    limits: Limits,
) -> Result<Option<Result<Result<Request, FrameError>, FrameError>>, WireError> {
    let limit = limits.handshake_timeout;
    loop {
        if framed.read_buffer().is_empty() {
            let readable = framed.get_ref().readable();
            let ready = match limits.idle_timeout {
                None => readable.await,
                Some(idle) => match tokio::time::timeout(idle, readable).await {
                    Ok(ready) => ready,
                    Err(_) => {
                        tracing::debug!("no request for {idle:?}: closing the idle connection");
                        return Ok(None);
                    }
                },
            };
            if ready.is_err() {
                return Ok(None);
            }
        }
        match tokio::time::timeout(limit, framed.next()).await {
            Ok(frame) => return Ok(frame),
            // Readiness can be spurious: nothing of a frame arrived, so the client is idle.
            Err(_) if framed.read_buffer().is_empty() => {}
            Err(_) => {
                return Err(WireError::new(
                    ErrorCode::Malformed,
                    format!(
                        "a frame was begun but not finished within {limit:?} ({} of its bytes arrived); closing the connection",
                        framed.read_buffer().len()
                    ),
                ));
            }
        }
    }
}

fn frame_error(e: &FrameError) -> WireError {
    match e {
        FrameError::TooLarge { .. } => WireError::new(ErrorCode::FrameTooLarge, e.to_string()),
        FrameError::Malformed(_) => WireError::new(
            ErrorCode::Malformed,
            format!("cannot decode the request: {e}"),
        ),
        _ => WireError::new(ErrorCode::Malformed, e.to_string()),
    }
}

async fn handshake(stream: UnixStream, shared: &Shared, limits: Limits) -> Option<RequestFramed> {
    let mut framed = Framed::new(stream, FrameCodec::<ClientHello, ServerHello>::new());
    let first = match tokio::time::timeout(limits.handshake_timeout, framed.next()).await {
        Err(_) => {
            let err = WireError::new(ErrorCode::Handshake, "no handshake within the time limit");
            tracing::debug!("{err}");
            let _ = framed.send(hello(shared, Some(err))).await;
            return None;
        }
        Ok(None) => return None,
        Ok(Some(r)) => r,
    };
    let refusal = match first {
        Err(e) => Some(WireError::new(
            if matches!(e, FrameError::TooLarge { .. }) {
                ErrorCode::FrameTooLarge
            } else {
                ErrorCode::Handshake
            },
            format!("expected a claude-mesh handshake: {e}"),
        )),
        Ok(h) if h.magic != MAGIC => Some(WireError::new(
            ErrorCode::Handshake,
            "expected a claude-mesh handshake",
        )),
        Ok(h) if h.protocol != PROTOCOL_VERSION => Some(WireError::new(
            ErrorCode::Incompatible,
            format!(
                "client {} speaks protocol {}, this daemon ({}) speaks protocol {PROTOCOL_VERSION}; \
                 restart the daemon (`mesh restart`) or use a matching mesh binary",
                h.program_version, h.protocol, shared.version
            ),
        )),
        Ok(_) => None,
    };
    let accepted = refusal.is_none();
    if let Some(err) = &refusal {
        tracing::info!("refused a handshake: {}", err.message);
    }
    if framed.send(hello(shared, refusal)).await.is_err() || !accepted {
        return None;
    }
    Some(framed.map_codec(|_| LenientCodec::new()))
}

/// Push the supervised session's state now and whenever it changes, until the client closes
/// the connection (or sends anything: a supervising connection carries nothing else), or
/// shutdown.
async fn supervise(
    framed: &mut RequestFramed,
    shared: &Shared,
    target: Target,
    shutdown: &CancellationToken,
) {
    let registration = shared.supervisors.add(target);
    let mut changed = shared.store.subscribe_commits();
    let mut sent: Option<Supervision> = None;
    tracing::debug!(pid = target.pid, "supervisor connected");
    loop {
        changed.borrow_and_update();
        match registration.state(&shared.store) {
            Ok(now) if sent.as_ref().is_some_and(|s| same_for_supervisor(s, &now)) => {}
            Ok(now) => {
                if framed
                    .send(Response::Supervision(now.clone()))
                    .await
                    .is_err()
                {
                    break;
                }
                sent = Some(now);
            }
            // The next change tries again; the supervisor keeps what it last heard.
            Err(e) => tracing::warn!(pid = target.pid, "supervisor state: {}", e.message),
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            frame = framed.next() => {
                if let Some(Ok(_)) = frame {
                    let _ = framed
                        .send(Response::Error(WireError::new(
                            ErrorCode::Malformed,
                            "a supervising connection carries no requests; open another one",
                        )))
                        .await;
                }
                break;
            }
            () = shutdown.cancelled() => break,
        }
    }
    tracing::debug!(pid = target.pid, "supervisor left");
}

/// Wait for the answer the store pushes, the time-out, shutdown, or the client leaving.
/// `None`: the client went away (or broke protocol) and the connection ends. An asker that
/// times out or leaves has given up: its question is withdrawn if the peer has not seen it
/// ([`handlers::gave_up`]); the time-out answer carries the question as it then stands. A
/// shutdown withdraws nothing (the asker reconnects and waits again).
async fn wait_for_answer(
    framed: &mut RequestFramed,
    shared: &Shared,
    ask: PendingAsk,
    shutdown: &CancellationToken,
) -> Option<Response> {
    let PendingAsk {
        mut question,
        mut rx,
        timeout,
    } = ask;
    let result = tokio::select! {
        r = &mut rx => match r {
            Ok(result) => result,
            Err(_) => return Some(Response::Error(WireError::new(ErrorCode::ShuttingDown, "the daemon is shutting down"))),
        },
        () = tokio::time::sleep(timeout) => match rx.try_recv() {
            Ok(result) => result,
            Err(_) => {
                // Closing the receiver ends this wait's registration before the withdrawal.
                drop(rx);
                question = handlers::gave_up(&shared.store, question).await;
                AskResult::TimedOut
            }
        },
        () = shutdown.cancelled() => match rx.try_recv() {
            Ok(result) => result,
            Err(_) => return Some(Response::Error(WireError::new(
                ErrorCode::ShuttingDown,
                format!("the daemon is shutting down; question {} stays queued and its answer will wait in your inbox", question.id),
            ))),
        },
        frame = framed.next() => {
            // A client that closes its connection cancels its wait; anything else is a
            // protocol error (one request at a time).
            if let Some(Ok(_)) = frame {
                let _ = framed
                    .send(Response::Error(WireError::new(ErrorCode::Malformed, "a request arrived while an ask was waiting")))
                    .await;
            }
            // An answer that raced with the departure goes back to the asker's inbox.
            match rx.try_recv() {
                Ok(AskResult::Answered(m)) => handlers::undeliver(&shared.store, m.id),
                Ok(_) => {}
                Err(_) => {
                    drop(rx);
                    handlers::gave_up_later(&shared.store, question.id);
                }
            }
            tracing::debug!(question = question.id, "asker left before the answer");
            return None;
        }
    };
    Some(Response::Asked(AskOutcome { question, result }))
}
