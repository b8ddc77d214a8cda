//! Background maintenance of one shard: flushing frozen memtables to SSTables and compacting.
//! One job at a time (`maint_busy`), in the executor's low-priority task queue.
//!
//! Flush: write `<id>.sst.tmp`, rename to `<id>.sst`, sync the directory, store the manifest
//! (table added, `flushed_upto` raised), then swap the memtable for the table in memory and
//! retire commit-log segments below `flushed_upto`. A crash at any point leaves either the old
//! manifest (the orphan table is deleted on open and the log replayed) or the new one.
//! Compaction: same pattern; input files are deleted only after the manifest no longer lists
//! them.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use super::{now_ms, open_table, sort_tables, Inner};
use crate::runtime::disk::Disk;
use crate::storage::compaction::{self, CompactionReason, CompactionTask};
use crate::storage::error::StorageError;
use crate::storage::manifest::{sst_file_name, TableEntry};
use crate::storage::memtable::flush_to_sst;
use crate::storage::sstable::{SstReader, SstWriter};

pub(super) fn bg_err(dir: &Path, msg: String) -> StorageError {
    StorageError::Io {
        path: dir.to_path_buf(),
        op: "background flush/compaction",
        source: std::io::Error::other(msg),
    }
}

/// Marks maintenance busy; released on drop.
struct Busy<'a, D: Disk>(&'a Inner<D>);

impl<'a, D: Disk> Busy<'a, D> {
    async fn acquire(inner: &'a Inner<D>) -> Busy<'a, D> {
        loop {
            let w = inner.bg_done.wait();
            if !inner.maint_busy.get() {
                inner.maint_busy.set(true);
                return Busy(inner);
            }
            w.await;
        }
    }
}

impl<D: Disk> Drop for Busy<'_, D> {
    fn drop(&mut self) {
        self.0.maint_busy.set(false);
        self.0.bg_done.notify();
    }
}

/// The background task: run jobs while there are any, sleep on `bg_wake` otherwise.
pub(super) async fn run<D: Disk>(inner: Rc<Inner<D>>) {
    let mut backoff_ms = 10u64;
    while !inner.closed.get() {
        let w = inner.bg_wake.wait();
        match run_one(&inner, true).await {
            Ok(true) => {
                backoff_ms = 10;
                inner.st.borrow_mut().bg_error = None;
            }
            Ok(false) => w.await,
            Err(e) => {
                tracing::error!(error = %e, "storage background job failed; retrying");
                inner.st.borrow_mut().bg_error = Some(e.to_string());
                inner.bg_done.notify();
                glommio::timer::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(5_000);
            }
        }
    }
}

/// Run one job if there is one: flush the oldest frozen memtable whose writes are all in, else
/// one compaction (when `compact`). Returns whether a job ran.
pub(super) async fn run_one<D: Disk>(
    inner: &Inner<D>,
    may_compact: bool,
) -> Result<bool, StorageError> {
    let _busy = Busy::acquire(inner).await;
    let flushable = {
        let st = inner.st.borrow();
        st.frozen.front().is_some_and(|s| s.pending == 0)
    };
    if flushable {
        flush_oldest(inner).await?;
        return Ok(true);
    }
    if may_compact {
        let task = {
            let st = inner.st.borrow();
            compaction::pick(&st.manifest, &inner.cfg.compaction)
        };
        if let Some(task) = task {
            compact(inner, task).await?;
            return Ok(true);
        }
    }
    Ok(false)
}

fn paths(dir: &Path, id: u64) -> (PathBuf, PathBuf, String) {
    let name = sst_file_name(id);
    (dir.join(format!("{name}.tmp")), dir.join(&name), name)
}

async fn install_file<D: Disk>(
    inner: &Inner<D>,
    tmp: &Path,
    dst: &Path,
) -> Result<(), StorageError> {
    inner
        .disk
        .rename(tmp, dst)
        .await
        .map_err(|e| StorageError::io(dst, "rename table into place", e))?;
    inner
        .disk
        .sync_dir(&inner.cfg.dir)
        .await
        .map_err(|e| StorageError::io(&inner.cfg.dir, "sync shard directory", e))
}

