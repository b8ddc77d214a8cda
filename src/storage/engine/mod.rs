//! The storage engine of one shard: ties the commit log, memtables, SSTables, manifest and
//! compaction together. One per glommio executor; `!Send`, methods take `&self`.
//!
//! Write path (`update`): per-key lock (so read-modify-writes of one key never interleave, even
//! when the read awaits SSTable I/O) -> read current version -> caller's closure -> append to
//! the commit log -> wait until durable (durable mode) -> insert into the memtable that was
//! active when the LSN was assigned -> acknowledge. Each memtable therefore holds exactly the
//! LSNs assigned while it was active (a contiguous range), which keeps the seqno ranges of
//! SSTables disjoint and ordered, as compaction's "newest table first" read rule requires.
//! A frozen memtable is flushed only after every write assigned to it has been inserted.
//!
//! Read path: active memtable, frozen memtables newest first, SSTables newest first (Bloom
//! filters skip most). Values are returned as stored, tombstones included: the version layer
//! interprets them. The LSN of a write is its `seqno`.
//!
//! Background work (flush of frozen memtables, then compaction) runs one job at a time in a
//! low-priority glommio task queue. Writes are throttled (they wait) only while
//! `max_frozen_memtables` memtables are waiting for their flush.
//!
//! Recovery: manifest -> open its SSTables (orphans of an interrupted flush/compaction are
//! deleted) -> replay commit-log records with LSN > `flushed_upto` into memtables.
//!
//! Failure semantics: an `Err` from `update` means "not acknowledged"; the record may still have
//! reached the log and reappear after a restart (as with any timeout). After a log write or sync
//! failure (e.g. disk full) writes fail until restart; reads keep working.
//!
//! Must not know about replicas, the ring or the network; never parses `payload`.

mod background;
mod codec;
mod signal;

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::commitlog::{CommitLog, LogConfig, LogStats};
use super::compaction::CompactionPolicy;
use super::entry::{InternalKey, Stored, DEFAULT_TOMBSTONE_GRACE_MS};
use super::error::StorageError;
use super::manifest::{Manifest, MANIFEST_FILE};
use super::memtable::Memtable;
use super::merge::{AnySource, IterSource, MergeIter};
use super::sstable::{BlockCache, SstOptions, SstReader};
use crate::config::MAX_KEY_BYTES;
use crate::runtime::disk::Disk;
use signal::Signal;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// After its commit-log record is durable (fdatasync, shared by concurrent writers).
    Durable,
    /// At once; the buffered log is written and synced every `interval_ms`. A crash or power
    /// loss can lose the writes acknowledged in the last `interval_ms`. Opt-in only.
    Periodic { interval_ms: u64 },
}

/// Settings of one shard's engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Shard directory: `MANIFEST`, `*.sst`, and the commit log in `log/`.
    pub dir: PathBuf,
    /// Active memtable size at which it is frozen and flushed.
    pub memtable_bytes: usize,
    /// Frozen memtables allowed before writes are throttled.
    pub max_frozen_memtables: usize,
    /// Commit-log segment size (multiple of 4096).
    pub segment_bytes: u64,
    /// Buffered, unwritten log bytes above which appends wait.
    pub max_pending_log_bytes: usize,
    pub sync: SyncMode,
    /// Largest value (payload) accepted.
    pub max_value_bytes: usize,
    /// Tombstones older than this are dropped by compactions that include every older table.
    pub tombstone_grace_ms: u64,
    pub bloom_bits_per_key: u32,
    /// Shared cache of SSTable data blocks for point reads (0 disables).
    pub block_cache_bytes: usize,
    pub compaction: CompactionPolicy,
    /// Start even if a log segment is corrupt before its tail (skipping the rest of it).
    pub skip_damaged_segments: bool,
    /// Run flushes/compactions in the background (tests may disable and call `flush_now`).
    pub background: bool,
}

impl EngineConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            dir: dir.into(),
            memtable_bytes: 64 << 20,
            max_frozen_memtables: 2,
            segment_bytes: 64 << 20,
            max_pending_log_bytes: 8 << 20,
            sync: SyncMode::Durable,
            max_value_bytes: 1 << 20,
            tombstone_grace_ms: DEFAULT_TOMBSTONE_GRACE_MS,
            bloom_bits_per_key: super::bloom::DEFAULT_BITS_PER_KEY,
            block_cache_bytes: 32 << 20,
            compaction: CompactionPolicy::default(),
            skip_damaged_segments: false,
            background: true,
        }
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }
}

