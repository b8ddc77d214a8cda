//! Sequential SSTable writer: entries in, ALIGN-padded `write_at` chunks out, synced on finish.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{
    encode_entry, encode_index, entry_len, BlockHandle, Footer, BLOCK_TRAILER, FOOTER_LEN,
    MAX_PAYLOAD_LEN,
};
use super::{SstMeta, SstOptions};
use crate::runtime::disk::{Disk, DiskFile, ALIGN};
use crate::storage::bloom::Bloom;
use crate::storage::entry::{InternalKey, Stored};
use crate::storage::error::{Result, StorageError};

/// Writes one table. Call [`SstWriter::add`] in strictly increasing key order, then
/// [`SstWriter::finish`]; dropping the writer instead leaves a partial file the caller removes.
pub struct SstWriter<F: DiskFile> {
    file: F,
    path: PathBuf,
    opts: SstOptions,
    /// Bytes not yet written; they start at file offset `flushed`.
    buf: Vec<u8>,
    flushed: u64,
    /// Entries of the block being built (no trailer yet).
    block: Vec<u8>,
    block_count: u32,
    block_first: Option<InternalKey>,
    /// Last key added (token + bytes, reused buffer: no allocation per entry).
    last_token: u64,
    last_key: Vec<u8>,
    index: Vec<BlockHandle>,
    bloom: Bloom,
    meta: SstMeta,
}

