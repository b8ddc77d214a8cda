//! Membership and failure detection (DESIGN.md part 5). Gossip arrives in a later issue; today
//! the cluster view comes from a static node list (see `config`). Must not route client requests.
//!
//! Everything that needs "who is in the cluster" asks a [`Membership`] for the current
//! [`ClusterView`]; gossip will later swap views in behind the same interface. A view is
//! immutable: holders of an `Rc<ClusterView>` see one consistent ring even while a newer view
//! replaces it.

use std::rc::Rc;

use crate::config::{Config, NodeInfo};
use crate::ring::{NodeId, Replica, Ring, RingError};

/// One consistent picture of the cluster: members, their addresses and the ring built from them.
#[derive(Debug)]
pub struct ClusterView {
    me: NodeId,
    nodes: Vec<NodeInfo>,
    ring: Ring,
    replication: usize,
}

impl ClusterView {
    pub fn from_config(cfg: &Config) -> Result<ClusterView, RingError> {
        Ok(ClusterView {
            me: cfg.node_id,
            nodes: cfg.nodes.clone(),
            ring: Ring::new(&cfg.ring_specs())?,
            replication: cfg.replication,
        })
    }

    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// N, the replication factor (validated `<=` node count).
    pub fn replication(&self) -> usize {
        self.replication
    }

    /// The N replicas of `key`, in preference order.
    pub fn preference_list(&self, key: &[u8]) -> Vec<Replica> {
        self.ring.preference_list(key, self.replication)
    }
}

/// Source of the current cluster view and of liveness opinions.
pub trait Membership {
    fn view(&self) -> Rc<ClusterView>;
    /// Whether `node` is believed up. Static membership believes everyone is; the coordinator
    /// still times out on replicas that do not answer.
    fn is_up(&self, node: NodeId) -> bool;
}

/// The static cluster of `--nodes`: never changes while the process runs.
pub struct StaticMembership {
    view: Rc<ClusterView>,
}

impl StaticMembership {
    pub fn new(cfg: &Config) -> Result<Self, RingError> {
        Ok(StaticMembership {
            view: Rc::new(ClusterView::from_config(cfg)?),
        })
    }
}

impl Membership for StaticMembership {
    fn view(&self) -> Rc<ClusterView> {
        self.view.clone()
    }
    fn is_up(&self, node: NodeId) -> bool {
        self.view.node(node).is_some()
    }
}

#[cfg(test)]
mod tests;
