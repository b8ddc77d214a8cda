//! Token-aware routing (issue 5): the client computes a key's preference list with the same pure
//! [`tern_ring`] code the nodes use and sends the request straight to the owning shard's port
//! (`port + 1 + shard` of the first replica), so the node that receives it is the replica that
//! coordinates: no hop from an arbitrary entry shard to the key's shard.
//!
//! Owns: [`Topology`] (node list + N + vnodes, and the ring built from them) and two wrappers,
//! [`RoutedClient`] (over the blocking [`Client`]) and [`AsyncRoutedClient`] (over
//! [`AsyncClient`]). It must not change what a request means: a routed request is the same
//! request any node would accept; routing only picks where it enters.
//!
//! Where the topology comes from: today the same `--nodes` list the servers were given (the
//! format `tern cluster` prints, with explicit shard counts). A topology request in the protocol
//! (needed once gossip makes membership dynamic) would build the same [`Topology`] through
//! [`Topology::new`].
//!
//! Invariants: a [`Topology`] is validated like a node's config (unique ids and addresses,
//! `1 <= N <= nodes`, every shard port fits in a `u16`), so for the same list the client and every
//! node compute identical preference lists. Connection caches are bounded by the number of shards
//! in the topology.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use thiserror::Error;

use super::async_client::ResponseFuture;
use super::{
    delete_request, get_request, get_result, put_request, write_result, AsyncClient, Client,
    ClientConfig, ClientError, Context, GetResult, OpOptions,
};
use tern_proto::{ClientRequest, ClientResponse};
use tern_ring::{
    NodeEntry, NodeEntryError, NodeId, NodeInfo, Replica, Ring, RingError, DEFAULT_REPLICATION,
    DEFAULT_WEIGHT, MAX_WEIGHT,
};

