//! Mail between sessions: `send_message`, `ask_peer`, `reply_to_peer`, `check_messages`,
//! `message_status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_proto::{
    Class, Consume, Kind, MessageStatus, Reply, SendMessage as SendRequest, sanitize,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{MeshServer, ToolError, fail, id_text, message_id, required, result};
use crate::link::{AskEnd, AskPlan, AskSwitch, Retry};
use crate::mcp::render;

/// Bodies per `check_messages` call; the rest is left for the next call (`remaining`).
const CHECK_BUDGET_BYTES: u32 = 64 * 1024;
/// How long a cancelled ask may take to let go of its socket before the call returns anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// `send_message` kind.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum KindArg {
    Task,
    Note,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SendArgs {
    /// Recipient: a peer's name, a session id prefix (at least 4 characters), or "*" for every
    /// live peer
    pub to: String,
    /// The message text
    pub body: String,
    /// task (default: shown at the peer's next step) or note (shown at its next prompt)
    pub kind: Option<KindArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AskArgs {
    /// The peer to ask: its name or a session id prefix (at least 4 characters); one peer only
    pub to: String,
    /// The question; make it self-contained, the peer does not see your conversation
    pub question: String,
    /// Seconds to wait for the answer (default 300; capped at the server's maximum)
    pub timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReplyArgs {
    /// The question's message id as you were given it, e.g. "m42" ("#42" or "42" also work)
    #[serde(deserialize_with = "id_text")]
    #[schemars(with = "String")]
    pub message_id: String,
    /// Your answer
    pub body: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MessageStatusArgs {
    /// The message id, e.g. "m42" ("#42" or "42" also work)
    #[serde(deserialize_with = "id_text")]
    #[schemars(with = "String")]
    pub message_id: String,
}

#[tool_router(router = messaging_router, vis = "pub(super)")]
impl MeshServer {
    const SEND_MESSAGE: &'static str = "\
Queue a message for another session and return at once with its \
message id (e.g. \"m17\"); it does not wait for a reply. Use it for tasks, hand-offs and \
information, and whenever you do not need an answer to continue (if you do, use ask_peer). \
Address `to` by the peer's name (case-insensitive, as list_peers shows it), by a prefix of its \
session id (at least 4 characters), or `*` for every live peer except you (one message id per \
recipient). `kind`: task (default) is shown to the peer at its next step and keeps it from \
ending its turn before it has seen it; note waits for the peer's next prompt (for FYIs that \
should not interrupt). Mail for a known peer that is not running waits until it starts again. \
Any response comes back as a message to you.";

    #[tool(description = Self::SEND_MESSAGE)]
    async fn send_message(&self, Parameters(args): Parameters<SendArgs>) -> CallToolResult {
        let kind = match args.kind.unwrap_or(KindArg::Task) {
            KindArg::Task => Kind::Task,
            KindArg::Note => Kind::Note,
        };
        let r = async {
            required("to", &args.to)?;
            required("body", &args.body)?;
            let to = args.to.trim().to_owned();
            let body = args.body;
            let sent = self
                .blocking(move |d| {
                    Ok(d.call(Retry::Once, |c, caller| {
                        c.send(SendRequest {
                            caller,
                            to: to.clone(),
                            kind,
                            body: body.clone(),
                        })
                    }))
                })
                .await?
                .map_err(|e| {
                    if crate::link::unconfirmed(&e) {
                        fail(format!(
                            "the daemon did not confirm the send ({}): {}",
                            crate::link::unconfirmed_why(&e),
                            crate::link::MAYBE_SENT
                        ))
                    } else {
                        ToolError::from(e)
                    }
                })?;
            Ok(render::sent(kind, &sent.messages))
        };
        result(r.await)
    }

    const ASK_PEER: &'static str = "\
Ask another session a question and BLOCK until it answers, then return \
the answer. Use it only when you need the answer to continue; otherwise use send_message, which \
does not wait. The peer receives the question with its message id and answers with \
reply_to_peer. Address `to` by name or session id prefix (at least 4 characters), one peer only \
(not `*`). Waits at most `timeout_s` seconds (default 300). Returns JSON with `status`: \
answered (with `answer`), timed_out (the question stays queued; a later answer arrives in your \
messages, see check_messages, and message_status shows it), or peer_gone (the peer's session is \
not running).";

    #[tool(description = Self::ASK_PEER)]
    async fn ask_peer(
        &self,
        Parameters(args): Parameters<AskArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        result(self.ask(args, ctx).await)
    }

    const REPLY_TO_PEER: &'static str = "\
Answer a question that another session asked you. Pass the \
question's message id exactly as you were given it, e.g. \"m42\" (\"#42\" and \"42\" work too), \
and your answer as `body`. The asker is usually blocked waiting for it: answer promptly and \
completely. Only questions can be answered; to respond to a task or note, use send_message.";

    #[tool(description = Self::REPLY_TO_PEER)]
    async fn reply_to_peer(&self, Parameters(args): Parameters<ReplyArgs>) -> CallToolResult {
        let r = async {
            let id = message_id(&args.message_id)?;
            required("body", &args.body)?;
            let body = args.body;
            let replied = self
                .blocking(move |d| {
                    d.call(Retry::Once, |c, caller| {
                        c.reply(Reply {
                            caller,
                            message_id: id,
                            body: body.clone(),
                        })
                    })
                })
                .await?;
            Ok(render::replied(&replied.answer))
        };
        result(r.await)
    }

    const CHECK_MESSAGES: &'static str = "\
Fetch the messages waiting for this session (tasks, notes, \
questions, and answers to your earlier questions) and mark them read: each is returned once. \
Most messages are also shown to you automatically between steps; call this when told that mail \
is waiting, or to collect the late answer to an ask_peer that timed out. Answer every question \
with reply_to_peer and its id.";

    #[tool(description = Self::CHECK_MESSAGES)]
    async fn check_messages(&self) -> CallToolResult {
        // With a hand-out token a consume is safe to repeat: after a lost answer the daemon
        // hands out the same messages again.
        let handout = mesh_client::handout_token();
        let inbox = self
            .blocking(move |d| {
                d.call(Retry::Idempotent, |c, caller| {
                    c.consume(Consume {
                        caller,
                        class: Class::All,
                        peek: false,
                        max_bytes: CHECK_BUDGET_BYTES,
                        handout,
                    })
                })
            })
            .await;
        result(inbox.map(|i| render::inbox(&i)))
    }

    const MESSAGE_STATUS: &'static str = "\
Look up one message by id (\"m42\"; \"#42\" and \"42\" work too): \
its kind, sender, recipient, body and status, with timestamps. Status is queued (the recipient \
has not seen it yet), delivered (shown to the recipient) or answered (a question that got its \
answer). Use it to check whether a peer has seen your message, or whether a question that timed \
out was answered since.";

    #[tool(description = Self::MESSAGE_STATUS, annotations(read_only_hint = true))]
    async fn message_status(
        &self,
        Parameters(args): Parameters<MessageStatusArgs>,
    ) -> CallToolResult {
        let r = async {
            let id = message_id(&args.message_id)?;
            let m = self
                .blocking(move |d| {
                    d.call(Retry::Idempotent, |c, _| {
                        c.message_status(MessageStatus { message_id: id })
                    })
                })
                .await?;
            Ok(render::message(&m))
        };
        result(r.await)
    }
}

impl MeshServer {
    async fn ask(
        &self,
        args: AskArgs,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Value, ToolError> {
        required("to", &args.to)?;
        required("question", &args.question)?;
        let to = args.to.trim().to_owned();
        if to == "*" {
            return Err(fail(
                "ask_peer asks one peer at a time; to reach every peer use send_message with to=\"*\"",
            ));
        }
        let requested_s = args
            .timeout_s
            .unwrap_or(crate::mcp::limits::DEFAULT_ASK_TIMEOUT_S);
        if requested_s == 0 {
            return Err(fail("timeout_s must be at least 1 second"));
        }
        let wait_s = requested_s.min(self.limits.max_ask_s);
        let to_name = to.clone();
        let plan = AskPlan {
            to: to.clone(),
            question: args.question,
            deadline: Instant::now() + Duration::from_secs(wait_s),
        };
        let _progress = ctx.meta.get_progress_token().map(|token| {
            AbortOnDrop(tokio::spawn(progress(
                ctx.peer.clone(),
                token,
                to,
                wait_s,
                self.limits.progress_every,
            )))
        });
        let switch = Arc::new(AskSwitch::default());
        let daemon = Arc::clone(&self.daemon);
        let waiter = Arc::clone(&switch);
        let mut task =
            tokio::task::spawn_blocking(move || crate::link::ask(&daemon, plan, &waiter));
        let joined = tokio::select! {
            joined = &mut task => joined,
            () = cancelled(&ctx.ct, &self.closed) => {
                // The client gave up (or is gone): leave the daemon, which keeps the question
                // queued; a late answer goes to this session's inbox. No response is sent for a
                // cancelled call.
                switch.cancel();
                let _ = tokio::time::timeout(CANCEL_GRACE, task).await;
                return Err(fail("cancelled"));
            }
        };
        match joined {
            Ok(Ok(AskEnd::Done(outcome))) => Ok(render::asked(&outcome, wait_s, requested_s)),
            Ok(Ok(AskEnd::Cancelled)) => Err(fail("cancelled")),
            Ok(Ok(AskEnd::LostWhileQueuing(e))) => Err(fail(format!(
                "{e}. The mesh daemon went away while the question was being queued, so it may or \
                 may not have reached {to_name}. Call ask_peer again to be sure (the peer may then \
                 see the question twice)."
            ))),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(fail(format!(
                "internal error in the claude-mesh MCP server: {e}"
            ))),
        }
    }
}

/// The call was cancelled, or the client closed its end.
async fn cancelled(call: &CancellationToken, closed: &CancellationToken) {
    tokio::select! {
        () = call.cancelled() => {}
        () = closed.cancelled() => {}
    }
}

/// Aborts a task when dropped (the progress ticker must not outlive its call).
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Progress notifications while an ask waits: one at once, then one every `every`. The progress
/// is the seconds waited so far, of `total_s`.
async fn progress(
    peer: Peer<RoleServer>,
    token: ProgressToken,
    to: String,
    total_s: u64,
    every: Duration,
) {
    // The model's own argument, but shown as text all the same: through the sanitizer.
    let to = sanitize::model_inline(&to, 128, true);
    let start = Instant::now();
    loop {
        // Whole milliseconds: strictly increasing between ticks, and short on the wire.
        let waited = start.elapsed().as_millis() as f64 / 1000.0;
        let note = ProgressNotificationParam::new(token.clone(), waited)
            .with_total(total_s as f64)
            .with_message(format!(
                "waiting for {to} to answer ({}s of at most {total_s}s)",
                waited.round()
            ));
        if let Err(e) = peer.notify_progress(note).await {
            tracing::debug!("cannot send a progress notification: {e}");
            return;
        }
        tokio::time::sleep(every).await;
    }
}
