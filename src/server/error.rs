//! `ShardError`: why one shard could not start or stop cleanly. Typed so the operator (and the
//! node's exit message) can tell a full disk from corrupt files from a port in use, instead of
//! one string for all.

use std::net::SocketAddr;

use thiserror::Error;

use crate::coordinator::ConfigError as CoordConfigError;
use crate::ring::RingError;
use crate::runtime::executor::RuntimeError;
use crate::storage::error::StorageError;

#[derive(Debug, Error)]
pub enum ShardError {
    #[error("cannot join the shard mesh: {0}")]
    Mesh(#[from] RuntimeError),
    #[error("cannot build the ring from the node list: {0}")]
    Ring(#[from] RingError),
    #[error("invalid coordinator settings: {0}")]
    Coordinator(#[from] CoordConfigError),
    /// Opening or recovering this shard's storage failed (the source says whether the disk is
    /// full, a file is corrupt, or an I/O call failed, and where).
    #[error("cannot open the storage of shard {shard}: {source}")]
    OpenStorage {
        shard: u16,
        #[source]
        source: StorageError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("closing the storage failed: {0}")]
    CloseStorage(#[source] StorageError),
    #[error("storage still busy after {waited_ms} ms; closed without a final sync (the commit log replays on restart)")]
    CloseBusy { waited_ms: u64 },
}
