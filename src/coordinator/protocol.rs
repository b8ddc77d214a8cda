//! The replica protocol: the plain-Rust messages a coordinator and the replicas of a key
//! exchange over a [`Transport`] (mapped to flatbuffers by `server::wire` for the network, carried
//! as Rust values over the shard mesh), and the quorum errors built from their answers. Owned by
//! the coordinator; the runtime's transport only carries these values.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

use super::store::StoreFault;
pub use crate::ring::Replica;
use crate::runtime::transport::{Transport, TransportError};
use crate::version::{Dot, Record, VersionVector};

/// A [`Transport`] that speaks the replica protocol. Every transport with these associated types
/// is one; the coordinator is generic over it.
pub trait ReplicaTransport:
    Transport<Addr = Replica, Request = ReplicaRequest, Response = ReplicaResponse>
{
}

impl<T> ReplicaTransport for T where
    T: Transport<Addr = Replica, Request = ReplicaRequest, Response = ReplicaResponse>
{
}

/// What a coordinator asks of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaRequest {
    /// Merge `record` into the replica's record of `key` (put fan-out, read repair).
    Put { key: Bytes, record: Record },
    /// Return the replica's record of `key`.
    Get { key: Bytes },
    /// Coordinate a client write: the receiving replica mints the dot and fans out.
    Coordinate(CoordinateRequest),
}

/// A client write forwarded to a replica of the key, which coordinates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinateRequest {
    pub key: Bytes,
    /// `None` deletes (a versioned tombstone).
    pub value: Option<Bytes>,
    /// The causal context the client sent (what it read).
    pub context: VersionVector,
    /// Acks needed, the coordinator's own write included (already resolved against N).
    pub w: u32,
    /// Only designated replicas count toward `w` (today every replica is designated).
    pub strict: bool,
    /// Time the coordinator may spend, from receipt.
    pub timeout_ms: u64,
    /// The key's preference list as the forwarding node computed it.
    pub preference: Vec<Replica>,
}

/// A replica's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaResponse {
    PutOk,
    /// `None`: the replica has no record of the key.
    GetOk {
        record: Option<Record>,
    },
    Coordinated(PutAck),
    Failed(ReplicaFailure),
}

/// A write acknowledged by its write quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutAck {
    /// The write's identity.
    pub dot: Dot,
    /// A context for the client's next put that covers nothing the client has not seen: this
    /// write's history (client context plus its dot) when a version vector can express it, i.e.
    /// when the client had seen every earlier write this coordinator made to the key; otherwise
    /// the client's own context (the next put then becomes a sibling of this write).
    pub context: VersionVector,
    /// Replicas that acknowledged before the reply, the coordinator included.
    pub acked: u32,
}

/// Why a replica could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplicaFailure {
    #[error("storage failed ({fault}): {reason}")]
    Storage { fault: StoreFault, reason: String },
    #[error(
        "write would leave {count} siblings (limit {limit}): read the key, merge its values \
         and put the result with the context returned by the read"
    )]
    TooManySiblings { count: usize, limit: usize },
    #[error("this shard is not in the key's preference list")]
    NotReplica,
    #[error("invalid request: {reason}")]
    Invalid { reason: String },
    #[error(transparent)]
    Quorum(QuorumError),
    #[error("unexpected response kind to a {request} request")]
    UnexpectedResponse { request: &'static str },
}

/// Which quorum was not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumOp {
    Read,
    Write,
}

impl fmt::Display for QuorumOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuorumOp::Read => "read",
            QuorumOp::Write => "write",
        })
    }
}

/// An unmet quorum: how many replicas answered, how many were needed, and why the others did not.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{op} quorum not met: {acked} of {needed} required replicas answered before the deadline; {}",
    fmt_failures(.failures)
)]
pub struct QuorumError {
    pub op: QuorumOp,
    pub needed: usize,
    pub acked: usize,
    pub failures: Vec<(Replica, FailureReason)>,
}

fn fmt_failures(failures: &[(Replica, FailureReason)]) -> String {
    if failures.is_empty() {
        return "no replica failed".to_owned();
    }
    let parts: Vec<String> = failures
        .iter()
        .map(|(r, why)| format!("{r}: {why}"))
        .collect();
    format!("failures: {}", parts.join("; "))
}

/// Why one replica did not count toward a quorum.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FailureReason {
    #[error("no answer before the deadline")]
    TimedOut,
    #[error(transparent)]
    Transport(TransportError),
    #[error("replica refused: {0}")]
    Replica(Box<ReplicaFailure>),
}