/// Why a topology could not be built.
#[derive(Debug, Error)]
pub enum RoutingError {
    #[error(transparent)]
    Entry(#[from] NodeEntryError),
    #[error("node entry {0:?} has no shard count: the client cannot guess it; write id@ip:port/shards (as `tern cluster` prints)")]
    MissingShards(String),
    #[error("address {0} appears more than once in the node list")]
    DuplicateAddress(SocketAddr),
    #[error("node {id}: shard ports {port}+1..+{shards} do not fit in a u16")]
    PortOverflow { id: NodeId, port: u16, shards: u16 },
    #[error("replication factor N={n} needs 1..={nodes} (the node count); pass the servers' --replication")]
    BadReplication { n: usize, nodes: usize },
    #[error("vnodes {0} out of range 1..={MAX_WEIGHT}; pass the servers' --vnodes")]
    BadVnodes(u32),
    #[error("cannot build the ring: {0}")]
    Ring(#[from] RingError),
}

/// The cluster as a client needs it: members, N, and the ring they imply.
#[derive(Debug, Clone)]
pub struct Topology {
    nodes: Vec<NodeInfo>,
    replication: usize,
    ring: Ring,
}

impl Topology {
    /// Validates `nodes` (in the servers' order) with replication `n` and `vnodes` per node
    /// (both must match the servers' `--replication` and `--vnodes`).
    pub fn new(nodes: Vec<NodeInfo>, n: usize, vnodes: u32) -> Result<Topology, RoutingError> {
        if n == 0 || n > nodes.len() {
            return Err(RoutingError::BadReplication {
                n,
                nodes: nodes.len(),
            });
        }
        if vnodes == 0 || vnodes > MAX_WEIGHT {
            return Err(RoutingError::BadVnodes(vnodes));
        }
        let mut seen = HashMap::with_capacity(nodes.len());
        for node in &nodes {
            if seen.insert(node.client_addr(), ()).is_some() {
                return Err(RoutingError::DuplicateAddress(node.client_addr()));
            }
            if u32::from(node.port) + u32::from(node.shards) > u32::from(u16::MAX) {
                return Err(RoutingError::PortOverflow {
                    id: node.id,
                    port: node.port,
                    shards: node.shards,
                });
            }
        }
        let specs: Vec<_> = nodes.iter().map(|n| n.ring_spec(vnodes)).collect();
        let ring = Ring::new(&specs)?;
        Ok(Topology {
            nodes,
            replication: n,
            ring,
        })
    }

    /// From the servers' `--nodes` entries (`id@ip:port/shards[#zone]`, shard count required).
    /// `replication` defaults like the servers' (min(3, nodes)), `vnodes` to 256.
    pub fn from_node_list<S: AsRef<str>>(
        entries: &[S],
        replication: Option<usize>,
        vnodes: Option<u32>,
    ) -> Result<Topology, RoutingError> {
        let mut nodes = Vec::with_capacity(entries.len());
        for raw in entries.iter().map(AsRef::as_ref) {
            if raw.trim().is_empty() {
                continue;
            }
            let e: NodeEntry = raw.parse()?;
            let shards = e
                .shards
                .ok_or_else(|| RoutingError::MissingShards(raw.to_owned()))?;
            nodes.push(NodeInfo {
                id: e.id,
                ip: e.ip,
                port: e.port,
                shards,
                zone: e.zone,
            });
        }
        let n = replication.unwrap_or(DEFAULT_REPLICATION.min(nodes.len()));
        Topology::new(nodes, n, vnodes.unwrap_or(DEFAULT_WEIGHT))
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn replication(&self) -> usize {
        self.replication
    }

    /// The N replicas of `key`, in preference order (what every node computes).
    pub fn replicas(&self, key: &[u8]) -> Vec<Replica> {
        self.ring.preference_list(key, self.replication)
    }

    /// Where a request for `key` goes: its first replica, which then coordinates locally.
    pub fn route(&self, key: &[u8]) -> Replica {
        self.ring.primary(tern_ring::token(key))
    }

    /// The port of shard `r.shard` of node `r.node`, if the topology has it.
    pub fn shard_addr(&self, r: Replica) -> Option<SocketAddr> {
        self.nodes
            .iter()
            .find(|n| n.id == r.node && r.shard < n.shards)
            .map(|n| n.shard_addr(r.shard))
    }

    /// Every shard of every node, with its address (what [`AsyncRoutedClient`] connects to).
    pub fn all_shards(&self) -> impl Iterator<Item = (Replica, SocketAddr)> + '_ {
        self.nodes.iter().flat_map(|n| {
            (0..n.shards).map(move |s| {
                (
                    Replica {
                        node: n.id,
                        shard: s,
                    },
                    n.shard_addr(s),
                )
            })
        })
    }
}

/// Whether a failure says the connection is unusable (drop it; the next call reconnects).
fn is_broken(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Closed(_) | ClientError::Protocol(_) | ClientError::Connect { .. }
    )
}

/// A blocking client that sends each request to its key's owning shard. Connections are opened
/// on first use, one per shard, and dropped when they break. Same operations as [`Client`].
pub struct RoutedClient {
    topo: Topology,
    cfg: ClientConfig,
    conns: HashMap<Replica, Client>,
}

impl RoutedClient {
    pub fn new(topo: Topology, cfg: ClientConfig) -> RoutedClient {
        RoutedClient {
            topo,
            cfg,
            conns: HashMap::new(),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Sends `req` to the first replica of its key that accepts a connection (the others only
    /// when connecting fails, so a request is never sent twice) and waits for the answer.
    pub fn call(&mut self, req: &ClientRequest) -> Result<ClientResponse, ClientError> {
        let replicas = self.topo.replicas(req.key());
        let mut last = None;
        // Bounded: at most N replicas.
        for r in replicas {
            let client = match self.conns.entry(r) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let Some(addr) = self.topo.shard_addr(r) else {
                        continue;
                    };
                    match Client::connect(&addr.to_string(), self.cfg) {
                        Ok(c) => v.insert(c),
                        Err(e) => {
                            last = Some(e);
                            continue;
                        }
                    }
                }
            };
            let res = client.call(req);
            if let Err(e) = &res {
                if is_broken(e) {
                    self.conns.remove(&r);
                }
            }
            return res;
        }
        Err(last.unwrap_or_else(|| ClientError::Closed("the topology names no replica".into())))
    }

    pub fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<GetResult>, ClientError> {
        let o = self.cfg.op;
        self.get_with(key, &o)
    }

    pub fn get_with(
        &mut self,
        key: impl Into<Bytes>,
        o: &OpOptions,
    ) -> Result<Option<GetResult>, ClientError> {
        get_result(self.call(&get_request(key, o)))
    }

    pub fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ctx: Option<&Context>,
    ) -> Result<Context, ClientError> {
        let o = self.cfg.op;
        self.put_with(key, value, ctx, &o)
    }

