//! One shard of a running node: its store, coordinator, transport, mesh end, listeners and
//! connections. Everything here lives on the shard's own executor (`Rc`, no locks).
//!
//! Start-up order matters: join the mesh first (every shard must, or the others wait), then
//! open the store and bind the listeners; a failure there triggers the node-wide shutdown so the
//! other shards stop too. Shutdown: stop accepting, let connections finish their in-flight
//! requests (each bounded by its deadline), wait (bounded) until every shard has drained so
//! cross-shard calls still find their target, then close the store.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::net::TcpListener;

use super::conn::{serve_conn, ConnLimits, Dispatch};
use super::shutdown::Shutdown;
use super::transport::{LocalHandler, PeerSettings, ShardTransport};
use super::wire;
use super::ShardError;
use crate::config::Config;
use crate::coordinator::{
    Coordinator, CoordinatorConfig, Replica, ReplicaRequest, ReplicaResponse, ReplicaStore,
    Transport,
};
use crate::membership::ClusterView;
use crate::net::{
    ClientRequest, ClientResponse, DeleteRequest, ErrorCode, GetRequest, Limits, PutRequest,
    ReplicaRequestWire, ReplicaResponseWire, ReqOptions, WireError,
};
use crate::runtime::clock_glommio::{GlommioClock, GlommioSpawner};
use crate::runtime::mesh::{Handler, MeshSetup, ShardMesh};

/// A shard's store as the server manages it: the replica view plus an orderly close.
#[allow(async_fn_in_trait)]
pub trait ShardStore: ReplicaStore {
    /// Make everything acknowledged durable and release files. Called once, after draining.
    async fn close(&self) -> Result<(), ShardError>;
}

pub type ShardCoordinator<S> = Coordinator<ShardTransport, GlommioClock, S, GlommioSpawner>;

/// Node-wide handles every shard gets (all `Send`).
#[derive(Clone)]
pub struct NodeShared {
    pub cfg: Arc<Config>,
    pub shutdown: Shutdown,
    pub mesh: MeshSetup<ReplicaRequest, ReplicaResponse>,
    /// Shards that finished draining their connections (shutdown barrier).
    pub drained: Arc<AtomicUsize>,
}

/// The connection layer's view of a shard.
pub struct ShardDispatch<S: ShardStore> {
    me: Replica,
    view: Rc<ClusterView>,
    coord: Rc<ShardCoordinator<S>>,
    transport: Rc<ShardTransport>,
    default_timeout_ms: u64,
    /// Requests slower than this are logged; `None`: never.
    slow_request: Option<Duration>,
}

