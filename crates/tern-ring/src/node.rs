//! The node-list format both servers and clients read: `id@ip:port[/shards][#zone]`, and the
//! validated member it names. It lives with the ring (not with the server's settings) because a
//! client computes the same preference lists from the same list, and must not see server code.
//!
//! Invariant: a [`NodeInfo`] built by the server's config or the client's topology has every
//! shard port `port + 1 + shard` inside `1..=65535` (both validate it), so [`NodeInfo::shard_addr`]
//! never saturates in practice.

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

use crate::{NodeId, NodeSpec, MAX_SHARDS};

/// A node entry that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad node entry {entry:?}: {reason} (expected id@ip:port[/shards][#zone], e.g. 2@127.0.0.2:7700/2#zone-b)")]
pub struct NodeEntryError {
    pub entry: String,
    pub reason: String,
}

/// One entry of a node list: `id@ip:port[/shards][#zone]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: NodeId,
    pub ip: IpAddr,
    /// Client port; shard `i` of that node listens on `port + 1 + i`.
    pub port: u16,
    /// `None` in the entry means "same as this node" (servers) or "unknown" (clients refuse it).
    pub shards: Option<u16>,
    pub zone: Option<String>,
}

impl std::str::FromStr for NodeEntry {
    type Err = NodeEntryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| NodeEntryError {
            entry: s.to_owned(),
            reason: reason.to_owned(),
        };
        let t = s.trim();
        let (rest, zone) = match t.split_once('#') {
            Some((r, z)) if !z.is_empty() => (r, Some(z.to_owned())),
            Some(_) => return Err(bad("empty zone after '#'")),
            None => (t, None),
        };
        let (rest, shards) = match rest.split_once('/') {
            Some((r, sh)) => {
                let n: u16 = sh.parse().map_err(|_| bad("shard count is not a number"))?;
                if n == 0 || n > MAX_SHARDS {
                    return Err(bad(&format!("shard count must be 1..={MAX_SHARDS}")));
                }
                (r, Some(n))
            }
            None => (rest, None),
        };
        let (id, addr) = rest.split_once('@').ok_or_else(|| bad("missing '@'"))?;
        let id: NodeId = id.parse().map_err(|_| bad("node id is not a u32"))?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad("address is not ip:port"))?;
        Ok(NodeEntry {
            id,
            ip: addr.ip(),
            port: addr.port(),
            shards,
            zone,
        })
    }
}

/// A validated member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    pub ip: IpAddr,
    pub port: u16,
    pub shards: u16,
    pub zone: Option<String>,
}

impl NodeInfo {
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
    /// The port of one shard: `port + 1 + shard` (validated to fit when the list was built).
    pub fn shard_addr(&self, shard: u16) -> SocketAddr {
        debug_assert!(shard < self.shards);
        SocketAddr::new(self.ip, self.port.saturating_add(1).saturating_add(shard))
    }
    pub fn ring_spec(&self, weight: u32) -> NodeSpec {
        NodeSpec {
            id: self.id,
            shards: self.shards,
            weight,
            zone: self.zone.clone(),
        }
    }
}
