//! The claude-mesh client library: everything a short-lived client of the daemon needs (the
//! `mesh` CLI, the Claude Code hooks, the MCP server, the status line).
//!
//! Blocking std I/O only, never an async runtime: a hook must cost about an exec of a small
//! binary. Typical use:
//!
//! ```no_run
//! use mesh_client::{CallerFromEnv, ConnectOptions, connect_or_start};
//! use mesh_daemon::paths::StateDir;
//! use mesh_proto::{Caller, WhoAmI};
//!
//! let state = StateDir::from_env()?;
//! let mut conn = connect_or_start(&state, &ConnectOptions::default())?;
//! let me = conn.whoami(WhoAmI { caller: Caller::from_env() })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: [`connection`] (connect, handshake, typed calls), [`autostart`] (connect or start
//! the daemon), [`ready`] (the readiness pipe of a spawned daemon), [`error`], [`caller`]
//! (identity from the environment), [`ids`] (message ids as users type them), [`display`]
//! (human formatting) and [`json`] (the CLI's `--json` documents).

pub mod autostart;
pub mod caller;
pub mod claude_config;
pub mod connection;
pub mod display;
pub mod error;
pub mod health;
pub mod ids;
pub mod json;
pub mod ready;
pub mod service;

pub use autostart::{ServiceManager, ServiceUnit, connect_or_start};
pub use caller::CallerFromEnv;
pub use connection::{ConnectOptions, Connection};
pub use error::ClientError;
pub use ids::{format_message_id, parse_message_id};
