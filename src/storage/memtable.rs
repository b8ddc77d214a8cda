//! The memtable: one shard's recent writes, sorted in token order, with an approximate size so
//! the engine knows when to freeze and flush it.
//!
//! Owns the map and its byte estimate only; switching memtables, freezing and scheduling flushes
//! belong to the engine. Invariant: for each key it holds the version with the largest `seqno`
//! it was given (re-inserting an older one, e.g. during replay, changes nothing).
//!
//! Layout: an ordered set of keys (flush, scans) next to a hash map from key to version (point
//! reads and writes). Both always hold the same keys. A point lookup in a 100k-entry `BTreeMap`
//! cost several cache misses per level (10% of a shard's CPU on GETs); the hash map, keyed by
//! the key's token (already an xxh3 hash), answers in one or two.

use std::collections::hash_map::{Entry, HashMap};
use std::collections::BTreeSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Bound, RangeBounds};

use super::entry::{InternalKey, Stored};
use super::error::Result;
use super::sstable::{SstMeta, SstWriter};
use crate::runtime::disk::DiskFile;

/// Per-entry bookkeeping on top of key and payload bytes: seqno, tombstone time, the key in
/// both the ordered set and the hash map, node and bucket shares, the `Bytes` headers. An
/// estimate; it only has to track growth.
const ENTRY_OVERHEAD: usize = 128;

/// Hashes an [`InternalKey`] by its token alone (the first `u64` its derived `Hash` writes): the
/// token is xxh3 of the key, so hashing the key bytes again would only cost time. Keys with
/// equal tokens still differ by `Eq`.
#[derive(Default)]
struct TokenHasher {
    hash: u64,
    seeded: bool,
}

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        if !self.seeded {
            // Not reached for `InternalKey` (its token comes first); stay correct anyway.
            self.hash = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.hash);
        }
    }

    fn write_u64(&mut self, n: u64) {
        if !self.seeded {
            self.hash = n;
            self.seeded = true;
        }
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

type ByToken = BuildHasherDefault<TokenHasher>;

#[derive(Debug, Default, Clone)]
pub struct Memtable {
    /// Every key of `map`, in storage order.
    order: BTreeSet<InternalKey>,
    map: HashMap<InternalKey, Stored, ByToken>,
    approx_bytes: usize,
    min_seqno: Option<u64>,
    max_seqno: u64,
}

fn cost(k: &InternalKey, v: &Stored) -> usize {
    k.key().len() + v.payload.len() + ENTRY_OVERHEAD
}

impl Memtable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert a version; an older `seqno` than the one held for the key is ignored.
    pub fn insert(&mut self, key: InternalKey, v: Stored) {
        self.min_seqno = Some(self.min_seqno.map_or(v.seqno, |s| s.min(v.seqno)));
        self.max_seqno = self.max_seqno.max(v.seqno);
        match self.map.entry(key) {
            Entry::Vacant(e) => {
                self.approx_bytes += cost(e.key(), &v);
                let fresh = self.order.insert(e.key().clone());
                debug_assert!(fresh, "ordered set and map disagree");
                e.insert(v);
            }
            Entry::Occupied(mut e) => {
                if v.seqno >= e.get().seqno {
                    let old = cost(e.key(), e.get());
                    let new = cost(e.key(), &v);
                    self.approx_bytes = self.approx_bytes + new - old;
                    e.insert(v);
                }
            }
        }
    }

    pub fn get(&self, key: &InternalKey) -> Option<&Stored> {
        self.map.get(key)
    }

    /// Entries whose token lies in `tokens`, in key order.
    pub fn range(
        &self,
        tokens: impl RangeBounds<u64>,
    ) -> impl Iterator<Item = (&InternalKey, &Stored)> + '_ {
        let lo = match tokens.start_bound() {
            Bound::Included(&t) => Some(t),
            Bound::Excluded(&t) => t.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let hi = match tokens.end_bound() {
            Bound::Included(&t) => Some(t),
            Bound::Excluded(&t) => t.checked_sub(1),
            Bound::Unbounded => Some(u64::MAX),
        };
        let (start, hi) = match (lo, hi) {
            (Some(lo), Some(hi)) if lo <= hi => {
                (Bound::Included(InternalKey::lower_bound_of(lo)), hi)
            }
            // Empty range: start past every key.
            _ => (Bound::Excluded(InternalKey::lower_bound_of(u64::MAX)), 0),
        };
        self.with_values(
            self.order
                .range((start, Bound::Unbounded))
                .take_while(move |k| k.token() <= hi),
        )
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            keys: self.order.iter(),
            map: &self.map,
        }
    }

    fn with_values<'a>(
        &'a self,
        keys: impl Iterator<Item = &'a InternalKey> + 'a,
    ) -> impl Iterator<Item = (&'a InternalKey, &'a Stored)> + 'a {
        // Every key of `order` is in `map` (insert adds to both, nothing removes).
        keys.filter_map(move |k| self.map.get(k).map(|v| (k, v)))
    }

    /// Frees up to `max` entries (first in order); true once empty. Dropping a large memtable
    /// at once is tens of ms of frees: the flush sheds it in steps between yields instead.
    pub fn shed(&mut self, max: usize) -> bool {
        for _ in 0..max {
            let Some(k) = self.order.pop_first() else {
                break;
            };
            if let Some(v) = self.map.remove(&k) {
                self.approx_bytes = self.approx_bytes.saturating_sub(cost(&k, &v));
            }
        }
        self.order.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate memory held, for the "memtable full" decision.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }

    /// Smallest and largest seqno ever inserted (`None` when empty); the engine records the
    /// largest as `flushed_upto` in the manifest after the flush.
    pub fn seqno_range(&self) -> Option<(u64, u64)> {
        self.min_seqno.map(|lo| (lo, self.max_seqno))
    }
}

