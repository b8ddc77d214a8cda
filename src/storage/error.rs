//! `StorageError`: the one error type of the storage module (commit log, memtable, SSTables,
//! manifest, compaction). Every variant names the file (and offset where one exists) so an
//! operator can find the damaged or missing thing without reading code.
//!
//! Invariant: a checksum or structure mismatch is always `Corrupt`, never silently turned into
//! "not found" or into data. Must not know about replicas, the ring or the network.

use std::io;
use std::path::{Path, PathBuf};

/// Storage-module result.
pub type Result<T> = std::result::Result<T, StorageError>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Bytes on disk do not match their checksum or cannot be parsed.
    #[error("corrupt data in {} at offset {offset}: {what}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// An I/O call failed; `op` names the operation (e.g. "read", "write", "sync").
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("key of {len} bytes exceeds the maximum of {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value of {len} bytes exceeds the maximum of {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    /// ENOSPC: the device holding `path` is full; free space or move the data directory.
    #[error("disk full while writing {}", path.display())]
    DiskFull { path: PathBuf },
    /// The storage engine (or this file) was closed and cannot serve the request.
    #[error("storage is closed")]
    Closed,
}

impl StorageError {
    /// Wrap an `io::Error`, mapping ENOSPC to [`StorageError::DiskFull`] so callers can react to a
    /// full disk specifically (refuse writes, keep serving reads).
    pub fn io(path: &Path, op: &'static str, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.kind() == io::ErrorKind::StorageFull
        {
            return StorageError::DiskFull {
                path: path.to_path_buf(),
            };
        }
        StorageError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    pub fn corrupt(path: &Path, offset: u64, what: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            what: what.into(),
        }
    }

    /// True for [`StorageError::Corrupt`]; handy in tests and in recovery decisions.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StorageError::Corrupt { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_maps_to_disk_full() {
        let e = StorageError::io(
            Path::new("/d/x.sst"),
            "write",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(matches!(e, StorageError::DiskFull { ref path } if path == Path::new("/d/x.sst")));
        let e = StorageError::io(
            Path::new("/d/x.sst"),
            "read",
            io::Error::from_raw_os_error(libc::EIO),
        );
        assert!(matches!(e, StorageError::Io { op: "read", .. }));
    }

    #[test]
    fn corrupt_message_names_file_and_offset() {
        let e = StorageError::corrupt(Path::new("/d/7.sst"), 8192, "block crc mismatch");
        let s = e.to_string();
        assert!(
            s.contains("/d/7.sst") && s.contains("8192") && s.contains("block crc"),
            "{s}"
        );
        assert!(e.is_corrupt());
    }
}
