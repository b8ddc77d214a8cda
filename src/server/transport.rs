//! The real [`Transport`] of one shard: a request to this very shard runs the local handler, one
//! to another shard of this node goes over the shard mesh, one to another node goes over a small
//! pool of TCP connections from this shard straight to the target shard's port on that node.
//!
//! Peer connections are pipelined (many requests in flight, matched by request id), reused,
//! bound to this node's own IP, and re-established on demand with exponential backoff: while a
//! peer is in backoff, calls fail at once as `Unreachable` (they were certainly not delivered),
//! which is what lets a write to a dead node fail fast instead of waiting for its deadline.
//! A connection that breaks fails its in-flight calls as `Lost` (they may have been applied).
//!
//! Bounds: connections per target (`peer_connections`), calls pending per connection
//! ([`MAX_PENDING_PER_CONN`], past it `Overloaded`), the connect timeout, the backoff cap.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;

use super::conn::dup_stream;
use super::wire;
use crate::coordinator::{Replica, ReplicaRequest, ReplicaResponse, Transport, TransportError};
use crate::membership::ClusterView;
use crate::net::handshake::{ClientHello, ServerHello, FLAG_PEER_NODE, SERVER_HELLO_LEN};
use crate::net::{
    decode_frame, Encoder, Envelope, FrameDecoder, Limits, Message, ReplicaResponseWire, WireError,
    PROTOCOL_VERSION,
};
use crate::runtime::mesh::{MeshError, ShardMesh};
use crate::runtime::tcp::connect_from;

/// Calls waiting for an answer on one peer connection before new ones are refused.
pub const MAX_PENDING_PER_CONN: usize = 4096;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub type LocalHandler =
    Rc<dyn Fn(ReplicaRequest) -> Pin<Box<dyn Future<Output = ReplicaResponse>>>>;
pub type ReplicaMesh = ShardMesh<ReplicaRequest, ReplicaResponse>;

/// Settings of the peer connections.
#[derive(Clone, Copy, Debug)]
pub struct PeerSettings {
    pub local_ip: IpAddr,
    pub per_target: usize,
    pub connect_timeout: Duration,
    pub limits: Limits,
}

pub struct ShardTransport {
    me: Replica,
    local: RefCell<Option<LocalHandler>>,
    mesh: Rc<ReplicaMesh>,
    view: Rc<ClusterView>,
    settings: PeerSettings,
    pools: RefCell<HashMap<Replica, Rc<Vec<Rc<PeerConn>>>>>,
    rr: Cell<usize>,
}

impl ShardTransport {
    pub fn new(
        me: Replica,
        mesh: Rc<ReplicaMesh>,
        view: Rc<ClusterView>,
        settings: PeerSettings,
    ) -> Self {
        ShardTransport {
            me,
            local: RefCell::new(None),
            mesh,
            view,
            settings,
            pools: RefCell::new(HashMap::new()),
            rr: Cell::new(0),
        }
    }

    /// Installs the handler for calls addressed to this shard (the coordinator, built after the
    /// transport it uses).
    pub fn set_local_handler(&self, h: LocalHandler) {
        *self.local.borrow_mut() = Some(h);
    }

    fn conn_for(&self, to: Replica) -> Result<Rc<PeerConn>, TransportError> {
        let pool = {
            let mut pools = self.pools.borrow_mut();
            match pools.get(&to) {
                Some(p) => p.clone(),
                None => {
                    let node =
                        self.view
                            .node(to.node)
                            .ok_or_else(|| TransportError::Unreachable {
                                reason: format!("node {} is not a cluster member", to.node),
                            })?;
                    if to.shard >= node.shards {
                        return Err(TransportError::Unreachable {
                            reason: format!("node {} has no shard {}", to.node, to.shard),
                        });
                    }
                    let addr = node.shard_addr(to.shard);
                    let conns: Vec<Rc<PeerConn>> = (0..self.settings.per_target.max(1))
                        .map(|_| Rc::new(PeerConn::new(to, addr, self.settings)))
                        .collect();
                    let p = Rc::new(conns);
                    pools.insert(to, p.clone());
                    p
                }
            }
        };
        let i = self.rr.get();
        self.rr.set(i.wrapping_add(1));
        Ok(pool[i % pool.len()].clone())
    }
}

impl Transport for ShardTransport {
    type Addr = Replica;
    type Request = ReplicaRequest;
    type Response = ReplicaResponse;

    fn self_calls_are_local(&self) -> bool {
        // `call` below runs the local handler (the coordinator's `handle`) for `to == me`.
        true
    }

    async fn call(
        &self,
        to: Replica,
        req: ReplicaRequest,
    ) -> Result<ReplicaResponse, TransportError> {
        if to == self.me {
            let h = self.local.borrow().clone();
            let h = h.ok_or_else(|| TransportError::Unreachable {
                reason: "this shard is still starting".into(),
            })?;
            return Ok(h(req).await);
        }
        if to.node == self.me.node {
            return self.mesh.call(to.shard, req).await.map_err(|e| match e {
                MeshError::Closed(_) => TransportError::Lost {
                    reason: e.to_string(),
                },
                _ => TransportError::Unreachable {
                    reason: e.to_string(),
                },
            });
        }
        let conn = self.conn_for(to)?;
        conn.call(req).await
    }
}

