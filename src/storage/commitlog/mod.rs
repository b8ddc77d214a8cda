//! The commit log of one shard: durable, ordered records with group commit, in recycled
//! fixed-size segment files. See [`record`] for the on-disk record format.
//!
//! Owns the files `log-<seq>.seg` (live segments) and `free-<seq>.seg` (retired segments kept
//! for reuse) in its directory, and nothing else. Payloads are opaque.
//!
//! Invariants:
//! - LSNs are assigned in append order, consecutive, and never reused across restarts (the
//!   next LSN is above every LSN found on disk and above `LogConfig::min_next_lsn`).
//! - Segment sequence numbers only grow (the next one is above every `log-`/`free-` name), so a
//!   recycled file's leftover records (checksummed with an older sequence) never validate.
//! - Bytes already handed to the disk are never changed: the tail page is rewritten only with
//!   the same prefix plus new records, so a torn rewrite cannot damage synced records.
//! - `durable_lsn` only grows, and only after the write *and* fdatasync covering it completed.
//!
//! Group commit: `append` only buffers. The first caller of `wait_durable` that finds no flush in
//! progress becomes the flusher: it writes everything buffered so far and issues one fdatasync,
//! then wakes every waiter; writers that arrived meanwhile are covered by the next round, led by
//! one of them. No spawned task is needed, so the log runs under any executor.
//! After a failed write or sync the log is poisoned (every later write fails with the same
//! error; after fsync failure the state of the file is unknown): restart to recover.

pub mod record;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::runtime::disk::{Disk, DiskFile, ALIGN};
use crate::storage::error::StorageError;

/// Settings of one commit log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Directory holding only this log's segments.
    pub dir: PathBuf,
    /// Size of each segment file (preallocated). Multiple of 4096.
    pub segment_bytes: u64,
    /// Largest payload accepted by `append`.
    pub max_record_bytes: usize,
    /// Buffered-but-unwritten bytes above which `append` waits for a flush (backpressure).
    pub max_pending_bytes: usize,
    /// On corruption before the tail of a segment, skip the rest of that segment (logged as an
    /// error) instead of refusing to start.
    pub skip_damaged_segments: bool,
    /// New LSNs start above this (the engine passes what its manifest says is flushed).
    pub min_next_lsn: u64,
    /// Retired segments kept for reuse; more are deleted.
    pub max_free_segments: usize,
}

impl LogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_record_bytes: (1 << 20) + 4096,
            max_pending_bytes: 8 << 20,
            skip_damaged_segments: false,
            min_next_lsn: 1,
            max_free_segments: 4,
        }
    }
}

/// What recovery found, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// Segments whose tail was torn (dropped, never acknowledged).
    pub torn_tails: usize,
    /// Segments with corruption before the tail that were skipped (`skip_damaged_segments`).
    pub skipped_damaged: usize,
    /// Highest LSN replayed (0 if none).
    pub max_lsn: u64,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub appends: u64,
    pub syncs: u64,
    pub flush_rounds: u64,
    pub rotations: u64,
    pub recycled: u64,
    pub durable_lsn: u64,
    pub live_segments: usize,
}

/// A segment receiving or awaiting writes.
struct OpenSeg<F> {
    seq: u64,
    path: PathBuf,
    file: Option<Rc<F>>,
    /// File offset of `buf[0]`; always page-aligned.
    buf_base: u64,
    /// Bytes from `buf_base` to the logical end of the segment (the not-yet-durable tail plus
    /// the partial page before it, which is rewritten).
    buf: Vec<u8>,
    /// How much of `buf` is already written and synced.
    flushed: usize,
    first_lsn: u64,
    last_lsn: u64,
    sealed: bool,
}

impl<F> OpenSeg<F> {
    fn end(&self) -> u64 {
        self.buf_base + self.buf.len() as u64
    }
}

/// A segment that is fully durable and only waits for retirement.
#[derive(Debug)]
struct ClosedSeg {
    seq: u64,
    path: PathBuf,
    last_lsn: u64,
}

struct Poison {
    kind: io::ErrorKind,
    msg: String,
    path: PathBuf,
    full: bool,
}

