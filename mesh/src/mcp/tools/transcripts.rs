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
asking. Long tool output is cut unless redact is false; one result carries at most 128 KiB of \
text, the newest first (omitted_older_turns counts what was left out). Address the peer as for \
send_message.";

    #[tool(description = Self::READ_HISTORY, annotations(read_only_hint = true))]
    async fn read_history(&self, Parameters(args): Parameters<ReadHistoryArgs>) -> CallToolResult {
        let r = async {
            let n = args.last_n_turns.unwrap_or(10).clamp(1, 200) as usize;
            let raw = !args.redact.unwrap_or(true);
            let (s, path) = self.transcript(&args.peer).await?;
            let unread = transcript::unread_bytes(&path);
            let (mut turns, total) =
                Self::read(path, move |p| transcript::last_turns(p, n, raw)).await?;
            let omitted = fit_turns(&mut turns, MAX_RESULT_BYTES);
            Ok(serde_json::json!({
                "peer": s.name,
                "session_id": s.session_id,
                "total_turns": total,
                "redacted": !raw,
                "turns": turns,
                "omitted_older_turns": omitted,
                "unread_bytes": unread,
                "note": transcript::unread_note(unread),
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
            let unread = transcript::unread_bytes(&path);
            let (mut matches, mut more) =
                Self::read(path, move |p| transcript::search(p, &query, 2, 50, raw)).await?;
            more |= fit_matches(&mut matches, MAX_RESULT_BYTES);
            Ok(serde_json::json!({
                "peer": s.name,
                "session_id": s.session_id,
                "redacted": !raw,
                "matches": matches,
                "more_matches": more,
                "unread_bytes": unread,
                "note": transcript::unread_note(unread),
            }))
        };
        result(r.await)
    }

    const GET_TURN: &'static str = "\
Read one turn of another session's transcript by its index (as given by \
read_history or search_history; turns count from 0 at the start of the transcript). At most \
128 KiB of its text; a longer turn is cut, saying how much was left out.";

    #[tool(description = Self::GET_TURN, annotations(read_only_hint = true))]
    async fn get_turn(&self, Parameters(args): Parameters<GetTurnArgs>) -> CallToolResult {
        let r = async {
            let index = args.turn_index as usize;
            let raw = !args.redact.unwrap_or(true);
            let (s, path) = self.transcript(&args.peer).await?;
            let unread = transcript::unread_bytes(&path);
            let found = Self::read(path, move |p| transcript::turn(p, index, raw)).await?;
            let Some(mut turn) = found else {
                return Err(fail(format!(
                    "{} has no turn {index}; read_history shows how many turns there are",
                    sanitize::model_quoted(&s.name, 64)
                )));
            };
            cut_text(&mut turn.text, MAX_RESULT_BYTES);
            Ok(serde_json::json!({
                "peer": s.name,
                "session_id": s.session_id,
                "redacted": !raw,
                "turn": turn,
                "unread_bytes": unread,
            }))
        };
        result(r.await)
    }
}

/// The most bytes of transcript text one tool result carries (before JSON escaping, which can
/// make `<` and `>` six bytes each): a peer's transcript can hold turns of hundreds of MB, and
/// the model's context, like the client's line buffer, is far smaller. `redact: false` lifts the
/// cutting of long tool output, not this.
const MAX_RESULT_BYTES: usize = 128 * 1024;

/// Cuts `text` to at most `max` bytes (at a character boundary) and says so at its end: how
/// many bytes were left out.
fn cut_text(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let left = text.len() - end;
    text.truncate(end);
    text.push_str(&format!(
        "\n… [cut by claude-mesh: {left} more bytes of this turn; a tool result carries at most \
         {max} bytes; search_history finds a line in it]"
    ));
    true
}

/// Keeps the newest of `turns` (the last ones) within `budget` bytes of text: the turn that
/// crosses it is cut, older ones are dropped. Returns how many were dropped.
fn fit_turns(turns: &mut Vec<transcript::Turn>, budget: usize) -> usize {
    let mut left = budget;
    let mut keep_from = 0;
    for (i, t) in turns.iter_mut().enumerate().rev() {
        if left == 0 {
            keep_from = i + 1;
            break;
        }
        let len = t.text.len();
        cut_text(&mut t.text, left);
        left = left.saturating_sub(len);
    }
    turns.drain(..keep_from);
    keep_from
}

/// Keeps the first of `matches` within `budget` bytes of excerpt, cutting the lines of the one
/// that crosses it. True if any was dropped or cut.
fn fit_matches(matches: &mut Vec<transcript::Match>, budget: usize) -> bool {
    let mut left = budget;
    for (i, m) in matches.iter_mut().enumerate() {
        if left == 0 {
            matches.truncate(i);
            return true;
        }
        let mut cut = false;
        for line in &mut m.excerpt {
            let len = line.len();
            cut |= cut_text(line, left);
            left = left.saturating_sub(len);
        }
        if cut {
            matches.truncate(i + 1);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(index: usize, text: &str) -> transcript::Turn {
        transcript::Turn {
            index,
            role: "user".into(),
            timestamp: None,
            text: text.into(),
        }
    }

    #[test]
    fn results_keep_the_newest_text_within_the_budget() {
        let mut turns = vec![turn(0, "old"), turn(1, &"é".repeat(40)), turn(2, "newest")];
        assert_eq!(fit_turns(&mut turns, 50), 1);
        assert_eq!(turns[1].text, "newest");
        assert!(
            turns[0].text.starts_with(&"é".repeat(22)),
            "{}",
            turns[0].text
        );
        assert!(turns[0].text.contains("36 more bytes"), "{}", turns[0].text);
        let mut small = vec![turn(0, "a"), turn(1, "b")];
        assert_eq!(fit_turns(&mut small, 50), 0);
        assert_eq!(small.len(), 2);
        let mut one = "x".repeat(10);
        assert!(cut_text(&mut one, 4));
        assert!(one.starts_with("xxxx\n… [cut by claude-mesh: 6 more bytes"));
    }

    #[test]
    fn matches_stop_at_the_budget() {
        let m = |turn| transcript::Match {
            turn,
            role: "user".into(),
            line: 0,
            excerpt: vec!["x".repeat(30)],
        };
        let mut all = vec![m(0), m(1), m(2)];
        assert!(fit_matches(&mut all, 40));
        assert_eq!(all.len(), 2);
        assert!(all[1].excerpt[0].contains("20 more bytes"));
        let mut few = vec![m(0)];
        assert!(!fit_matches(&mut few, 40));
    }
}
