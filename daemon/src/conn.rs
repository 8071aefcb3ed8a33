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
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::handlers::{self, Outcome, Peer, PendingAsk, Shared};
use crate::supervise::{Target, same_for_supervisor};

/// This build's version: the default of [`crate::Config::program_version`], which is what the
/// handshake announces.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

type RequestFramed = Framed<UnixStream, LenientCodec<Request, Response>>;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub handshake_timeout: Duration,
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

/// Serve one connection until the client closes it, an error ends it, or shutdown.
pub async fn serve(
    stream: UnixStream,
    shared: Arc<Shared>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot read peer credentials, closing: {e}");
            return;
        }
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
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
            frame = next_frame(&mut framed, limits.handshake_timeout) => frame,
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
        let answer_id = match &response {
            Response::Asked(AskOutcome {
                result: AskResult::Answered(m),
                ..
            }) => Some(m.id),
            _ => None,
        };
        if let Err(e) = framed.send(response).await {
            tracing::debug!("writing a response failed: {e}");
            if let Some(id) = answer_id {
                handlers::undeliver(&shared.store, id);
            }
            break;
        }
    }
}

/// The next frame. A connection may sit idle between requests for as long as its client likes
/// (the MCP server keeps one open for hours), but once a frame has begun, the rest of it must
/// arrive within `limit`: a client that sends half a frame and stalls gets an error and is
/// closed, rather than holding its connection slot forever.
async fn next_frame(
    framed: &mut RequestFramed,
    limit: Duration,
) -> Result<Option<Result<Result<Request, FrameError>, FrameError>>, WireError> {
    loop {
        if framed.read_buffer().is_empty() && framed.get_ref().readable().await.is_err() {
            return Ok(None);
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