/// What `update`'s closure wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub payload: Bytes,
    /// `Some(delete time)` when the record is a tombstone.
    pub tombstone_at_ms: Option<u64>,
}

/// Error of [`Engine::update`]: storage failed, or the closure refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E> {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("update rejected by caller")]
    Rejected(E),
}

/// Counters and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub writes: u64,
    pub gets: u64,
    pub throttled_writes: u64,
    pub memtable_bytes: usize,
    pub frozen_memtables: usize,
    pub tables: usize,
    pub flushes: u64,
    pub compactions: u64,
    pub replayed_records: u64,
    /// Table lookups a Bloom filter answered without I/O.
    pub bloom_skips: u64,
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    pub log: LogStats,
}

/// A memtable and the writes assigned to it.
struct Slot {
    id: u64,
    /// Shared only with a running flush, which starts once `pending` is 0 and the slot is
    /// frozen, i.e. once nothing inserts into it any more (see [`Slot::mem_mut`]).
    mem: Rc<Memtable>,
    /// Writes with an LSN in this memtable that are not inserted yet.
    pending: usize,
    /// Highest LSN assigned to this memtable (0 if none).
    last_lsn: u64,
}

impl Slot {
    fn new(id: u64) -> Self {
        Slot {
            id,
            mem: Rc::new(Memtable::new()),
            pending: 0,
            last_lsn: 0,
        }
    }
    fn has_writes(&self) -> bool {
        self.last_lsn != 0
    }
    /// The memtable, to insert into. Inserts happen only while the slot is active or has
    /// pending writes, and a flush shares it only after that, so the `Rc` is unique here. Were
    /// it not, copying is correct (the flush keeps its snapshot) but would stall the shard.
    fn mem_mut(&mut self) -> &mut Memtable {
        if Rc::strong_count(&self.mem) > 1 {
            debug_assert!(
                false,
                "insert into memtable {} while it is flushed",
                self.id
            );
            tracing::error!(
                slot = self.id,
                "insert into a memtable being flushed: copying it"
            );
        }
        Rc::make_mut(&mut self.mem)
    }
}

type Table<D> = Rc<SstReader<<D as Disk>::File>>;

struct State<D: Disk> {
    active: Slot,
    /// Oldest first.
    frozen: VecDeque<Slot>,
    next_slot: u64,
    manifest: Manifest,
    /// Newest (largest max_seqno) first; ids parallel to the manifest's.
    tables: Vec<(u64, Table<D>)>,
    stats: EngineStats,
    /// Sticky error of the background job, reported to throttled writers.
    bg_error: Option<String>,
}

pub(crate) struct Inner<D: Disk> {
    disk: Rc<D>,
    cfg: EngineConfig,
    sst_opts: SstOptions,
    cache: Option<Rc<BlockCache>>,
    log: CommitLog<D>,
    st: RefCell<State<D>>,
    inflight: RefCell<HashSet<Bytes>>,
    key_released: Signal,
    /// Background work may be available (freeze, pending reached 0, stop).
    bg_wake: Signal,
    /// A flush or compaction finished (throttled writers, `flush_now`).
    bg_done: Signal,
    /// A flush or compaction is running (one at a time).
    maint_busy: Cell<bool>,
    closed: Cell<bool>,
}

/// One shard's storage engine.
pub struct Engine<D: Disk> {
    inner: Rc<Inner<D>>,
    tasks: RefCell<Vec<glommio::Task<()>>>,
}

thread_local! {
    /// (executor id, queue) so one executor reuses its queue across engines.
    static BG_QUEUE: Cell<Option<(usize, glommio::TaskQueueHandle)>> = const { Cell::new(None) };
}

