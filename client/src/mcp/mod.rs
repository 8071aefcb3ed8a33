//! `mesh mcp`: the MCP server over stdio. STUB.

use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    anyhow::bail!("the MCP server is not implemented yet")
}
