//! What a replica does with a request addressed to it: merge a record (Put), return its record
//! (Get), or coordinate a client write (Coordinate: local update, fan-out, W acks).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tracing::debug;

use super::fanout::{FanOut, Next};
use super::protocol::{
    CoordinateRequest, FailureReason, PutAck, QuorumError, QuorumOp, Replica, ReplicaFailure,
    ReplicaRequest, ReplicaResponse, ReplicaTransport,
};
use super::store::{StoreError, StoreFault};
use super::Coordinator;
use crate::runtime::clock::{Clock, Spawner};
use crate::version::{Record, VersionError};

use super::store::ReplicaStore;

impl<T: ReplicaTransport, C: Clock, S: ReplicaStore, X: Spawner> Coordinator<T, C, S, X> {
    /// Serve one request addressed to this shard (called by the net/mesh dispatch, or by the
    /// transport's local short-circuit).
    ///
    /// A plain `fn` that picks the arm before returning a [`Handle`]: an `async fn` (or an
    /// `async` block matching on `req`) keeps the whole 128-byte request in its state beside
    /// the arm's future, and this future is part of every request's task. The write arms are
    /// boxed: futures nest by value, so inline they made every request's task a ~3 KiB future
    /// (a glibc "large" malloc that consolidates fastbins per request, plus its memcpy).
    pub fn handle(&self, req: ReplicaRequest) -> impl Future<Output = ReplicaResponse> + '_ {
        match req {
            ReplicaRequest::Get { key } => Handle::Get {
                fut: self.get_local(key),
            },
            ReplicaRequest::Put { key, record } => Handle::Write {
                fut: Box::pin(self.apply_put(key, record)),
            },
            ReplicaRequest::Coordinate(c) => Handle::Write {
                fut: Box::pin(self.coordinate(c)),
            },
        }
    }

    /// Our record of `key`. Not an `async fn`, which would keep `key` twice in its state.
    #[allow(clippy::manual_async_fn)]
    fn get_local(&self, key: Bytes) -> impl Future<Output = ReplicaResponse> + '_ {
        async move {
            match self.store.get(&key).await {
                Ok(record) => ReplicaResponse::GetOk { record },
                Err(e) => ReplicaResponse::Failed(store_failure(e)),
            }
        }
    }

    /// Merge a peer's record into ours; a record we already dominate is not rewritten.
    async fn apply_put(&self, key: Bytes, record: Record) -> ReplicaResponse {
        if let Err(why) = record.check_invariants() {
            return ReplicaResponse::Failed(ReplicaFailure::Invalid {
                reason: format!("record breaks invariant: {why}"),
            });
        }
        if record.is_empty() {
            return ReplicaResponse::PutOk;
        }
        let res = self
            .store
            .update(&key, |old| {
                Ok(match old {
                    None => Some(record),
                    Some(o) => {
                        let merged = Record::sync(o, &record);
                        (merged != *o).then_some(merged)
                    }
                })
            })
            .await;
        match res {
            Ok(_) => ReplicaResponse::PutOk,
            Err(e) => ReplicaResponse::Failed(store_failure(e)),
        }
    }

    /// Coordinate a client write as a replica of its key.
    #[tracing::instrument(level = "debug", skip_all, fields(me = %self.me, key_len = req.key.len()))]
    async fn coordinate(&self, req: CoordinateRequest) -> ReplicaResponse {
        let CoordinateRequest {
            key,
            value,
            context,
            w,
            strict: _, // every replica is designated until sloppy quorum exists
            timeout_ms,
            preference,
        } = req;
        if !preference.contains(&self.me) {
            return ReplicaResponse::Failed(ReplicaFailure::NotReplica);
        }
        let w = w as usize;
        if w == 0 || w > preference.len() {
            return ReplicaResponse::Failed(ReplicaFailure::Invalid {
                reason: format!("W={w} with a preference list of {}", preference.len()),
            });
        }
        let timeout = timeout_ms.min(self.cfg.max_timeout_ms);
        let deadline = self.clock.now_ms().saturating_add(timeout);
        let (actor, now, cap) = (self.me.node, self.clock.unix_ms(), self.cfg.max_siblings);
        let res = self
            .store
            .update(&key, |old| {
                let base = old.map_or_else(Record::empty, Clone::clone);
                base.update(&context, actor, value, now, cap).map(Some)
            })
            .await;
        let record = match res {
            Ok(Some(r)) => r,
            Ok(None) => {
                return ReplicaResponse::Failed(ReplicaFailure::Storage {
                    fault: StoreFault::Internal,
                    reason: "store returned no record after a write".into(),
                })
            }
            Err(e) => return ReplicaResponse::Failed(store_failure(e)),
        };
        // Our dot is the newest of ours: update mints one past everything we had.
        let Some(mine) = record
            .siblings()
            .iter()
            .filter(|s| s.dot.node == actor)
            .max_by_key(|s| s.dot)
        else {
            return ReplicaResponse::Failed(ReplicaFailure::Storage {
                fault: StoreFault::Internal,
                reason: "written record lacks the new sibling".into(),
            });
        };
        let dot = mine.dot;
        // A vector cannot hold "the client's context plus one isolated dot": when the client had
        // not seen the coordinator's previous writes of this key, adding our dot would claim
        // those too, and the client's next put with it would silently overwrite them. Then hand
        // back the client's own context (its next put becomes a sibling of this write instead).
        let ack_context = if mine.context.get(dot.node) + 1 == dot.counter {
            mine.history()
        } else {
            mine.context.clone()
        };
        let ack = PutAck {
            dot,
            context: ack_context,
            acked: 1,
        };
        if preference.len() == 1 {
            // N=1: our own write is the quorum; no fan-out (and no deadline) to set up.
            debug_assert_eq!(w, 1);
            return ReplicaResponse::Coordinated(ack);
        }
        let others: Vec<(Replica, ReplicaRequest)> = preference
            .iter()
            .filter(|r| **r != self.me)
            .map(|r| {
                let req = ReplicaRequest::Put {
                    key: key.clone(),
                    record: record.clone(),
                };
                (*r, req)
            })
            .collect();
        let mut fan = FanOut::start(&self.transport, &self.clock, deadline, others);
        let mut acked = 1usize;
        let mut failures: Vec<(Replica, FailureReason)> = Vec::new();
        while acked < w {
            match fan.next().await {
                Next::Reply(_, Ok(ReplicaResponse::PutOk)) => acked += 1,
                Next::Reply(r, other) => failures.push((r, failure_of(other, "put"))),
                Next::Expired | Next::Done => break,
            }
        }
        if acked < w {
            failures.extend(fan.unanswered().map(|r| (r, FailureReason::TimedOut)));
            debug!(%dot, acked, w, "write quorum not met");
            return ReplicaResponse::Failed(ReplicaFailure::Quorum(QuorumError {
                op: QuorumOp::Write,
                needed: w,
                acked,
                failures,
            }));
        }
        if fan.unanswered().next().is_some() {
            // Past the quorum the other replicas still get the write, until the deadline.
            self.spawner.spawn(Box::pin(drain(fan, key)));
        }
        ReplicaResponse::Coordinated(PutAck {
            acked: u32::try_from(acked).unwrap_or(u32::MAX),
            ..ack
        })
    }
}

