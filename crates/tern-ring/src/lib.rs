//! Consistent-hashing ring: tokens, vnode -> (node, shard), preference lists. Pure: no I/O, and it
//! does not decide membership (the cluster view in `membership` hands it a node list).
//!
//! - A key's token is `xxh3_64(key)`, the same token the storage engine sorts by.
//! - Node `id` with weight `w` owns `w` vnodes; vnode `i` sits at [`POINTS_PER_VNODE`] ring
//!   points `xxh3_64_with_seed(j.to_le_bytes(), id)` for `j in i*P..(i+1)*P` and belongs to shard
//!   `i % shards` of that node. Tokens depend only on the
//!   node's own id and weight, so adding a node only inserts its tokens: keys move only to the new
//!   node, about `w_new / sum(w)` of them.
//! - The preference list of a token is the first `n` distinct physical nodes met walking
//!   clockwise (increasing tokens, wrapping) from the first vnode whose token is `>= key token`.
//!   Each node contributes the shard of the first of its vnodes met. When nodes carry zone labels,
//!   a node in a zone already used is skipped while unused zones remain, so replicas span
//!   `min(n, zones)` zones; skipped nodes fill the list afterwards, in ring order.
//!
//! Invariant (checked in debug builds): `vnodes` is sorted by `(token, node, vnode index)`, and
//! `bucket_start[b]` is the first vnode whose token is `>= b << bucket_shift` (a lookup table so
//! finding a token's position touches two cache lines, not a binary search's ~11).

use std::collections::HashMap;

use thiserror::Error;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// A node's configured id (stable across restarts; also the actor id in version vectors).
pub type NodeId = u32;

/// Default number of vnodes per node.
pub const DEFAULT_WEIGHT: u32 = 256;
/// Ring points per vnode. A node's share of the token space is a sum of random arcs, so its
/// relative deviation from its weight share is about `1/sqrt(points)`: 256 single points give
/// ~6% (one node in 15 off by more than 10%); 8 points per vnode give ~2.2%, so 10% is a 4.5
/// sigma event. The vnode (not the point) stays the unit of weight and of shard assignment.
pub const POINTS_PER_VNODE: u32 = 8;
/// Upper bound on vnodes per node, so a typo cannot allocate gigabytes.
pub const MAX_WEIGHT: u32 = 65_536 / POINTS_PER_VNODE;

/// Default replication factor N (capped at the node count), the same for servers and clients.
pub const DEFAULT_REPLICATION: usize = 3;
/// Upper bound on shards (executors) per node; shard ports are `port + 1 + shard`.
pub const MAX_SHARDS: u16 = 256;

mod node;
pub use node::{NodeEntry, NodeEntryError, NodeInfo};

/// One replica of a key: a shard of a physical node. The ring owns this type; the coordinator and
/// the transports address replicas with it (a plain value type; the ring does no I/O through it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replica {
    pub node: NodeId,
    pub shard: u16,
}

impl std::fmt::Display for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} shard {}", self.node, self.shard)
    }
}

/// What the ring needs to know about a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: NodeId,
    /// Number of shards (executors) of that node; vnodes are spread over them.
    pub shards: u16,
    /// Number of vnodes; a node's share of the token space follows it.
    pub weight: u32,
    /// Zone / rack / datacenter label. Unlabelled nodes all count as one zone.
    pub zone: Option<String>,
}

