//! The tools (exactly CONTRACT.md's "MCP server" table), their descriptions for the model, and
//! the `ServerHandler` that serves them.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::transcript;
use mesh_client::{ClientError, parse_message_id};
use mesh_proto::{
    Class, Consume, ErrorCode, Kind, List, MAX_SUMMARY_LEN, MessageStatus, Reply, Scope,
    SendMessage as SendRequest, SessionInfo, SetSummary, WhoAmI, sanitize,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken, ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::limits::Limits;
use super::link::{AskEnd, AskPlan, AskSwitch, Daemon, Retry};
use super::render;

/// Bodies per `check_messages` call; the rest is left for the next call (`remaining`).
const CHECK_BUDGET_BYTES: u32 = 64 * 1024;
/// How long a cancelled ask may take to let go of its socket before the call returns anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

const INSTRUCTIONS: &str = "claude-mesh connects the Claude Code sessions running on this \
machine. Each other session is a peer, addressed by its name (case-insensitive; usually its \
project directory's name), by a prefix of its session id (at least 4 characters), or `*` for \
every live peer. list_peers shows who runs and what each works on. Messages from peers are shown \
to you automatically between steps; check_messages fetches them on demand. A question from a peer \
carries an id such as m42: answer it with reply_to_peer.";

const WHOAMI: &str = "Show this session's identity on the mesh: its session id, its name (how \
peers address you), working directory, git repository and summary. Use it to tell a peer who you \
are, or to check that the mesh knows this session.";

const LIST_PEERS: &str = "List the other live Claude Code sessions on this machine that you can \
message: for each its id, name, working directory, git repository, summary (what it works on), \
state (busy or idle), number of pending messages and last activity. Use it before messaging when \
you do not know a peer's name, or to pick the session that owns a piece of work. `scope` narrows \
the list: machine (default: every session), repo (sessions in your git repository) or directory \
(sessions in your working directory).";

const SEND_MESSAGE: &str = "Queue a message for another session and return at once with its \
message id (e.g. \"m17\"); it does not wait for a reply. Use it for tasks, hand-offs and \
information, and whenever you do not need an answer to continue (if you do, use ask_peer). \
Address `to` by the peer's name (case-insensitive, as list_peers shows it), by a prefix of its \
session id (at least 4 characters), or `*` for every live peer except you (one message id per \
recipient). `kind`: task (default) is shown to the peer at its next step and keeps it from \
ending its turn before it has seen it; note waits for the peer's next prompt (for FYIs that \
should not interrupt). Mail for a known peer that is not running waits until it starts again. \
Any response comes back as a message to you.";

const ASK_PEER: &str = "Ask another session a question and BLOCK until it answers, then return \
the answer. Use it only when you need the answer to continue; otherwise use send_message, which \
does not wait. The peer receives the question with its message id and answers with \
reply_to_peer. Address `to` by name or session id prefix (at least 4 characters), one peer only \
(not `*`). Waits at most `timeout_s` seconds (default 300). Returns JSON with `status`: \
answered (with `answer`), timed_out (the question stays queued; a later answer arrives in your \
messages, see check_messages, and message_status shows it), or peer_gone (the peer's session is \
not running).";

const REPLY_TO_PEER: &str = "Answer a question that another session asked you. Pass the \
question's message id exactly as you were given it, e.g. \"m42\" (\"#42\" and \"42\" work too), \
and your answer as `body`. The asker is usually blocked waiting for it: answer promptly and \
completely. Only questions can be answered; to respond to a task or note, use send_message.";

const CHECK_MESSAGES: &str = "Fetch the messages waiting for this session (tasks, notes, \
questions, and answers to your earlier questions) and mark them read: each is returned once. \
Most messages are also shown to you automatically between steps; call this when told that mail \
is waiting, or to collect the late answer to an ask_peer that timed out. Answer every question \
with reply_to_peer and its id.";

const MESSAGE_STATUS: &str = "Look up one message by id (\"m42\"; \"#42\" and \"42\" work too): \
its kind, sender, recipient, body and status, with timestamps. Status is queued (the recipient \
has not seen it yet), delivered (shown to the recipient) or answered (a question that got its \
answer). Use it to check whether a peer has seen your message, or whether a question that timed \
out was answered since.";

const SET_SUMMARY: &str = "Set a one-line summary of what this session is working on (at most \
1024 bytes; an empty string clears it). Peers see it in list_peers and use it to decide whom to \
message or ask. Update it when your focus changes.";

const READ_HISTORY: &str = "Read another session's recent conversation from its Claude Code \
transcript: its last turns (default 10), user prompts, its replies, and the tool calls and \
results in between. Use it to see what a peer did or decided before you ask it, instead of \
asking. Long tool output is cut unless redact is false. Address the peer as for send_message.";

const SEARCH_HISTORY: &str = "Search another session's transcript for a text (case-insensitive) \
or, written as /pattern/, a regular expression. Returns each matching line with two lines of \
context and its turn index; read a whole turn with get_turn. Long tool output is cut unless \
redact is false.";

const GET_TURN: &str = "Read one turn of another session's transcript by its index (as given by \
read_history or search_history; turns count from 0 at the start of the transcript).";

/// `list_peers` scope.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum ScopeArg {
    Machine,
    Repo,
    Directory,
}

