//! The server: per shard, accept loops on the shared client port (SO_REUSEPORT) and on the
//! shard's own port, connection tasks, and dispatch of client and replica requests to the
//! coordinator and the replica handlers. Wiring only: request semantics live in `coordinator`,
//! bytes on disk in `storage`, frames in `net`.
//!
//! [`serve`] owns the process-level steps: the data-directory lock, RLIMIT_MEMLOCK, the signal
//! flag, the shard mesh, one executor per shard, and the exit status.

pub mod conn;
pub mod lock;
pub mod shard;
pub mod shutdown;
pub mod transport;
pub mod wire;

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use thiserror::Error;

use crate::config::Config;
use crate::runtime::executor::{raise_memlock_limit, run_shards, ExecutorSpec, RuntimeError};
use crate::runtime::mesh::MeshSetup;
use lock::{DirLock, LockError};
use shard::{run_shard, NodeShared, ShardStore};
use shutdown::Shutdown;

/// Capacity of each shard-to-shard channel.
const MESH_CAPACITY: usize = 1024;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("shard {shard} failed: {message}")]
    Shard { shard: u16, message: String },
}

/// Runs a node until SIGTERM/SIGINT on the configured storage.
pub fn serve(cfg: Config) -> Result<(), ServerError> {
    // TEMPORARY until the storage engine lands on this branch: records live in memory.
    tracing::warn!("storage engine not wired yet: data is kept in memory only");
    serve_with(cfg, |_cfg, _shard| async {
        Ok::<_, String>(crate::coordinator::MemStore::new())
    })
}

/// Runs a node until SIGTERM/SIGINT, with each shard's store opened by `open_store(shard)`.
pub fn serve_with<S, F, Fut>(cfg: Config, open_store: F) -> Result<(), ServerError>
where
    S: ShardStore,
    F: Fn(Arc<Config>, u16) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<S, String>> + 'static,
{
    let _lock = DirLock::acquire(&cfg.data_dir)?;
    raise_memlock_limit();
    let shutdown = Shutdown::install().map_err(ServerError::Signals)?;
    run_node(cfg, shutdown, open_store)
}

/// [`serve_with`] without the signal handlers and the lock (tests drive `shutdown` themselves).
pub fn run_node<S, F, Fut>(
    cfg: Config,
    shutdown: Shutdown,
    open_store: F,
) -> Result<(), ServerError>
where
    S: ShardStore,
    F: Fn(Arc<Config>, u16) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<S, String>> + 'static,
{
    let cfg = Arc::new(cfg);
    tracing::info!(
        node = cfg.node_id,
        shards = cfg.shards,
        nodes = cfg.nodes.len(),
        n = cfg.replication,
        data_dir = %cfg.data_dir.display(),
        "starting tern node"
    );
    let shared = NodeShared {
        cfg: cfg.clone(),
        shutdown,
        mesh: MeshSetup::new(cfg.shards, MESH_CAPACITY),
        drained: Arc::new(AtomicUsize::new(0)),
    };
    let spec = ExecutorSpec {
        shards: cfg.shards,
        pin: cfg.pin_cpus,
        name: "tern-shard".into(),
    };
    let results = run_shards(&spec, move |shard| {
        let shared = shared.clone();
        let open = open_store.clone();
        let cfg = shared.cfg.clone();
        async move { run_shard(shared, shard, move |s| open(cfg, s)).await }
    })?;
    for (shard, r) in results.into_iter().enumerate() {
        if let Err(message) = r {
            return Err(ServerError::Shard {
                shard: shard as u16,
                message,
            });
        }
    }
    tracing::info!("tern node stopped cleanly");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
