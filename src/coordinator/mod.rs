//! Replication and quorums (DESIGN.md part 4): N/R/W fan-out, quorum counting, deadlines, read
//! repair, and the replica-side handlers. Sans-IO: it reaches other replicas only through
//! [`Transport`], time only through [`Clock`], background work only through [`Spawner`], and its
//! own shard's records only through [`ReplicaStore`], so the deterministic simulation in
//! `coordinator::sim` drives this exact code. Must not touch storage except through that trait.
//!
//! Flow of a client write: any shard of any node receives it ([`Coordinator::put`]) and forwards a
//! `Coordinate` request to a replica of the key (its own node's replica first, then the preference
//! list in order, skipping unreachable ones). That replica ([`Coordinator::handle`]) runs
//! [`crate::version::Record::update`] atomically in its store (minting the dot), sends the new
//! record to the other N-1 replicas, and answers after W acks including its own; the remaining
//! sends continue in the background until the deadline.
//!
//! Flow of a client read ([`Coordinator::get`]): ask all N replicas, answer with the sync of the
//! first R replies, then in the background collect late replies until the deadline and send the
//! merged record to every replica whose reply was stale, failed or missing (read repair), at most
//! `max_background_repairs` at a time per shard.
//!
//! Invariants: every request has a deadline (bounded by `max_timeout_ms`); every background task
//! ends by its own deadline; an unmet quorum is a [`QuorumError`] naming who failed and why.

mod client;
mod fanout;
pub mod protocol;
mod quorum;
mod replica;
mod store;

#[cfg(test)]
mod glommio_tests;

#[cfg(test)]
pub mod sim;

use std::cell::Cell;
use std::rc::Rc;

use thiserror::Error;

pub use quorum::{
    ConfigError, CoordinatorConfig, ParseQuorumError, Quorum, QuorumRangeError, RequestOptions,
};
pub use store::{MemStore, ReplicaStore, StoreError, StoreFault};

pub use crate::runtime::clock::{Clock, LocalTask, Spawner};
pub use crate::runtime::transport::{Transport, TransportError};
use crate::version::Record;
pub use protocol::{
    CoordinateRequest, FailureReason, PutAck, QuorumError, QuorumOp, Replica, ReplicaFailure,
    ReplicaRequest, ReplicaResponse, ReplicaTransport,
};

/// Why a client request failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoordError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    InvalidQuorum(#[from] QuorumRangeError),
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error(
        "write would leave {count} siblings (limit {limit}): read the key, merge its values \
         and put the result with the context returned by the read"
    )]
    TooManySiblings { count: usize, limit: usize },
}

/// The answer to a read: the merge of at least R replicas' records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetReply {
    /// Concurrent siblings (tombstones included: a deleted key has only tombstones, an unknown
    /// key none). Values: `record.values()`; context for the next put: `record.context()`.
    pub record: Record,
    /// Replicas whose reply was merged.
    pub replied: usize,
}

/// The replication logic of one shard: client-facing `get`/`put` and the replica handler.
pub struct Coordinator<T, C, S, X> {
    me: Replica,
    cfg: CoordinatorConfig,
    transport: Rc<T>,
    clock: Rc<C>,
    store: Rc<S>,
    spawner: Rc<X>,
    repairs_running: Rc<Cell<usize>>,
}

impl<T: ReplicaTransport, C: Clock, S: ReplicaStore, X: Spawner> Coordinator<T, C, S, X> {
    /// `me` is this shard; `store` holds this shard's records.
    pub fn new(
        me: Replica,
        cfg: CoordinatorConfig,
        transport: Rc<T>,
        clock: Rc<C>,
        store: Rc<S>,
        spawner: Rc<X>,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Coordinator {
            me,
            cfg,
            transport,
            clock,
            store,
            spawner,
            repairs_running: Rc::new(Cell::new(0)),
        })
    }

    pub fn me(&self) -> Replica {
        self.me
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.cfg
    }

    /// Read repairs currently running on this shard.
    pub fn repairs_running(&self) -> usize {
        self.repairs_running.get()
    }

    pub fn store(&self) -> &Rc<S> {
        &self.store
    }

    /// Absolute deadline of a client request.
    fn deadline(&self, timeout_ms: Option<u64>) -> Result<u64, CoordError> {
        let t = timeout_ms.unwrap_or(self.cfg.default_timeout_ms);
        if t == 0 || t > self.cfg.max_timeout_ms {
            return Err(CoordError::InvalidRequest(format!(
                "timeout_ms={t} must be between 1 and {}",
                self.cfg.max_timeout_ms
            )));
        }
        Ok(self.clock.now_ms().saturating_add(t))
    }
}
