//! Typed errors of the net module: framing, handshake, verification and limit violations. Each
//! variant carries what a user needs to act (the size seen and the limit, the versions spoken).

use crate::msg::ErrorCode;

/// Everything that can go wrong turning bytes into messages and back.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A frame header announced more bytes than the limit; the connection must be closed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes (values are limited to the configured maximum, 1 MiB by default)")]
    FrameTooLarge { len: usize, max: usize },
    /// A frame header announced zero bytes.
    #[error("empty frame (length 0)")]
    EmptyFrame,
    /// The payload is too short or lacks the `TRN1` file identifier.
    #[error("not a tern frame ({len} bytes, missing the TRN1 identifier)")]
    NotAFrame { len: usize },
    /// The flatbuffer failed verification.
    #[error("malformed frame: {0}")]
    Malformed(#[from] flatbuffers::InvalidFlatbuffer),
    /// The frame's body is missing or of a type this build does not know (a newer peer?).
    #[error("frame body type {0} is unknown to this build (protocol version {v})", v = crate::PROTOCOL_VERSION)]
    UnknownBody(u8),
    /// A required field was absent.
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
    /// The key is empty.
    #[error("empty key: keys must be 1 to {max} bytes")]
    EmptyKey { max: usize },
    /// The key is larger than the limit.
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    /// The value is larger than the limit.
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    /// The causal context is larger than the limit.
    #[error("causal context of {len} bytes exceeds the limit of {max} bytes")]
    ContextTooLarge { len: usize, max: usize },
    /// A list (siblings, version vector entries, failed replicas) is longer than its limit.
    #[error("{what}: {len} entries exceed the limit of {max}")]
    TooMany {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A quorum field holds an unknown kind or a zero count.
    #[error("invalid quorum (kind {kind}, count {count}): use a number >= 1, ONE, QUORUM or ALL")]
    BadQuorum { kind: u8, count: u8 },
    /// The peer's hello did not start with `TERN`: it is not a tern peer.
    #[error("peer is not speaking the tern protocol (hello magic {0:02x?}, expected \"TERN\")")]
    BadMagic([u8; 4]),
    /// The peer speaks a protocol version outside ours.
    #[error("protocol version {theirs} is not supported: this side speaks {min}..={max}")]
    UnsupportedVersion { theirs: u16, min: u16, max: u16 },
    /// The server refused our hello.
    #[error("server refused the connection: {reason} (server speaks protocol version {server_version}, we speak {ours})", ours = crate::PROTOCOL_VERSION)]
    HelloRejected {
        reason: &'static str,
        server_version: u16,
    },
    /// Encoding produced a message the peer would refuse (checked before sending).
    #[error("message refused before sending: {0}")]
    Refused(ErrorCode),
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    /// I/O on the connection failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl NetError {
    /// The wire error code a server should answer with for this decode failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            NetError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            NetError::KeyTooLarge { .. } => ErrorCode::KeyTooLarge,
            NetError::ValueTooLarge { .. } => ErrorCode::ValueTooLarge,
            NetError::ContextTooLarge { .. } => ErrorCode::BadContext,
            NetError::TooMany {
                what: "siblings", ..
            } => ErrorCode::TooManySiblings,
            NetError::UnsupportedVersion { .. } | NetError::HelloRejected { .. } => {
                ErrorCode::UnsupportedVersion
            }
            NetError::Refused(c) => *c,
            NetError::Io(_) | NetError::Truncated { .. } => ErrorCode::Unavailable,
            _ => ErrorCode::BadRequest,
        }
    }
}