/// Every entry of a memtable in key order (a named type so merge sources can name it).
pub struct Iter<'a> {
    keys: std::collections::btree_set::Iter<'a, InternalKey>,
    map: &'a HashMap<InternalKey, Stored, ByToken>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a InternalKey, &'a Stored);

    fn next(&mut self) -> Option<Self::Item> {
        // Every key of the ordered set is in the map (insert adds to both, nothing removes).
        let map = self.map;
        self.keys.find_map(|k| map.get(k).map(|v| (k, v)))
    }
}

/// Write a (frozen) memtable into `writer` (created with `expected_keys >= mem.len()`) and finish
/// it. The caller renames the file into place, syncs the directory and updates the manifest.
pub async fn flush_to_sst<F: DiskFile>(
    mem: &Memtable,
    mut writer: SstWriter<F>,
) -> Result<SstMeta> {
    for (k, v) in mem.iter() {
        writer.add(k, v).await?;
    }
    writer.finish().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::storage::sstable::{SstOptions, SstReader};
    use crate::storage::testdisk::{block_on, MemDisk};

    fn st(seqno: u64, p: &str) -> Stored {
        Stored {
            seqno,
            tombstone_at_ms: None,
            payload: Bytes::copy_from_slice(p.as_bytes()),
        }
    }

    #[test]
    fn newest_seqno_wins_and_size_tracks() {
        let mut m = Memtable::new();
        let k = InternalKey::new(&b"k"[..]).unwrap();
        m.insert(k.clone(), st(5, "five"));
        let s1 = m.approx_bytes();
        assert_eq!(s1, 1 + 4 + ENTRY_OVERHEAD);
        m.insert(k.clone(), st(3, "three-old"));
        assert_eq!(m.get(&k).unwrap().seqno, 5);
        assert_eq!(m.approx_bytes(), s1);
        m.insert(k.clone(), st(9, "nine-longer"));
        assert_eq!(m.get(&k).unwrap().payload.as_ref(), b"nine-longer");
        assert_eq!(m.approx_bytes(), 1 + 11 + ENTRY_OVERHEAD);
        assert_eq!(m.seqno_range(), Some((3, 9)));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn flush_roundtrip() {
        block_on(async {
            let disk = MemDisk::default();
            let mut m = Memtable::new();
            for i in 0..500u64 {
                m.insert(
                    InternalKey::new(format!("k{i}").into_bytes()).unwrap(),
                    st(i, "v"),
                );
            }
            let p = Path::new("/m/1.sst");
            let opts = SstOptions::default();
            let w = SstWriter::create(&disk, p, m.len(), &opts).await.unwrap();
            let meta = flush_to_sst(&m, w).await.unwrap();
            assert_eq!(meta.entry_count, 500);
            let r = SstReader::open(&disk, p, &opts).await.unwrap();
            let mut s = r.iter();
            let mut it = m.iter();
            while let Some((k, v)) = s.next().await.unwrap() {
                assert_eq!(it.next(), Some((&k, &v)));
            }
            assert_eq!(it.next(), None);
        });
    }

    proptest! {
        #[test]
        fn range_matches_filter(keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..200),
                                a in any::<u64>(), b in any::<u64>(), pick in any::<proptest::sample::Index>()) {
            let mut m = Memtable::new();
            for (i, k) in keys.iter().enumerate() {
                m.insert(InternalKey::new(k.clone()).unwrap(), st(i as u64, "x"));
            }
            let mut bounds = vec![(a.min(b), a.max(b))];
            if !m.is_empty() {
                // A range that starts and ends exactly on a stored token.
                let t = m.iter().nth(pick.index(m.len())).unwrap().0.token();
                bounds.push((t, t));
            }
            for (lo, hi) in bounds {
                let got: Vec<_> = m.range(lo..=hi).collect();
                let want: Vec<_> = m.iter().filter(|(k, _)| (lo..=hi).contains(&k.token())).collect();
                prop_assert_eq!(got, want);
                let got_ex: Vec<_> = m.range(lo..hi).collect();
                let want_ex: Vec<_> = m.iter().filter(|(k, _)| (lo..hi).contains(&k.token())).collect();
                prop_assert_eq!(got_ex, want_ex);
            }
        }
    }
}