/// `send_message` kind.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum KindArg {
    Task,
    Note,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListPeersArgs {
    /// Which sessions: machine (default, every session), repo (your git repository) or
    /// directory (your working directory)
    pub scope: Option<ScopeArg>,
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

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadHistoryArgs {
    /// The peer: its name or a session id prefix (at least 4 characters)
    pub peer: String,
    /// How many of its last turns (default 10, at most 200)
    pub last_n_turns: Option<u32>,
    /// Cut long lines and long tool output (default true)
    pub redact: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchHistoryArgs {
    /// The peer: its name or a session id prefix (at least 4 characters)
    pub peer: String,
    /// Text to find (case-insensitive), or /pattern/ for a regular expression
    pub query: String,
    /// Cut long lines and long tool output (default true)
    pub redact: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetTurnArgs {
    /// The peer: its name or a session id prefix (at least 4 characters)
    pub peer: String,
    /// The turn's index, from 0
    pub turn_index: u32,
    /// Cut long lines and long tool output (default true)
    pub redact: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SummaryArgs {
    /// One line on what this session is working on (empty clears it)
    pub summary: String,
}

/// A message id given as a string ("m42") or, leniently, as a bare number.
fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a message id such as \"m42\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

/// A tool failure: becomes an `isError` result with this text.
#[derive(Debug)]
struct ToolError(String);

impl From<ClientError> for ToolError {
    fn from(e: ClientError) -> Self {
        let hint = match e.wire_code() {
            Some(ErrorCode::UnknownPeer) => " Call list_peers to see the sessions you can reach.",
            Some(ErrorCode::AmbiguousPeer) => " Address the peer by a longer session id prefix.",
            Some(ErrorCode::NotASession) => {
                " This Claude Code session is not registered with claude-mesh (its SessionStart \
                 hook registers it; `mesh health` shows what is missing)."
            }
            Some(ErrorCode::UnknownMessage) => {
                " Use the id exactly as it was shown to you (e.g. \"m42\")."
            }
            _ => "",
        };
        let text = e.to_string();
        ToolError(format!("{}.{hint}", text.trim_end_matches('.')))
    }
}

fn fail(text: impl Into<String>) -> ToolError {
    ToolError(text.into())
}

/// A result document for the model: the same JSON value, with hidden characters, `<` and `>`
/// in its strings written as escapes ([`sanitize::json_for_model`]).
fn ok(doc: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(sanitize::json_for_model(
        &doc.to_string(),
    ))])
}

/// A failure's text can quote peer-controlled names and paths: neutralised for the model
/// ([`sanitize::model_text`]).
fn result(r: Result<Value, ToolError>) -> CallToolResult {
    match r {
        Ok(doc) => ok(&doc),
        Err(ToolError(text)) => {
            CallToolResult::error(vec![ContentBlock::text(sanitize::model_text(&text))])
        }
    }
}

fn message_id(text: &str) -> Result<u64, ToolError> {
    parse_message_id(text).map_err(|e| fail(e.to_string()))
}

fn required(name: &str, value: &str) -> Result<(), ToolError> {
    if value.trim().is_empty() {
        return Err(fail(format!("`{name}` must not be empty")));
    }
    Ok(())
}

/// The MCP server.
#[derive(Debug, Clone)]
pub struct MeshServer {
    daemon: Arc<Daemon>,
    limits: Limits,
    /// Cancelled when the client closes stdin: waiting asks end at once.
    closed: CancellationToken,
    tool_router: ToolRouter<Self>,
}

impl MeshServer {
    /// The transcript of the session `peer` names: the session and the file.
    async fn transcript(&self, peer: &str) -> Result<(SessionInfo, std::path::PathBuf), ToolError> {
        required("peer", peer)?;
        let sessions = self
            .blocking(|d| {
                d.call(Retry::Idempotent, |c, caller| {
                    c.list(List {
                        caller,
                        scope: Scope::Machine,
                        include_offline: true,
                    })
                })
            })
            .await?
            .sessions;
        let s = transcript::find_peer(&sessions, peer).map_err(fail)?;
        let path = transcript::path_of(s).map_err(fail)?.to_owned();
        Ok((s.clone(), path))
    }

    /// Read a transcript off the async runtime.
    async fn read<T: Send + 'static>(
        path: std::path::PathBuf,
        f: impl FnOnce(&std::path::Path) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, ToolError> {
        let shown = sanitize::model_quoted(&path.to_string_lossy(), 512);
        match tokio::task::spawn_blocking(move || f(&path)).await {
            Ok(r) => r.map_err(|e| fail(format!("cannot read the transcript {shown}: {e}"))),
            Err(e) => Err(fail(format!(
                "internal error in the claude-mesh MCP server: {e}"
            ))),
        }
    }

    pub fn new(daemon: Daemon, limits: Limits, closed: CancellationToken) -> Self {
        Self {
            daemon: Arc::new(daemon),
            limits,
            closed,
            tool_router: Self::tool_router(),
        }
    }

    /// Run a blocking daemon call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Daemon) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ToolError> {
        let daemon = Arc::clone(&self.daemon);
        match tokio::task::spawn_blocking(move || f(&daemon)).await {
            Ok(r) => r.map_err(ToolError::from),
            Err(e) => Err(fail(format!(
                "internal error in the claude-mesh MCP server: {e}"
            ))),
        }
    }
}

#[tool_router]
impl MeshServer {
    #[tool(description = WHOAMI, annotations(read_only_hint = true))]
    async fn whoami(&self) -> CallToolResult {
        let me = self
            .blocking(|d| d.call(Retry::Idempotent, |c, caller| c.whoami(WhoAmI { caller })))
            .await;
        result(me.map(|me| render::whoami(me.session.as_ref())))
    }

    #[tool(description = LIST_PEERS, annotations(read_only_hint = true))]
    async fn list_peers(&self, Parameters(args): Parameters<ListPeersArgs>) -> CallToolResult {
        let scope = match args.scope.unwrap_or(ScopeArg::Machine) {
            ScopeArg::Machine => Scope::Machine,
            ScopeArg::Repo => Scope::Repo,
            ScopeArg::Directory => Scope::Directory,
        };
        let found = self
            .blocking(move |d| {
                d.call(Retry::Idempotent, |c, caller| {
                    let me = c.whoami(WhoAmI {
                        caller: caller.clone(),
                    })?;
                    let peers = c.list(List {
                        caller,
                        scope,
                        include_offline: false,
                    })?;
                    Ok((me, peers))
                })
            })
            .await;
        result(found.map(|(me, peers)| render::peers(scope, me.session.as_ref(), &peers.sessions)))
    }

    #[tool(description = SEND_MESSAGE)]
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
                    d.call(Retry::Once, |c, caller| {
                        c.send(SendRequest {
                            caller,
                            to: to.clone(),
                            kind,
                            body: body.clone(),
                        })
                    })
                })
                .await?;
            Ok(render::sent(kind, &sent.messages))
        };
        result(r.await)
    }

    #[tool(description = ASK_PEER)]
    async fn ask_peer(
        &self,
        Parameters(args): Parameters<AskArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        result(self.ask(args, ctx).await)
    }

    #[tool(description = REPLY_TO_PEER)]
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

    #[tool(description = CHECK_MESSAGES)]
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

    #[tool(description = MESSAGE_STATUS, annotations(read_only_hint = true))]
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

    #[tool(description = READ_HISTORY, annotations(read_only_hint = true))]
    async fn read_history(&self, Parameters(args): Parameters<ReadHistoryArgs>) -> CallToolResult {
        let r = async {
            let n = args.last_n_turns.unwrap_or(10).clamp(1, 200) as usize;
            let raw = !args.redact.unwrap_or(true);
            let (s, path) = self.transcript(&args.peer).await?;
            let (turns, total) =
                Self::read(path, move |p| transcript::last_turns(p, n, raw)).await?;
            Ok(serde_json::json!({
                "peer": s.name,
                "session_id": s.session_id,
                "total_turns": total,
                "redacted": !raw,
                "turns": turns,
            }))
        };
        result(r.await)
    }

    #[tool(description = SEARCH_HISTORY, annotations(read_only_hint = true))]
    async fn search_history(
        &self,
        Parameters(args): Parameters<SearchHistoryArgs>,
    ) -> CallToolResult {
        let r = async {
            required("query", &args.query)?;
            let q = args.query.trim();
            let query = match q.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
                Some(pattern) if !pattern.is_empty() => {
                    transcript::Query::regex(pattern).map_err(fail)?
                }
                _ => transcript::Query::substring(q),
            };
            let raw = !args.redact.unwrap_or(true);
            let (s, path) = self.transcript(&args.peer).await?;
            let (matches, more) =
                Self::read(path, move |p| transcript::search(p, &query, 2, 50, raw)).await?;
            Ok(serde_json::json!({
                "peer": s.name,
                "session_id": s.session_id,
                "redacted": !raw,
                "matches": matches,
                "more_matches": more,
            }))
        };
        result(r.await)
    }

    #[tool(description = GET_TURN, annotations(read_only_hint = true))]
    async fn get_turn(&self, Parameters(args): Parameters<GetTurnArgs>) -> CallToolResult {
        let r = async {
            let index = args.turn_index as usize;
            let raw = !args.redact.unwrap_or(true);
            let (s, path) = self.transcript(&args.peer).await?;
            let found = Self::read(path, move |p| transcript::turn(p, index, raw)).await?;
            let Some(turn) = found else {
                return Err(fail(format!(
                    "{} has no turn {index}; read_history shows how many turns there are",
                    sanitize::model_quoted(&s.name, 64)
                )));
            };
            Ok(serde_json::json!({
                "peer": s.name,
                "session_id": s.session_id,
                "redacted": !raw,
                "turn": turn,
            }))
        };
        result(r.await)
    }

    #[tool(description = SET_SUMMARY, annotations(idempotent_hint = true))]
    async fn set_summary(&self, Parameters(args): Parameters<SummaryArgs>) -> CallToolResult {
        let r = async {
            let summary = args.summary.trim().to_owned();
            if summary.len() > MAX_SUMMARY_LEN {
                return Err(fail(format!(
                    "the summary is {} bytes; the limit is {MAX_SUMMARY_LEN}: shorten it to one line",
                    summary.len()
                )));
            }
            self.blocking(move |d| {
                d.call(Retry::Idempotent, |c, caller| {
                    c.set_summary(SetSummary {
                        caller,
                        summary: summary.clone(),
                    })
                })
            })
            .await?;
            Ok(serde_json::json!({"ok": true}))
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
            .unwrap_or(super::limits::DEFAULT_ASK_TIMEOUT_S);
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
            tokio::task::spawn_blocking(move || super::link::ask(&daemon, plan, &waiter));
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

#[tool_handler(router = self.tool_router)]
impl ServerHandler for MeshServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "claude-mesh",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    /// Every `initialize` version this server implements; the 2026-07-28 lifecycle (opened
    /// by `server/discover`) is not one of them, see `transport`.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    /// The tools, with `ask_peer`'s description stating the maximum wait in force.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        for t in &mut tools {
            if t.name == "ask_peer"
                && let Some(d) = &t.description
            {
                t.description = Some(Cow::Owned(format!(
                    "{d} The maximum wait is {} s (longer timeouts are capped so that the call ends \
                     inside Claude Code's MCP tool timeout).",
                    self.limits.max_ask_s
                )));
            }
        }
        Ok(ListToolsResult::with_all_items(tools))
    }
}
