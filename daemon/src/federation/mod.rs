//! The mesh across machines (issue 16): daemons exchange end-to-end encrypted mail over NATS
//! JetStream.

pub mod transport;