/// The executor's low-priority queue for flushes and compactions, created once per executor
/// (`fresh` forces a new one, e.g. when the cached handle belongs to a finished executor).
fn bg_queue(fresh: bool) -> glommio::TaskQueueHandle {
    let ex = glommio::executor();
    let id = ex.id();
    BG_QUEUE.with(|q| {
        if let Some((qid, h)) = q.get() {
            if qid == id && !fresh {
                return h;
            }
        }
        let h = ex.create_task_queue(
            glommio::Shares::Static(100),
            glommio::Latency::NotImportant,
            "tern-storage-bg",
        );
        q.set(Some((id, h)));
        h
    })
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Releases a key of the in-flight set on drop (also when the update future is dropped).
struct KeyGuard<'a, D: Disk> {
    inner: &'a Inner<D>,
    key: Bytes,
}

impl<D: Disk> Drop for KeyGuard<'_, D> {
    fn drop(&mut self) {
        self.inner.inflight.borrow_mut().remove(&self.key);
        self.inner.key_released.notify();
    }
}

impl<D: Disk> Engine<D> {
    /// Open (or create) the shard in `cfg.dir` and recover it. Must run inside a glommio
    /// executor (background tasks are spawned on it).
    pub async fn open(disk: D, cfg: EngineConfig) -> Result<Self, StorageError> {
        let disk = Rc::new(disk);
        let dir = cfg.dir.clone();
        disk.create_dir_all(&dir)
            .await
            .map_err(|e| StorageError::io(&dir, "create shard directory", e))?;
        let manifest = Manifest::load(&*disk, &dir).await?.unwrap_or_default();
        let sst_opts = SstOptions {
            bloom_bits_per_key: cfg.bloom_bits_per_key,
            ..SstOptions::default()
        };
        remove_orphans(&*disk, &dir, &manifest).await?;
        let cache =
            (cfg.block_cache_bytes > 0).then(|| Rc::new(BlockCache::new(cfg.block_cache_bytes)));
        let mut tables = Vec::new();
        for t in &manifest.tables {
            let path = Manifest::table_path(&dir, t);
            let r = open_table(&*disk, &path, t.id, &sst_opts, &cache).await?;
            tables.push((t.id, r));
        }
        sort_tables::<D>(&mut tables);

        // Replay the log into memtables, freezing them at the usual size.
        let flushed = manifest.flushed_upto;
        let mut slots: Vec<Slot> = vec![Slot::new(0)];
        let mut replayed = 0u64;
        let log_cfg = LogConfig {
            segment_bytes: cfg.segment_bytes,
            max_record_bytes: cfg.max_value_bytes + MAX_KEY_BYTES + 16,
            max_pending_bytes: cfg.max_pending_log_bytes,
            skip_damaged_segments: cfg.skip_damaged_segments,
            min_next_lsn: flushed + 1,
            ..LogConfig::new(cfg.log_dir())
        };
        let log_dir = cfg.log_dir();
        let memtable_bytes = cfg.memtable_bytes;
        let (log, report) = CommitLog::open(disk.clone(), log_cfg, |lsn, rec| {
            if lsn <= flushed {
                return Ok(());
            }
            let (key, tomb, payload) = codec::decode(rec).map_err(|what| {
                StorageError::corrupt(&log_dir, lsn, format!("log record with LSN {lsn}: {what}"))
            })?;
            let n = slots.len() as u64;
            let slot = slots.last_mut().ok_or(StorageError::Closed)?;
            slot.mem_mut().insert(
                InternalKey::from_trusted(key),
                Stored {
                    seqno: lsn,
                    tombstone_at_ms: tomb,
                    payload,
                },
            );
            slot.last_lsn = lsn;
            replayed += 1;
            if slot.mem.approx_bytes() >= memtable_bytes {
                slots.push(Slot::new(n));
            }
            Ok(())
        })
        .await?;
        tracing::info!(dir = %dir.display(), tables = tables.len(), replayed,
            torn_tails = report.torn_tails, skipped = report.skipped_damaged,
            flushed_upto = flushed, "storage engine opened");
        let active = slots.pop().unwrap_or_else(|| Slot::new(0));
        let next_slot = active.id + 1;
        let frozen: VecDeque<Slot> = slots.into_iter().filter(Slot::has_writes).collect();
        let stats = EngineStats {
            replayed_records: replayed,
            ..EngineStats::default()
        };
        let inner = Rc::new(Inner {
            disk,
            sst_opts,
            cache,
            log,
            st: RefCell::new(State {
                active,
                frozen,
                next_slot,
                manifest,
                tables,
                stats,
                bg_error: None,
            }),
            inflight: RefCell::new(HashSet::new()),
            key_released: Signal::default(),
            bg_wake: Signal::default(),
            bg_done: Signal::default(),
            maint_busy: Cell::new(false),
            closed: Cell::new(false),
            cfg,
        });
        let mut tasks = Vec::new();
        if inner.cfg.background {
            let t = match glommio::spawn_local_into(background::run(inner.clone()), bg_queue(false))
            {
                Ok(t) => t,
                Err(_) => glommio::spawn_local_into(background::run(inner.clone()), bg_queue(true))
                    .map_err(|e| StorageError::io(&dir, "spawn background task", e.into()))?,
            };
            tasks.push(t);
        }
        if let SyncMode::Periodic { interval_ms } = inner.cfg.sync {
            let i = inner.clone();
            tasks.push(glommio::spawn_local(periodic_sync(i, interval_ms)));
        }
        Ok(Engine {
            inner,
            tasks: RefCell::new(tasks),
        })
    }

