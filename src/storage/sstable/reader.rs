//! SSTable reader: verifies footer, index and filter on open and keeps index + filter in memory;
//! point reads cost at most one block read, scans read whole blocks in `readahead`-sized I/Os.

use std::cell::Cell;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::format::{decode_block, decode_index, find_in_block, BlockHandle, Footer, FOOTER_LEN};
use super::{BlockCache, SstMeta, SstOptions};
use crate::runtime::disk::{Disk, DiskFile, ALIGN};
use crate::storage::bloom::Bloom;
use crate::storage::entry::{InternalKey, Stored};
use crate::storage::error::{Result, StorageError};

/// Counters of one open table (per shard, so plain `Cell`s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SstStats {
    pub gets: u64,
    /// Gets answered "absent" by the token range or the Bloom filter, without I/O.
    pub bloom_skips: u64,
    pub block_reads: u64,
    pub bytes_read: u64,
}

pub struct SstReader<F: DiskFile> {
    file: F,
    path: PathBuf,
    pub(super) footer: Footer,
    pub(super) file_size: u64,
    pub(super) index: Vec<BlockHandle>,
    bloom: Bloom,
    readahead: usize,
    /// Shared per-shard block cache and this table's id in it.
    cache: Option<(Rc<BlockCache>, u64)>,
    gets: Cell<u64>,
    bloom_skips: Cell<u64>,
    block_reads: Cell<u64>,
    bytes_read: Cell<u64>,
}

impl<F: DiskFile> SstReader<F> {
    /// Open and verify a finished table (footer, index and filter checksums).
    pub async fn open<D: Disk<File = F>>(disk: &D, path: &Path, opts: &SstOptions) -> Result<Self> {
        let file = disk
            .open(path)
            .await
            .map_err(|e| StorageError::io(path, "open", e))?;
        let file_size = file
            .size()
            .await
            .map_err(|e| StorageError::io(path, "stat", e))?;
        if file_size < ALIGN || file_size % ALIGN != 0 {
            return Err(StorageError::corrupt(
                path,
                file_size,
                format!("file size {file_size} is not a positive multiple of {ALIGN} (truncated?)"),
            ));
        }
        let mut r = SstReader {
            file,
            path: path.to_path_buf(),
            footer: Footer::empty(),
            file_size,
            index: Vec::new(),
            bloom: Bloom::new(0, 1),
            readahead: opts.readahead.max(ALIGN as usize),
            cache: None,
            gets: Cell::new(0),
            bloom_skips: Cell::new(0),
            block_reads: Cell::new(0),
            bytes_read: Cell::new(0),
        };
        let footer_off = file_size - FOOTER_LEN as u64;
        let tail = r.read_span(footer_off, FOOTER_LEN).await?;
        r.footer = Footer::decode(path, footer_off, &tail)?;
        let f = r.footer.clone();
        // Index and filter are adjacent: one read for both.
        let meta_len = (f.index_len + f.filter_len) as usize;
        let meta = r.read_span(f.index_off, meta_len).await?;
        let index_buf = meta.slice(..f.index_len as usize);
        let filter_buf = meta.slice(f.index_len as usize..);
        if crc32fast::hash(&index_buf) != f.index_crc {
            return Err(StorageError::corrupt(
                path,
                f.index_off,
                "block index crc mismatch",
            ));
        }
        if crc32fast::hash(&filter_buf) != f.filter_crc {
            return Err(StorageError::corrupt(
                path,
                f.filter_off,
                "bloom filter crc mismatch",
            ));
        }
        r.index = decode_index(path, f.index_off, &index_buf, f.data_len)?;
        r.bloom =
            Bloom::decode(&filter_buf).map_err(|w| StorageError::corrupt(path, f.filter_off, w))?;
        let consistent = match (r.index.first(), r.index.last()) {
            (Some(a), Some(b)) => {
                a.first.token() == f.min_token && b.last.token() == f.max_token && f.entry_count > 0
            }
            (None, None) => f.entry_count == 0,
            _ => false,
        };
        if !consistent {
            return Err(StorageError::corrupt(
                path,
                footer_off,
                "footer token range or entry count disagrees with the index",
            ));
        }
        Ok(r)
    }

