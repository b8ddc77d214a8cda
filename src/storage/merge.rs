//! Merging several sorted entry sources (memtables, SSTable scans) into one sorted stream with
//! one entry per key: the version with the largest `seqno` wins.
//!
//! Owns no data. Invariants: each source yields strictly increasing keys (debug-checked); the
//! output is strictly increasing. Tombstones pass through: dropping them is compaction's
//! decision, which needs to know which tables took part. The number of sources is bounded by the
//! engine's table cap, so a linear scan of the heads beats a heap here.

use std::cmp::Ordering;
use std::iter::Map;

use super::entry::{InternalKey, Stored};
use super::error::Result;
use super::sstable::SstScan;
use crate::runtime::disk::DiskFile;

/// A sorted stream of entries that may need I/O to advance.
#[allow(async_fn_in_trait)]
pub trait EntrySource {
    async fn next_entry(&mut self) -> Result<Option<(InternalKey, Stored)>>;
}

impl<F: DiskFile> EntrySource for SstScan<'_, F> {
    async fn next_entry(&mut self) -> Result<Option<(InternalKey, Stored)>> {
        self.next().await
    }
}

/// Adapts any sorted in-memory iterator (e.g. `Memtable::range(..).map(clone)`, a `Vec`).
pub struct IterSource<I>(pub I);

impl<I: Iterator<Item = (InternalKey, Stored)>> EntrySource for IterSource<I> {
    async fn next_entry(&mut self) -> Result<Option<(InternalKey, Stored)>> {
        Ok(self.0.next())
    }
}

type CloneFn = fn((&InternalKey, &Stored)) -> (InternalKey, Stored);
/// A whole memtable as a source (entries cloned; `Bytes` clones are reference counts).
pub type MemtableSource<'a> = IterSource<Map<super::memtable::Iter<'a>, CloneFn>>;

pub fn memtable_source(m: &super::memtable::Memtable) -> MemtableSource<'_> {
    let f: CloneFn = |(k, v)| (k.clone(), v.clone());
    IterSource(m.iter().map(f))
}

/// Either kind of source, so one `MergeIter` can span memtables and tables.
pub enum AnySource<'a, F: DiskFile, I> {
    Mem(IterSource<I>),
    Sst(SstScan<'a, F>),
}

impl<F: DiskFile, I: Iterator<Item = (InternalKey, Stored)>> EntrySource for AnySource<'_, F, I> {
    async fn next_entry(&mut self) -> Result<Option<(InternalKey, Stored)>> {
        match self {
            AnySource::Mem(m) => m.next_entry().await,
            AnySource::Sst(s) => s.next().await,
        }
    }
}

pub struct MergeIter<S: EntrySource> {
    sources: Vec<S>,
    heads: Vec<Option<(InternalKey, Stored)>>,
    primed: bool,
}

impl<S: EntrySource> MergeIter<S> {
    pub fn new(sources: Vec<S>) -> Self {
        let n = sources.len();
        MergeIter {
            sources,
            heads: (0..n).map(|_| None).collect(),
            primed: false,
        }
    }

    async fn refill(&mut self, i: usize) -> Result<()> {
        let next = self.sources[i].next_entry().await?;
        if let (Some((prev, _)), Some((k, _))) = (&self.heads[i], &next) {
            debug_assert!(k > prev, "merge source {i} is not strictly increasing");
        }
        self.heads[i] = next;
        Ok(())
    }

    /// Next key in order with its newest version.
    pub async fn next(&mut self) -> Result<Option<(InternalKey, Stored)>> {
        if !self.primed {
            for i in 0..self.sources.len() {
                self.refill(i).await?;
            }
            self.primed = true;
        }
        let mut best: Option<usize> = None;
        for i in 0..self.heads.len() {
            let Some((k, v)) = &self.heads[i] else {
                continue;
            };
            let better = match best.and_then(|b| self.heads[b].as_ref()) {
                None => true,
                Some((bk, bv)) => match k.cmp(bk) {
                    Ordering::Less => true,
                    Ordering::Equal => v.seqno > bv.seqno,
                    Ordering::Greater => false,
                },
            };
            if better {
                best = Some(i);
            }
        }
        let Some(b) = best else {
            return Ok(None);
        };
        let Some(winner) = self.heads[b].clone() else {
            return Ok(None);
        };
        for i in 0..self.heads.len() {
            if matches!(&self.heads[i], Some((k, _)) if *k == winner.0) {
                self.refill(i).await?;
            }
        }
        Ok(Some(winner))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::storage::memtable::Memtable;
    use crate::storage::sstable::{SstOptions, SstReader, SstWriter};
    use crate::storage::testdisk::{block_on, MemDisk};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Several sources (memtables and SSTables) with overlapping keys and distinct seqnos:
        /// the merge equals a BTreeMap model where the highest seqno per key wins.
        #[test]
        fn merge_matches_model(
            writes in proptest::collection::vec((0u8..60, any::<bool>(), 0usize..5), 0..300),
            n_sst in 0usize..4,
        ) {
            block_on(async {
                let disk = MemDisk::default();
                let n_src = 5;
                let mut mems: Vec<Memtable> = (0..n_src).map(|_| Memtable::new()).collect();
                let mut model: BTreeMap<InternalKey, Stored> = BTreeMap::new();
                for (seq, (key, tomb, src)) in writes.iter().enumerate() {
                    let k = InternalKey::new(vec![*key]).unwrap();
                    let v = Stored {
                        seqno: seq as u64 + 1,
                        tombstone_at_ms: tomb.then_some(seq as u64),
                        payload: Bytes::from(format!("{key}@{seq}")),
                    };
                    mems[*src].insert(k.clone(), v.clone());
                    model.insert(k, v); // later writes have larger seqnos
                }
                // The first n_sst memtables become SSTables.
                let opts = SstOptions { block_size: 128, readahead: 300, ..SstOptions::default() };
                let mut readers = Vec::new();
                for (i, m) in mems.iter().enumerate().take(n_sst) {
                    let p = PathBuf::from(format!("/m/{i}.sst"));
                    let w = SstWriter::create(&disk, &p, m.len(), &opts).await.unwrap();
                    crate::storage::memtable::flush_to_sst(m, w).await.unwrap();
                    readers.push(SstReader::open(&disk, &p, &opts).await.unwrap());
                }
                let mut sources = Vec::new();
                for r in &readers {
                    sources.push(AnySource::Sst(r.iter()));
                }
                for m in mems.iter().skip(n_sst) {
                    sources.push(AnySource::Mem(memtable_source(m)));
                }
                let mut it = MergeIter::new(sources);
                let mut got = Vec::new();
                while let Some(e) = it.next().await.unwrap() {
                    got.push(e);
                }
                prop_assert_eq!(got, model.into_iter().collect::<Vec<_>>());
                Ok(())
            })?;
        }
    }
}
