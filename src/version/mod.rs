//! Versioning (DESIGN.md part 2): version vectors, dots, siblings, the merge of replicas' records
//! and their compact binary encoding. Never reads the wall clock: times come from callers. Knows
//! nothing of storage, replicas or the network.
//!
//! The scheme is Riak-style dotted version vectors. Every write gets a [`Dot`] (coordinating node,
//! per-key counter) and keeps the client's causal context; a write replaces exactly the siblings
//! its context covers, so concurrent writes become siblings and sequential ones never do (no
//! false siblings, even when one node coordinates many concurrent writes of the same key).
//!
//! Invariants that callers must keep:
//! - The write coordinator is a replica of the key and runs [`Record::update`] inside the shard's
//!   atomic read-modify-write, on the replica's own record: dots of one node for one key are then
//!   unique and contiguous, and a vector entry never claims events the client did not see.
//! - Records only move forward through [`Record::sync`] (a join): a replica that forgets a record
//!   (e.g. tombstone GC before every replica has the tombstone) could reissue dots.
//!
//! Vector size is bounded by the number of nodes that ever coordinated a write of the key, i.e.
//! the replicas it ever had, so entries are not pruned today. Pruning (dropping the oldest entries
//! past a bound, which can create false siblings but never loses writes silently if done on
//! contexts only) is the fallback if membership churn ever makes vectors grow.

mod codec;
mod record;
mod vv;

#[cfg(test)]
mod tests;

pub use codec::DecodeError;
pub use record::{Record, Sibling};
pub use vv::{Dot, NodeId, VersionVector};

use thiserror::Error;

/// Default cap on siblings per key: a write that would exceed it is refused.
pub const DEFAULT_MAX_SIBLINGS: usize = 64;

/// Why a new write was refused by [`Record::update`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    #[error(
        "write would leave {count} siblings (limit {limit}): read the key, merge its values \
         and put the result with the context returned by the read"
    )]
    TooManySiblings { count: usize, limit: usize },
    #[error("write counter of node {node} for this key is exhausted (u64 overflow)")]
    CounterExhausted { node: NodeId },
}