async fn flush_oldest<D: Disk>(inner: &Inner<D>) -> Result<(), StorageError> {
    let dir = inner.cfg.dir.clone();
    // The frozen memtable is immutable now (pending == 0, never active again) but lives in a
    // RefCell we must not borrow across awaits, so the flush holds its own reference. (It used
    // to copy the entries: ~400k inserts for a 64 MiB memtable of 100 B rows, a 100+ ms stall
    // of every request on the shard.) Only this job (under `Busy`) pops `frozen`, so the front
    // stays the same slot until it does.
    let (slot_id, last_lsn, snapshot, id) = {
        let mut st = inner.st.borrow_mut();
        let Some(front) = st.frozen.front() else {
            return Ok(());
        };
        debug_assert_eq!(
            front.pending, 0,
            "flushing a memtable that still takes inserts"
        );
        let v = (front.id, front.last_lsn, Rc::clone(&front.mem));
        let id = st.manifest.alloc_table_id();
        (v.0, v.1, v.2, id)
    };
    let (tmp, dst, name) = paths(&dir, id);
    let writer =
        SstWriter::create(&*inner.disk, &tmp, snapshot.len().max(1), &inner.sst_opts).await?;
    let meta = flush_to_sst(&snapshot, writer).await?;
    install_file(inner, &tmp, &dst).await?;
    let reader = open_table(&*inner.disk, &dst, id, &inner.sst_opts, &inner.cache).await?;
    let tier = compaction::tier_of(meta.file_size, &inner.cfg.compaction);
    let mut manifest = inner.st.borrow().manifest.clone();
    manifest.tables.push(TableEntry {
        id,
        tier,
        file_name: name,
        meta,
    });
    manifest.flushed_upto = manifest.flushed_upto.max(last_lsn);
    manifest.store(&*inner.disk, &dir).await?;
    let flushed_upto = manifest.flushed_upto;
    {
        let mut st = inner.st.borrow_mut();
        st.manifest = manifest;
        st.tables.push((id, reader));
        sort_tables::<D>(&mut st.tables);
        let popped = st.frozen.pop_front();
        debug_assert_eq!(popped.map(|s| s.id), Some(slot_id));
        st.stats.flushes += 1;
    }
    inner.bg_done.notify();
    // The last reference: free it in steps so foreground requests run in between.
    if let Ok(mut mem) = Rc::try_unwrap(snapshot) {
        while !mem.shed(4096) {
            glommio::yield_if_needed().await;
        }
    }
    inner.log.retire_upto(flushed_upto).await?;
    tracing::debug!(table = id, flushed_upto, "memtable flushed");
    Ok(())
}

async fn compact<D: Disk>(inner: &Inner<D>, task: CompactionTask) -> Result<(), StorageError> {
    let dir = inner.cfg.dir.clone();
    let (readers, id) = {
        let mut st = inner.st.borrow_mut();
        let readers: Vec<_> = task
            .inputs
            .iter()
            .filter_map(|i| {
                st.tables
                    .iter()
                    .find(|(t, _)| t == i)
                    .map(|(_, r)| r.clone())
            })
            .collect();
        (readers, st.manifest.alloc_table_id())
    };
    if readers.len() != task.inputs.len() {
        return Err(StorageError::corrupt(
            &dir,
            0,
            "compaction input is not an open table (manifest and readers disagree)",
        ));
    }
    let (tmp, dst, name) = paths(&dir, id);
    let refs: Vec<&SstReader<D::File>> = readers.iter().map(|r| &**r).collect();
    let out = compaction::run(
        &*inner.disk,
        &task,
        &refs,
        &tmp,
        now_ms(),
        inner.cfg.tombstone_grace_ms,
        &inner.sst_opts,
    )
    .await?;
    let keep = out.meta.entry_count > 0;
    let new_reader = if keep {
        install_file(inner, &tmp, &dst).await?;
        Some(open_table(&*inner.disk, &dst, id, &inner.sst_opts, &inner.cache).await?)
    } else {
        inner
            .disk
            .remove(&tmp)
            .await
            .map_err(|e| StorageError::io(&tmp, "remove empty compaction output", e))?;
        None
    };
    let mut manifest = inner.st.borrow().manifest.clone();
    let entry = keep.then(|| TableEntry {
        id,
        tier: task.output_tier,
        file_name: name,
        meta: out.meta.clone(),
    });
    manifest.apply_compaction(&task.inputs, entry);
    manifest.store(&*inner.disk, &dir).await?;
    let removed: Vec<PathBuf> = {
        let mut st = inner.st.borrow_mut();
        let removed = st
            .manifest
            .tables
            .iter()
            .filter(|t| task.inputs.contains(&t.id))
            .map(|t| dir.join(&t.file_name))
            .collect();
        st.manifest = manifest;
        st.tables.retain(|(t, _)| !task.inputs.contains(t));
        if let Some(r) = new_reader {
            st.tables.push((id, r));
        }
        sort_tables::<D>(&mut st.tables);
        st.stats.compactions += 1;
        removed
    };
    drop(refs);
    drop(readers);
    for p in removed {
        // Open readers (a concurrent get) keep their file descriptor; the name goes now.
        if let Err(e) = inner.disk.remove(&p).await {
            tracing::warn!(path = %p.display(), error = %e, "could not remove compacted table");
        }
    }
    inner.bg_done.notify();
    Ok(())
}

/// Merge every table into one (tombstones past the grace period dropped).
pub(super) async fn compact_all<D: Disk>(inner: &Inner<D>) -> Result<(), StorageError> {
    let _busy = Busy::acquire(inner).await;
    let task = {
        let st = inner.st.borrow();
        if st.manifest.tables.len() < 2 {
            None
        } else {
            Some(CompactionTask {
                inputs: st.manifest.tables.iter().map(|t| t.id).collect(),
                drop_tombstones: true,
                output_tier: 0,
                reason: CompactionReason::TableCap,
            })
        }
    };
    match task {
        Some(t) => compact(inner, t).await,
        None => Ok(()),
    }
}
