//! The stdio transport, with `server/discover` answered "method not found".
//!
//! Claude Code (2.1.330 to 2.1.332) probes a stdio server with `server/discover` (the
//! 2026-07-28 lifecycle) before `initialize`. rmcp 3.11 knows that method: it would answer a
//! probe carrying full `_meta` with a discovery result (steering Claude Code into a lifecycle
//! this server does not claim) and a bare probe with -32602. This server speaks the `initialize` lifecycle only
//! (protocol 2024-11-05 to 2025-11-25), so every `server/discover` gets JSON-RPC -32601, the
//! answer Claude Code expects from such a server, and the server keeps reading: the next
//! message is normally `initialize`.

use std::borrow::Cow;

use rmcp::RoleServer;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorCode, ErrorData, ServerJsonRpcMessage,
};
use rmcp::transport::Transport;
use tokio_util::sync::CancellationToken;

const DISCOVER: &str = "server/discover";

/// Wraps a server transport; see the module docs. It also reports the end of the input
/// through `closed`: rmcp lets in-flight calls run for up to 5 s after EOF, and a waiting
/// `ask_peer` uses the signal to leave the daemon at once instead (so that an answer arriving
/// meanwhile waits in the inbox rather than going to a server that is exiting).
#[derive(Debug)]
pub struct NoDiscover<T> {
    inner: T,
    closed: CancellationToken,
}

impl<T> NoDiscover<T> {
    pub fn new(inner: T, closed: CancellationToken) -> Self {
        Self { inner, closed }
    }
}

/// The error for `server/discover`.
pub fn discover_not_found() -> ErrorData {
    ErrorData::new(
        ErrorCode::METHOD_NOT_FOUND,
        Cow::Borrowed("Method not found: server/discover (this server uses initialize)"),
        None,
    )
}

impl<T: Transport<RoleServer>> Transport<RoleServer> for NoDiscover<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            let Some(msg) = self.inner.receive().await else {
                self.closed.cancel();
                return None;
            };
            let id = match &msg {
                // A probe without `_meta` parses as a custom request of that method.
                ClientJsonRpcMessage::Request(req)
                    if matches!(req.request, ClientRequest::DiscoverRequest(_))
                        || req.request.method() == DISCOVER =>
                {
                    req.id.clone()
                }
                _ => return Some(msg),
            };
            // Sent from a task of its own: the service loop polls `receive` inside a
            // `select!` and may drop it at any await, which would lose a reply awaited here.
            let reply = self
                .inner
                .send(ServerJsonRpcMessage::error(discover_not_found(), Some(id)));
            tokio::spawn(async move {
                if let Err(e) = reply.await {
                    tracing::warn!("cannot answer server/discover: {e}");
                }
            });
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
