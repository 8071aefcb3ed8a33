//! The claude-mesh daemon, as a library: `mesh daemon` parses arguments, acquires a listener
//! ([`activation`]) and calls [`run`]. Tests and benchmarks call [`run`] with a pre-bound
//! listener.

pub mod activation;
pub mod conn;
pub mod handlers;
pub mod liveness;
pub mod monitor;
pub mod naming;
pub mod notify;
pub mod paths;
pub mod procinfo;
pub mod server;
pub mod store;
pub mod supervise;

pub use server::{Config, DaemonError, run};
