//! The claude-mesh wire protocol: message types, the version handshake and the frame codec.
//!
//! This crate is the wire and nothing else: no sockets, no SQL, no policy. Every connection
//! starts with a [`ClientHello`] / [`ServerHello`] exchange (see [`handshake`]); after it, the
//! client sends [`Request`] frames and the daemon answers each with exactly one [`Response`]
//! frame, in order. A frame is a 4-byte big-endian length followed by a postcard payload of at
//! most [`MAX_FRAME_LEN`] bytes; both sides check the length before allocating anything.
//!
//! Compatibility rules (postcard is not self-describing): enums are append-only, existing
//! structs never gain fields (new data goes in new variants), and a peer with another
//! [`PROTOCOL_VERSION`] is refused at the handshake with a typed error.

pub mod codec;
pub mod error;
pub mod handshake;
pub mod sanitize;
pub mod types;

pub use codec::{FrameCodec, FrameError, LenientCodec, read_frame, write_frame};
pub use error::{ErrorCode, WireError};
pub use handshake::{ClientHello, MAGIC, ServerHello};
pub use types::*;

/// Version of the request/response schema. Bump on any change to [`Request`] or [`Response`]
/// that an older peer could not decode.
/// 2: `Poll`. 3: `Supervise`. 4: `PollBy` and `ConsumeBy` (a hand-out bounded by the reader's
/// deadline), the `DeadlineExceeded` error, `Sent` without bodies, `Status::Withdrawn`, and
/// `RegisterNamed`. 5: the mesh across machines: `ListScoped`, `FederationStatus`, `TrustKey`.
/// 6: `GiveBack`, a hand-out that never reached its reader back to the queue.
pub const PROTOCOL_VERSION: u32 = 6;

/// Largest frame payload either side accepts or sends, in bytes.
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;

/// Largest message body the daemon accepts, in bytes (bodies are UTF-8 text).
pub const MAX_BODY_LEN: usize = 256 * 1024;

/// Largest session summary the daemon accepts, in bytes.
pub const MAX_SUMMARY_LEN: usize = 1024;

/// Largest path a client may register (a session's cwd, project directory or transcript), in
/// bytes: Linux's `PATH_MAX`. With the other bounded fields, a session's record stays small
/// enough that every answer listing sessions fits in a frame.
pub const MAX_PATH_LEN: usize = 4096;

/// Largest session id a client may register, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 256;