impl<S: ShardStore> Dispatch for ShardDispatch<S> {
    // A plain `fn` returning one `async move` block, not nested `async fn`s: an `async fn`
    // keeps each argument twice in its state (argument slot and the local it is moved into), a
    // callee taking `req` by value keeps it again, and this future is most of every request's
    // task (`conn::client_task_size`).
    fn client(
        self: Rc<Self>,
        req: ClientRequest,
    ) -> impl Future<Output = Result<ClientResponse, WireError>> + 'static {
        // What the log line needs, taken before `req` is taken apart.
        let op = match &req {
            ClientRequest::Get(_) => "get",
            ClientRequest::Put(_) => "put",
            ClientRequest::Delete(_) => "delete",
        };
        let key_len = req.key().len();
        let pref = self.view.preference_list(req.key());
        async move {
            // The fast path pays one clock read; a span is built only for a slow or failed
            // request, so the log says what was asked, of whom, how long it took and why it
            // failed.
            let started = Instant::now();
            // Each arm takes the request apart in an inner block, so only the pieces the
            // coordinator call keeps stay in this future's state across the await.
            let res = match req {
                ClientRequest::Get(g) => {
                    let (key, opts) = {
                        let GetRequest { key, opts } = g;
                        (key, wire::read_options(&opts))
                    };
                    match self.coord.get(key, &pref, &opts).await {
                        Ok(reply) => {
                            let (siblings, context) = wire::record_to_client(&reply.record);
                            Ok(ClientResponse::Get { siblings, context })
                        }
                        Err(e) => Err(wire::coord_error_to_wire(&e)),
                    }
                }
                ClientRequest::Put(PutRequest {
                    key,
                    value,
                    context,
                    opts,
                }) => self
                    .write(key, Some(value), &context, &opts, &pref)
                    .await
                    .map(|context| ClientResponse::Put { context }),
                ClientRequest::Delete(DeleteRequest { key, context, opts }) => self
                    .write(key, None, &context, &opts, &pref)
                    .await
                    .map(|context| ClientResponse::Delete { context }),
            };
            let took = started.elapsed();
            let slow = self.slow_request.is_some_and(|limit| took >= limit);
            if slow || res.is_err() {
                let span = tracing::warn_span!(
                    "request",
                    node = self.me.node,
                    shard = self.me.shard,
                    op,
                    key_len
                );
                let _enter = span.enter();
                let took_us = took.as_micros() as u64;
                match &res {
                    // Failures the coordinator saw (replicas, deadlines, overload) are the
                    // operator's business; refusals of a bad request are the client's and stay
                    // at debug.
                    Err(e) if is_server_side(e.code) => {
                        tracing::warn!(took_us, code = ?e.code, acked = e.acked, needed = e.needed, error = %e.message, "request failed")
                    }
                    Err(e) => {
                        tracing::debug!(took_us, code = ?e.code, error = %e.message, "request refused")
                    }
                    Ok(_) => tracing::warn!(took_us, "slow request"),
                }
            }
            res
        }
    }

    async fn replica(
        &self,
        shard: Option<u16>,
        req: ReplicaRequestWire,
    ) -> Result<ReplicaResponseWire, WireError> {
        let pref = self.view.preference_list(replica_key(&req));
        let target = match shard {
            Some(s) => s,
            // No shard named (e.g. `tern debug-read`): this node's replica of the key, if any.
            None => match pref.iter().find(|r| r.node == self.me.node) {
                Some(r) => r.shard,
                None => {
                    let list: Vec<String> = pref.iter().map(|r| r.to_string()).collect();
                    return Err(WireError::new(
                        ErrorCode::NotOwner,
                        format!(
                            "node {} holds no replica of this key; its replicas are: {}",
                            self.me.node,
                            list.join(", ")
                        ),
                    ));
                }
            },
        };
        let owner = Replica {
            node: self.me.node,
            shard: target,
        };
        if let ReplicaRequestWire::Put {
            hint_for: Some(real_owner),
            ..
        } = req
        {
            // Hinted handoff does not exist yet: storing the hint as a normal record would put
            // a stray record in a range this node does not own, and dropping the hint would lose
            // the handoff. Refuse, so the sender counts this replica as failed.
            return Err(WireError::new(
                ErrorCode::Unsupported,
                format!(
                    "node {} does not take hinted writes (hint for node {real_owner}): hinted \
                     handoff is not implemented",
                    self.me.node
                ),
            ));
        }
        if !pref.contains(&owner) {
            // Sender and receiver disagree on the ring: refuse rather than store stray data.
            return Err(WireError::new(
                ErrorCode::NotOwner,
                format!("{owner} is not a replica of this key on this node's ring"),
            ));
        }
        let req = wire::request_from_wire(req, move |_| pref, self.default_timeout_ms)?;
        let resp = if target == self.me.shard {
            self.coord.handle(req).await
        } else {
            // Arrived on another shard's socket (e.g. the shared client port): hand it over.
            let to = Replica {
                node: self.me.node,
                shard: target,
            };
            self.transport.call(to, req).await.map_err(|e| {
                WireError::new(ErrorCode::Unavailable, format!("shard {target}: {e}"))
            })?
        };
        wire::response_to_wire(resp)
    }
}

/// Errors that say something about the cluster's health rather than about the request.
fn is_server_side(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::QuorumFailed
            | ErrorCode::Timeout
            | ErrorCode::Overloaded
            | ErrorCode::Unavailable
            | ErrorCode::Internal
            | ErrorCode::Unknown
            | ErrorCode::Other(_)
    )
}

impl<S: ShardStore> ShardDispatch<S> {
    /// A put or delete; answers the new causal context in wire form. The coordinator's write
    /// future is boxed: inline it would make every request's task (GETs included) larger than
    /// glibc's thread-cache limit, boxed both allocations stay under it.
    async fn write(
        &self,
        key: Bytes,
        value: Option<Bytes>,
        context: &Bytes,
        opts: &ReqOptions,
        pref: &[Replica],
    ) -> Result<Bytes, WireError> {
        let ctx = wire::context_from_wire(context)?;
        let opts = wire::write_options(opts);
        let ack = Box::pin(self.coord.put(key, value, ctx, pref, &opts))
            .await
            .map_err(|e| wire::coord_error_to_wire(&e))?;
        Ok(wire::context_to_wire(&ack.context))
    }
}

fn replica_key(req: &ReplicaRequestWire) -> &[u8] {
    match req {
        ReplicaRequestWire::Put { key, .. } | ReplicaRequestWire::Get { key } => key,
        ReplicaRequestWire::Coordinate(c) => &c.key,
    }
}

/// Limits every connection of this node applies (from the validated config).
pub fn net_limits(cfg: &Config) -> Limits {
    Limits {
        max_frame_len: cfg.max_frame_bytes,
        max_key_len: cfg.max_key_bytes,
        max_value_len: cfg.max_value_bytes,
        max_siblings: cfg.sibling_cap.max(Limits::default().max_siblings),
        ..Limits::default()
    }
}

