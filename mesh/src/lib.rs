//! The `mesh` app's library half: the parts of the app that tests and benchmarks reach into,
//! built on the client library ([`mesh_client`]). The binary (`src/main.rs`) adds the command
//! line, the hooks and the MCP server.
//!
//! Modules: [`claude_config`] (Claude Code's settings, edited in place), [`service`] (the
//! systemd and launchd units), [`health`] (`mesh health`'s checks), [`run`] (`mesh run`, the
//! supervisor in a pseudo-terminal), [`transcript`] (reading a peer's Claude Code transcript),
//! [`display`] and [`json`] (the CLI's human and `--json` output), [`hook_event`] (the hook
//! events, for the hooks and for install).

pub mod claude_config;
pub mod display;
pub mod health;
pub mod hook_event;
pub mod json;
pub mod run;
pub mod service;
pub mod transcript;
