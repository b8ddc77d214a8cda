//! Plain Rust messages, decoupled from the generated flatbuffers types: what the server, the
//! coordinator and the clients handle after [`crate::codec`] verified a frame. Keys, values,
//! records and contexts are [`Bytes`] slices of the received frame (no copy).
//!
//! Invariant: every message produced by `decode_frame` satisfies the [`crate::Limits`] it
//! was decoded with (non-empty key within `max_key_len`, values within `max_value_len`, ...).

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// How many replicas must answer a read (R) or acknowledge a write (W).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Quorum {
    /// The node's configured default.
    #[default]
    Default,
    One,
    /// A majority of the N replicas: `N / 2 + 1`.
    Majority,
    All,
    /// An explicit count, at least 1.
    N(u8),
}

impl Quorum {
    /// The number of replicas this asks for when the replication factor is `n` (`None` for
    /// `Default`, which the node resolves). Never more than `n`... except `N(k)` with `k > n`,
    /// which the coordinator must refuse as a bad request.
    pub fn resolve(self, n: u8) -> Option<u8> {
        match self {
            Quorum::Default => None,
            Quorum::One => Some(1),
            Quorum::Majority => Some(n / 2 + 1),
            Quorum::All => Some(n),
            Quorum::N(k) => Some(k),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::Default => f.write_str("default"),
            Quorum::One => f.write_str("one"),
            Quorum::Majority => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::N(k) => write!(f, "{k}"),
        }
    }
}

impl FromStr for Quorum {
    type Err = String;

    /// Accepts a number >= 1 or `one`, `quorum`, `all`, `default` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "one" => Ok(Quorum::One),
            "quorum" | "majority" => Ok(Quorum::Majority),
            "all" => Ok(Quorum::All),
            "default" => Ok(Quorum::Default),
            other => match other.parse::<u8>() {
                Ok(k) if k >= 1 => Ok(Quorum::N(k)),
                _ => Err(format!(
                    "invalid quorum {s:?}: use a number from 1 to 255, or one, quorum, all"
                )),
            },
        }
    }
}

/// One entry of a version vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VvEntry {
    pub node: u32,
    pub counter: u64,
}

/// The event that created a sibling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dot {
    pub node: u32,
    pub counter: u64,
}

/// One concurrent version of a value, as shown to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiblingWire {
    pub value: Bytes,
    pub tombstone: bool,
    pub dot: Dot,
    pub vv: Vec<VvEntry>,
}

/// Options every client operation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReqOptions {
    /// R for reads, W for writes.
    pub quorum: Quorum,
    /// Refuse stand-in replicas (sloppy quorum): fail fast instead.
    pub strict: bool,
    /// 0: the node's default.
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRequest {
    pub key: Bytes,
    pub opts: ReqOptions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRequest {
    pub key: Bytes,
    pub value: Bytes,
    /// Empty: a blind write.
    pub context: Bytes,
    pub opts: ReqOptions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    pub key: Bytes,
    pub context: Bytes,
    pub opts: ReqOptions,
}

/// A request from a client to any node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    Get(GetRequest),
    Put(PutRequest),
    Delete(DeleteRequest),
}

impl ClientRequest {
    pub fn key(&self) -> &Bytes {
        match self {
            ClientRequest::Get(r) => &r.key,
            ClientRequest::Put(r) => &r.key,
            ClientRequest::Delete(r) => &r.key,
        }
    }
}

/// A successful answer to a [`ClientRequest`] (failures are [`Message::Error`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResponse {
    /// No siblings: the key is absent.
    Get {
        siblings: Vec<SiblingWire>,
        context: Bytes,
    },
    Put {
        context: Bytes,
    },
    Delete {
        context: Bytes,
    },
}

/// A client write forwarded to a replica that coordinates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinateWire {
    pub key: Bytes,
    pub value: Bytes,
    pub tombstone: bool,
    pub context: Bytes,
    pub opts: ReqOptions,
}

/// A request between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaRequestWire {
    Put {
        key: Bytes,
        record: Bytes,
        /// The real owner when the receiver is a stand-in (hinted handoff).
        hint_for: Option<u32>,
    },
    Get {
        key: Bytes,
    },
    Coordinate(CoordinateWire),
}

