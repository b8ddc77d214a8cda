//! The `Disk` trait: every byte the storage engine reads or writes goes through it, so a test can
//! replace the real glommio DMA files with a recording implementation that produces crash states
//! (writes after the last completed `sync` dropped, reordered or torn at 512 B).
//!
//! Contract shared by every implementation:
//! - `write_at` offsets and lengths are multiples of [`ALIGN`] (O_DIRECT); callers pad.
//! - A write is durable only after a later `sync` on the same file has completed.
//! - Creating, renaming or removing a file is durable only after `sync_dir` on its directory.

use std::io;
use std::path::{Path, PathBuf};

/// Alignment of every `write_at` offset and length, and of `read_at` offsets (O_DIRECT).
pub const ALIGN: u64 = 4096;

/// A file system as the storage engine sees it. Single-threaded (one per shard), hence `?Send`.
#[allow(async_fn_in_trait)]
pub trait Disk: 'static {
    type File: DiskFile;
    /// Create (or truncate) a file for reading and writing.
    async fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Open an existing file for reading and writing.
    async fn open(&self, path: &Path) -> io::Result<Self::File>;
    async fn remove(&self, path: &Path) -> io::Result<()>;
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries in `dir` (full paths), in no particular order.
    async fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Make creations, renames and removals in `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open file. Offsets and lengths of writes are multiples of [`ALIGN`].
#[allow(async_fn_in_trait)]
pub trait DiskFile: 'static {
    async fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Read up to `len` bytes at `offset`; shorter only at end of file.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// fdatasync: every completed write before this call is durable when it returns.
    async fn sync(&self) -> io::Result<()>;
    async fn size(&self) -> io::Result<u64>;
    /// Reserve `len` bytes of space (fallocate), so later overwrites do not grow the file.
    async fn preallocate(&self, len: u64) -> io::Result<()>;
    async fn truncate(&self, len: u64) -> io::Result<()>;
    async fn close(self) -> io::Result<()>;
}
