//! Reading a peer's Claude Code transcript: `read_history`, `search_history`, `get_turn`.

use mesh::transcript;
use mesh_proto::{List, ListScoped, Reach, Scope, SessionInfo, sanitize};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{MeshServer, ToolError, fail, required, result};
use crate::link::Retry;

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

impl MeshServer {
    /// The transcript of the session `peer` names: the session and the file.
    async fn transcript(&self, peer: &str) -> Result<(SessionInfo, std::path::PathBuf), ToolError> {
        required("peer", peer)?;
        let found = self
            .blocking(|d| {
                d.call(Retry::Idempotent, |c, caller| {
                    c.call_typed(ListScoped {
                        list: List {
                            caller,
                            scope: Scope::Machine,
                            include_offline: true,
                        },
                        reach: Reach::Mesh,
                    })
                })
            })
            .await?;
        // A session of another machine is refused: transcripts stay on their machine.
        let s =
            transcript::find_local_peer(&found.local, &found.remote, peer, found.host.as_deref())
                .map_err(|e| fail(e.to_string()))?;
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
}

#[tool_router(router = transcripts_router, vis = "pub(super)")]
impl MeshServer {
    const READ_HISTORY: &'static str = "\
Read another session's recent conversation from its Claude Code \
transcript: its last turns (default 10), user prompts, its replies, and the tool calls and \
results in between. Use it to see what a peer did or decided before you ask it, instead of \
asking. Long tool output is cut unless redact is false. Address the peer as for send_message.";

    #[tool(description = Self::READ_HISTORY, annotations(read_only_hint = true))]
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

    const SEARCH_HISTORY: &'static str = "\
Search another session's transcript for a text (case-insensitive) \
or, written as /pattern/, a regular expression. The whole text of every turn is searched, \
long tool output included. Returns each matching line with two lines of context and its turn \
index; read a whole turn with get_turn. Long lines in the excerpts are cut unless redact is \
false.";

    #[tool(description = Self::SEARCH_HISTORY, annotations(read_only_hint = true))]
    async fn search_history(
        &self,
        Parameters(args): Parameters<SearchHistoryArgs>,
    ) -> CallToolResult {
        let r = async {
            required("query", &args.query)?;
            let query = transcript::Query::parse(&args.query, false).map_err(fail)?;
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

    const GET_TURN: &'static str = "\
Read one turn of another session's transcript by its index (as given by \
read_history or search_history; turns count from 0 at the start of the transcript).";

    #[tool(description = Self::GET_TURN, annotations(read_only_hint = true))]
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
}
