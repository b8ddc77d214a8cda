//! Version vectors and dots: the causal bookkeeping under every stored record.
//!
//! Invariant of [`VersionVector`]: entries sorted strictly by node id, every counter > 0 (a missing
//! entry means 0). Because the form is canonical, structural equality is causal equality.

use std::cmp::Ordering;

use super::codec::{self, DecodeError, Reader};

/// Identity of a node (configured per node). The actor of every write a node coordinates.
pub type NodeId = u32;

/// One write event: the `counter`-th write of `node` to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    pub node: NodeId,
    pub counter: u64,
}

impl std::fmt::Display for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.node, self.counter)
    }
}

impl Dot {
    pub fn new(node: NodeId, counter: u64) -> Self {
        Dot { node, counter }
    }
}

/// A set of events summarised per node as "every counter up to n": node id -> counter.
///
/// Bounded by the number of nodes that ever coordinated a write of the key (at most the replicas
/// the key ever had), so no pruning is done; see the module doc of [`crate::version`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    entries: Vec<(NodeId, u64)>,
}

impl VersionVector {
    pub fn new() -> Self {
        VersionVector::default()
    }

    /// Build from arbitrary pairs: sorts, keeps the maximum per node and drops zero counters.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (NodeId, u64)>) -> Self {
        let mut vv = VersionVector::new();
        for (node, counter) in pairs {
            vv.witness(node, counter);
        }
        vv
    }

    /// Counter of `node` (0 when absent).
    pub fn get(&self, node: NodeId) -> u64 {
        match self.entries.binary_search_by_key(&node, |e| e.0) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Raise the counter of `node` to at least `counter`.
    pub fn witness(&mut self, node: NodeId, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.entries.binary_search_by_key(&node, |e| e.0) {
            Ok(i) => {
                if self.entries[i].1 < counter {
                    self.entries[i].1 = counter;
                }
            }
            Err(i) => self.entries.insert(i, (node, counter)),
        }
        debug_assert!(self.is_canonical());
    }

    /// Add one event.
    pub fn add_dot(&mut self, dot: Dot) {
        self.witness(dot.node, dot.counter);
    }

    /// Whether the event `dot` is part of this history.
    pub fn covers(&self, dot: Dot) -> bool {
        dot.counter <= self.get(dot.node)
    }

    /// Pointwise maximum, in place (linear merge of two sorted lists).
    pub fn join(&mut self, other: &VersionVector) {
        if other.entries.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.entries.len() + other.entries.len());
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.entries, &other.entries);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                Ordering::Equal => {
                    out.push((a[i].0, a[i].1.max(b[j].1)));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        self.entries = out;
        debug_assert!(self.is_canonical());
    }

    /// Pointwise maximum, as a new vector.
    pub fn joined(&self, other: &VersionVector) -> VersionVector {
        let mut v = self.clone();
        v.join(other);
        v
    }

    /// `self` has seen everything `other` has (self >= other pointwise).
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|&(n, c)| self.get(n) >= c)
    }

    /// Causal order: `Some(Less)` when `self` happened before `other`, `None` when concurrent.
    pub fn compare(&self, other: &VersionVector) -> Option<Ordering> {
        match (self.descends(other), other.descends(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Greater),
            (false, true) => Some(Ordering::Less),
            (false, false) => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries in node order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.entries.iter().copied()
    }

    /// The sorted entries (for deterministic tie-breaking; not a causal order).
    pub(crate) fn entries(&self) -> &[(NodeId, u64)] {
        &self.entries
    }

    fn is_canonical(&self) -> bool {
        self.entries.windows(2).all(|w| w[0].0 < w[1].0) && self.entries.iter().all(|e| e.1 > 0)
    }

    /// Wire form of a causal context (opaque to clients): format byte, then the entries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.entries.len() * 4);
        out.push(codec::CONTEXT_FORMAT_V1);
        self.encode_into(&mut out);
        out
    }

    /// Inverse of [`VersionVector::encode`]. Empty input is the empty context (a client that
    /// never read the key sends nothing). Never panics on arbitrary bytes.
    pub fn decode(buf: &[u8]) -> Result<VersionVector, DecodeError> {
        if buf.is_empty() {
            return Ok(VersionVector::new());
        }
        let mut r = Reader::new(buf);
        let format = r.u8("context format")?;
        if format != codec::CONTEXT_FORMAT_V1 {
            return Err(DecodeError::UnknownFormat {
                what: "context",
                format,
            });
        }
        let vv = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(vv)
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        codec::put_varint(out, self.entries.len() as u64);
        for &(node, counter) in &self.entries {
            codec::put_varint(out, u64::from(node));
            codec::put_varint(out, counter);
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<VersionVector, DecodeError> {
        // Each entry takes at least 2 bytes, which bounds the allocation by the input size.
        let count = r.count("version vector entries", 2)?;
        let mut entries: Vec<(NodeId, u64)> = Vec::with_capacity(count);
        for _ in 0..count {
            let node = r.node_id()?;
            let counter = r.varint("counter")?;
            if counter == 0 {
                return Err(DecodeError::Invalid("zero counter in version vector"));
            }
            if let Some(&(prev, _)) = entries.last() {
                if prev >= node {
                    return Err(DecodeError::Invalid("version vector entries not sorted"));
                }
            }
            entries.push((node, counter));
        }
        Ok(VersionVector { entries })
    }
}
