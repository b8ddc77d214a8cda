//! A small per-shard cache of verified SSTable data blocks, shared by the shard's readers
//! through `Rc` (one executor, so `Cell`/`RefCell`, no locks).
//!
//! Eviction is CLOCK (second chance): an approximation of LRU that costs one flag write per
//! hit instead of list surgery. Bounded: resident bytes never exceed `capacity_bytes`, a single
//! block larger than 1/8 of the capacity is not cached (one big value must not flush the
//! cache), and an eviction pass visits each slot at most twice.
//!
//! Only point reads fill it; scans (and compaction) bypass it so a full-table pass does not
//! evict the hot set. Blocks are copied into their own allocation on insert so a cached block
//! never pins a larger read buffer.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

type Key = (u64, u64); // (table id, block offset)

struct Slot {
    block: Bytes,
    referenced: bool,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Key, Slot>,
    /// CLOCK hand order: front is next to examine. Holds each resident key once.
    ring: VecDeque<Key>,
}

/// Hit/miss counters and residency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub resident_bytes: usize,
    pub blocks: usize,
}

pub struct BlockCache {
    capacity_bytes: usize,
    used: Cell<usize>,
    hits: Cell<u64>,
    misses: Cell<u64>,
    inner: RefCell<Inner>,
}

impl BlockCache {
    pub fn new(capacity_bytes: usize) -> Self {
        BlockCache {
            capacity_bytes,
            used: Cell::new(0),
            hits: Cell::new(0),
            misses: Cell::new(0),
            inner: RefCell::new(Inner::default()),
        }
    }

    pub fn get(&self, table: u64, offset: u64) -> Option<Bytes> {
        let mut inner = self.inner.borrow_mut();
        match inner.map.get_mut(&(table, offset)) {
            Some(slot) => {
                slot.referenced = true;
                self.hits.set(self.hits.get() + 1);
                Some(slot.block.clone())
            }
            None => {
                self.misses.set(self.misses.get() + 1);
                None
            }
        }
    }

    /// Cache a block that has already been verified against its checksum.
    pub fn insert(&self, table: u64, offset: u64, block: &[u8]) {
        let len = block.len();
        if len == 0 || len > self.capacity_bytes / 8 {
            return;
        }
        let mut inner = self.inner.borrow_mut();
        if inner.map.contains_key(&(table, offset)) {
            return;
        }
        // Second chance: a referenced slot is skipped once; bounded to two laps of the ring.
        let mut budget = inner.ring.len() * 2 + 1;
        while self.used.get() + len > self.capacity_bytes && budget > 0 {
            budget -= 1;
            let Some(k) = inner.ring.pop_front() else {
                break;
            };
            let spare = match inner.map.get_mut(&k) {
                Some(slot) if slot.referenced => {
                    slot.referenced = false;
                    true
                }
                _ => false,
            };
            if spare {
                inner.ring.push_back(k);
            } else if let Some(slot) = inner.map.remove(&k) {
                self.used.set(self.used.get() - slot.block.len());
            }
        }
        if self.used.get() + len > self.capacity_bytes {
            return;
        }
        inner.map.insert(
            (table, offset),
            Slot {
                block: Bytes::copy_from_slice(block),
                referenced: false,
            },
        );
        inner.ring.push_back((table, offset));
        self.used.set(self.used.get() + len);
        debug_assert!(self.used.get() <= self.capacity_bytes);
        debug_assert_eq!(inner.map.len(), inner.ring.len());
    }

    /// Drop every block of `table` (call when the table file is deleted).
    pub fn evict_table(&self, table: u64) {
        let mut inner = self.inner.borrow_mut();
        let mut freed = 0;
        inner.map.retain(|k, slot| {
            let keep = k.0 != table;
            if !keep {
                freed += slot.block.len();
            }
            keep
        });
        inner.ring.retain(|k| k.0 != table);
        self.used.set(self.used.get() - freed);
    }

    pub fn stats(&self) -> BlockCacheStats {
        BlockCacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            resident_bytes: self.used.get(),
            blocks: self.inner.borrow().map.len(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bounded_second_chance_and_table_eviction() {
        let c = BlockCache::new(8 * 1000);
        // Too big (> capacity / 8): not cached.
        c.insert(1, 0, &[0u8; 1001]);
        assert_eq!(c.stats().blocks, 0);
        for off in 0..8u64 {
            c.insert(1, off, &[off as u8; 1000]);
        }
        assert_eq!(c.stats().resident_bytes, 8000);
        // Touch block 0: it survives the next eviction, block 1 does not.
        assert_eq!(c.get(1, 0).unwrap()[0], 0);
        c.insert(2, 0, &[9u8; 1000]);
        assert!(c.get(1, 0).is_some());
        assert!(c.get(1, 1).is_none());
        assert!(c.get(2, 0).is_some());
        assert!(c.stats().resident_bytes <= 8000);
        c.evict_table(1);
        let s = c.stats();
        assert_eq!((s.blocks, s.resident_bytes), (1, 1000));
        assert!(s.hits >= 3 && s.misses >= 1);
    }

    #[test]
    fn never_exceeds_capacity_under_churn() {
        let c = BlockCache::new(10_000);
        for i in 0..5_000u64 {
            let len = 1 + (i * 7919 % 1250) as usize;
            c.insert(i % 3, i, &vec![0u8; len]);
            if i % 5 == 0 {
                c.get(i % 3, i / 2);
            }
            assert!(c.stats().resident_bytes <= 10_000);
        }
    }
}
