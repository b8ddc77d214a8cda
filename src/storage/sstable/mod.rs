//! Immutable sorted tables (SSTables) of one shard: writer, reader, on-disk format.
//!
//! Owns the file format (see `format`) and the in-memory index + Bloom filter of an open table.
//! Invariants: a table's entries are strictly increasing by `InternalKey` (token order), every
//! byte read back is checked by a crc before use, and any mismatch is
//! `StorageError::Corrupt { path, offset, .. }`, never data. All I/O goes through
//! `crate::runtime::disk`; this module never renames files or touches the manifest (the caller
//! renames the finished file into place and syncs the directory).

mod cache;
mod format;
mod reader;
mod writer;

pub use cache::{BlockCache, BlockCacheStats};
pub(crate) use format::Cursor;
pub use format::MAX_PAYLOAD_LEN;
pub use reader::{SstReader, SstScan, SstStats};
pub use writer::SstWriter;

use crate::storage::bloom::DEFAULT_BITS_PER_KEY;

/// Tunables of table writing and reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SstOptions {
    /// Target size of a data block; a block holding one large entry may be bigger.
    pub block_size: usize,
    /// Bloom filter density.
    pub bloom_bits_per_key: u32,
    /// Bytes buffered by the writer before one `write_at` (rounded down to `ALIGN`).
    pub write_buffer: usize,
    /// Bytes a scan reads per I/O (whole blocks; at least one block).
    pub readahead: usize,
}

impl Default for SstOptions {
    fn default() -> Self {
        SstOptions {
            block_size: 4096,
            bloom_bits_per_key: DEFAULT_BITS_PER_KEY,
            write_buffer: 256 << 10,
            readahead: 256 << 10,
        }
    }
}

/// What a finished table holds; stored in the manifest. For an empty table `entry_count == 0`,
/// `min_token > max_token` and `min_seqno > max_seqno`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SstMeta {
    pub file_size: u64,
    pub entry_count: u64,
    pub tombstone_count: u64,
    pub min_token: u64,
    pub max_token: u64,
    pub min_seqno: u64,
    pub max_seqno: u64,
}

#[cfg(test)]
mod tests;