enum State {
    Idle {
        retry_at: Instant,
        backoff: Duration,
        last_error: Option<String>,
    },
    Connecting {
        waiters: Vec<LocalSender<()>>,
    },
    Up(Rc<Link>),
}

struct PeerConn {
    target: Replica,
    addr: SocketAddr,
    settings: PeerSettings,
    state: RefCell<State>,
}

type Answer = Result<Result<ReplicaResponseWire, WireError>, TransportError>;

struct Link {
    out: RefCell<Vec<u8>>,
    encoder: RefCell<Encoder>,
    wake: LocalSender<()>,
    pending: RefCell<HashMap<u64, LocalSender<Answer>>>,
    next_id: Cell<u64>,
    alive: Cell<bool>,
}

impl Link {
    fn fail_all(&self, reason: &str) {
        self.alive.set(false);
        let pending: Vec<_> = self.pending.borrow_mut().drain().collect();
        for (_, tx) in pending {
            let _ = tx.try_send(Err(TransportError::Lost {
                reason: reason.to_owned(),
            }));
        }
        let _ = self.wake.try_send(());
    }
}

impl PeerConn {
    fn new(target: Replica, addr: SocketAddr, settings: PeerSettings) -> Self {
        PeerConn {
            target,
            addr,
            settings,
            state: RefCell::new(State::Idle {
                retry_at: Instant::now(),
                backoff: BACKOFF_MIN,
                last_error: None,
            }),
        }
    }

    async fn call(self: &Rc<Self>, req: ReplicaRequest) -> Result<ReplicaResponse, TransportError> {
        let link = self.link().await?;
        let asked_w = match &req {
            ReplicaRequest::Coordinate(c) => c.w,
            _ => 0,
        };
        if link.pending.borrow().len() >= MAX_PENDING_PER_CONN {
            return Err(TransportError::Overloaded);
        }
        let id = link.next_id.get();
        link.next_id.set(id.wrapping_add(1));
        let env = Envelope {
            version: PROTOCOL_VERSION,
            request_id: id,
            target_shard: Some(self.target.shard),
            message: Message::Replica(wire::request_to_wire(&req)),
        };
        {
            let mut enc = link.encoder.borrow_mut();
            let mut out = link.out.borrow_mut();
            enc.encode_into(&env, &mut out)
                .map_err(|e| TransportError::Unreachable {
                    reason: format!("request not sent: {e}"),
                })?;
        }
        let (tx, rx) = local_channel::new_bounded(1);
        link.pending.borrow_mut().insert(id, tx);
        let _ = link.wake.try_send(());
        let guard = PendingGuard { link: &link, id };
        let answer = rx.recv().await;
        drop(guard);
        match answer {
            Some(Ok(resp)) => Ok(wire::response_from_wire(resp, asked_w)),
            Some(Err(e)) => Err(e),
            None => Err(TransportError::Lost {
                reason: format!("connection to {} closed", self.addr),
            }),
        }
    }

    /// The live link, connecting if needed (one connect at a time; others wait for it).
    async fn link(self: &Rc<Self>) -> Result<Rc<Link>, TransportError> {
        // Bounded: at most one connect attempt is awaited per call.
        for _ in 0..3 {
            let wait = {
                let mut st = self.state.borrow_mut();
                match &mut *st {
                    State::Up(link) if link.alive.get() => return Ok(link.clone()),
                    State::Up(_) => {
                        *st = State::Idle {
                            retry_at: Instant::now(),
                            backoff: BACKOFF_MIN,
                            last_error: Some("connection closed".into()),
                        };
                        continue;
                    }
                    State::Idle {
                        retry_at,
                        last_error,
                        ..
                    } if Instant::now() < *retry_at => {
                        return Err(TransportError::Unreachable {
                            reason: format!(
                                "{} ({}): {}; next attempt in {} ms",
                                self.addr,
                                self.target,
                                last_error.as_deref().unwrap_or("not connected"),
                                retry_at
                                    .saturating_duration_since(Instant::now())
                                    .as_millis()
                            ),
                        });
                    }
                    State::Idle { backoff, .. } => {
                        let backoff = *backoff;
                        let (tx, rx) = local_channel::new_bounded(1);
                        *st = State::Connecting { waiters: vec![tx] };
                        // Spawned after the borrow ends: glommio may run a new task right away.
                        drop(st);
                        glommio::spawn_local(self.clone().connect(backoff)).detach();
                        rx
                    }
                    State::Connecting { waiters } => {
                        let (tx, rx) = local_channel::new_bounded(1);
                        waiters.push(tx);
                        rx
                    }
                }
            };
            let _ = wait.recv().await;
        }
        Err(TransportError::Unreachable {
            reason: format!("{} ({}): not connected", self.addr, self.target),
        })
    }

