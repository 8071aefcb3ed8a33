//! The daemon and the `mesh` commands end to end: real `mesh daemon` processes on temp HOMEs
//! (mesh-testkit's `Mesh`), driven through the client library, the `mesh` binary, its hooks, its
//! MCP server and `mesh run`. One test binary (`cargo test -p mesh --test mesh <module>::`); each
//! module was a test binary of its own before.

mod cli;
mod crash;
mod federation;
mod federation_cli;
mod federation_hostile;
mod hooks;
mod hostile;
mod lifecycle;
mod liveness;
mod load;
mod mcp;
mod messaging;
mod nats_kit;
mod run;
mod transcripts;