/// A successful answer to a [`ReplicaRequestWire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaResponseWire {
    PutAck,
    GetReply { record: Option<Bytes> },
    CoordinateReply { context: Bytes },
}

/// Error codes shared by clients and nodes (mirrors `ErrorCode` in `schema/tern.fbs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Unknown,
    NotFound,
    BadRequest,
    KeyTooLarge,
    ValueTooLarge,
    QuorumFailed,
    Timeout,
    Overloaded,
    TooManySiblings,
    Unavailable,
    Internal,
    UnsupportedVersion,
    FrameTooLarge,
    BadContext,
    NotOwner,
    ShuttingDown,
    /// The replica's disk is full: writes fail there, reads still work.
    DiskFull,
    /// The replica found corrupt data (checksum mismatch) where the request needed it.
    StorageCorrupt,
    /// The receiver does not implement a feature the request uses (e.g. a hinted write).
    Unsupported,
    /// A code this build does not know (a newer peer); kept so it can be shown.
    Other(u16),
}

impl ErrorCode {
    /// In wire order: the index is the code (`schema/tern.fbs` appends, never reorders).
    const KNOWN: [ErrorCode; 19] = [
        ErrorCode::Unknown,
        ErrorCode::NotFound,
        ErrorCode::BadRequest,
        ErrorCode::KeyTooLarge,
        ErrorCode::ValueTooLarge,
        ErrorCode::QuorumFailed,
        ErrorCode::Timeout,
        ErrorCode::Overloaded,
        ErrorCode::TooManySiblings,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::BadContext,
        ErrorCode::NotOwner,
        ErrorCode::ShuttingDown,
        ErrorCode::DiskFull,
        ErrorCode::StorageCorrupt,
        ErrorCode::Unsupported,
    ];

    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Other(v) => v,
            known => Self::KNOWN
                .iter()
                .position(|c| *c == known)
                .and_then(|i| u16::try_from(i).ok())
                .unwrap_or(0),
        }
    }

    pub fn from_u16(v: u16) -> Self {
        Self::KNOWN
            .get(usize::from(v))
            .copied()
            .unwrap_or(ErrorCode::Other(v))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Other(v) => write!(f, "error code {v}"),
            c => write!(f, "{c:?}"),
        }
    }
}

/// A replica that did not answer in time or failed, named in quorum errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedReplica {
    pub node: u32,
    pub shard: u16,
    pub reason: String,
    /// Why, as a code (`Timeout`, `Unavailable`, `DiskFull`, ...); `reason` keeps the detail.
    pub code: ErrorCode,
}

/// A typed error answer, to a client or to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    pub acked: u8,
    pub needed: u8,
    pub failed: Vec<FailedReplica>,
}

impl WireError {
    /// An error with only a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            acked: 0,
            needed: 0,
            failed: Vec::new(),
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if self.needed > 0 {
            write!(
                f,
                " ({} of {} needed replicas answered",
                self.acked, self.needed
            )?;
            for r in &self.failed {
                write!(f, "; node {} shard {}: {}", r.node, r.shard, r.reason)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// The body of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(ClientRequest),
    Response(ClientResponse),
    Replica(ReplicaRequestWire),
    ReplicaReply(ReplicaResponseWire),
    Error(WireError),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub version: u16,
    pub request_id: u64,
    pub target_shard: Option<u16>,
    pub message: Message,
}

impl Envelope {
    /// An envelope at this build's protocol version with no target shard.
    pub fn new(request_id: u64, message: Message) -> Self {
        Self {
            version: crate::PROTOCOL_VERSION,
            request_id,
            target_shard: None,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;
    use crate::generated as w;

    /// `ErrorCode::KNOWN` is the schema's enum, in the schema's order: a code added to
    /// `schema/tern.fbs` but not here (or out of order) would travel as the wrong error.
    #[test]
    fn error_codes_match_the_schema() {
        assert_eq!(ErrorCode::KNOWN.len(), w::ErrorCode::ENUM_VALUES.len());
        for v in w::ErrorCode::ENUM_VALUES {
            let ours = ErrorCode::from_u16(v.0);
            assert_eq!(Some(format!("{ours:?}").as_str()), v.variant_name());
            assert_eq!(ours.to_u16(), v.0);
        }
    }
}
