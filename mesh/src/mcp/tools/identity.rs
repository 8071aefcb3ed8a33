//! Who is on the mesh: `whoami`, `list_peers`, `set_summary`.

use mesh_proto::{List, ListScoped, MAX_SUMMARY_LEN, Reach, Scope, SetSummary, WhoAmI};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{MeshServer, fail, result};
use crate::link::Retry;
use crate::mcp::render;

/// `list_peers` scope.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum ScopeArg {
    Machine,
    Repo,
    Directory,
    Mesh,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListPeersArgs {
    /// Which sessions: machine (default, every session on this machine), repo (your git
    /// repository), directory (your working directory) or mesh (every machine of the mesh too)
    pub scope: Option<ScopeArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SummaryArgs {
    /// One line on what this session is working on (empty clears it)
    pub summary: String,
}

#[tool_router(router = identity_router, vis = "pub(super)")]
impl MeshServer {
    const WHOAMI: &'static str = "\
Show this session's identity on the mesh: its session id, its name (how \
peers address you), working directory, git repository and summary. Use it to tell a peer who you \
are, or to check that the mesh knows this session.";

    #[tool(description = Self::WHOAMI, annotations(read_only_hint = true))]
    async fn whoami(&self) -> CallToolResult {
        let me = self
            .blocking(|d| d.call(Retry::Idempotent, |c, caller| c.whoami(WhoAmI { caller })))
            .await;
        result(me.map(|me| render::whoami(me.session.as_ref())))
    }

    const LIST_PEERS: &'static str = "\
List the other live Claude Code sessions on this machine that you can \
message: for each its id, name, working directory, git repository, summary (what it works on), \
state (busy or idle), number of pending messages and last activity. Use it before messaging when \
you do not know a peer's name, or to pick the session that owns a piece of work. `scope` narrows \
the list: machine (default: every session), repo (sessions in your git repository) or directory \
(sessions in your working directory) or mesh (also the sessions of the other machines this one \
shares a mesh with; address those as name@host).";

    #[tool(description = Self::LIST_PEERS, annotations(read_only_hint = true))]
    async fn list_peers(&self, Parameters(args): Parameters<ListPeersArgs>) -> CallToolResult {
        let arg = args.scope.unwrap_or(ScopeArg::Machine);
        let (scope, reach) = match arg {
            ScopeArg::Machine => (Scope::Machine, Reach::Machine),
            ScopeArg::Repo => (Scope::Repo, Reach::Machine),
            ScopeArg::Directory => (Scope::Directory, Reach::Machine),
            ScopeArg::Mesh => (Scope::Machine, Reach::Mesh),
        };
        let name = match arg {
            ScopeArg::Mesh => "mesh",
            _ => mesh::json::scope_str(scope),
        };
        let found = self
            .blocking(move |d| {
                d.call(Retry::Idempotent, |c, caller| {
                    let me = c.whoami(WhoAmI {
                        caller: caller.clone(),
                    })?;
                    let peers = c.call_typed(ListScoped {
                        list: List {
                            caller,
                            scope,
                            include_offline: false,
                        },
                        reach,
                    })?;
                    Ok((me, peers))
                })
            })
            .await;
        result(found.map(|(me, peers)| render::peers(name, me.session.as_ref(), &peers)))
    }

    const SET_SUMMARY: &'static str = "\
Set a one-line summary of what this session is working on (at most \
1024 bytes; an empty string clears it). Peers see it in list_peers and use it to decide whom to \
message or ask. Update it when your focus changes.";

    #[tool(description = Self::SET_SUMMARY, annotations(idempotent_hint = true))]
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