    /// Serve and fill point reads from `cache`, where this table's blocks are keyed by
    /// `table_id` (unique per shard: use the manifest id).
    pub fn with_cache(mut self, cache: Rc<BlockCache>, table_id: u64) -> Self {
        self.cache = Some((cache, table_id));
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> SstMeta {
        let f = &self.footer;
        SstMeta {
            file_size: self.file_size,
            entry_count: f.entry_count,
            tombstone_count: f.tombstone_count,
            min_token: f.min_token,
            max_token: f.max_token,
            min_seqno: f.min_seqno,
            max_seqno: f.max_seqno,
        }
    }

    pub fn stats(&self) -> SstStats {
        SstStats {
            gets: self.gets.get(),
            bloom_skips: self.bloom_skips.get(),
            block_reads: self.block_reads.get(),
            bytes_read: self.bytes_read.get(),
        }
    }

    /// False if the table certainly lacks `key` (token outside the table's range or Bloom miss).
    pub fn may_contain(&self, key: &InternalKey) -> bool {
        let t = key.token();
        t >= self.footer.min_token && t <= self.footer.max_token && self.bloom.may_contain(t)
    }

    /// Read `len` bytes at `offset`, issuing an ALIGN-aligned read as O_DIRECT requires.
    async fn read_span(&self, offset: u64, len: usize) -> Result<Bytes> {
        let start = offset / ALIGN * ALIGN;
        let lead = (offset - start) as usize;
        let want = lead + len;
        let buf = self
            .file
            .read_at(start, want)
            .await
            .map_err(|e| StorageError::io(&self.path, "read", e))?;
        self.bytes_read
            .set(self.bytes_read.get() + buf.len() as u64);
        if buf.len() < want {
            return Err(StorageError::corrupt(
                &self.path,
                start + buf.len() as u64,
                "short read: file ends inside a region its footer names",
            ));
        }
        Ok(Bytes::from(buf).slice(lead..want))
    }

    /// Point read. At most one block read; none when the filter says no.
    pub async fn get(&self, key: &InternalKey) -> Result<Option<Stored>> {
        self.gets.set(self.gets.get() + 1);
        if !self.may_contain(key) {
            self.bloom_skips.set(self.bloom_skips.get() + 1);
            return Ok(None);
        }
        // First block whose last key >= key; the key can only be there.
        let i = self.index.partition_point(|b| b.last < *key);
        let Some(b) = self.index.get(i) else {
            return Ok(None);
        };
        if b.first > *key {
            return Ok(None);
        }
        if let Some((cache, id)) = &self.cache {
            if let Some(block) = cache.get(*id, b.offset) {
                // Re-verified (crc of ~4 KiB, well under a microsecond): memory can rot too.
                return find_in_block(&self.path, b.offset, &block, key.key());
            }
        }
        self.block_reads.set(self.block_reads.get() + 1);
        let block = self.read_span(b.offset, b.len as usize).await?;
        let found = find_in_block(&self.path, b.offset, &block, key.key())?;
        // Only a block that passed its checksum is cached.
        if let Some((cache, id)) = &self.cache {
            cache.insert(*id, b.offset, &block);
        }
        Ok(found)
    }

    /// Entries whose token lies in `tokens`, in key order. Memory: one readahead buffer plus one
    /// decoded block.
    pub fn scan(&self, tokens: impl RangeBounds<u64>) -> SstScan<'_, F> {
        let lo = match tokens.start_bound() {
            Bound::Included(&t) => Some(t),
            Bound::Excluded(&t) => t.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let hi = match tokens.end_bound() {
            Bound::Included(&t) => Some(t),
            Bound::Excluded(&t) => t.checked_sub(1),
            Bound::Unbounded => Some(u64::MAX),
        };
        let (lo, hi, empty) = match (lo, hi) {
            (Some(lo), Some(hi)) if lo <= hi => (lo, hi, false),
            _ => (1, 0, true),
        };
        let (next_block, end_block) = if empty {
            (0, 0)
        } else {
            (
                self.index.partition_point(|b| b.last.token() < lo),
                self.index.partition_point(|b| b.first.token() <= hi),
            )
        };
        SstScan {
            reader: self,
            lo,
            hi,
            next_block,
            end_block,
            chunk: None,
            entries: Vec::new().into_iter(),
        }
    }

    /// Every entry in key order (for compaction and tests).
    pub fn iter(&self) -> SstScan<'_, F> {
        self.scan(..)
    }

