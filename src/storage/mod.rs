//! One shard's storage engine: commit log, memtable, SSTables, compaction, manifest, recovery.
//! Knows nothing of replicas, the ring or the network.

pub mod commitlog;
pub mod error;
