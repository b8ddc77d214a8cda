//! Client-facing operations: `get` (fan-out, R replies, read repair) and `put`/`delete` (forward
//! to a replica of the key, which coordinates). Runs on whichever shard received the request.

use std::future::Future;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;
use tracing::debug;

use super::fanout::{CallResult, FanOut, Next};
use super::protocol::{
    CoordinateRequest, FailureReason, PutAck, QuorumError, QuorumOp, Replica, ReplicaFailure,
    ReplicaRequest, ReplicaResponse, ReplicaTransport,
};
use super::replica::failure_of;
use super::{CoordError, Coordinator, GetReply, ReplicaStore, RequestOptions};
use crate::runtime::clock::{Clock, Spawner};
use crate::version::{Record, VersionVector};

impl<T: ReplicaTransport, C: Clock, S: ReplicaStore, X: Spawner> Coordinator<T, C, S, X> {
    /// Read `key` from its `preference` list (N replicas, from the ring): ask all, answer with
    /// the merge of the first R replies, repair stale replicas in the background.
    ///
    /// `get` and `put` are plain `fn`s returning `async move` blocks: an `async fn` keeps each
    /// argument twice in its state (the argument slot and the local it is moved into), and
    /// these futures are part of every client request's task (see `conn::client_task_size`).
    #[allow(clippy::manual_async_fn)] // deliberately not `async fn`: see above
    pub fn get<'a>(
        &'a self,
        key: Bytes,
        preference: &'a [Replica],
        opts: &'a RequestOptions,
    ) -> impl Future<Output = Result<GetReply, CoordError>> + 'a {
        async move {
            self.check_key(&key)?;
            let n = self.check_preference(preference)?;
            let r = opts.r.resolve(n, "R")?;
            let deadline = self.deadline(opts.timeout_ms)?;
            if let [only] = preference {
                if *only == self.me && self.transport.self_calls_are_local() {
                    // N=1 and the replica is this shard: nothing to merge or repair.
                    debug_assert_eq!(r, 1);
                    let failure = match self
                        .call_one(*only, ReplicaRequest::Get { key }, deadline)
                        .await
                    {
                        Some(Ok(ReplicaResponse::GetOk { record })) => {
                            return Ok(GetReply {
                                record: record.unwrap_or_default(),
                                replied: 1,
                            })
                        }
                        Some(other) => failure_of(other, "get"),
                        None => FailureReason::TimedOut,
                    };
                    return Err(CoordError::Quorum(QuorumError {
                        op: QuorumOp::Read,
                        needed: r,
                        acked: 0,
                        failures: vec![(*only, failure)],
                    }));
                }
            }
            let calls = preference
                .iter()
                .map(|p| (*p, ReplicaRequest::Get { key: key.clone() }));
            let mut fan = FanOut::start(&self.transport, &self.clock, deadline, calls);
            let mut replies: Vec<(Replica, Record)> = Vec::with_capacity(n);
            let mut failures = Vec::new();
            while replies.len() < r {
                match fan.next().await {
                    Next::Reply(p, Ok(ReplicaResponse::GetOk { record })) => {
                        replies.push((p, record.unwrap_or_default()));
                    }
                    Next::Reply(p, other) => failures.push((p, failure_of(other, "get"))),
                    Next::Expired | Next::Done => break,
                }
            }
            if replies.len() < r {
                failures.extend(fan.unanswered().map(|p| (p, FailureReason::TimedOut)));
                return Err(CoordError::Quorum(QuorumError {
                    op: QuorumOp::Read,
                    needed: r,
                    acked: replies.len(),
                    failures,
                }));
            }
            let record = Record::sync_all(replies.iter().map(|(_, rec)| rec));
            let replied = replies.len();
            self.read_repair(key, preference.to_vec(), replies, &record, fan);
            Ok(GetReply { record, replied })
        }
    }

    /// Write `value` (`None` deletes) with the client's causal `context`: forwarded to a replica
    /// of the key, this node's own first, then the others in preference order while they are
    /// unreachable. A retry after a lost connection may apply the write twice, as two concurrent
    /// siblings with the same value: never a lost or reordered write.
    #[allow(clippy::manual_async_fn)] // deliberately not `async fn`: see `get`
    pub fn put<'a>(
        &'a self,
        key: Bytes,
        value: Option<Bytes>,
        mut context: VersionVector,
        preference: &'a [Replica],
        opts: &'a RequestOptions,
    ) -> impl Future<Output = Result<PutAck, CoordError>> + 'a {
        async move {
            self.check_key(&key)?;
            if let Some(v) = &value {
                if v.len() > self.cfg.max_value_bytes {
                    return Err(CoordError::InvalidRequest(format!(
                        "value of {} bytes exceeds the limit of {} bytes",
                        v.len(),
                        self.cfg.max_value_bytes
                    )));
                }
            }
            let n = self.check_preference(preference)?;
            let w = opts.w.resolve(n, "W")?;
            let deadline = self.deadline(opts.timeout_ms)?;
            let order = preference
                .iter()
                .filter(|p| p.node == self.me.node)
                .chain(preference.iter().filter(|p| p.node != self.me.node))
                .copied();
            let mut failures: Vec<(Replica, FailureReason)> = Vec::new();
            for (i, target) in order.enumerate() {
                let now = self.clock.now_ms();
                if now >= deadline {
                    failures.push((target, FailureReason::TimedOut));
                    continue;
                }
                // The last candidate gets the context itself: no copy for the usual single attempt.
                let context = if i + 1 == n {
                    std::mem::take(&mut context)
                } else {
                    context.clone()
                };
                let req = ReplicaRequest::Coordinate(CoordinateRequest {
                    key: key.clone(),
                    value: value.clone(),
                    context,
                    w: u32::try_from(w).unwrap_or(u32::MAX),
                    strict: opts.strict,
                    timeout_ms: deadline - now,
                    preference: preference.to_vec(),
                });
                match self.call_one(target, req, deadline).await {
                    Some(Ok(ReplicaResponse::Coordinated(ack))) => return Ok(ack),
                    Some(Ok(ReplicaResponse::Failed(f))) => match f {
                        // The write happened at the coordinator: retrying elsewhere would not help.
                        ReplicaFailure::Quorum(q) => return Err(CoordError::Quorum(q)),
                        ReplicaFailure::TooManySiblings { count, limit } => {
                            return Err(CoordError::TooManySiblings { count, limit })
                        }
                        ReplicaFailure::Invalid { reason } => {
                            return Err(CoordError::InvalidRequest(reason))
                        }
                        other => failures.push((target, FailureReason::Replica(Box::new(other)))),
                    },
                    Some(other) => failures.push((target, failure_of(other, "coordinate"))),
                    None => failures.push((target, FailureReason::TimedOut)),
                }
            }
            Err(CoordError::Quorum(QuorumError {
                op: QuorumOp::Write,
                needed: w,
                acked: 0,
                failures,
            }))
        }
    }

    /// One call under `deadline`; `None` when it passed first. A call to this very shard runs
    /// its handler here when the transport would do only that anyway (no boxed futures, no
    /// transport hop); the deadline is enforced the same way.
    async fn call_one(
        &self,
        target: Replica,
        req: ReplicaRequest,
        deadline: u64,
    ) -> Option<CallResult> {
        if target == self.me && self.transport.self_calls_are_local() {
            // Pinned locals polled by reference: moving them into a combinator would keep a
            // second copy of the handler's state in this future (sizes add up per await level).
            let mut work = std::pin::pin!(self.handle(req));
            let mut expiry = std::pin::pin!(self.clock.sleep_until(deadline));
            return std::future::poll_fn(|cx| {
                if let Poll::Ready(resp) = work.as_mut().poll(cx) {
                    return Poll::Ready(Some(Ok(resp)));
                }
                // Registered only when the handler did not finish at once.
                expiry.as_mut().poll(cx).map(|()| None)
            })
            .await;
        }
        let mut fan = FanOut::start(&self.transport, &self.clock, deadline, [(target, req)]);
        match fan.next().await {
            Next::Reply(_, reply) => Some(reply),
            Next::Expired | Next::Done => None,
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), CoordError> {
        if key.is_empty() || key.len() > self.cfg.max_key_bytes {
            return Err(CoordError::InvalidRequest(format!(
                "key of {} bytes: keys must be 1 to {} bytes",
                key.len(),
                self.cfg.max_key_bytes
            )));
        }
        Ok(())
    }

    fn check_preference(&self, preference: &[Replica]) -> Result<usize, CoordError> {
        if preference.is_empty() {
            return Err(CoordError::InvalidRequest("empty preference list".into()));
        }
        let mut nodes: Vec<_> = preference.iter().map(|p| p.node).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() != preference.len() {
            return Err(CoordError::InvalidRequest(
                "preference list names a node twice".into(),
            ));
        }
        Ok(preference.len())
    }

    /// After answering a read: collect the late replies, then send the merge of everything
    /// heard to every replica whose reply differed, failed or never came. Skipped (and left to
    /// anti-entropy) when this shard already runs `max_background_repairs`.
    fn read_repair(
        &self,
        key: Bytes,
        preference: Vec<Replica>,
        replies: Vec<(Replica, Record)>,
        answered: &Record,
        fan: FanOut,
    ) {
        let all_answered = fan.unanswered().next().is_none();
        if all_answered && replies.iter().all(|(_, rec)| rec == answered) {
            return;
        }
        let running = self.repairs_running.get();
        if running >= self.cfg.max_background_repairs {
            debug!(running, "read repair skipped: too many running");
            return;
        }
        self.repairs_running.set(running + 1);
        let guard = RepairGuard(Rc::clone(&self.repairs_running));
        let transport = Rc::clone(&self.transport);
        let clock = Rc::clone(&self.clock);
        let repair_timeout = self.cfg.repair_timeout_ms;
        self.spawner.spawn(Box::pin(async move {
            let _guard = guard;
            let mut fan = fan;
            let mut replies = replies;
            loop {
                match fan.next().await {
                    Next::Reply(p, Ok(ReplicaResponse::GetOk { record })) => {
                        replies.push((p, record.unwrap_or_default()));
                    }
                    Next::Reply(..) => {}
                    Next::Expired | Next::Done => break,
                }
            }
            let merged = Record::sync_all(replies.iter().map(|(_, rec)| rec));
            if merged.is_empty() {
                return;
            }
            let stale = preference
                .into_iter()
                .filter(|p| !replies.iter().any(|(q, rec)| q == p && *rec == merged));
            let calls: Vec<_> = stale
                .map(|p| {
                    let req = ReplicaRequest::Put {
                        key: key.clone(),
                        record: merged.clone(),
                    };
                    (p, req)
                })
                .collect();
            if calls.is_empty() {
                return;
            }
            let deadline = clock.now_ms().saturating_add(repair_timeout);
            let mut fan = FanOut::start(&transport, &clock, deadline, calls);
            loop {
                match fan.next().await {
                    Next::Reply(_, Ok(ReplicaResponse::PutOk)) => {}
                    Next::Reply(p, other) => {
                        let why = failure_of(other, "put");
                        debug!(replica = %p, %why, "read repair write failed");
                    }
                    Next::Expired | Next::Done => break,
                }
            }
        }));
    }
}

/// Decrements the running-repairs count however the repair task ends (including being dropped).
struct RepairGuard(Rc<std::cell::Cell<usize>>);

impl Drop for RepairGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}