impl NodeSpec {
    pub fn new(id: NodeId, shards: u16) -> Self {
        NodeSpec {
            id,
            shards,
            weight: DEFAULT_WEIGHT,
            zone: None,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RingError {
    #[error("the ring needs at least one node")]
    NoNodes,
    #[error("node id {0} appears twice in the node list")]
    DuplicateNode(NodeId),
    #[error("node {0} has 0 shards; every node needs at least one")]
    NoShards(NodeId),
    #[error("node {id} has weight {weight}; it must be between 1 and {MAX_WEIGHT}")]
    BadWeight { id: NodeId, weight: u32 },
}

#[derive(Clone, Copy, Debug)]
struct VNode {
    token: u64,
    /// Index into `Ring::nodes`.
    node: u32,
    shard: u16,
}

/// An immutable ring built from a node list. Rebuild it when membership changes.
#[derive(Clone, Debug)]
pub struct Ring {
    nodes: Vec<NodeSpec>,
    /// Zone index per node (same order as `nodes`).
    zone_of: Vec<u32>,
    zone_count: u32,
    vnodes: Vec<VNode>,
    /// `bucket_start[b]`: index of the first vnode with `token >= b << bucket_shift`;
    /// `bucket_start.len()` is a power of two plus one (the last entry is `vnodes.len()`).
    bucket_start: Vec<u32>,
    bucket_shift: u32,
}

/// At most this many buckets (`2^16`, 256 KiB of index): enough for ~1 vnode per bucket up to
/// 64 Ki vnodes (32 nodes at the default weight); bigger rings search a few per bucket.
const MAX_BUCKET_BITS: u32 = 16;

/// The bucket index of sorted `vnodes`: about one vnode per bucket, at most
/// `2^MAX_BUCKET_BITS` buckets. Returns `(bucket_start, shift)`, see [`Ring`].
fn bucket_index(vnodes: &[VNode]) -> (Vec<u32>, u32) {
    let bits = vnodes
        .len()
        .next_power_of_two()
        .trailing_zeros()
        .clamp(1, MAX_BUCKET_BITS);
    let shift = 64 - bits;
    let buckets = 1usize << bits;
    let mut start = Vec::with_capacity(buckets + 1);
    let mut i = 0usize;
    for b in 0..buckets {
        let lower = (b as u64) << shift;
        while i < vnodes.len() && vnodes[i].token < lower {
            i += 1;
        }
        // Vnode counts are bounded by MAX_WEIGHT x POINTS_PER_VNODE x nodes, far below u32.
        start.push(u32::try_from(i).unwrap_or(u32::MAX));
    }
    start.push(u32::try_from(vnodes.len()).unwrap_or(u32::MAX));
    (start, shift)
}

/// The token of a key: where it sits on the ring.
pub fn token(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The token of ring point `j` of node `id` (vnode `j / POINTS_PER_VNODE`).
pub fn vnode_token(id: NodeId, j: u32) -> u64 {
    xxh3_64_with_seed(&j.to_le_bytes(), u64::from(id))
}

impl Ring {
    pub fn new(nodes: &[NodeSpec]) -> Result<Ring, RingError> {
        if nodes.is_empty() {
            return Err(RingError::NoNodes);
        }
        let mut seen = HashMap::new();
        let mut zones: HashMap<Option<&str>, u32> = HashMap::new();
        let mut zone_of = Vec::with_capacity(nodes.len());
        let mut vnodes = Vec::new();
        for (idx, n) in nodes.iter().enumerate() {
            if seen.insert(n.id, ()).is_some() {
                return Err(RingError::DuplicateNode(n.id));
            }
            if n.shards == 0 {
                return Err(RingError::NoShards(n.id));
            }
            if n.weight == 0 || n.weight > MAX_WEIGHT {
                return Err(RingError::BadWeight {
                    id: n.id,
                    weight: n.weight,
                });
            }
            let next = zones.len() as u32;
            zone_of.push(*zones.entry(n.zone.as_deref()).or_insert(next));
            for i in 0..n.weight {
                // `i % shards` < shards <= u16::MAX.
                let shard = (i % u32::from(n.shards)) as u16;
                for p in 0..POINTS_PER_VNODE {
                    vnodes.push(VNode {
                        token: vnode_token(n.id, i * POINTS_PER_VNODE + p),
                        node: idx as u32,
                        shard,
                    });
                }
            }
        }
        // Equal tokens (astronomically rare) are ordered by node id so every node agrees.
        vnodes.sort_by_key(|v| (v.token, nodes[v.node as usize].id, v.shard));
        debug_assert!(vnodes.windows(2).all(|w| w[0].token <= w[1].token));
        let (bucket_start, bucket_shift) = bucket_index(&vnodes);
        Ok(Ring {
            nodes: nodes.to_vec(),
            zone_of,
            zone_count: zones.len() as u32,
            vnodes,
            bucket_start,
            bucket_shift,
        })
    }

    /// Index of the first vnode whose token is `>= tok` (`vnodes.len()` when none is): the same
    /// as `vnodes.partition_point(|v| v.token < tok)`, narrowed by the bucket index first.
    fn first_at_or_after(&self, tok: u64) -> usize {
        let b = (tok >> self.bucket_shift) as usize;
        let (lo, hi) = (
            self.bucket_start[b] as usize,
            self.bucket_start[b + 1] as usize,
        );
        let i = lo + self.vnodes[lo..hi].partition_point(|v| v.token < tok);
        debug_assert_eq!(i, self.vnodes.partition_point(|v| v.token < tok));
        i
    }

    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Number of distinct zones (unlabelled nodes form one zone).
    pub fn zone_count(&self) -> usize {
        self.zone_count as usize
    }

    /// Preference list of `key`: see [`Ring::preference_list_for_token`].
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<Replica> {
        self.preference_list_for_token(token(key), n)
    }

    /// The first `min(n, node count)` distinct nodes clockwise from `tok`, zone-spread.
    pub fn preference_list_for_token(&self, tok: u64, n: usize) -> Vec<Replica> {
        let want = n.min(self.nodes.len());
        let mut out: Vec<Replica> = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        if want == 1 && !self.vnodes.is_empty() {
            // The first vnode clockwise is always taken (no node or zone used yet): skip the
            // bookkeeping vectors, which cost three allocations per request at N=1.
            let v = self.vnodes[self.first_at_or_after(tok) % self.vnodes.len()];
            out.push(Replica {
                node: self.nodes[v.node as usize].id,
                shard: v.shard,
            });
            return out;
        }
        let mut taken = vec![false; self.nodes.len()];
        let mut zone_used = vec![false; self.zone_count as usize];
        let mut zones_used = 0u32;
        // Nodes passed over because their zone was already used, in ring order.
        let mut skipped: Vec<(u32, u16)> = Vec::new();
        let start = self.first_at_or_after(tok);
        let len = self.vnodes.len();
        // Bounded: one full turn of the ring.
        for step in 0..len {
            let v = self.vnodes[(start + step) % len];
            let idx = v.node as usize;
            if taken[idx] {
                continue;
            }
            let z = self.zone_of[idx] as usize;
            if zone_used[z] && zones_used < self.zone_count {
                if !skipped.iter().any(|&(s, _)| s == v.node) {
                    skipped.push((v.node, v.shard));
                }
                continue;
            }
            if !zone_used[z] {
                zone_used[z] = true;
                zones_used += 1;
            }
            taken[idx] = true;
            out.push(Replica {
                node: self.nodes[idx].id,
                shard: v.shard,
            });
            if out.len() == want {
                return out;
            }
        }
        for (node, shard) in skipped {
            if out.len() == want {
                break;
            }
            out.push(Replica {
                node: self.nodes[node as usize].id,
                shard,
            });
        }
        debug_assert_eq!(out.len(), want);
        out
    }

    /// The (node, shard) owning the first vnode at or after `tok` (the primary replica).
    pub fn primary(&self, tok: u64) -> Replica {
        self.preference_list_for_token(tok, 1)[0]
    }

    /// Fraction of the token space for which each node is the primary owner (the arc ending at
    /// each of its vnodes), in node-list order. Used by tests and `debug` tooling.
    pub fn ownership(&self) -> Vec<(NodeId, f64)> {
        let mut owned = vec![0u128; self.nodes.len()];
        let len = self.vnodes.len();
        for (i, v) in self.vnodes.iter().enumerate() {
            let prev = self.vnodes[(i + len - 1) % len].token;
            // The arc (prev, v.token], wrapping; a single vnode owns the whole ring.
            let arc = if len == 1 {
                1u128 << 64
            } else {
                u128::from(v.token.wrapping_sub(prev))
            };
            owned[v.node as usize] += arc;
        }
        let total = (1u128 << 64) as f64;
        self.nodes
            .iter()
            .zip(owned)
            .map(|(n, o)| (n.id, o as f64 / total))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
