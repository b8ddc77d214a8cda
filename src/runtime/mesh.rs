//! The shard mesh: a full mesh of bounded glommio channels between the shards of one node, with
//! request/response on top (`call(shard, request) -> response`). Knows no keys or formats: the
//! request and response types are parameters.
//!
//! Invariants:
//! - A request arrives only at the shard it was addressed to (asserted on arrival).
//! - Handlers run on the receiving shard and must not themselves `call` through the mesh: then
//!   every handler finishes without waiting on the mesh, so the bounded channels cannot deadlock
//!   (a receive loop waiting for a handler permit always gets one back).
//! - Everything is bounded: channel capacity, handlers in flight per peer, pending calls (each
//!   pending entry is removed when its call completes or is dropped, e.g. by a timeout).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::sync::Semaphore;
use thiserror::Error;

use super::executor::RuntimeError;

/// What travels between shards.
pub enum MeshMsg<Q, P> {
    Req {
        id: u64,
        from: u16,
        to: u16,
        body: Q,
    },
    Resp {
        id: u64,
        to: u16,
        body: P,
    },
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MeshError {
    #[error("shard {0} does not exist on this node")]
    NoSuchShard(u16),
    #[error("shard {0} is shutting down")]
    Closed(u16),
    #[error("a call to the own shard {0} must be made directly, not through the mesh")]
    SelfCall(u16),
}

/// Cloned into every shard before the executors start (it is `Send`).
pub struct MeshSetup<Q: Send, P: Send> {
    builder: MeshBuilder<MeshMsg<Q, P>, Full>,
    /// shard -> glommio peer index, published by each shard once it joined (start-up only).
    peer_table: Arc<Vec<AtomicUsize>>,
}

impl<Q: Send, P: Send> Clone for MeshSetup<Q, P> {
    fn clone(&self) -> Self {
        MeshSetup {
            builder: self.builder.clone(),
            peer_table: self.peer_table.clone(),
        }
    }
}

const UNSET: usize = usize::MAX;

impl<Q: Send + 'static, P: Send + 'static> MeshSetup<Q, P> {
    pub fn new(shards: u16, capacity: usize) -> Self {
        MeshSetup {
            builder: MeshBuilder::full(usize::from(shards), capacity.max(1)),
            peer_table: Arc::new((0..shards).map(|_| AtomicUsize::new(UNSET)).collect()),
        }
    }
}

/// Incoming side of one shard, consumed by [`ShardMesh::serve`].
pub struct MeshInbox<Q: Send, P: Send> {
    receivers: Receivers<MeshMsg<Q, P>>,
}

pub type Handler<Q, P> = Rc<dyn Fn(Q) -> Pin<Box<dyn Future<Output = P>>>>;

/// One shard's end of the mesh.
pub struct ShardMesh<Q: Send, P: Send> {
    me: u16,
    peer_of: Vec<usize>,
    shard_of: HashMap<usize, u16>,
    senders: Senders<MeshMsg<Q, P>>,
    pending: RefCell<HashMap<u64, LocalSender<P>>>,
    next_id: Cell<u64>,
    closed: Cell<bool>,
}

impl<Q: Send + 'static, P: Send + 'static> ShardMesh<Q, P> {
    /// Joins the mesh from inside shard `me`'s executor; waits (bounded) until every shard joined.
    pub async fn join(
        setup: MeshSetup<Q, P>,
        me: u16,
    ) -> Result<(Rc<Self>, MeshInbox<Q, P>), RuntimeError> {
        let shards = setup.peer_table.len();
        let (senders, receivers) = setup
            .builder
            .join()
            .await
            .map_err(|e| RuntimeError::Mesh(format!("shard {me} cannot join: {e}")))?;
        setup.peer_table[usize::from(me)].store(receivers.peer_id(), Ordering::Release);
        // Every shard publishes right after its join returns, which happens only once all have
        // joined; the wait is short, but bounded in case a shard died during start-up.
        let deadline = Instant::now() + Duration::from_secs(30);
        let peer_of = loop {
            let v: Vec<usize> = setup
                .peer_table
                .iter()
                .map(|a| a.load(Ordering::Acquire))
                .collect();
            if v.iter().all(|&p| p != UNSET) {
                break v;
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Mesh(format!(
                    "shard {me}: not every shard joined the mesh within 30 s"
                )));
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        };
        debug_assert_eq!(peer_of.len(), shards);
        let shard_of = peer_of
            .iter()
            .enumerate()
            .map(|(s, &p)| (p, s as u16))
            .collect();
        let mesh = Rc::new(ShardMesh {
            me,
            peer_of,
            shard_of,
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            closed: Cell::new(false),
        });
        Ok((mesh, MeshInbox { receivers }))
    }

    pub fn shard(&self) -> u16 {
        self.me
    }

    pub fn shards(&self) -> u16 {
        self.peer_of.len() as u16
    }