struct State<F> {
    closed: VecDeque<ClosedSeg>,
    /// Sealed (full) segments not yet fully durable, oldest first.
    sealed: VecDeque<OpenSeg<F>>,
    active: OpenSeg<F>,
    free: Vec<(u64, PathBuf)>,
    next_seq: u64,
    next_lsn: u64,
    durable_lsn: u64,
    pending_bytes: usize,
    poisoned: Option<Poison>,
    closed_for_writes: bool,
    stats: LogStats,
    waiters: Vec<Waker>,
}

/// One shard's commit log. `!Send`; all methods take `&self`.
pub struct CommitLog<D: Disk> {
    disk: Rc<D>,
    cfg: LogConfig,
    st: RefCell<State<D::File>>,
    flushing: Cell<bool>,
    epoch: Cell<u64>,
    /// Reused by every flush round for its padded snapshot of the segment tail, so a round
    /// allocates nothing (a fresh multi-KiB Vec per round cost 1.8% of durable-PUT CPU, most
    /// of it glibc consolidating fastbins for the large allocation).
    scratch: RefCell<Vec<u8>>,
    /// The waiter list's spare half: the round's end swaps it in instead of allocating anew.
    spare_waiters: RefCell<Vec<Waker>>,
}

/// Largest flush snapshot buffer kept for reuse (a bigger one is freed after its round).
const MAX_SCRATCH: usize = 1 << 20;

fn seg_name(prefix: &str, seq: u64) -> String {
    format!("{prefix}-{seq:020}.seg")
}

fn parse_name(p: &Path) -> Option<(&'static str, u64)> {
    let name = p.file_name()?.to_str()?;
    let stem = name.strip_suffix(".seg")?;
    if let Some(n) = stem.strip_prefix("log-") {
        return n.parse().ok().map(|s| ("log", s));
    }
    if let Some(n) = stem.strip_prefix("free-") {
        return n.parse().ok().map(|s| ("free", s));
    }
    None
}

fn new_seg<F>(dir: &Path, seq: u64, first_lsn: u64) -> OpenSeg<F> {
    OpenSeg {
        seq,
        path: dir.join(seg_name("log", seq)),
        file: None,
        buf_base: 0,
        buf: Vec::new(),
        flushed: 0,
        first_lsn,
        last_lsn: first_lsn.saturating_sub(1),
        sealed: false,
    }
}

