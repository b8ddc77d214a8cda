//! The coordinator's [`ReplicaStore`] on top of one shard's storage [`Engine`]: records are
//! encoded with `Record::encode` as the engine's opaque payload, tombstones carry their delete
//! time so compaction can age them. Lives in the server because it joins two modules that must
//! not know each other (`storage` never parses payloads; `coordinator` never touches storage).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::shard::ShardStore;
use crate::config::{Config, SyncMode};
use crate::coordinator::{ReplicaStore, StoreError};
use crate::runtime::disk_glommio::GlommioDisk;
use crate::storage::engine::{
    Engine, EngineConfig, NewRecord, SyncMode as EngineSync, UpdateError,
};
use crate::version::{Record, VersionError};

/// How long `close` waits for in-flight operations before closing anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

pub struct EngineStore {
    /// `None` once closing started: later calls fail as "storage is closed".
    engine: RefCell<Option<Rc<Engine<GlommioDisk>>>>,
}

enum Refusal {
    Version(VersionError),
    Corrupt(String),
}

fn decode(payload: &Bytes) -> Result<Record, String> {
    Record::decode_bytes(payload).map_err(|e| format!("stored record does not decode: {e}"))
}

impl EngineStore {
    /// Opens shard `shard`'s engine under the node's data directory.
    pub async fn open(cfg: &Config, shard: u16) -> Result<EngineStore, String> {
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
            .map_err(|e| format!("cannot open the storage of shard {shard}: {e}"))?;
        Ok(EngineStore {
            engine: RefCell::new(Some(Rc::new(engine))),
        })
    }

    fn engine(&self) -> Result<Rc<Engine<GlommioDisk>>, StoreError> {
        self.engine.borrow().clone().ok_or(StoreError::Failed {
            reason: "storage is closed (node shutting down)".into(),
        })
    }
}

impl ReplicaStore for EngineStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Record>, StoreError> {
        let engine = self.engine()?;
        let stored = engine.get(key).await.map_err(|e| StoreError::Failed {
            reason: e.to_string(),
        })?;
        match stored {
            None => Ok(None),
            Some(s) => decode(&s.payload)
                .map(Some)
                .map_err(|reason| StoreError::Failed { reason }),
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
                None => decode(&stored.payload)
                    .map(Some)
                    .map_err(|reason| StoreError::Failed { reason }),
            },
            Ok(None) => Ok(unchanged.into_inner()),
            Err(UpdateError::Rejected(Refusal::Version(v))) => Err(StoreError::Rejected(v)),
            Err(UpdateError::Rejected(Refusal::Corrupt(reason))) => {
                Err(StoreError::Failed { reason })
            }
            Err(UpdateError::Storage(e)) => Err(StoreError::Failed {
                reason: e.to_string(),
            }),
        }
    }
}

impl ShardStore for EngineStore {
    async fn close(&self) -> Result<(), String> {
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
                    return Err("storage still busy after 10 s; closing without a final sync (the log replays on restart)".into())
                }
            }
        };
        engine.close().await.map_err(|e| e.to_string())
    }
}
