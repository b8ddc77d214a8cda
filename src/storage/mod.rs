//! One shard's storage engine: commit log, memtable, SSTables, compaction, manifest, recovery.
//! Knows nothing of replicas, the ring or the network.

pub mod bloom;
pub mod commitlog;
pub mod compaction;
pub mod entry;
pub mod error;
pub mod manifest;
pub mod memtable;
pub mod merge;
pub mod sstable;

pub mod engine;
#[cfg(test)]
pub(crate) mod testdisk;
