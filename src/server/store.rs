//! The coordinator's [`ReplicaStore`] on top of one shard's storage [`Engine`]: records are
//! encoded with `Record::encode` as the engine's opaque payload, tombstones carry their delete
//! time so compaction can age them. Lives in the server because it joins two modules that must
//! not know each other (`storage` never parses payloads; `coordinator` never touches storage).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::shard::ShardStore;
use super::ShardError;
use crate::config::{Config, SyncMode};
use crate::coordinator::{ReplicaStore, StoreError, StoreFault};
use crate::runtime::disk_glommio::GlommioDisk;
use crate::storage::engine::{
    Engine, EngineConfig, NewRecord, SyncMode as EngineSync, UpdateError,
};
use crate::storage::error::StorageError;
use crate::version::{Record, VersionError};

/// How long `close` waits for in-flight operations before closing anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

pub struct EngineStore {
    /// `None` once closing started: later calls fail as "storage is closed".
    engine: RefCell<Option<Rc<Engine<GlommioDisk>>>>,
}

enum Refusal {
    Version(VersionError),
    Corrupt(StoreError),
}

fn decode(payload: &Bytes) -> Result<Record, StoreError> {
    Record::decode_bytes(payload).map_err(|e| {
        StoreError::failed(
            StoreFault::Corrupt,
            format!("stored record does not decode: {e}"),
        )
    })
}

/// The kind of an engine failure, as the coordinator and the wire distinguish them.
fn store_error(e: &StorageError) -> StoreError {
    let fault = match e {
        StorageError::DiskFull { .. } => StoreFault::DiskFull,
        StorageError::Corrupt { .. } => StoreFault::Corrupt,
        StorageError::Closed => StoreFault::Closed,
        StorageError::Io { .. }
        | StorageError::KeyTooLarge { .. }
        | StorageError::ValueTooLarge { .. } => StoreFault::Internal,
    };
    StoreError::failed(fault, e.to_string())
}

impl EngineStore {
    /// Opens shard `shard`'s engine under the node's data directory.
    pub async fn open(cfg: &Config, shard: u16) -> Result<EngineStore, ShardError> {
        let mut ec = EngineConfig::new(cfg.shard_dir(shard));
        ec.memtable_bytes = usize::try_from(cfg.memtable_bytes).unwrap_or(usize::MAX);
        ec.sync = match cfg.sync {
            SyncMode::Durable => EngineSync::Durable,
            SyncMode::Periodic { ms } => EngineSync::Periodic { interval_ms: ms },
        };
        // The payload is a whole record (all siblings), which must still fit in one replica
        // frame: the frame limit is the record limit.
        ec.max_value_bytes = cfg.max_frame_bytes;
        ec.tombstone_grace_ms = cfg.tombstone_grace_ms;
        ec.skip_damaged_segments = cfg.skip_damaged_segments;
        let engine = Engine::open(GlommioDisk::new(), ec)
            .await
            .map_err(|source| ShardError::OpenStorage { shard, source })?;
        Ok(EngineStore {
            engine: RefCell::new(Some(Rc::new(engine))),
        })
    }

    fn engine(&self) -> Result<Rc<Engine<GlommioDisk>>, StoreError> {
        self.engine
            .borrow()
            .clone()
            .ok_or_else(|| StoreError::failed(StoreFault::Closed, "this shard's store is closed"))
    }
}

impl ReplicaStore for EngineStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        let engine = self.engine()?;
        let stored = engine.get(key).await.map_err(|e| store_error(&e))?;
        match stored {
            None => Ok(None),
            Some(s) => decode(&s.payload).map(Some),
        }
    }

    async fn update<F>(&self, key: &[u8], f: F) -> Result<Option<Record>, StoreError>
    where
        F: FnOnce(Option<&Record>) -> Result<Option<Record>, VersionError>,
    {
        let engine = self.engine()?;
        // The record as it was, for the "nothing written" answer.
        let unchanged: RefCell<Option<Record>> = RefCell::new(None);
        // The record written, answered as is: decoding the payload we just encoded from it
        // would cost a second parse and its allocations per write.
        let written: RefCell<Option<Record>> = RefCell::new(None);
        let res = engine
            .update(key, |old| {
                let old = match old {
                    None => None,
                    Some(s) => Some(decode(&s.payload).map_err(Refusal::Corrupt)?),
                };
                let new = f(old.as_ref()).map_err(Refusal::Version)?;
                *unchanged.borrow_mut() = old;
                Ok(new.map(|r| {
                    let rec = NewRecord {
                        payload: Bytes::from(r.encode()),
                        tombstone_at_ms: r.tombstone_at_ms(),
                    };
                    *written.borrow_mut() = Some(r);
                    rec
                }))
            })
            .await;
        match res {
            Ok(Some(stored)) => match written.into_inner() {
                Some(r) => {
                    debug_assert_eq!(Bytes::from(r.encode()), stored.payload);
                    Ok(Some(r))
                }
                // Unreachable (the engine stores only what the closure returned); decode then.
                None => decode(&stored.payload).map(Some),
            },
            Ok(None) => Ok(unchanged.into_inner()),
            Err(UpdateError::Rejected(Refusal::Version(v))) => Err(StoreError::Rejected(v)),
            Err(UpdateError::Rejected(Refusal::Corrupt(e))) => Err(e),
            Err(UpdateError::Storage(e)) => Err(store_error(&e)),
        }
    }
}

impl ShardStore for EngineStore {
    async fn close(&self) -> Result<(), ShardError> {
        let Some(mut rc) = self.engine.borrow_mut().take() else {
            return Ok(());
        };
        // In-flight operations hold clones; each is bounded by its request deadline.
        let deadline = Instant::now() + CLOSE_WAIT;
        let engine = loop {
            match Rc::try_unwrap(rc) {
                Ok(e) => break e,
                Err(back) if Instant::now() < deadline => {
                    rc = back;
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => {
                    return Err(ShardError::CloseBusy {
                        waited_ms: CLOSE_WAIT.as_millis() as u64,
                    })
                }
            }
        };
        engine.close().await.map_err(ShardError::CloseStorage)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The engine's errors reach the coordinator as their kind, not as one string.
    #[test]
    fn engine_errors_map_to_their_fault() {
        let path = PathBuf::from("/data/shard-0/log/log-1.seg");
        let cases = [
            (
                StorageError::DiskFull { path: path.clone() },
                StoreFault::DiskFull,
            ),
            (
                StorageError::corrupt(&path, 4096, "checksum"),
                StoreFault::Corrupt,
            ),
            (StorageError::Closed, StoreFault::Closed),
            (
                StorageError::io(&path, "sync", std::io::Error::other("EIO")),
                StoreFault::Internal,
            ),
        ];
        for (e, want) in cases {
            match store_error(&e) {
                StoreError::Failed { fault, detail } => {
                    assert_eq!(fault, want, "{e}");
                    assert_eq!(detail, e.to_string());
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
