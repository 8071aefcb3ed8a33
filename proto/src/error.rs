//! The typed error carried on the wire: a stable numeric code plus a human-readable message.

use serde::{Deserialize, Serialize};

/// What went wrong, as a stable number. Codes are never reused; an unknown code from a newer
/// peer decodes as [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ErrorCode {
    /// A bug or an unexpected failure inside the daemon.
    Internal,
    /// The frame could not be decoded as a request.
    Malformed,
    /// The peers speak different protocol versions.
    Incompatible,
    /// A frame was larger than [`crate::MAX_FRAME_LEN`].
    FrameTooLarge,
    /// The connecting process belongs to another user.
    PermissionDenied,
    /// No session answers to that name or id.
    UnknownPeer,
    /// More than one session answers to that name or id prefix.
    AmbiguousPeer,
    /// No message has that id.
    UnknownMessage,
    /// The command needs to run inside a Claude Code session.
    NotASession,
    /// The message replied to is not a question.
    NotAQuestion,
    /// The question was already answered.
    AlreadyAnswered,
    /// An argument is out of range or malformed.
    InvalidArgument,
    /// The daemon has too many connections.
    Busy,
    /// The daemon is shutting down.
    ShuttingDown,
    /// The database failed (I/O error, corruption).
    Storage,
    /// The disk holding the database is full.
    DiskFull,
    /// The handshake did not arrive in time or was not the first frame.
    Handshake,
    /// The question was asked of another session.
    NotYours,
    /// The request's deadline ([`crate::PollBy`], [`crate::ConsumeBy`]) passed before the daemon
    /// could answer it: nothing was taken, and the mail stays queued.
    DeadlineExceeded,
    /// A code this build does not know (sent by a newer peer).
    Other(u16),
}

impl ErrorCode {
    /// The stable wire number of this code.
    pub fn code(self) -> u16 {
        match self {
            Self::Internal => 1,
            Self::Malformed => 2,
            Self::Incompatible => 3,
            Self::FrameTooLarge => 4,
            Self::PermissionDenied => 5,
            Self::UnknownPeer => 6,
            Self::AmbiguousPeer => 7,
            Self::UnknownMessage => 8,
            Self::NotASession => 9,
            Self::NotAQuestion => 10,
            Self::AlreadyAnswered => 11,
            Self::InvalidArgument => 12,
            Self::Busy => 13,
            Self::ShuttingDown => 14,
            Self::Storage => 15,
            Self::DiskFull => 16,
            Self::Handshake => 17,
            Self::NotYours => 18,
            Self::DeadlineExceeded => 19,
            Self::Other(n) => n,
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> Self {
        match n {
            1 => Self::Internal,
            2 => Self::Malformed,
            3 => Self::Incompatible,
            4 => Self::FrameTooLarge,
            5 => Self::PermissionDenied,
            6 => Self::UnknownPeer,
            7 => Self::AmbiguousPeer,
            8 => Self::UnknownMessage,
            9 => Self::NotASession,
            10 => Self::NotAQuestion,
            11 => Self::AlreadyAnswered,
            12 => Self::InvalidArgument,
            13 => Self::Busy,
            14 => Self::ShuttingDown,
            15 => Self::Storage,
            16 => Self::DiskFull,
            17 => Self::Handshake,
            18 => Self::NotYours,
            19 => Self::DeadlineExceeded,
            n => Self::Other(n),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c.code()
    }
}

/// An error as sent on the wire: never a bare string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[error("{message} (error {})", code.code())]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_u16() {
        for n in 0..64u16 {
            assert_eq!(ErrorCode::from(n).code(), n);
        }
    }
}
