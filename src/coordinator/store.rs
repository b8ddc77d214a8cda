//! `ReplicaStore`: the one shard's storage as the replica handlers need it, so the server adapts
//! the real storage engine and tests use [`MemStore`].
//!
//! Contract: `update` is atomic per key with respect to every other `update`/`get` of the same
//! store (the shard is single-threaded; the closure runs without an `.await` inside), and returns
//! only once the new record is as durable as the engine promises acknowledged writes are.

use std::cell::RefCell;
use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

use crate::version::{Record, VersionError};

/// What kind of storage failure. The coordinator, the wire (an `ErrorCode` each) and operators
/// act on the kind; the accompanying text is the detail for people (file, offset, errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// No space left on the replica's disk: its writes fail, its reads still work.
    DiskFull,
    /// Stored bytes fail their checksum or do not decode: the replica needs repair.
    Corrupt,
    /// The store is closed because the node is shutting down: try another replica.
    Closed,
    /// Any other I/O failure, or a store that broke its own contract.
    Internal,
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreFault::DiskFull => "disk full",
            StoreFault::Corrupt => "corrupt data",
            StoreFault::Closed => "storage closed, node shutting down",
            StoreFault::Internal => "storage error",
        })
    }
}

/// Why the store did not apply an update or answer a read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The update closure refused the write (e.g. too many siblings); nothing was written.
    #[error(transparent)]
    Rejected(VersionError),
    /// The engine failed; `fault` says how, `detail` names the file or cause.
    #[error("{fault}: {detail}")]
    Failed { fault: StoreFault, detail: String },
}

impl StoreError {
    pub fn failed(fault: StoreFault, detail: impl Into<String>) -> Self {
        StoreError::Failed {
            fault,
            detail: detail.into(),
        }
    }
}

/// One shard's records, keyed by the user key.
#[allow(async_fn_in_trait)]
pub trait ReplicaStore: 'static {
    /// The record of `key`, if any.
    async fn get(&self, key: &[u8]) -> Result<Option<Record>, StoreError>;

    /// Atomically: read the record of `key`, call `f` with it; if `f` returns `Ok(Some(new))`,
    /// store `new` (its [`Record::tombstone_at_ms`] tells the engine's GC about deletes).
    /// Returns the record of `key` after the call (`new`, or the unchanged old one).
    async fn update<F>(&self, key: &[u8], f: F) -> Result<Option<Record>, StoreError>
    where
        F: FnOnce(Option<&Record>) -> Result<Option<Record>, VersionError>;
}

/// In-memory store: for unit tests and the deterministic simulation. Survives a simulated crash
/// by construction (it models a store whose acknowledged writes are durable).
#[derive(Debug, Default)]
pub struct MemStore {
    records: RefCell<BTreeMap<Bytes, Record>>,
}

impl MemStore {
    pub fn new() -> Self {
        MemStore::default()
    }

    /// Every key and record, in key order (for checkers).
    pub fn snapshot(&self) -> Vec<(Bytes, Record)> {
        self.records
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Synchronous read (for checkers).
    pub fn get_now(&self, key: &[u8]) -> Option<Record> {
        self.records.borrow().get(key).cloned()
    }
}

impl ReplicaStore for MemStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        Ok(self.get_now(key))
    }

    async fn update<F>(&self, key: &[u8], f: F) -> Result<Option<Record>, StoreError>
    where
        F: FnOnce(Option<&Record>) -> Result<Option<Record>, VersionError>,
    {
        let mut records = self.records.borrow_mut();
        let old = records.get(key);
        match f(old).map_err(StoreError::Rejected)? {
            Some(new) => {
                records.insert(Bytes::copy_from_slice(key), new.clone());
                Ok(Some(new))
            }
            None => Ok(old.cloned()),
        }
    }
}
