//! The tools and the `ServerHandler` that serves them. One file per group of tools, each tool
//! with its description (for the model), its arguments and its handler, in an
//! `#[tool_router(router = …)]` impl block of [`MeshServer`]; [`MeshServer::tools`] adds the
//! groups' routers up:
//!
//! - [`identity`]: who is on the mesh;
//! - [`messaging`]: mail between sessions;
//! - [`transcripts`]: reading a peer's transcript.
//!
//! Adding a tool: a `#[tool]` fn (and its description const) in its group's impl block; a new
//! group: a file here and its router in [`MeshServer::tools`]. What is shared (errors, the
//! result document, the blocking pool) is in this file.

mod identity;
mod messaging;
mod transcripts;

use std::borrow::Cow;
use std::sync::Arc;

use mesh_client::{ClientError, parse_message_id};
use mesh_proto::{ErrorCode, sanitize};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool_handler};
use serde::Deserializer;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::limits::Limits;
use crate::link::Daemon;

const INSTRUCTIONS: &str = "claude-mesh connects the Claude Code sessions running on this \
machine. Each other session is a peer, addressed by its name (case-insensitive; usually its \
project directory's name), by a prefix of its session id (at least 4 characters), or `*` for \
every live peer. list_peers shows who runs and what each works on; when this machine is part of a \
mesh across machines, list_peers with scope mesh also shows the sessions of the other machines, \
addressed as name@host. Messages from peers are shown \
to you automatically between steps; check_messages fetches them on demand. A question from a peer \
carries an id such as m42: answer it with reply_to_peer.";

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

/// The most characters of a failure's text shown to the model.
const MAX_ERROR_CHARS: usize = 4000;

/// A failure's text can quote peer-controlled names and paths: neutralised for the model and
/// kept on one line ([`sanitize::model_inline`]), so that nothing in it can start a line that
/// looks like one of the hook frames.
fn result(r: Result<Value, ToolError>) -> CallToolResult {
    match r {
        Ok(doc) => ok(&doc),
        Err(ToolError(text)) => CallToolResult::error(vec![ContentBlock::text(
            sanitize::model_inline(&text, MAX_ERROR_CHARS, true),
        )]),
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
    pub fn new(daemon: Daemon, limits: Limits, closed: CancellationToken) -> Self {
        Self {
            daemon: Arc::new(daemon),
            limits,
            closed,
            tool_router: Self::tools(),
        }
    }

    /// Every tool: the groups' routers added up.
    fn tools() -> ToolRouter<Self> {
        Self::identity_router() + Self::messaging_router() + Self::transcripts_router()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(router: &ToolRouter<MeshServer>) -> Vec<String> {
        router
            .list_all()
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    #[test]
    fn the_server_lists_exactly_the_contract_tools() {
        let mut all = names(&MeshServer::tools());
        all.sort();
        assert_eq!(
            all,
            [
                "ask_peer",
                "check_messages",
                "get_turn",
                "list_peers",
                "message_status",
                "read_history",
                "reply_to_peer",
                "search_history",
                "send_message",
                "set_summary",
                "whoami",
            ]
        );
        // Adding routers up replaces a tool of the same name: no group may repeat another's.
        let groups = [
            MeshServer::identity_router(),
            MeshServer::messaging_router(),
            MeshServer::transcripts_router(),
        ];
        let sum: usize = groups.iter().map(|g| names(g).len()).sum();
        assert_eq!(sum, all.len());
        for tool in MeshServer::tools().list_all() {
            let description = tool.description.as_deref().unwrap_or_default();
            assert!(!description.is_empty(), "{} has no description", tool.name);
        }
    }
}