    /// The newest stored version of `key` (tombstones included), or `None`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Stored>, StorageError> {
        let ik = InternalKey::new(Bytes::copy_from_slice(key))?;
        self.inner.st.borrow_mut().stats.gets += 1;
        self.inner.read(&ik).await
    }

    /// Atomic read-modify-write of one key inside the shard: reads the current record, calls
    /// `f`, writes what it returns (`None` = no write), waits until durable (durable mode), and
    /// returns the new record (`None` when nothing was written). Two concurrent `update`s of the
    /// same key never interleave between read and write.
    pub async fn update<E>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&Stored>) -> Result<Option<NewRecord>, E>,
    ) -> Result<Option<Stored>, UpdateError<E>> {
        let inner = &*self.inner;
        if inner.closed.get() {
            return Err(StorageError::Closed.into());
        }
        let ik = InternalKey::new(Bytes::copy_from_slice(key))?;
        let _guard = inner.lock_key(ik.key().clone()).await;
        inner.throttle().await?;
        let current = inner.read(&ik).await?;
        let Some(rec) = f(current.as_ref()).map_err(UpdateError::Rejected)? else {
            return Ok(None);
        };
        if rec.payload.len() > inner.cfg.max_value_bytes {
            return Err(StorageError::ValueTooLarge {
                len: rec.payload.len(),
                max: inner.cfg.max_value_bytes,
            }
            .into());
        }
        let bytes = codec::encode(ik.key(), rec.tombstone_at_ms, &rec.payload);
        let lsn = inner.log.append(&bytes).await?;
        // No await between the append returning and this: the LSN belongs to the memtable that
        // is active right now.
        let slot_id = {
            let mut st = inner.st.borrow_mut();
            st.active.pending += 1;
            st.active.last_lsn = lsn;
            st.active.id
        };
        if inner.cfg.sync == SyncMode::Durable {
            if let Err(e) = inner.log.wait_durable(lsn).await {
                inner.finish_write(slot_id, None);
                return Err(e.into());
            }
        }
        let stored = Stored {
            seqno: lsn,
            tombstone_at_ms: rec.tombstone_at_ms,
            payload: rec.payload,
        };
        inner.finish_write(slot_id, Some((ik, stored.clone())));
        Ok(Some(stored))
    }

    /// Up to `limit` entries whose token lies in `tokens`, in `(token, key)` order, newest
    /// version of each key, tombstones included. Page by calling again from the last token.
    pub async fn scan(
        &self,
        tokens: RangeInclusive<u64>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Stored)>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (mems, tables) = {
            let st = self.inner.st.borrow();
            let mut mems: Vec<Vec<(InternalKey, Stored)>> = Vec::new();
            for slot in std::iter::once(&st.active).chain(st.frozen.iter().rev()) {
                // Only the first `limit` keys of a source can be among the first `limit`
                // results, so the copy is bounded.
                mems.push(
                    slot.mem
                        .range(tokens.clone())
                        .take(limit)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                );
            }
            let tables: Vec<Table<D>> = st.tables.iter().map(|(_, t)| t.clone()).collect();
            (mems, tables)
        };
        let mut sources = Vec::new();
        for m in mems {
            sources.push(AnySource::Mem(IterSource(m.into_iter())));
        }
        for t in &tables {
            sources.push(AnySource::Sst(t.scan(tokens.clone())));
        }
        let mut merge = MergeIter::new(sources);
        let mut out = Vec::with_capacity(limit.min(1024));
        while out.len() < limit {
            match merge.next().await? {
                Some((k, v)) => out.push((k.key().clone(), v)),
                None => break,
            }
        }
        Ok(out)
    }

    /// Make the log durable, stop background tasks, close files. Memtables are not flushed:
    /// the next `open` replays them from the log. Waits for a running flush or compaction to
    /// finish (rather than cancelling it in the middle of its I/O).
    pub async fn close(self) -> Result<(), StorageError> {
        self.inner.closed.set(true);
        self.inner.bg_wake.notify();
        let mut tasks = std::mem::take(&mut *self.tasks.borrow_mut()).into_iter();
        if self.inner.cfg.background {
            if let Some(bg) = tasks.next() {
                // The loop checks `closed` between jobs, so this ends after the current one.
                bg.await;
            }
        }
        let res = self.inner.log.close().await;
        for t in tasks {
            t.cancel().await;
        }
        res
    }

    pub fn stats(&self) -> EngineStats {
        let st = self.inner.st.borrow();
        EngineStats {
            memtable_bytes: st.active.mem.approx_bytes()
                + st.frozen
                    .iter()
                    .map(|s| s.mem.approx_bytes())
                    .sum::<usize>(),
            frozen_memtables: st.frozen.len(),
            tables: st.tables.len(),
            block_cache_hits: self.inner.cache.as_ref().map_or(0, |c| c.stats().hits),
            block_cache_misses: self.inner.cache.as_ref().map_or(0, |c| c.stats().misses),
            log: self.inner.log.stats(),
            ..st.stats.clone()
        }
    }

    /// Test/ops hook: freeze the active memtable and wait until every frozen memtable is in an
    /// SSTable (runs the flush itself when background work is disabled).
    pub async fn flush_now(&self) -> Result<(), StorageError> {
        self.inner.freeze_active();
        for _ in 0..1_000_000u32 {
            let w = self.inner.bg_done.wait();
            if self.inner.st.borrow().frozen.is_empty() {
                return Ok(());
            }
            if let Some(e) = self.inner.st.borrow().bg_error.clone() {
                return Err(background::bg_err(&self.inner.cfg.dir, e));
            }
            if self.inner.cfg.background {
                self.inner.bg_wake.notify();
                w.await;
            } else {
                background::run_one(&self.inner, false).await?;
            }
        }
        Err(StorageError::Closed)
    }

    /// Test/ops hook: merge all SSTables into one (dropping expired tombstones).
    pub async fn compact_now(&self) -> Result<(), StorageError> {
        background::compact_all(&self.inner).await
    }
}

