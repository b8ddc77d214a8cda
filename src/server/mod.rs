//! The server: per shard, accept loops on the shared client port (SO_REUSEPORT) and on the
//! shard's own port, connection tasks, and dispatch of client and replica requests to the
//! coordinator and the replica handlers. Wiring only: request semantics live in `coordinator`,
//! bytes on disk in `storage`, frames in `net`.
//!
//! [`serve`] owns the process-level steps: the data-directory lock, RLIMIT_MEMLOCK, the signal
//! flag, the shard mesh, one executor per shard, and the exit status.

pub mod conn;
mod error;
pub mod lock;
pub mod shard;
pub mod shutdown;
pub mod store;
pub mod transport;
pub mod wire;

pub use error::ShardError;

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
    #[error("address {addr} is in use by another process (still busy after {waited_ms} ms); stop it or choose another --port/--listen")]
    AddrInUse {
        addr: std::net::SocketAddr,
        waited_ms: u64,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("shard {shard} failed: {source}")]
    Shard {
        shard: u16,
        #[source]
        source: ShardError,
    },
}

/// Runs a node until SIGTERM/SIGINT on the configured storage.
pub fn serve(cfg: Config) -> Result<(), ServerError> {
    serve_with(cfg, |cfg, shard| async move {
        store::EngineStore::open(&cfg, shard).await
    })
}

/// Runs a node until SIGTERM/SIGINT, with each shard's store opened by `open_store(shard)`.
pub fn serve_with<S, F, Fut>(cfg: Config, open_store: F) -> Result<(), ServerError>
where
    S: ShardStore,
    F: Fn(Arc<Config>, u16) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = Result<S, ShardError>> + 'static,
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
    Fut: Future<Output = Result<S, ShardError>> + 'static,
{
    wait_ports_free(&cfg)?;
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
        idle_poll: std::time::Duration::from_micros(cfg.idle_poll_us),
    };
    let results = run_shards(&spec, move |shard| {
        let shared = shared.clone();
        let open = open_store.clone();
        let cfg = shared.cfg.clone();
        async move { run_shard(shared, shard, move |s| open(cfg, s)).await }
    })?;
    for (shard, r) in results.into_iter().enumerate() {
        if let Err(source) = r {
            return Err(ServerError::Shard {
                shard: shard as u16,
                source,
            });
        }
    }
    tracing::info!("tern node stopped cleanly");
    Ok(())
}

/// How long start-up waits for its ports to be released.
const PORT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The shards bind with SO_REUSEPORT (they share the client port), which would also let this
/// process silently share a port with another one, or with the listening sockets of a crashed
/// predecessor that the kernel has not released yet (io_uring tears down asynchronously after
/// exit; connections landing there are reset). So first wait, bounded, until no socket is
/// listening on any of our ports. Listening sockets are read from /proc/net/tcp{,6}: a test bind
/// would also trip over the predecessor's closing connections, which are harmless.
fn wait_ports_free(cfg: &Config) -> Result<(), ServerError> {
    let me = cfg.me();
    let addrs: Vec<std::net::SocketAddr> = std::iter::once(me.client_addr())
        .chain((0..me.shards).map(|s| me.shard_addr(s)))
        .collect();
    let start = std::time::Instant::now();
    loop {
        let listening = listening_ports();
        let busy = addrs.iter().find(|a| {
            listening
                .iter()
                .any(|(ip, port)| *port == a.port() && (*ip == a.ip() || ip.is_unspecified()))
        });
        match busy {
            None => return Ok(()),
            Some(addr) if start.elapsed() >= PORT_WAIT => {
                return Err(ServerError::AddrInUse {
                    addr: *addr,
                    waited_ms: start.elapsed().as_millis() as u64,
                })
            }
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// (ip, port) of every TCP socket in LISTEN state on this host (empty if /proc is unreadable).
fn listening_ports() -> Vec<(std::net::IpAddr, u16)> {
    let mut out = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut cols = line.split_whitespace();
            let (Some(local), Some(_remote), Some(state)) = (cols.nth(1), cols.next(), cols.next())
            else {
                continue;
            };
            if state != "0A" {
                continue;
            }
            if let Some(addr) = parse_proc_addr(local, v6) {
                out.push(addr);
            }
        }
    }
    out
}

/// Parses `0100007F:1E14` (IPv4, little-endian words) or the 32-hex-digit IPv6 form.
fn parse_proc_addr(s: &str, v6: bool) -> Option<(std::net::IpAddr, u16)> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for chunk in ip.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        // /proc prints each 32-bit word in host (little-endian) order.
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    let ip = if v6 {
        let arr: [u8; 16] = bytes.try_into().ok()?;
        std::net::IpAddr::from(arr)
    } else {
        let arr: [u8; 4] = bytes.try_into().ok()?;
        std::net::IpAddr::from(arr)
    };
    Some((ip, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
