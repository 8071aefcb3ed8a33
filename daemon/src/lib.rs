//! The claude-mesh daemon, as a library: `mesh daemon` parses arguments, acquires a listener
//! ([`activation`]) and calls [`run`]. Tests and benchmarks call [`run`] with a pre-bound
//! listener.

pub mod activation;
pub mod conn;
pub mod federation;
pub mod handlers;
pub mod liveness;
pub mod logfile;
pub mod monitor;
pub mod naming;
pub mod notify;
pub mod paths;
pub mod procinfo;
pub mod server;
pub mod store;
pub mod supervise;

pub use server::{Config, DaemonError, SocketWatch, run};

/// The runtime [`run`] is meant to be driven by (`block_on`): one thread for all connections.
///
/// A per-user daemon serves a handful of local clients, and every request is short: its own
/// reads, or a hand-off to the store thread, which does all the waiting on the disk. One thread
/// wakes once per hook: a multi-thread runtime received each connection on the `block_on`
/// thread, woke a worker to serve it, and woke the other worker to look for work. On this
/// kind of VM every such wake-up costs tens of µs, and the hook measured 0.1–0.2 ms
/// slower with two workers (BENCHMARKS.md, "The hook target").
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("mesh-daemon")
        .build()
}