impl<D: Disk> Inner<D> {
    async fn lock_key(&self, key: Bytes) -> KeyGuard<'_, D> {
        loop {
            let w = self.key_released.wait();
            if self.inflight.borrow_mut().insert(key.clone()) {
                return KeyGuard { inner: self, key };
            }
            w.await;
        }
    }

    /// Wait while too many frozen memtables await their flush.
    async fn throttle(&self) -> Result<(), StorageError> {
        let mut counted = false;
        loop {
            let w = self.bg_done.wait();
            {
                let mut st = self.st.borrow_mut();
                if st.frozen.len() < self.cfg.max_frozen_memtables.max(1) {
                    return Ok(());
                }
                if let Some(e) = st.bg_error.clone() {
                    return Err(background::bg_err(&self.cfg.dir, e));
                }
                if !counted {
                    st.stats.throttled_writes += 1;
                    counted = true;
                }
            }
            if self.closed.get() {
                return Err(StorageError::Closed);
            }
            if !self.cfg.background {
                // Boxed: a flush or compaction is a large state machine that would otherwise
                // be part of every write's future (tests run without the background task).
                Box::pin(background::run_one(self, false)).await?;
                continue;
            }
            self.bg_wake.notify();
            w.await;
        }
    }

    async fn read(&self, ik: &InternalKey) -> Result<Option<Stored>, StorageError> {
        let tables: Vec<Table<D>> = {
            let mut st = self.st.borrow_mut();
            for slot in std::iter::once(&st.active).chain(st.frozen.iter().rev()) {
                if let Some(v) = slot.mem.get(ik) {
                    return Ok(Some(v.clone()));
                }
            }
            let maybe: Vec<Table<D>> = st
                .tables
                .iter()
                .filter(|(_, t)| t.may_contain(ik))
                .map(|(_, t)| t.clone())
                .collect();
            st.stats.bloom_skips += (st.tables.len() - maybe.len()) as u64;
            maybe
        };
        for t in tables {
            // Boxed: an SSTable read (index, block cache, DMA read) is a large state machine;
            // inline it would inflate every read's and write's future even on memtable hits.
            if let Some(v) = Box::pin(t.get(ik)).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Insert a finished write (or just account a failed one) into its memtable, and freeze
    /// the active memtable when it is full.
    fn finish_write(&self, slot_id: u64, entry: Option<(InternalKey, Stored)>) {
        let (full, frozen_ready) = {
            let mut guard = self.st.borrow_mut();
            let st = &mut *guard;
            let slot = if st.active.id == slot_id {
                &mut st.active
            } else {
                match st.frozen.iter_mut().find(|s| s.id == slot_id) {
                    Some(s) => s,
                    None => {
                        // Cannot happen: a slot is flushed only when its pending count is 0.
                        debug_assert!(false, "memtable {slot_id} vanished with writes pending");
                        tracing::error!(slot_id, "memtable flushed with writes pending");
                        return;
                    }
                }
            };
            slot.pending -= 1;
            let done = slot.pending == 0;
            if let Some((k, v)) = entry {
                slot.mem_mut().insert(k, v);
                st.stats.writes += 1;
            }
            (
                st.active.mem.approx_bytes() >= self.cfg.memtable_bytes,
                slot_id != st.active.id && done,
            )
        };
        if full {
            self.freeze_active();
        } else if frozen_ready {
            self.bg_wake.notify();
        }
    }

    fn freeze_active(&self) {
        {
            let mut st = self.st.borrow_mut();
            if !st.active.has_writes() {
                return;
            }
            let id = st.next_slot;
            st.next_slot += 1;
            let old = std::mem::replace(&mut st.active, Slot::new(id));
            st.frozen.push_back(old);
        }
        self.bg_wake.notify();
    }
}

/// Open table `id`, reading through the shard's block cache if there is one.
async fn open_table<D: Disk>(
    disk: &D,
    path: &Path,
    id: u64,
    opts: &SstOptions,
    cache: &Option<Rc<BlockCache>>,
) -> Result<Table<D>, StorageError> {
    let r = SstReader::open(disk, path, opts).await?;
    Ok(Rc::new(match cache {
        Some(c) => r.with_cache(c.clone(), id),
        None => r,
    }))
}

fn sort_tables<D: Disk>(tables: &mut [(u64, Table<D>)]) {
    tables.sort_by_key(|t| std::cmp::Reverse((t.1.meta().max_seqno, t.0)));
}

/// Delete `*.sst` files the manifest does not list and leftover `*.tmp` files: outputs of a
/// flush or compaction interrupted before its manifest update.
async fn remove_orphans<D: Disk>(disk: &D, dir: &Path, m: &Manifest) -> Result<(), StorageError> {
    let names = disk
        .list(dir)
        .await
        .map_err(|e| StorageError::io(dir, "list shard directory", e))?;
    for p in names {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let orphan = name.ends_with(".tmp")
            || (name.ends_with(".sst") && !m.tables.iter().any(|t| t.file_name == name));
        if orphan && name != MANIFEST_FILE {
            tracing::info!(path = %p.display(), "removing orphan file");
            disk.remove(&p)
                .await
                .map_err(|e| StorageError::io(&p, "remove orphan", e))?;
        }
    }
    Ok(())
}

async fn periodic_sync<D: Disk>(inner: Rc<Inner<D>>, interval_ms: u64) {
    let every = Duration::from_millis(interval_ms.max(1));
    while !inner.closed.get() {
        glommio::timer::sleep(every).await;
        if let Err(e) = inner.log.sync().await {
            tracing::error!(error = %e, "periodic commit-log sync failed");
            return;
        }
    }
}

#[cfg(test)]
mod tests;