    async fn connect(self: Rc<Self>, backoff: Duration) {
        let result = self.open().await;
        let waiters = match std::mem::replace(
            &mut *self.state.borrow_mut(),
            State::Idle {
                retry_at: Instant::now(),
                backoff: BACKOFF_MIN,
                last_error: None,
            },
        ) {
            State::Connecting { waiters } => waiters,
            _ => Vec::new(),
        };
        match result {
            Ok(link) => {
                tracing::debug!(peer = %self.addr, target = %self.target, "peer connection up");
                *self.state.borrow_mut() = State::Up(link);
            }
            Err(e) => {
                tracing::debug!(peer = %self.addr, error = %e, "peer connection failed");
                *self.state.borrow_mut() = State::Idle {
                    retry_at: Instant::now() + backoff,
                    backoff: (backoff * 2).min(BACKOFF_MAX),
                    last_error: Some(e),
                };
            }
        }
        for w in waiters {
            let _ = w.try_send(());
        }
    }

    async fn open(self: &Rc<Self>) -> Result<Rc<Link>, String> {
        let s = &self.settings;
        let mut stream = connect_from(s.local_ip, self.addr, s.connect_timeout)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let hello = ClientHello {
            version: PROTOCOL_VERSION,
            flags: FLAG_PEER_NODE,
        };
        let hs = async {
            stream.write_all(&hello.encode()).await?;
            let mut h = [0u8; SERVER_HELLO_LEN];
            stream.read_exact(&mut h).await?;
            Ok::<_, std::io::Error>(h)
        };
        let h = glommio::timer::timeout(s.connect_timeout, async { Ok(hs.await) })
            .await
            .map_err(|_| "hello timed out".to_owned())?
            .map_err(|e| format!("hello: {e}"))?;
        ServerHello::decode(&h)
            .and_then(|sh| sh.check())
            .map_err(|e| format!("hello: {e}"))?;
        let wstream = dup_stream(&stream).map_err(|e| format!("dup: {e}"))?;
        let (wake_tx, wake_rx) = local_channel::new_bounded(1);
        let link = Rc::new(Link {
            out: RefCell::new(Vec::with_capacity(16 << 10)),
            encoder: RefCell::new(Encoder::new(s.limits)),
            wake: wake_tx,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            alive: Cell::new(true),
        });
        glommio::spawn_local(write_loop(wstream, link.clone(), wake_rx)).detach();
        glommio::spawn_local(read_loop(stream, link.clone(), s.limits, self.addr)).detach();
        Ok(link)
    }
}

struct PendingGuard<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.link.pending.borrow_mut().remove(&self.id);
    }
}

async fn read_loop(mut stream: TcpStream, link: Rc<Link>, limits: Limits, addr: SocketAddr) {
    let mut decoder = FrameDecoder::new(limits.max_frame_len);
    let reason = 'outer: loop {
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => match decode_frame(&frame, &limits) {
                    Ok(env) => {
                        let answer = match env.message {
                            Message::ReplicaReply(r) => Ok(Ok(r)),
                            Message::Error(e) => Ok(Err(e)),
                            other => Err(TransportError::Lost {
                                reason: format!("peer sent an unexpected message: {other:?}"),
                            }),
                        };
                        let tx = link.pending.borrow_mut().remove(&env.request_id);
                        if let Some(tx) = tx {
                            let _ = tx.try_send(answer);
                        }
                    }
                    Err(f) => {
                        tracing::warn!(peer = %addr, error = %f, "undecodable frame from peer");
                        if let Some(id) = f.request_id {
                            let tx = link.pending.borrow_mut().remove(&id);
                            if let Some(tx) = tx {
                                let _ = tx.try_send(Err(TransportError::Lost {
                                    reason: format!("undecodable answer: {f}"),
                                }));
                            }
                        }
                    }
                },
                Ok(None) => break,
                Err(e) => break 'outer format!("framing error from {addr}: {e}"),
            }
        }
        if !link.alive.get() {
            break "closed".to_owned();
        }
        let slot = decoder.read_slot(64 << 10);
        match stream.read(slot).await {
            Ok(0) => {
                decoder.commit(64 << 10, 0);
                break format!("{addr} closed the connection");
            }
            Ok(n) => decoder.commit(64 << 10, n),
            Err(e) => {
                decoder.commit(64 << 10, 0);
                break format!("read from {addr}: {e}");
            }
        }
    };
    link.fail_all(&reason);
    let _ = stream.close().await;
}

async fn write_loop(mut stream: TcpStream, link: Rc<Link>, wake: LocalReceiver<()>) {
    let mut spare = Vec::with_capacity(16 << 10);
    loop {
        if !link.alive.get() {
            break;
        }
        if link.out.borrow().is_empty() {
            if wake.recv().await.is_none() {
                break;
            }
            continue;
        }
        std::mem::swap(&mut *link.out.borrow_mut(), &mut spare);
        let res = stream.write_all(&spare).await;
        spare.clear();
        if let Err(e) = res {
            link.fail_all(&format!("write: {e}"));
            break;
        }
    }
    let _ = stream.close().await;
}
