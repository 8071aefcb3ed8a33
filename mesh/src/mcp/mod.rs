//! `mesh mcp`: the MCP server over stdio, registered with Claude Code as `claude-mesh`. Its
//! tools (docs/interface.md, "MCP tools") are in [`tools`], one file per group, each tool next
//! to its description and arguments; the list the server serves is the sum of the groups'
//! routers.
//!
//! - Identity: Claude Code starts this server directly, so the parent process IS the Claude
//!   Code process. Every request's caller is `{claude_pid: getppid(), session_id:
//!   CLAUDE_CODE_SESSION_ID}`; the daemon matches the process (PID and start time) first, so
//!   the identity survives `/clear`, which makes `CLAUDE_CODE_SESSION_ID` stale. (A parent that
//!   is a wrapper is no problem: the daemon then walks the connecting process's ancestors.)
//! - Threads: the daemon client is blocking; tools run it on tokio's blocking pool
//!   ([`crate::link`]). rmcp drives stdio on a small multi-threaded runtime.
//! - Protocol: `initialize` lifecycle, versions 2024-11-05 to 2025-11-25; `server/discover`
//!   gets -32601 ([`transport`]). Bad arguments and daemon errors are tool results with
//!   `isError: true`, never a dead server. Logs go to stderr only (see `cmd::init_tracing`).

mod limits;
mod render;
mod tools;
mod transport;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use mesh_client::caller::SESSION_ID_ENV;
use mesh_client::caller::caller_from_values;
use mesh_daemon::paths::StateDir;
use mesh_proto::Caller;
use rmcp::ServiceExt;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio_util::sync::CancellationToken;

use self::limits::Limits;
use self::tools::MeshServer;
use self::transport::NoDiscover;
use crate::link::Daemon;

/// How long exiting waits for blocking daemon calls still in flight (an ask blocked on its
/// socket is simply abandoned: its socket closes with the process, and the daemon keeps the
/// question).
const EXIT_GRACE: Duration = Duration::from_millis(200);

pub fn run() -> anyhow::Result<ExitCode> {
    let state = StateDir::from_env().context("cannot locate the mesh state directory")?;
    let closed = CancellationToken::new();
    let server = MeshServer::new(
        Daemon::new(state, caller()),
        Limits::from_env(),
        closed.clone(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mesh-mcp")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = rt.block_on(serve(server, closed));
    rt.shutdown_timeout(EXIT_GRACE);
    served.map(|()| ExitCode::SUCCESS)
}

async fn serve(server: MeshServer, closed: CancellationToken) -> anyhow::Result<()> {
    let (stdin, stdout) = rmcp::transport::stdio();
    let transport = NoDiscover::new(AsyncRwTransport::new_server(stdin, stdout), closed);
    let running = server
        .serve(transport)
        .await
        .context("the MCP client did not complete the initialize handshake")?;
    running
        .waiting()
        .await
        .context("the MCP session ended abnormally")?;
    Ok(())
}

/// This session as the daemon should know it: the parent process (Claude Code), and the
/// session id Claude Code gave us at spawn (a fallback only: stale after `/clear`).
fn caller() -> Caller {
    let ppid = rustix::process::Pid::as_raw(rustix::process::getppid());
    let mut caller = caller_from_values(None, std::env::var_os(SESSION_ID_ENV).as_deref());
    caller.claude_pid = u32::try_from(ppid).ok().filter(|&p| p > 1);
    caller
}
