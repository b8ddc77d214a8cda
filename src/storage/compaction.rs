//! Compaction policy and execution for one shard's SSTables.
//!
//! **Why size-tiered.** Writes in a Dynamo-style store are small, random and spread over the
//! whole token space, so every flushed table overlaps every other. Levelled compaction would
//! rewrite each byte about ten times per level to keep levels disjoint; size-tiered compaction
//! (STCS) rewrites a byte once per tier (log4 of data/flush size), keeping write amplification
//! and the disk bandwidth stolen from foreground requests low. Its weakness, read amplification,
//! is bounded two ways: a tier is merged once it holds `min_threshold` (4) tables, and when the
//! shard has more than `max_tables` (16) tables everything is merged; Bloom filters make the
//! remaining per-table cost of a point read a memory probe for most tables.
//!
//! **Age-contiguous runs.** Candidates are runs of tables adjacent in age (ordered by
//! `max_seqno`) and of the same size tier, as in RocksDB's universal compaction. This keeps the
//! seqno ranges of live tables disjoint, so "newest table first, stop at the first hit" stays a
//! correct read path, and it makes the tombstone rule simple: a compaction whose run starts at
//! the oldest table includes every table older than its output.
//!
//! **Tombstones.** A tombstone whose `tombstone_at_ms` is older than the grace period is
//! dropped only when `drop_tombstones` is set, i.e. when the inputs include every table older
//! than the output; otherwise an older value in a table outside the compaction would resurrect.
//! Shadowed versions (an older seqno of a key present in a newer input) are always dropped.
//!
//! Owns policy (`pick`, pure) and the merge-and-write step (`run`); it does not rename files,
//! edit the manifest, or schedule itself: the engine runs one compaction at a time per shard in
//! a lower-priority task queue and applies the result.

use std::path::Path;

use super::error::Result;
use super::manifest::{Manifest, TableEntry};
use super::merge::MergeIter;
use super::sstable::{SstMeta, SstOptions, SstReader, SstScan, SstWriter};
use crate::runtime::disk::Disk;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Tables smaller than this are tier 0; each tier is `tier_ratio` times larger.
    pub base_tier_bytes: u64,
    pub tier_ratio: u64,
    /// A run of this many same-tier tables triggers a merge.
    pub min_threshold: usize,
    /// At most this many tables per tier merge (bounds one compaction's duration).
    pub max_threshold: usize,
    /// Above this many live tables, everything is merged (read-amplification cap).
    pub max_tables: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            base_tier_bytes: 8 << 20,
            tier_ratio: 4,
            min_threshold: 4,
            max_threshold: 16,
            max_tables: 16,
        }
    }
}