impl<D: Disk> CommitLog<D> {
    /// Open (or create) the log in `cfg.dir`, replaying every record of every live segment in
    /// LSN order through `on_record(lsn, payload)`. New appends go to a fresh segment.
    pub async fn open(
        disk: Rc<D>,
        cfg: LogConfig,
        mut on_record: impl FnMut(u64, &[u8]) -> Result<(), StorageError>,
    ) -> Result<(Self, RecoveryReport), StorageError> {
        if cfg.segment_bytes % ALIGN != 0
            || cfg.segment_bytes < 2 * ALIGN
            || (record::encoded_len(cfg.max_record_bytes) + record::HEADER) as u64
                > cfg.segment_bytes
        {
            return Err(StorageError::io(
                &cfg.dir,
                "configure commit log",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "segment_bytes {} must be a multiple of 4096 and hold a record of \
                         max_record_bytes {}",
                        cfg.segment_bytes, cfg.max_record_bytes
                    ),
                ),
            ));
        }
        disk.create_dir_all(&cfg.dir)
            .await
            .map_err(|e| StorageError::io(&cfg.dir, "create log directory", e))?;
        let names = disk
            .list(&cfg.dir)
            .await
            .map_err(|e| StorageError::io(&cfg.dir, "list log directory", e))?;
        let mut live = Vec::new();
        let mut free = Vec::new();
        let mut max_seq = 0u64;
        for p in names {
            match parse_name(&p) {
                Some(("log", s)) => {
                    max_seq = max_seq.max(s);
                    live.push((s, p));
                }
                Some((_, s)) => {
                    max_seq = max_seq.max(s);
                    free.push((s, p));
                }
                None => {}
            }
        }
        live.sort();
        let mut report = RecoveryReport::default();
        let mut closed = VecDeque::new();
        let mut max_lsn = 0u64;
        for (seq, path) in live {
            let f = disk
                .open(&path)
                .await
                .map_err(|e| StorageError::io(&path, "open log segment", e))?;
            let size = f
                .size()
                .await
                .map_err(|e| StorageError::io(&path, "stat log segment", e))?;
            let data = f
                .read_at(0, size as usize)
                .await
                .map_err(|e| StorageError::io(&path, "read log segment", e))?;
            f.close()
                .await
                .map_err(|e| StorageError::io(&path, "close log segment", e))?;
            let scan = record::scan(&data, seq, cfg.max_record_bytes);
            match scan.end {
                record::End::Corrupt { offset, proof_at } => {
                    if !cfg.skip_damaged_segments {
                        return Err(StorageError::corrupt(
                            &path,
                            offset as u64,
                            format!(
                                "commit-log record fails its checksum, but a later record at \
                                 offset {proof_at} shows it had been synced (acknowledged data \
                                 is damaged); restart with skip_damaged_segments \
                                 (`tern serve --skip-damaged-segments`) to skip the rest of \
                                 this segment, losing its later records on this replica"
                            ),
                        ));
                    }
                    tracing::error!(path = %path.display(), offset, proof_at,
                        "corrupt commit-log record before the tail; skipping the rest of the segment");
                    report.skipped_damaged += 1;
                }
                record::End::TornTail { offset } => {
                    tracing::warn!(path = %path.display(), offset,
                        "commit-log segment ends in a torn or stale record; ignoring the tail (never acknowledged)");
                    report.torn_tails += 1;
                }
                record::End::Marker(_) | record::End::Zeros(_) => {}
            }
            let mut last = 0;
            for r in &scan.records {
                // Segments are replayed in sequence order, so LSNs must keep growing; a record
                // that does not is left over from before a restart that reused nothing: skip.
                if r.lsn <= max_lsn {
                    continue;
                }
                on_record(r.lsn, &data[r.payload.clone()])?;
                max_lsn = r.lsn;
                last = r.lsn;
                report.records += 1;
            }
            report.segments += 1;
            closed.push_back(ClosedSeg {
                seq,
                path,
                last_lsn: last,
            });
        }
        report.max_lsn = max_lsn;
        free.sort();
        let next_lsn = (max_lsn + 1).max(cfg.min_next_lsn);
        let next_seq = max_seq + 1;
        let active = new_seg(&cfg.dir, next_seq, next_lsn);
        let st = State {
            closed,
            sealed: VecDeque::new(),
            active,
            free,
            next_seq: next_seq + 1,
            next_lsn,
            durable_lsn: next_lsn - 1,
            pending_bytes: 0,
            poisoned: None,
            closed_for_writes: false,
            stats: LogStats::default(),
            waiters: Vec::new(),
        };
        let log = CommitLog {
            disk,
            cfg,
            st: RefCell::new(st),
            flushing: Cell::new(false),
            epoch: Cell::new(0),
            scratch: RefCell::new(Vec::new()),
            spare_waiters: RefCell::new(Vec::new()),
        };
        Ok((log, report))
    }

    fn poison_error(&self) -> Option<StorageError> {
        let st = self.st.borrow();
        let p = st.poisoned.as_ref()?;
        Some(if p.full {
            StorageError::DiskFull {
                path: p.path.clone(),
            }
        } else {
            StorageError::Io {
                path: p.path.clone(),
                op: "commit log (failed earlier; restart to recover)",
                source: io::Error::new(p.kind, p.msg.clone()),
            }
        })
    }

    /// Buffer one record and return its LSN (the ticket for [`Self::wait_durable`]). Waits only
    /// when too many bytes are buffered (backpressure). The record is not durable yet.
    pub async fn append(&self, payload: &[u8]) -> Result<u64, StorageError> {
        if payload.is_empty() || payload.len() > self.cfg.max_record_bytes {
            return Err(StorageError::ValueTooLarge {
                len: payload.len(),
                max: self.cfg.max_record_bytes,
            });
        }
        // Bounded: each round either makes progress or returns the flush error.
        for _ in 0..1024 {
            if let Some(e) = self.poison_error() {
                return Err(e);
            }
            let (pending, last) = {
                let st = self.st.borrow();
                (st.pending_bytes, st.next_lsn - 1)
            };
            if pending < self.cfg.max_pending_bytes {
                break;
            }
            self.wait_durable(last).await?;
        }
        let mut st = self.st.borrow_mut();
        if st.closed_for_writes {
            return Err(StorageError::Closed);
        }
        let rec_len = record::encoded_len(payload.len());
        let st = &mut *st;
        // Rotate when the record plus a closing end marker would not fit.
        if st.active.end() + (rec_len + record::HEADER) as u64 > self.cfg.segment_bytes
            && st.active.last_lsn >= st.active.first_lsn
        {
            let seq = st.next_seq;
            st.next_seq += 1;
            let next = new_seg(&self.cfg.dir, seq, st.next_lsn);
            let mut old = std::mem::replace(&mut st.active, next);
            record::encode(&mut old.buf, old.seq, old.last_lsn, st.durable_lsn, &[]);
            st.pending_bytes += record::HEADER;
            old.sealed = true;
            st.sealed.push_back(old);
            st.stats.rotations += 1;
        }
        let lsn = st.next_lsn;
        st.next_lsn += 1;
        let seq = st.active.seq;
        record::encode(&mut st.active.buf, seq, lsn, st.durable_lsn, payload);
        st.active.last_lsn = lsn;
        st.pending_bytes += rec_len;
        st.stats.appends += 1;
        debug_assert!(st.active.end() <= self.cfg.segment_bytes);
        Ok(lsn)
    }

    /// Return once record `lsn` (and every earlier one) is durable; joins or leads a group
    /// commit round.
    pub async fn wait_durable(&self, lsn: u64) -> Result<(), StorageError> {
        if lsn >= self.st.borrow().next_lsn {
            // Not appended yet: waiting would never end.
            return Err(StorageError::io(
                &self.cfg.dir,
                "wait for commit-log record",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("LSN {lsn} was never appended"),
                ),
            ));
        }
        loop {
            if self.st.borrow().durable_lsn >= lsn {
                return Ok(());
            }
            if let Some(e) = self.poison_error() {
                return Err(e);
            }
            if self.flushing.get() {
                WaitRound {
                    log: self,
                    epoch: self.epoch.get(),
                }
                .await;
            } else {
                // Boxed: a round (file acquisition, DMA write, fsync) is a large state machine
                // that only the round's leader runs; inline, it would inflate the future of
                // every durable write that merely waits (5.7 KiB per request before, copied
                // into each request task).
                Box::pin(self.flush_round()).await?;
            }
        }
    }

    /// Make everything appended so far durable (periodic-sync timer, close).
    pub async fn sync(&self) -> Result<(), StorageError> {
        let last = self.st.borrow().next_lsn - 1;
        self.wait_durable(last).await
    }

    /// Highest LSN known durable.
    pub fn durable_lsn(&self) -> u64 {
        self.st.borrow().durable_lsn
    }

    /// The LSN the next append will get.
    pub fn next_lsn(&self) -> u64 {
        self.st.borrow().next_lsn
    }

    pub fn stats(&self) -> LogStats {
        let st = self.st.borrow();
        LogStats {
            durable_lsn: st.durable_lsn,
            live_segments: st.closed.len() + st.sealed.len() + 1,
            ..st.stats
        }
    }

    /// Get a file for segment `seq`: reuse a retired one if any (overwriting a preallocated
    /// file is about twice as fast as growing one), else create and preallocate. The directory
    /// is synced before any record is written, so the name is durable before its records.
    async fn acquire_file(&self, path: &Path) -> io::Result<D::File> {
        let reuse = self.st.borrow_mut().free.pop();
        let file = match reuse {
            Some((_, from)) => {
                self.disk.rename(&from, path).await?;
                self.st.borrow_mut().stats.recycled += 1;
                self.disk.open(path).await?
            }
            None => {
                let f = self.disk.create(path).await?;
                f.preallocate(self.cfg.segment_bytes).await?;
                f
            }
        };
        self.disk.sync_dir(&self.cfg.dir).await?;
        Ok(file)
    }

    fn poison(&self, path: &Path, e: &io::Error) -> StorageError {
        let err = StorageError::io(
            path,
            "write commit log",
            io::Error::new(e.kind(), e.to_string()),
        );
        let full = matches!(err, StorageError::DiskFull { .. });
        tracing::error!(path = %path.display(), error = %e, "commit log write failed; log is now read-only");
        self.st.borrow_mut().poisoned = Some(Poison {
            kind: e.kind(),
            msg: e.to_string(),
            path: path.to_path_buf(),
            full,
        });
        err
    }

    /// One group-commit round: write and sync every buffered byte (sealed segments first, then
    /// the active one). Only one round runs at a time (`flushing`).
    async fn flush_round(&self) -> Result<(), StorageError> {
        let _guard = RoundGuard::new(self);
        self.st.borrow_mut().stats.flush_rounds += 1;
        // Let writers that are already runnable (typically woken by the previous round) append
        // first, so this round's one fdatasync covers them too instead of only the leader.
        YieldOnce(false).await;
        // At most every sealed segment plus the active one; bounded by the pending-bytes limit.
        loop {
            let (seq, path, need_file) = {
                let st = self.st.borrow();
                let seg = st.sealed.front().unwrap_or(&st.active);
                (seg.seq, seg.path.clone(), seg.file.is_none())
            };
            if need_file {
                let has_bytes = {
                    let st = self.st.borrow();
                    let seg = st.sealed.front().unwrap_or(&st.active);
                    !seg.buf.is_empty()
                };
                if !has_bytes {
                    return Ok(());
                }
                let f = match self.acquire_file(&path).await {
                    Ok(f) => Rc::new(f),
                    Err(e) => return Err(self.poison(&path, &e)),
                };
                let mut st = self.st.borrow_mut();
                let st = &mut *st;
                let seg = match st.sealed.front_mut() {
                    Some(s) if s.seq == seq => s,
                    _ => &mut st.active,
                };
                debug_assert_eq!(seg.seq, seq);
                seg.file = Some(f);
            }
            // Snapshot what is buffered now; later appends wait for the next round.
            let snap = {
                let st = self.st.borrow();
                let seg = match st.sealed.front() {
                    Some(s) => s,
                    None => &st.active,
                };
                if seg.buf.len() == seg.flushed {
                    None
                } else {
                    let mut bytes = self.scratch.take();
                    bytes.clear();
                    bytes.extend_from_slice(&seg.buf);
                    let padded = bytes.len().div_ceil(ALIGN as usize) * ALIGN as usize;
                    bytes.resize(padded, 0);
                    Some((
                        seg.file.clone(),
                        seg.buf_base,
                        bytes,
                        seg.buf.len(),
                        seg.last_lsn,
                        seg.sealed,
                    ))
                }
            };
            let Some((file, base, bytes, n, last_lsn, sealed)) = snap else {
                let mut st = self.st.borrow_mut();
                match st.sealed.pop_front() {
                    Some(s) => {
                        st.closed.push_back(ClosedSeg {
                            seq: s.seq,
                            path: s.path,
                            last_lsn: s.last_lsn,
                        });
                        continue;
                    }
                    None => return Ok(()),
                }
            };
            let Some(file) = file else {
                return Err(self.poison(&path, &io::Error::other("segment file missing")));
            };
            let written = file.write_at(&bytes, base).await;
            if bytes.capacity() <= MAX_SCRATCH {
                *self.scratch.borrow_mut() = bytes;
            }
            if let Err(e) = written {
                return Err(self.poison(&path, &e));
            }
            if let Err(e) = file.sync().await {
                return Err(self.poison(&path, &e));
            }
            let mut st = self.st.borrow_mut();
            let st = &mut *st;
            st.stats.syncs += 1;
            let seg = match st.sealed.front_mut() {
                Some(s) if s.seq == seq => s,
                _ => &mut st.active,
            };
            debug_assert_eq!(seg.seq, seq, "the segment being flushed cannot disappear");
            // Keep only the partial last page: it is rewritten with the next records.
            let keep_from = n / ALIGN as usize * ALIGN as usize;
            st.pending_bytes = st.pending_bytes.saturating_sub(n - seg.flushed);
            seg.buf.drain(..keep_from);
            seg.buf_base += keep_from as u64;
            seg.flushed = n - keep_from;
            debug_assert!(last_lsn >= st.durable_lsn || seg.first_lsn > last_lsn);
            if last_lsn > st.durable_lsn {
                st.durable_lsn = last_lsn;
            }
            if !sealed {
                return Ok(());
            }
        }
    }

    /// Retire every fully durable segment whose records all have LSN <= `upto` (they are in
    /// SSTables now): rename it to `free-<seq>` for reuse, or delete it beyond the pool size.
    pub async fn retire_upto(&self, upto: u64) -> Result<usize, StorageError> {
        let mut retired = 0;
        loop {
            let seg = {
                let mut st = self.st.borrow_mut();
                match st.closed.front() {
                    Some(s) if s.last_lsn <= upto => st.closed.pop_front(),
                    _ => None,
                }
            };
            let Some(seg) = seg else { break };
            let keep = self.st.borrow().free.len() < self.cfg.max_free_segments;
            if keep {
                let to = self.cfg.dir.join(seg_name("free", seg.seq));
                self.disk
                    .rename(&seg.path, &to)
                    .await
                    .map_err(|e| StorageError::io(&seg.path, "retire log segment", e))?;
                self.st.borrow_mut().free.insert(0, (seg.seq, to));
            } else {
                self.disk
                    .remove(&seg.path)
                    .await
                    .map_err(|e| StorageError::io(&seg.path, "remove log segment", e))?;
            }
            retired += 1;
        }
        // No sync_dir here: if a retirement is lost in a crash, the segment is replayed again,
        // which is harmless (its records are below the flushed watermark). `acquire_file` syncs
        // the directory before a recycled file gets new records.
        Ok(retired)
    }

    /// Write an end marker, make everything durable, and refuse further appends.
    pub async fn close(&self) -> Result<(), StorageError> {
        {
            let mut st = self.st.borrow_mut();
            let st = &mut *st;
            if !st.closed_for_writes && st.poisoned.is_none() && !st.active.buf.is_empty() {
                let (seq, last) = (st.active.seq, st.active.last_lsn);
                record::encode(&mut st.active.buf, seq, last, st.durable_lsn, &[]);
            }
            st.closed_for_writes = true;
        }
        // A flush of only the marker still has to run: make the marker bytes count as pending.
        let last = self.st.borrow().next_lsn - 1;
        if self.st.borrow().durable_lsn < last {
            self.wait_durable(last).await?;
        } else if !self.flushing.get() {
            self.flush_round().await?;
        }
        let files: Vec<Rc<D::File>> = {
            let mut st = self.st.borrow_mut();
            st.active.file.take().into_iter().collect()
        };
        for f in files {
            if let Ok(f) = Rc::try_unwrap(f) {
                f.close()
                    .await
                    .map_err(|e| StorageError::io(&self.cfg.dir, "close log segment", e))?;
            }
        }
        Ok(())
    }
}