    pub async fn close(self) -> Result<()> {
        self.file
            .close()
            .await
            .map_err(|e| StorageError::io(&self.path, "close", e))
    }
}

impl Footer {
    fn empty() -> Footer {
        Footer {
            data_len: 0,
            index_off: 0,
            index_len: 0,
            filter_off: 0,
            filter_len: 0,
            entry_count: 0,
            tombstone_count: 0,
            min_token: u64::MAX,
            max_token: 0,
            min_seqno: u64::MAX,
            max_seqno: 0,
            index_crc: 0,
            filter_crc: 0,
        }
    }
}

/// A forward scan over a token range of one table. Call [`SstScan::next`] until `None`.
pub struct SstScan<'a, F: DiskFile> {
    reader: &'a SstReader<F>,
    lo: u64,
    hi: u64,
    next_block: usize,
    end_block: usize,
    /// Read-ahead buffer: (file offset of its first byte, bytes, blocks it covers up to).
    chunk: Option<(u64, Bytes, usize)>,
    entries: std::vec::IntoIter<(InternalKey, Stored)>,
}

impl<F: DiskFile> SstScan<'_, F> {
    pub async fn next(&mut self) -> Result<Option<(InternalKey, Stored)>> {
        loop {
            for (k, v) in self.entries.by_ref() {
                if k.token() < self.lo {
                    continue;
                }
                if k.token() > self.hi {
                    self.next_block = self.end_block;
                    self.entries = Vec::new().into_iter();
                    return Ok(None);
                }
                return Ok(Some((k, v)));
            }
            if self.next_block >= self.end_block {
                self.chunk = None;
                return Ok(None);
            }
            let i = self.next_block;
            let covered = matches!(self.chunk, Some((_, _, upto)) if i < upto);
            if !covered {
                self.load_chunk(i).await?;
            }
            let r = self.reader;
            let b = &r.index[i];
            let Some((start, chunk, _)) = &self.chunk else {
                return Ok(None);
            };
            let rel = (b.offset - start) as usize;
            let block = chunk.slice(rel..rel + b.len as usize);
            self.entries = decode_block(&r.path, b.offset, &block)?.into_iter();
            self.next_block += 1;
        }
    }

    /// Read blocks `i..` (as many as fit in `readahead`, at least one) in one I/O.
    async fn load_chunk(&mut self, i: usize) -> Result<()> {
        let r = self.reader;
        let start = r.index[i].offset;
        let mut upto = i;
        let mut end = start;
        while upto < self.end_block {
            let b = &r.index[upto];
            let b_end = b.offset + u64::from(b.len);
            if upto > i && (b_end - start) as usize > r.readahead {
                break;
            }
            end = b_end;
            upto += 1;
        }
        self.chunk = None; // release the old buffer before allocating the next
        let bytes = r.read_span(start, (end - start) as usize).await?;
        r.block_reads.set(r.block_reads.get() + (upto - i) as u64);
        self.chunk = Some((start, bytes, upto));
        Ok(())
    }
}
