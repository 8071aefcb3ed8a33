//! The first exchange on every connection. These two structs are frozen: every past and future
//! version must be able to decode them, so that a version mismatch is reported, not garbled.

use serde::{Deserialize, Serialize};

use crate::WireError;

/// "MESH" in ASCII; a peer that does not start with it is not speaking this protocol.
pub const MAGIC: u32 = 0x4D45_5348;

/// Sent by the client as the first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    pub magic: u32,
    pub protocol: u32,
    /// The client program's version, e.g. `0.1.0`.
    pub program_version: String,
}

/// The daemon's answer to [`ClientHello`]. `error` is set when the connection is refused
/// (incompatible protocol, wrong user, too many connections); the daemon then closes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    pub magic: u32,
    pub protocol: u32,
    pub program_version: String,
    pub pid: u32,
    pub error: Option<WireError>,
}

impl ClientHello {
    /// The hello this build sends.
    pub fn current(program_version: &str) -> Self {
        Self {
            magic: MAGIC,
            protocol: crate::PROTOCOL_VERSION,
            program_version: program_version.to_owned(),
        }
    }
}