    /// Number of calls waiting for a response (for tests and stats).
    pub fn pending_calls(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Sends `body` to shard `to` and waits for its response. Dropping the future abandons the
    /// call (the late response is discarded). Waits while the channel to `to` is full.
    pub async fn call(&self, to: u16, body: Q) -> Result<P, MeshError> {
        if to == self.me {
            return Err(MeshError::SelfCall(to));
        }
        let peer = *self
            .peer_of
            .get(usize::from(to))
            .ok_or(MeshError::NoSuchShard(to))?;
        if self.closed.get() {
            return Err(MeshError::Closed(self.me));
        }
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        let _guard = PendingGuard {
            pending: &self.pending,
            id,
        };
        let msg = MeshMsg::Req {
            id,
            from: self.me,
            to,
            body,
        };
        if self.senders.send_to(peer, msg).await.is_err() {
            return Err(MeshError::Closed(to));
        }
        rx.recv().await.ok_or(MeshError::Closed(to))
    }

    /// Starts the receive loops: requests go to `handler` (at most `max_inflight` at a time per
    /// sending shard), responses complete pending calls. The loops end when the peers close.
    pub fn serve(
        self: &Rc<Self>,
        mut inbox: MeshInbox<Q, P>,
        handler: Handler<Q, P>,
        max_inflight: usize,
    ) {
        for (peer, stream) in inbox.receivers.streams() {
            let mesh = self.clone();
            let handler = handler.clone();
            let permits = Rc::new(Semaphore::new(max_inflight.max(1) as u64));
            glommio::spawn_local(async move {
                while let Some(msg) = stream.recv().await {
                    match msg {
                        MeshMsg::Resp { id, to, body } => {
                            debug_assert_eq!(
                                to, mesh.me,
                                "mesh response delivered to the wrong shard"
                            );
                            // Absent = the caller gave up (timeout); the response is dropped.
                            let tx = mesh.pending.borrow_mut().remove(&id);
                            if let Some(tx) = tx {
                                let _ = tx.try_send(body);
                            }
                        }
                        MeshMsg::Req { id, from, to, body } => {
                            assert_eq!(
                                to, mesh.me,
                                "mesh request for shard {to} arrived at shard {}",
                                mesh.me
                            );
                            debug_assert_eq!(mesh.shard_of.get(&peer), Some(&from));
                            let Ok(permit) = permits.acquire_static_permit(1).await else {
                                break;
                            };
                            let mesh = mesh.clone();
                            let handler = handler.clone();
                            glommio::spawn_local(async move {
                                let resp = handler(body).await;
                                // Free the permit before a possibly blocking send (see module doc).
                                drop(permit);
                                let Some(&peer) = mesh.peer_of.get(usize::from(from)) else {
                                    return;
                                };
                                let _ = mesh
                                    .senders
                                    .send_to(
                                        peer,
                                        MeshMsg::Resp {
                                            id,
                                            to: from,
                                            body: resp,
                                        },
                                    )
                                    .await;
                            })
                            .detach();
                        }
                    }
                }
            })
            .detach();
        }
    }

    /// Stops new calls and closes this shard's sending side; peers' receive loops then end.
    pub fn close(&self) {
        self.closed.set(true);
        self.senders.close();
        // Fail the calls still waiting: their senders are dropped, so `recv` returns None.
        self.pending.borrow_mut().clear();
    }
}

struct PendingGuard<'a, P> {
    pending: &'a RefCell<HashMap<u64, LocalSender<P>>>,
    id: u64,
}

impl<P> Drop for PendingGuard<'_, P> {
    fn drop(&mut self) {
        self.pending.borrow_mut().remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::executor::{run_shards, ExecutorSpec};

    #[test]
    fn every_shard_calls_every_other_shard() {
        let shards = 3u16;
        let setup: MeshSetup<(u16, u64), (u16, u64)> = MeshSetup::new(shards, 8);
        let spec = ExecutorSpec {
            shards,
            pin: false,
            name: "mesh-test".into(),
            idle_poll: std::time::Duration::ZERO,
        };
        let done = Arc::new(AtomicUsize::new(0));
        let out = run_shards(&spec, move |me| {
            let setup = setup.clone();
            let done = done.clone();
            async move {
                let (mesh, inbox) = ShardMesh::join(setup, me).await.unwrap();
                let handler: Handler<(u16, u64), (u16, u64)> = Rc::new(move |(from, x)| {
                    Box::pin(async move {
                        assert_ne!(from, me);
                        (me, x * 2)
                    })
                });
                mesh.serve(inbox, handler, 4);
                let mut sum = 0;
                // More calls than the channel capacity, concurrently, to exercise backpressure.
                let mut tasks = Vec::new();
                for i in 0..40u64 {
                    let to = (me + 1 + (i % 2) as u16) % shards;
                    let mesh = mesh.clone();
                    tasks.push(glommio::spawn_local(async move {
                        let (who, y) = mesh.call(to, (me, i)).await.unwrap();
                        assert_eq!(who, to, "answered by the addressed shard");
                        y
                    }));
                }
                for t in tasks {
                    sum += t.await;
                }
                assert_eq!(mesh.call(me, (me, 0)).await, Err(MeshError::SelfCall(me)));
                assert_eq!(mesh.pending_calls(), 0);
                // Keep serving until every shard is done calling (bounded wait).
                done.fetch_add(1, Ordering::AcqRel);
                let deadline = Instant::now() + Duration::from_secs(20);
                while done.load(Ordering::Acquire) < usize::from(shards) {
                    assert!(Instant::now() < deadline, "peers never finished");
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                sum
            }
        })
        .unwrap();
        assert_eq!(out, vec![(0..40u64).map(|i| i * 2).sum::<u64>(); 3]);
    }
}