/// Size tier of a table of `size` bytes.
pub fn tier_of(size: u64, p: &CompactionPolicy) -> u32 {
    let mut tier = 0;
    let mut limit = p.base_tier_bytes.max(1);
    while size >= limit && tier < 63 {
        tier += 1;
        limit = limit.saturating_mul(p.tier_ratio.max(2));
    }
    tier
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionReason {
    /// `min_threshold` or more adjacent tables of this tier.
    Tier(u32),
    /// More than `max_tables` tables: all merged.
    TableCap,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionTask {
    /// Table ids to merge, oldest first.
    pub inputs: Vec<u64>,
    /// True when the inputs include every table older than the output, so expired tombstones
    /// can be dropped without resurrecting older values.
    pub drop_tombstones: bool,
    /// Expected tier of the output (from the inputs' total size).
    pub output_tier: u32,
    pub reason: CompactionReason,
}

fn age_order(m: &Manifest) -> Vec<&TableEntry> {
    let mut t: Vec<&TableEntry> = m.tables.iter().collect();
    t.sort_by_key(|t| (t.meta.max_seqno, t.id));
    t
}

/// Choose the next compaction, if any. Pure: reads only the manifest.
pub fn pick(m: &Manifest, p: &CompactionPolicy) -> Option<CompactionTask> {
    let tables = age_order(m);
    let n = tables.len();
    let task = |run: &[&TableEntry], start: usize, reason| {
        let total: u64 = run.iter().map(|t| t.meta.file_size).sum();
        CompactionTask {
            inputs: run.iter().map(|t| t.id).collect(),
            drop_tombstones: start == 0,
            output_tier: tier_of(total, p),
            reason,
        }
    };
    if n > p.max_tables.max(2) {
        return Some(task(&tables, 0, CompactionReason::TableCap));
    }
    let min = p.min_threshold.max(2);
    let max = p.max_threshold.max(min);
    let tiers: Vec<u32> = tables
        .iter()
        .map(|t| tier_of(t.meta.file_size, p))
        .collect();
    // (tier, start, len) of the best run: lowest tier (cheapest, most numerous), then oldest.
    let mut best: Option<(u32, usize, usize)> = None;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && tiers[j] == tiers[i] {
            j += 1;
        }
        if j - i >= min && best.is_none_or(|(bt, _, _)| tiers[i] < bt) {
            best = Some((tiers[i], i, (j - i).min(max)));
        }
        i = j;
    }
    let (tier, start, len) = best?;
    Some(task(
        &tables[start..start + len],
        start,
        CompactionReason::Tier(tier),
    ))
}

/// What a finished compaction produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionOutput {
    /// The output table (`entry_count == 0` if everything was dropped: the engine may then
    /// delete the file and record no output).
    pub meta: SstMeta,
    pub entries_in: u64,
    /// Older versions of keys that a newer input also holds.
    pub shadowed_dropped: u64,
    pub tombstones_dropped: u64,
}

/// Merge `inputs` (the open readers of `task.inputs`, any order) into a new table at
/// `out_path`, dropping shadowed versions, and expired tombstones if `task.drop_tombstones`.
/// The caller renames the output into place, syncs the directory, updates and stores the
/// manifest, and only then removes the inputs (and may `BlockCache::evict_table` them). On an
/// error the partial output file is left at `out_path` for the caller to remove; the inputs are
/// untouched. Yields to the executor at every read-ahead and write-buffer I/O (every ~256 KiB),
/// which is what lets a lower-priority task queue stay out of the way of requests.
pub async fn run<D: Disk>(
    disk: &D,
    task: &CompactionTask,
    inputs: &[&SstReader<D::File>],
    out_path: &Path,
    now_ms: u64,
    grace_ms: u64,
    opts: &SstOptions,
) -> Result<CompactionOutput> {
    debug_assert_eq!(
        inputs.len(),
        task.inputs.len(),
        "readers must match the task"
    );
    let entries_in: u64 = inputs.iter().map(|r| r.meta().entry_count).sum();
    let sources: Vec<SstScan<'_, D::File>> = inputs.iter().map(|r| r.iter()).collect();
    let mut merge = MergeIter::new(sources);
    let mut w = SstWriter::create(disk, out_path, entries_in as usize, opts).await?;
    let mut out = 0u64;
    let mut tombstones_dropped = 0u64;
    while let Some((k, v)) = merge.next().await? {
        if task.drop_tombstones && v.is_expired_tombstone(now_ms, grace_ms) {
            tombstones_dropped += 1;
            continue;
        }
        w.add(&k, &v).await?;
        out += 1;
    }
    let meta = w.finish().await?;
    let res = CompactionOutput {
        meta,
        entries_in,
        shadowed_dropped: entries_in.saturating_sub(out + tombstones_dropped),
        tombstones_dropped,
    };
    tracing::info!(out = %out_path.display(), inputs = task.inputs.len(), entries_in,
        entries_out = out, shadowed = res.shadowed_dropped, tombstones = tombstones_dropped,
        bytes = res.meta.file_size, "compaction finished");
    Ok(res)
}

#[cfg(test)]
mod tests;
