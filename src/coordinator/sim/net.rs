//! The simulated cluster: nodes of several shards, each shard a real [`Coordinator`] over an
//! in-memory store; a network with random delays, message drops, link cuts, and node crashes and
//! restarts. A crashed node keeps every record it stored (acknowledged writes are durable) but
//! loses its connections: calls to, from or through it fail.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use crate::coordinator::{
    Coordinator, CoordinatorConfig, MemStore, Replica, ReplicaRequest, ReplicaResponse,
    ReplicaStore, StoreError, Transport, TransportError,
};
use crate::version::{NodeId, Record, VersionError};

use super::exec::{Sim, SimRuntime};

pub type SimCoordinator = Coordinator<SimTransport, SimRuntime, SimStore, SimRuntime>;

/// Knobs of the simulated network, drawn per seed.
#[derive(Debug, Clone)]
pub struct NetParams {
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Chance that one message (request or response) is lost.
    pub drop_chance: f64,
    /// Extra delay of a store write before it is acknowledged (the fsync).
    pub max_store_delay_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct NodeState {
    up: bool,
    /// Bumped on every crash: a call that started in an older epoch lost its connection.
    epoch: u64,
}

pub struct SimNet {
    pub sim: Rc<Sim>,
    pub params: RefCell<NetParams>,
    nodes: RefCell<BTreeMap<NodeId, NodeState>>,
    cut: RefCell<BTreeSet<(NodeId, NodeId)>>,
    shards: RefCell<BTreeMap<Replica, Rc<SimCoordinator>>>,
    pub messages: Cell<u64>,
}

impl SimNet {
    pub fn is_up(&self, node: NodeId) -> bool {
        self.nodes.borrow().get(&node).is_some_and(|s| s.up)
    }

    pub fn epoch(&self, node: NodeId) -> u64 {
        self.nodes.borrow().get(&node).map_or(0, |s| s.epoch)
    }

    pub fn crash(&self, node: NodeId) {
        if let Some(s) = self.nodes.borrow_mut().get_mut(&node) {
            s.up = false;
            s.epoch += 1;
        }
    }

    pub fn restart(&self, node: NodeId) {
        if let Some(s) = self.nodes.borrow_mut().get_mut(&node) {
            s.up = true;
        }
    }

    pub fn cut_link(&self, a: NodeId, b: NodeId) {
        self.cut.borrow_mut().insert((a.min(b), a.max(b)));
    }

    pub fn heal_links(&self) {
        self.cut.borrow_mut().clear();
    }

    /// End every fault: links restored, nodes restarted, no more drops.
    pub fn heal(&self) {
        self.heal_links();
        let nodes: Vec<NodeId> = self.nodes.borrow().keys().copied().collect();
        for n in nodes {
            self.restart(n);
        }
        self.params.borrow_mut().drop_chance = 0.0;
    }

    fn linked(&self, a: NodeId, b: NodeId) -> bool {
        a == b || !self.cut.borrow().contains(&(a.min(b), a.max(b)))
    }

    pub fn shard(&self, r: Replica) -> Option<Rc<SimCoordinator>> {
        self.shards.borrow().get(&r).cloned()
    }

    pub fn replicas(&self) -> Vec<Replica> {
        self.shards.borrow().keys().copied().collect()
    }

    fn delay(&self) -> Duration {
        let p = self.params.borrow();
        Duration::from_millis(self.sim.gen_range(p.min_delay_ms..=p.max_delay_ms))
    }

