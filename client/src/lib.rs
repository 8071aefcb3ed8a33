//! The claude-mesh client library: a blocking client of the daemon, for short-lived
//! processes (the `mesh` app's CLI, hooks, MCP server and status line live in the `mesh`
//! crate, which builds on this one).
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
//! (identity from the environment), [`ids`] (message ids as users type them), and two small
//! modules below all of them and the app: [`unit`](mod@unit) (where the daemon's service unit lives)
//! and [`version`] (semver comparison).

pub mod autostart;
pub mod caller;
pub mod connection;
pub mod error;
pub mod ids;
pub mod ready;
pub mod unit;
pub mod version;

pub use autostart::connect_or_start;
pub use caller::CallerFromEnv;
pub use connection::{ConnectOptions, Connection};
pub use error::ClientError;
pub use ids::{format_message_id, parse_message_id};
pub use unit::{ServiceManager, ServiceUnit};

/// A fresh token for [`mesh_proto::Consume::handout`] / [`mesh_proto::Poll::handout`]: random,
/// never 0. Send it again with the same request after a lost answer to get the same messages.
pub fn handout_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS's randomness once per process; the counter and the
    // clock make every call in the process differ.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish().max(1)
}
