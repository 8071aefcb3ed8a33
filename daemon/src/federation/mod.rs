//! The mesh across machines (issue 16): device keys, sealed envelopes and `federation.toml`.

pub mod config;
pub mod envelope;
pub mod keys;