/// Let the remaining calls of a fan-out finish (or expire), logging failures.
async fn drain(mut fan: FanOut, key: Bytes) {
    loop {
        match fan.next().await {
            Next::Reply(_, Ok(ReplicaResponse::PutOk | ReplicaResponse::GetOk { .. })) => {}
            Next::Reply(r, other) => {
                let why = failure_of(other, "put");
                debug!(replica = %r, key_len = key.len(), %why, "background replica write failed");
            }
            Next::Expired | Next::Done => return,
        }
    }
}

pub(crate) fn store_failure(e: StoreError) -> ReplicaFailure {
    match e {
        StoreError::Rejected(VersionError::TooManySiblings { count, limit }) => {
            ReplicaFailure::TooManySiblings { count, limit }
        }
        StoreError::Rejected(e) => ReplicaFailure::Invalid {
            reason: e.to_string(),
        },
        StoreError::Failed { fault, detail } => ReplicaFailure::Storage {
            fault,
            reason: detail,
        },
    }
}

/// The failure reason of a reply that is not the expected success.
pub(crate) fn failure_of(
    reply: Result<ReplicaResponse, crate::runtime::transport::TransportError>,
    request: &'static str,
) -> FailureReason {
    match reply {
        Err(e) => FailureReason::Transport(e),
        Ok(ReplicaResponse::Failed(f)) => FailureReason::Replica(Box::new(f)),
        Ok(_) => FailureReason::Replica(Box::new(ReplicaFailure::UnexpectedResponse { request })),
    }
}

pin_project_lite::pin_project! {
    /// [`Coordinator::handle`]'s future: the read arm inline, the write arms boxed.
    #[project = HandleProj]
    enum Handle<'a, G> {
        Get { #[pin] fut: G },
        Write { fut: Pin<Box<dyn Future<Output = ReplicaResponse> + 'a>> },
    }
}

impl<G: Future<Output = ReplicaResponse>> Future for Handle<'_, G> {
    type Output = ReplicaResponse;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ReplicaResponse> {
        match self.project() {
            HandleProj::Get { fut } => fut.poll(cx),
            HandleProj::Write { fut } => fut.as_mut().poll(cx),
        }
    }
}