/// Marks a flush round in progress; on drop (also on cancellation) ends it and wakes waiters.
struct RoundGuard<'a, D: Disk> {
    log: &'a CommitLog<D>,
}

impl<'a, D: Disk> RoundGuard<'a, D> {
    fn new(log: &'a CommitLog<D>) -> Self {
        debug_assert!(!log.flushing.get(), "two flush rounds at once");
        log.flushing.set(true);
        RoundGuard { log }
    }
}

impl<D: Disk> Drop for RoundGuard<'_, D> {
    fn drop(&mut self) {
        self.log.flushing.set(false);
        self.log.epoch.set(self.log.epoch.get() + 1);
        let mut waiters = self.log.spare_waiters.take();
        std::mem::swap(&mut waiters, &mut self.log.st.borrow_mut().waiters);
        for w in waiters.drain(..) {
            w.wake();
        }
        *self.log.spare_waiters.borrow_mut() = waiters;
    }
}

/// Pending once (waking itself at once): lets every other runnable task run first.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Waits until the flush round that was running at creation has ended.
struct WaitRound<'a, D: Disk> {
    log: &'a CommitLog<D>,
    epoch: u64,
}

impl<D: Disk> Future for WaitRound<'_, D> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.log.epoch.get() != self.epoch || !self.log.flushing.get() {
            return Poll::Ready(());
        }
        let mut st = self.log.st.borrow_mut();
        if !st.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            st.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