    fn dropped(&self) -> bool {
        let p = self.params.borrow().drop_chance;
        p > 0.0 && self.sim.chance(p)
    }
}

/// Build `nodes` nodes of `shards` shards each, nodes numbered from 1.
pub fn cluster(
    sim: &Rc<Sim>,
    nodes: u32,
    shards: u16,
    cfg: &CoordinatorConfig,
    params: NetParams,
) -> Rc<SimNet> {
    let net = Rc::new(SimNet {
        sim: Rc::clone(sim),
        params: RefCell::new(params),
        nodes: RefCell::new(
            (1..=nodes)
                .map(|n| (n, NodeState { up: true, epoch: 0 }))
                .collect(),
        ),
        cut: RefCell::new(BTreeSet::new()),
        shards: RefCell::new(BTreeMap::new()),
        messages: Cell::new(0),
    });
    let rt = Rc::new(SimRuntime(Rc::clone(sim)));
    for node in 1..=nodes {
        for shard in 0..shards {
            let me = Replica { node, shard };
            let transport = Rc::new(SimTransport {
                from: me,
                net: Rc::downgrade(&net),
            });
            let store = Rc::new(SimStore {
                mem: MemStore::new(),
                net: Rc::downgrade(&net),
            });
            let coord = Coordinator::new(
                me,
                cfg.clone(),
                transport,
                Rc::clone(&rt),
                store,
                Rc::clone(&rt),
            );
            match coord {
                Ok(c) => {
                    net.shards.borrow_mut().insert(me, Rc::new(c));
                }
                Err(e) => panic!("simulation config rejected: {e}"),
            }
        }
    }
    net
}

/// The network as one shard sees it.
pub struct SimTransport {
    from: Replica,
    net: std::rc::Weak<SimNet>,
}

fn lost(reason: &str) -> TransportError {
    TransportError::Lost {
        reason: reason.to_owned(),
    }
}

impl Transport for SimTransport {
    type Addr = Replica;
    type Request = ReplicaRequest;
    type Response = ReplicaResponse;

    async fn call(
        &self,
        to: Replica,
        req: ReplicaRequest,
    ) -> Result<ReplicaResponse, TransportError> {
        let Some(net) = self.net.upgrade() else {
            return Err(lost("simulation over"));
        };
        net.messages.set(net.messages.get() + 1);
        let from = self.from.node;
        if !net.is_up(from) || !net.is_up(to.node) || !net.linked(from, to.node) {
            // Connection refused / no route: fails fast, certainly not delivered.
            net.sim.sleep(Duration::from_millis(1)).await;
            return Err(TransportError::Unreachable {
                reason: format!("node {} down or cut off", to.node),
            });
        }
        let (from_epoch, to_epoch) = (net.epoch(from), net.epoch(to.node));
        let still_connected = |net: &SimNet| {
            net.is_up(from)
                && net.is_up(to.node)
                && net.epoch(from) == from_epoch
                && net.epoch(to.node) == to_epoch
                && net.linked(from, to.node)
        };
        let dropped = net.dropped();
        net.sim.sleep(net.delay()).await;
        if dropped {
            // Lost in the network: the caller only learns by its deadline.
            std::future::pending::<()>().await;
        }
        if !still_connected(&net) {
            return Err(lost("connection broke before delivery"));
        }
        let Some(target) = net.shard(to) else {
            return Err(TransportError::Unreachable {
                reason: format!("no such shard {to}"),
            });
        };
        let resp = target.handle(req).await;
        let dropped = net.dropped();
        net.sim.sleep(net.delay()).await;
        if dropped {
            std::future::pending::<()>().await;
        }
        if !still_connected(&net) {
            return Err(lost("connection broke before the response"));
        }
        Ok(resp)
    }
}

/// [`MemStore`] plus a random fsync delay before acknowledging.
pub struct SimStore {
    pub mem: MemStore,
    net: std::rc::Weak<SimNet>,
}

impl SimStore {
    async fn fsync(&self) {
        if let Some(net) = self.net.upgrade() {
            let max = net.params.borrow().max_store_delay_ms;
            let d = net.sim.gen_range(0..=max);
            net.sim.sleep(Duration::from_millis(d)).await;
        }
    }
}

impl ReplicaStore for SimStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        self.mem.get(key).await
    }

    async fn update<F>(&self, key: &[u8], f: F) -> Result<Option<Record>, StoreError>
    where
        F: FnOnce(Option<&Record>) -> Result<Option<Record>, VersionError>,
    {
        let r = self.mem.update(key, f).await?;
        self.fsync().await;
        Ok(r)
    }
}