/// Runs shard `shard` until shutdown. `open_store` opens this shard's storage.
pub async fn run_shard<S, F, Fut>(
    shared: NodeShared,
    shard: u16,
    open_store: F,
) -> Result<(), ShardError>
where
    S: ShardStore,
    F: FnOnce(u16) -> Fut,
    Fut: std::future::Future<Output = Result<S, ShardError>>,
{
    let cfg = shared.cfg.clone();
    let (mesh, inbox) = ShardMesh::join(shared.mesh.clone(), shard).await?;
    // A shard that cannot start stops the whole node: its ranges would be unserved.
    let fail = |e: ShardError| {
        tracing::error!(shard, error = %e, "shard failed to start");
        shared.shutdown.trigger();
        e
    };
    let view = Rc::new(ClusterView::from_config(&cfg).map_err(|e| fail(e.into()))?);
    let store = Rc::new(open_store(shard).await.map_err(&fail)?);
    let me = Replica {
        node: cfg.node_id,
        shard,
    };
    let limits = net_limits(&cfg);
    let transport = Rc::new(ShardTransport::new(
        me,
        mesh.clone(),
        view.clone(),
        PeerSettings {
            local_ip: cfg.listen,
            per_target: cfg.peer_connections,
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            limits,
        },
    ));
    let mut ccfg = CoordinatorConfig::new(cfg.replication, cfg.nodes.len());
    ccfg.max_siblings = cfg.sibling_cap;
    ccfg.max_key_bytes = cfg.max_key_bytes;
    ccfg.max_value_bytes = cfg.max_value_bytes;
    ccfg.default_timeout_ms = cfg.timeout_ms;
    ccfg.max_timeout_ms = ccfg.max_timeout_ms.max(cfg.timeout_ms);
    let coord = Rc::new(
        Coordinator::new(
            me,
            ccfg,
            transport.clone(),
            Rc::new(GlommioClock::new()),
            store.clone(),
            Rc::new(GlommioSpawner),
        )
        .map_err(|e| fail(e.into()))?,
    );
    let local: LocalHandler = {
        let c = coord.clone();
        Rc::new(move |req| {
            let c = c.clone();
            Box::pin(async move { c.handle(req).await })
        })
    };
    transport.set_local_handler(local.clone());
    let mesh_handler: Handler<ReplicaRequest, ReplicaResponse> = local;
    mesh.serve(inbox, mesh_handler, 1024);

    let me_info = cfg.me().clone();
    let client_addr = me_info.client_addr();
    let shard_addr = me_info.shard_addr(shard);
    let listen = |addr| {
        TcpListener::bind(addr).map_err(|e| {
            fail(ShardError::Listen {
                addr,
                source: e.into(),
            })
        })
    };
    let client_l = listen(client_addr)?;
    let shard_l = listen(shard_addr)?;
    tracing::info!(node = cfg.node_id, shard, %client_addr, %shard_addr, "shard ready");

    let dispatch = Rc::new(ShardDispatch {
        me,
        view,
        coord: coord.clone(),
        transport: transport.clone(),
        default_timeout_ms: cfg.timeout_ms,
        slow_request: (cfg.slow_request_ms > 0).then(|| Duration::from_millis(cfg.slow_request_ms)),
    });
    let conn_limits = ConnLimits {
        net: limits,
        max_inflight: cfg.max_inflight_per_conn,
    };
    let open_conns = Rc::new(Cell::new(0usize));
    let accepts = [client_l, shard_l].map(|l| {
        glommio::spawn_local(accept_loop(
            l,
            dispatch.clone(),
            conn_limits,
            shared.shutdown.clone(),
            open_conns.clone(),
            cfg.max_connections_per_shard,
        ))
        .detach()
    });
    shared.shutdown.wait().await;
    tracing::info!(shard, "shutting down: draining connections");
    for a in accepts {
        let _ = a.await;
    }
    // Connections finish their in-flight requests, each bounded by its timeout.
    let deadline = Instant::now() + Duration::from_millis(cfg.timeout_ms) + Duration::from_secs(2);
    while open_conns.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    // Wait for the other shards so their in-flight calls to us still get answers.
    shared.drained.fetch_add(1, Ordering::AcqRel);
    while shared.drained.load(Ordering::Acquire) < usize::from(cfg.shards)
        && Instant::now() < deadline
    {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    mesh.close();
    drop(dispatch);
    drop(coord);
    store.close().await.map_err(|e| {
        tracing::error!(shard, error = %e, "closing the store failed");
        e
    })?;
    tracing::info!(shard, "shard stopped");
    Ok(())
}

async fn accept_loop<D: Dispatch>(
    listener: TcpListener,
    dispatch: Rc<D>,
    limits: ConnLimits,
    shutdown: Shutdown,
    open: Rc<Cell<usize>>,
    max_conns: usize,
) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= max_conns {
            tracing::warn!(max_conns, "connection limit reached; refusing a connection");
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let (d, o, s) = (dispatch.clone(), open.clone(), shutdown.clone());
        glommio::spawn_local(async move {
            serve_conn(stream, d, limits, async move { s.wait().await }).await;
            o.set(o.get() - 1);
        })
        .detach();
    }
}

/// A store that keeps records in memory only (for tests of the wiring; data is lost on exit).
impl ShardStore for crate::coordinator::MemStore {
    async fn close(&self) -> Result<(), ShardError> {
        Ok(())
    }
}
