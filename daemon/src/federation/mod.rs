//! The mesh across machines (issue 16): device keys, sealed envelopes, `federation.toml` and
//! the NATS transport.

pub mod config;
pub mod envelope;
pub mod keys;
pub mod transport;
