//! Typed client errors. Server-side failures mirror the wire `ErrorCode`s one to one (quorum
//! failures and timeouts keep how many replicas answered and which failed); local failures
//! (connect, handshake, I/O, requests refused before sending) have their own variants.

use std::io;

use tern_proto::{ErrorCode, FailedReplica, NetError, WireError};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No address of the node accepted a TCP connection.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The node answered the hello with a refusal, or is not a tern node.
    #[error("handshake with {addr} failed: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: NetError,
    },
    /// The request breaks a limit (key, value, context size) and was not sent.
    #[error("request not sent: {0}")]
    InvalidRequest(NetError),
    /// The connection broke or sent something that is not a valid frame.
    #[error("connection error: {0}")]
    Protocol(NetError),
    /// The connection is closed (by the node, or after an earlier fatal error).
    #[error("connection closed: {0}")]
    Closed(String),
    /// No answer from the node within the client's own deadline.
    #[error("no answer from the node within {timeout_ms} ms")]
    ResponseTimeout { timeout_ms: u64 },
    /// Too many requests in flight on this connection.
    #[error("{max} requests already in flight on this connection")]
    TooManyInFlight { max: usize },
    /// The node answered with a message of the wrong kind.
    #[error("unexpected answer: expected {expected}, got {got}")]
    UnexpectedResponse { expected: &'static str, got: String },

    // --- Errors reported by the node, one per wire error code. ---
    #[error("not found: {0}")]
    NotFound(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("key too large: {0}")]
    KeyTooLarge(String),
    #[error("value too large: {0}")]
    ValueTooLarge(String),
    /// Fewer replicas than needed acknowledged (or answered) before the deadline.
    /// `message` is the coordinator's account and already names each failed replica; `failed`
    /// holds the same list for programs.
    #[error("quorum failed: {acked} of {needed} replicas answered: {message}")]
    QuorumFailed {
        message: String,
        acked: u8,
        needed: u8,
        failed: Vec<FailedReplica>,
    },
    /// The node's deadline for the request expired.
    #[error("timed out: {acked} of {needed} replicas answered: {message}")]
    Timeout {
        message: String,
        acked: u8,
        needed: u8,
        failed: Vec<FailedReplica>,
    },
    #[error("node overloaded: {0}")]
    Overloaded(String),
    #[error("too many siblings: {0}")]
    TooManySiblings(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error on the node: {0}")]
    Internal(String),
    #[error("unsupported protocol version: {0}")]
    UnsupportedVersion(String),
    #[error("bad causal context: {0}")]
    BadContext(String),
    /// Any other code (including codes newer than this client).
    #[error("{code}: {message}")]
    Server { code: ErrorCode, message: String },
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        let m = e.message;
        match e.code {
            ErrorCode::NotFound => ClientError::NotFound(m),
            ErrorCode::BadRequest => ClientError::BadRequest(m),
            ErrorCode::KeyTooLarge => ClientError::KeyTooLarge(m),
            ErrorCode::ValueTooLarge | ErrorCode::FrameTooLarge => ClientError::ValueTooLarge(m),
            ErrorCode::QuorumFailed => ClientError::QuorumFailed {
                message: m,
                acked: e.acked,
                needed: e.needed,
                failed: e.failed,
            },
            ErrorCode::Timeout => ClientError::Timeout {
                message: m,
                acked: e.acked,
                needed: e.needed,
                failed: e.failed,
            },
            ErrorCode::Overloaded => ClientError::Overloaded(m),
            ErrorCode::TooManySiblings => ClientError::TooManySiblings(m),
            ErrorCode::Unavailable | ErrorCode::ShuttingDown => ClientError::Unavailable(m),
            ErrorCode::Internal => ClientError::Internal(m),
            ErrorCode::UnsupportedVersion => ClientError::UnsupportedVersion(m),
            ErrorCode::BadContext => ClientError::BadContext(m),
            code => ClientError::Server { code, message: m },
        }
    }
}

impl ClientError {
    /// True when another node or a later retry may succeed: quorum not met, timeouts,
    /// overload, unavailability and broken connections.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Closed(_)
                | ClientError::Protocol(NetError::Io(_))
                | ClientError::ResponseTimeout { .. }
                | ClientError::QuorumFailed { .. }
                | ClientError::Timeout { .. }
                | ClientError::Overloaded(_)
                | ClientError::Unavailable(_)
        )
    }

    /// True when the request itself is wrong (fix the input, do not retry).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ClientError::InvalidRequest(_)
                | ClientError::BadRequest(_)
                | ClientError::KeyTooLarge(_)
                | ClientError::ValueTooLarge(_)
                | ClientError::BadContext(_)
        )
    }
}
