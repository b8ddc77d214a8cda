//! The `Transport` trait and the plain-Rust messages replicas exchange, so the replication logic
//! runs the same over the real TCP/channel mesh (mapped to flatbuffers by `net`) and over a
//! simulated network. Requests are addressed to one `(node, shard)`.
//!
//! Contract for implementations: a call either returns the target's response or a
//! [`TransportError`] saying whether the request may have been delivered; a call to the local
//! `(node, shard)` should short-circuit to the local handler. Calls are not retried here: the
//! coordinator decides, within its deadline.

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

use crate::version::{Dot, NodeId, Record, VersionVector};

/// One replica of a key: a shard of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replica {
    pub node: NodeId,
    pub shard: u16,
}

impl fmt::Display for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} shard {}", self.node, self.shard)
    }
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
    #[error("storage failed: {reason}")]
    Storage { reason: String },
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

/// A call that did not produce the target's response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransportError {
    /// The request was certainly not delivered (no connection, node known down).
    #[error("unreachable: {reason}")]
    Unreachable { reason: String },
    /// The connection broke after sending: the request may or may not have been applied.
    #[error("connection lost: {reason}")]
    Lost { reason: String },
    /// The target's queue is full; the request was not delivered.
    #[error("target overloaded")]
    Overloaded,
}

/// Delivers replica requests. One instance per shard; futures need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Transport: 'static {
    async fn call(
        &self,
        to: Replica,
        req: ReplicaRequest,
    ) -> Result<ReplicaResponse, TransportError>;

    /// Whether a call addressed to the caller's own shard would only run that shard's handler
    /// (no network, no failure of its own). Then the coordinator serves such a request itself,
    /// under the same deadline, without boxing it through [`Transport::call`]. A transport that
    /// models self-calls (the simulation's) keeps the default.
    fn self_calls_are_local(&self) -> bool {
        false
    }
}