    pub fn put_with(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ctx: Option<&Context>,
        o: &OpOptions,
    ) -> Result<Context, ClientError> {
        write_result(self.call(&put_request(key, value, ctx, o)))
    }

    pub fn delete(
        &mut self,
        key: impl Into<Bytes>,
        ctx: Option<&Context>,
    ) -> Result<Context, ClientError> {
        let o = self.cfg.op;
        self.delete_with(key, ctx, &o)
    }

    pub fn delete_with(
        &mut self,
        key: impl Into<Bytes>,
        ctx: Option<&Context>,
        o: &OpOptions,
    ) -> Result<Context, ClientError> {
        write_result(self.call(&delete_request(key, ctx, o)))
    }
}

struct AsyncInner {
    topo: Rc<Topology>,
    cfg: ClientConfig,
    clients: HashMap<Replica, AsyncClient>,
}

/// A pipelined client over one [`AsyncClient`] per shard of the cluster, sending each request to
/// its key's first replica. Clone it freely within the executor (clones share the connections).
/// When any connection breaks its requests fail with the client's error; drop this client and
/// connect a new one.
#[derive(Clone)]
pub struct AsyncRoutedClient {
    inner: Rc<AsyncInner>,
}

impl AsyncRoutedClient {
    /// Connects to every shard of every node (each within `cfg.connect_timeout`). Fails when any
    /// shard is unreachable: a load generator wants every route, not a silently skewed one.
    pub async fn connect(
        topo: Rc<Topology>,
        cfg: ClientConfig,
    ) -> Result<AsyncRoutedClient, ClientError> {
        let mut clients = HashMap::new();
        for (r, addr) in topo.all_shards() {
            clients.insert(r, AsyncClient::connect(&addr.to_string(), cfg).await?);
        }
        Ok(AsyncRoutedClient {
            inner: Rc::new(AsyncInner { topo, cfg, clients }),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topo
    }

    /// The connection to `key`'s first replica.
    pub fn client_for(&self, key: &[u8]) -> Result<&AsyncClient, ClientError> {
        let r = self.inner.topo.route(key);
        self.inner
            .clients
            .get(&r)
            .ok_or_else(|| ClientError::Closed(format!("no connection to replica {r}")))
    }

    /// Queues `req` on its key's owning shard now (see [`AsyncClient::send`]).
    pub fn send(&self, req: &ClientRequest) -> Result<ResponseFuture, ClientError> {
        self.client_for(req.key())?.send(req)
    }

    /// Sends `req` to its key's owning shard and waits for the answer.
    pub async fn call(&self, req: &ClientRequest) -> Result<ClientResponse, ClientError> {
        self.client_for(req.key())?.call(req).await
    }

    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<GetResult>, ClientError> {
        let o = self.inner.cfg.op;
        get_result(self.call(&get_request(key, &o)).await)
    }

    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ctx: Option<&Context>,
    ) -> Result<Context, ClientError> {
        let o = self.inner.cfg.op;
        write_result(self.call(&put_request(key, value, ctx, &o)).await)
    }

    pub async fn delete(
        &self,
        key: impl Into<Bytes>,
        ctx: Option<&Context>,
    ) -> Result<Context, ClientError> {
        let o = self.inner.cfg.op;
        write_result(self.call(&delete_request(key, ctx, &o)).await)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        let e = Topology::from_node_list(&["1@127.0.0.1:7700"], None, None).unwrap_err();
        assert!(matches!(e, RoutingError::MissingShards(_)), "{e}");
        let e = Topology::from_node_list(&["1@127.0.0.1:7700/1"], Some(2), None).unwrap_err();
        assert!(matches!(e, RoutingError::BadReplication { n: 2, nodes: 1 }));
        let e = Topology::from_node_list(&["1@127.0.0.1:7700/1", "2@127.0.0.1:7700/1"], None, None)
            .unwrap_err();
        assert!(matches!(e, RoutingError::DuplicateAddress(_)));
        let e = Topology::from_node_list(&["1@127.0.0.1:65535/2"], None, None).unwrap_err();
        assert!(matches!(e, RoutingError::PortOverflow { .. }));
        let e = Topology::from_node_list(&["1@127.0.0.1:7700/1"], None, Some(0)).unwrap_err();
        assert!(matches!(e, RoutingError::BadVnodes(0)));
        let e = Topology::from_node_list(&["x@127.0.0.1:7700/1"], None, None).unwrap_err();
        assert!(matches!(e, RoutingError::Entry(_)));
    }
}