impl<F: DiskFile> SstWriter<F> {
    /// Create (truncate) `path`. `expected_keys` sizes the Bloom filter; an over-estimate is fine.
    pub async fn create<D: Disk<File = F>>(
        disk: &D,
        path: &Path,
        expected_keys: usize,
        opts: &SstOptions,
    ) -> Result<Self> {
        let file = disk
            .create(path)
            .await
            .map_err(|e| StorageError::io(path, "create", e))?;
        let write_buffer = opts.write_buffer.max(ALIGN as usize);
        Ok(SstWriter {
            file,
            path: path.to_path_buf(),
            opts: opts.clone(),
            buf: Vec::with_capacity(write_buffer + opts.block_size + ALIGN as usize),
            flushed: 0,
            block: Vec::with_capacity(opts.block_size),
            block_count: 0,
            block_first: None,
            last_token: 0,
            last_key: Vec::new(),
            index: Vec::new(),
            bloom: Bloom::new(expected_keys, opts.bloom_bits_per_key),
            meta: SstMeta {
                file_size: 0,
                entry_count: 0,
                tombstone_count: 0,
                min_token: u64::MAX,
                max_token: 0,
                min_seqno: u64::MAX,
                max_seqno: 0,
            },
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries added so far.
    pub fn entry_count(&self) -> u64 {
        self.meta.entry_count
    }

    /// Bytes the table occupies so far (a lower bound of the final size).
    pub fn approx_size(&self) -> u64 {
        self.flushed + self.buf.len() as u64 + self.block.len() as u64
    }

    /// Append one entry. Keys must be strictly increasing (checked; a violation is a caller bug
    /// and panics in debug builds, and is refused in release builds rather than written).
    pub async fn add(&mut self, key: &InternalKey, v: &Stored) -> Result<()> {
        if v.payload.len() > MAX_PAYLOAD_LEN {
            return Err(StorageError::ValueTooLarge {
                len: v.payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        if self.meta.entry_count > 0 {
            let in_order = key.cmp_parts(self.last_token, &self.last_key).is_gt();
            debug_assert!(in_order, "SstWriter::add out of order: {key:?}");
            if !in_order {
                return Err(StorageError::corrupt(
                    &self.path,
                    self.approx_size(),
                    "refusing to write a key that is not greater than the previous one",
                ));
            }
        }
        let elen = entry_len(key.key().len(), v);
        if !self.block.is_empty() && self.block.len() + elen + BLOCK_TRAILER > self.block_limit() {
            self.finish_block().await?;
        }
        if self.block.is_empty() {
            self.align_block_start(elen);
        }
        if self.block_first.is_none() {
            // Copy: the caller's Bytes may pin a large read buffer (compaction readahead).
            self.block_first = Some(InternalKey::from_trusted(Bytes::copy_from_slice(key.key())));
        }
        encode_entry(&mut self.block, key.key(), v);
        self.block_count += 1;
        self.last_token = key.token();
        self.last_key.clear();
        self.last_key.extend_from_slice(key.key());
        self.bloom.insert(key.token());
        let m = &mut self.meta;
        if m.entry_count == 0 {
            m.min_token = key.token();
        }
        m.max_token = key.token();
        m.entry_count += 1;
        m.tombstone_count += u64::from(v.tombstone_at_ms.is_some());
        m.min_seqno = m.min_seqno.min(v.seqno);
        m.max_seqno = m.max_seqno.max(v.seqno);
        Ok(())
    }

    /// File offset where the block being built starts (valid until `finish_block`).
    fn block_start(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// A block ends at the next page boundary (or at `block_size`, if smaller), so that a point
    /// read of a block of small entries is exactly one ALIGN-sized O_DIRECT read.
    fn block_limit(&self) -> usize {
        let room = (ALIGN - self.block_start() % ALIGN) as usize;
        self.opts.block_size.min(room)
    }

    /// Before a block's first entry: if the rest of the current page is both too small for the
    /// entry and small (< a quarter block), skip it with zero padding so the block starts on a
    /// page boundary. Otherwise the block starts mid-page (a big entry then spans pages).
    fn align_block_start(&mut self, first_entry_len: usize) {
        let room = (ALIGN - self.block_start() % ALIGN) as usize;
        let min_room = self.opts.block_size.min(ALIGN as usize) / 4;
        if room < ALIGN as usize && room < min_room && room < first_entry_len + BLOCK_TRAILER {
            self.buf.resize(self.buf.len() + room, 0);
        }
    }

    async fn finish_block(&mut self) -> Result<()> {
        let Some(first) = self.block_first.take() else {
            return Ok(());
        };
        self.block
            .extend_from_slice(&self.block_count.to_le_bytes());
        let crc = crc32fast::hash(&self.block);
        self.block.extend_from_slice(&crc.to_le_bytes());
        let offset = self.flushed + self.buf.len() as u64;
        self.index.push(BlockHandle {
            offset,
            len: self.block.len() as u32,
            first,
            last: InternalKey::from_trusted(Bytes::copy_from_slice(&self.last_key)),
        });
        self.buf.extend_from_slice(&self.block);
        self.block.clear();
        self.block_count = 0;
        if self.buf.len() >= self.opts.write_buffer.max(ALIGN as usize) {
            self.write_aligned_prefix().await?;
        }
        Ok(())
    }

    /// Write the ALIGN-multiple prefix of `buf`, keep the tail for the next write.
    async fn write_aligned_prefix(&mut self) -> Result<()> {
        let n = self.buf.len() / ALIGN as usize * ALIGN as usize;
        if n == 0 {
            return Ok(());
        }
        self.file
            .write_at(&self.buf[..n], self.flushed)
            .await
            .map_err(|e| StorageError::io(&self.path, "write", e))?;
        self.flushed += n as u64;
        self.buf.drain(..n);
        Ok(())
    }

    /// Write the last block, index, filter and footer, sync and close the file. The caller then
    /// renames it into place and syncs the directory.
    pub async fn finish(mut self) -> Result<SstMeta> {
        self.finish_block().await?;
        let data_len = self.flushed + self.buf.len() as u64;
        let index_start = self.buf.len();
        encode_index(&mut self.buf, &self.index);
        let index_len = (self.buf.len() - index_start) as u64;
        let index_crc = crc32fast::hash(&self.buf[index_start..]);
        let filter_start = self.buf.len();
        self.bloom.encode_into(&mut self.buf);
        let filter_len = (self.buf.len() - filter_start) as u64;
        let filter_crc = crc32fast::hash(&self.buf[filter_start..]);
        // Pad so the footer ends exactly on an ALIGN boundary: readers find it at the end.
        let end_of_filter = self.flushed + self.buf.len() as u64;
        let total = (end_of_filter + FOOTER_LEN as u64).div_ceil(ALIGN) * ALIGN;
        let pad = total - FOOTER_LEN as u64 - end_of_filter;
        self.buf.resize(self.buf.len() + pad as usize, 0);
        let footer = Footer {
            data_len,
            index_off: data_len,
            index_len,
            filter_off: data_len + index_len,
            filter_len,
            entry_count: self.meta.entry_count,
            tombstone_count: self.meta.tombstone_count,
            min_token: self.meta.min_token,
            max_token: self.meta.max_token,
            min_seqno: self.meta.min_seqno,
            max_seqno: self.meta.max_seqno,
            index_crc,
            filter_crc,
        };
        self.buf.extend_from_slice(&footer.encode());
        debug_assert_eq!((self.flushed + self.buf.len() as u64) % ALIGN, 0);
        self.write_aligned_prefix().await?;
        debug_assert!(self.buf.is_empty());
        self.file
            .sync()
            .await
            .map_err(|e| StorageError::io(&self.path, "sync", e))?;
        self.file
            .close()
            .await
            .map_err(|e| StorageError::io(&self.path, "close", e))?;
        self.meta.file_size = total;
        tracing::debug!(path = %self.path.display(), entries = self.meta.entry_count,
            bytes = total, blocks = self.index.len(), "sstable written");
        Ok(self.meta)
    }
}
