//! Typed, validated settings and every limit (units last: `timeout_ms`). Reaches into no other
//! state: it turns command-line flags and an optional TOML file into one [`Config`] and refuses
//! anything inconsistent with an error a user can act on.
//!
//! Precedence: a flag beats the config file, which beats the built-in default. Every setting has
//! a flag (`tern serve --help`) and the same name (snake_case) as a TOML key; unknown TOML keys
//! are an error, so a typo never silently falls back to a default.
//!
//! Invariants of a validated [`Config`]: `nodes` contains this node exactly once (with this
//! node's address and shard count), node ids and addresses are unique, `1 <= replication <=
//! nodes.len()`, and every shard port (`port + 1 + shard`) fits in a `u16`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use thiserror::Error;

pub use crate::ring::{NodeEntry, NodeEntryError, NodeInfo};
use crate::ring::{NodeId, NodeSpec};

pub const DEFAULT_PORT: u16 = 7700;
pub const DEFAULT_DATA_DIR: &str = "./tern-data";
/// The protocol's size limits (defined once, in the protocol crate both ends share).
pub use crate::net::limits::{
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_VALUE_BYTES, MAX_CONTEXT_BYTES, MAX_FAILED_REPLICAS,
    MAX_KEY_BYTES, MAX_SIBLINGS, MAX_VV_ENTRIES,
};
/// The ring's limits and defaults (defined once, in the ring crate both ends share).
pub use crate::ring::{DEFAULT_REPLICATION, DEFAULT_WEIGHT, MAX_SHARDS, MAX_WEIGHT};
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Far above a healthy p99 (about 1 ms here), so the log stays quiet unless something stalls.
pub const DEFAULT_SLOW_REQUEST_MS: u64 = 100;
/// Longest idle busy-poll accepted: past a few ms it is a spinning core, not a latency knob.
pub const MAX_IDLE_POLL_US: u64 = 10_000;
pub const DEFAULT_SIBLING_CAP: usize = 64;
pub const DEFAULT_TOMBSTONE_GRACE_MS: u64 = 10 * 24 * 3600 * 1000;
pub const DEFAULT_MEMTABLE_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_INFLIGHT_PER_CONN: usize = 128;
pub const DEFAULT_MAX_CONNECTIONS_PER_SHARD: usize = 4096;
pub const DEFAULT_PEER_CONNECTIONS: usize = 2;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 500;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("bad node entry {entry:?}: {reason} (expected id@ip:port[/shards][#zone], e.g. 2@127.0.0.2:7700/2#zone-b)")]
    BadNode { entry: String, reason: String },
    #[error("bad sync mode {0:?}: expected `durable` or `periodic:<ms>` (e.g. periodic:10)")]
    BadSyncMode(String),
    #[error("node id {0} appears more than once in --nodes")]
    DuplicateNodeId(NodeId),
    #[error("address {0} appears more than once in --nodes")]
    DuplicateAddress(SocketAddr),
    #[error("this node ({0}) is not in --nodes; pass --node-id with one of the listed ids, or list this node")]
    SelfNotInNodes(String),
    #[error("node {id} is listed at {listed} but this process listens on {actual}; make --listen/--port match the --nodes entry")]
    AddressMismatch {
        id: NodeId,
        listed: SocketAddr,
        actual: SocketAddr,
    },
    #[error("replication factor N={n} needs at least {n} nodes but the cluster has {nodes}; lower --replication or add nodes")]
    ReplicationTooLarge { n: usize, nodes: usize },
    #[error("{name} must be {requirement}, got {value}")]
    OutOfRange {
        name: &'static str,
        requirement: String,
        value: String,
    },
}

impl From<NodeEntryError> for ConfigError {
    fn from(e: NodeEntryError) -> Self {
        ConfigError::BadNode {
            entry: e.entry,
            reason: e.reason,
        }
    }
}

fn out_of_range(
    name: &'static str,
    requirement: impl Into<String>,
    value: impl ToString,
) -> ConfigError {
    ConfigError::OutOfRange {
        name,
        requirement: requirement.into(),
        value: value.to_string(),
    }
}

/// When a write is acknowledged relative to its commit-log fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Acknowledge only after the record is durable (fdatasync, group commit).
    Durable,
    /// Acknowledge at once and sync every `ms` milliseconds: a power loss can lose the last `ms`.
    Periodic { ms: u64 },
}

impl std::str::FromStr for SyncMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("durable") {
            return Ok(SyncMode::Durable);
        }
        if let Some(ms) = t.strip_prefix("periodic:") {
            return match ms.trim().parse::<u64>() {
                Ok(ms) if (1..=60_000).contains(&ms) => Ok(SyncMode::Periodic { ms }),
                _ => Err(ConfigError::BadSyncMode(s.to_owned())),
            };
        }
        Err(ConfigError::BadSyncMode(s.to_owned()))
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncMode::Durable => write!(f, "durable"),
            SyncMode::Periodic { ms } => write!(f, "periodic:{ms}"),
        }
    }
}

/// `tern serve` flags. Every field is optional so the config file can fill it.
#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (same names, snake_case). Flags win over it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (one subdirectory per shard) [default: ./tern-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// IP address to listen on and to bind outgoing connections to [default: 127.0.0.1]
    #[arg(long)]
    pub listen: Option<IpAddr>,
    /// Client port; shard i also listens on port+1+i [default: 7700]
    #[arg(long)]
    pub port: Option<u16>,
    /// Number of shards (executors) [default: number of CPUs]
    #[arg(long)]
    pub shards: Option<u16>,
    /// This node's id [default: the --nodes entry matching --listen:--port, or 1]
    #[arg(long)]
    pub node_id: Option<NodeId>,
    /// Static cluster: id@ip:port[/shards][#zone],... (absent = single node)
    #[arg(long, value_delimiter = ',')]
    pub nodes: Option<Vec<String>>,
    /// Replication factor N [default: min(3, node count)]
    #[arg(long)]
    pub replication: Option<usize>,
    /// Vnodes per node (its weight on the ring) [default: 256]
    #[arg(long)]
    pub vnodes: Option<u32>,
    /// Default request timeout [default: 2000]
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Requests slower than this are logged at warn with their span; 0 turns it off [default: 100]
    #[arg(long)]
    pub slow_request_ms: Option<u64>,
    /// Largest value accepted [default: 1048576]
    #[arg(long)]
    pub max_value_bytes: Option<usize>,
    /// Largest frame accepted on any connection [default: 2162688]
    #[arg(long)]
    pub max_frame_bytes: Option<usize>,
    /// Most siblings kept per key before writes must resolve them [default: 64]
    #[arg(long)]
    pub sibling_cap: Option<usize>,
    /// `durable` (ack after fdatasync) or `periodic:<ms>` [default: durable]
    #[arg(long)]
    pub sync: Option<String>,
    /// How long tombstones are kept before compaction may drop them [default: 10 days]
    #[arg(long)]
    pub tombstone_grace_ms: Option<u64>,
    /// Memtable size before it is flushed to an SSTable [default: 67108864]
    #[arg(long)]
    pub memtable_bytes: Option<u64>,
    /// Requests in flight per client connection before reading pauses [default: 128]
    #[arg(long)]
    pub max_inflight_per_conn: Option<usize>,
    /// Open connections per shard before new ones are refused [default: 4096]
    #[arg(long)]
    pub max_connections_per_shard: Option<usize>,
    /// TCP connections from each shard to each remote shard [default: 2]
    #[arg(long)]
    pub peer_connections: Option<usize>,
    /// Timeout for connecting to a peer [default: 500]
    #[arg(long)]
    pub connect_timeout_ms: Option<u64>,
    /// Pin shard i to CPU i % cpus [default: true]
    #[arg(long)]
    pub pin_cpus: Option<bool>,
    /// Busy-poll this long for new work before an idle shard sleeps (only with pinned shards);
    /// trades CPU for wake-up latency, for hosts where shard cores are dedicated [default: 0]
    #[arg(long)]
    pub idle_poll_us: Option<u64>,
    /// Log filter (tracing EnvFilter syntax; RUST_LOG is used when absent) [default: info]
    #[arg(long)]
    pub log: Option<String>,
    /// Start even when a commit-log segment is damaged before its tail: the rest of that
    /// segment is skipped (and logged) instead of refusing to start. Writes in the skipped part
    /// are lost on this replica. A flag only, never read from the config file, so it cannot stay
    /// switched on by accident.
    #[arg(long)]
    pub skip_damaged_segments: bool,
}

/// The TOML file: same keys as the flags.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<IpAddr>,
    port: Option<u16>,
    shards: Option<u16>,
    node_id: Option<NodeId>,
    nodes: Option<Vec<String>>,
    replication: Option<usize>,
    vnodes: Option<u32>,
    timeout_ms: Option<u64>,
    slow_request_ms: Option<u64>,
    max_value_bytes: Option<usize>,
    max_frame_bytes: Option<usize>,
    sibling_cap: Option<usize>,
    sync: Option<String>,
    tombstone_grace_ms: Option<u64>,
    memtable_bytes: Option<u64>,
    max_inflight_per_conn: Option<usize>,
    max_connections_per_shard: Option<usize>,
    peer_connections: Option<usize>,
    connect_timeout_ms: Option<u64>,
    pin_cpus: Option<bool>,
    idle_poll_us: Option<u64>,
    log: Option<String>,
}

/// Every setting of a node, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub listen: IpAddr,
    pub port: u16,
    pub shards: u16,
    /// All members, this node included, in the order given.
    pub nodes: Vec<NodeInfo>,
    pub replication: usize,
    pub vnodes: u32,
    pub timeout_ms: u64,
    /// Requests that take longer are logged (warn, with a span); 0: never.
    pub slow_request_ms: u64,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_frame_bytes: usize,
    pub sibling_cap: usize,
    pub sync: SyncMode,
    pub tombstone_grace_ms: u64,
    pub memtable_bytes: u64,
    pub max_inflight_per_conn: usize,
    pub max_connections_per_shard: usize,
    pub peer_connections: usize,
    pub connect_timeout_ms: u64,
    pub pin_cpus: bool,
    /// Busy-poll time before an idle shard parks (0: park at once); applies to pinned shards.
    pub idle_poll_us: u64,
    pub log: Option<String>,
    /// One-shot recovery override (flag only): see `ServeArgs::skip_damaged_segments`.
    pub skip_damaged_segments: bool,
}

impl Config {
    /// Reads `--config` if given, then merges flags over it and validates.
    pub fn from_args(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// A single-node config with defaults, for tests and tools.
    pub fn single_node(data_dir: &Path, port: u16, shards: u16) -> Result<Config, ConfigError> {
        let args = ServeArgs {
            data_dir: Some(data_dir.to_owned()),
            port: Some(port),
            shards: Some(shards),
            ..ServeArgs::default()
        };
        Self::merge(&args, FileConfig::default())
    }

    fn merge(a: &ServeArgs, f: FileConfig) -> Result<Config, ConfigError> {
        let entries: Vec<NodeEntry> = a
            .nodes
            .clone()
            .or(f.nodes)
            .unwrap_or_default()
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?;
        let node_id_flag = a.node_id.or(f.node_id);
        // With --node-id, this node's own entry supplies defaults for its address and shards.
        let listed = node_id_flag.and_then(|id| entries.iter().find(|e| e.id == id));
        let shards = match a.shards.or(f.shards).or(listed.and_then(|e| e.shards)) {
            Some(s) => s,
            None => std::thread::available_parallelism()
                .map(|n| n.get().min(usize::from(MAX_SHARDS)) as u16)
                .unwrap_or(1),
        };
        if shards == 0 || shards > MAX_SHARDS {
            return Err(out_of_range("shards", format!("1..={MAX_SHARDS}"), shards));
        }
        let listen = a
            .listen
            .or(f.listen)
            .or(listed.map(|e| e.ip))
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = a
            .port
            .or(f.port)
            .or(listed.map(|e| e.port))
            .unwrap_or(DEFAULT_PORT);
        if port == 0 || u32::from(port) + 1 + u32::from(shards) > u32::from(u16::MAX) {
            return Err(out_of_range(
                "port",
                format!(
                    "1..={} so that every shard port (port+1+shard) fits",
                    u16::MAX - 1 - shards
                ),
                port,
            ));
        }
        let me = SocketAddr::new(listen, port);
        let (node_id, nodes) = resolve_nodes(entries, node_id_flag, me, shards)?;

        let replication = match a.replication.or(f.replication) {
            Some(n) if n == 0 => return Err(out_of_range("replication", ">= 1", n)),
            Some(n) if n > nodes.len() => {
                return Err(ConfigError::ReplicationTooLarge {
                    n,
                    nodes: nodes.len(),
                })
            }
            Some(n) => n,
            None => DEFAULT_REPLICATION.min(nodes.len()),
        };
        let vnodes = a.vnodes.or(f.vnodes).unwrap_or(DEFAULT_WEIGHT);
        if vnodes == 0 || vnodes > MAX_WEIGHT {
            return Err(out_of_range("vnodes", format!("1..={MAX_WEIGHT}"), vnodes));
        }
        let timeout_ms = a.timeout_ms.or(f.timeout_ms).unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=600_000).contains(&timeout_ms) {
            return Err(out_of_range("timeout_ms", "1..=600000", timeout_ms));
        }
        let slow_request_ms = a
            .slow_request_ms
            .or(f.slow_request_ms)
            .unwrap_or(DEFAULT_SLOW_REQUEST_MS);
        if slow_request_ms > 600_000 {
            return Err(out_of_range(
                "slow_request_ms",
                "0..=600000",
                slow_request_ms,
            ));
        }
        let idle_poll_us = a.idle_poll_us.or(f.idle_poll_us).unwrap_or(0);
        if idle_poll_us > MAX_IDLE_POLL_US {
            return Err(out_of_range(
                "idle_poll_us",
                format!("0..={MAX_IDLE_POLL_US}"),
                idle_poll_us,
            ));
        }
        let max_value_bytes = a
            .max_value_bytes
            .or(f.max_value_bytes)
            .unwrap_or(DEFAULT_MAX_VALUE_BYTES);
        if !(1..=(64 << 20)).contains(&max_value_bytes) {
            return Err(out_of_range(
                "max_value_bytes",
                "1..=67108864",
                max_value_bytes,
            ));
        }
        let max_frame_bytes = a.max_frame_bytes.or(f.max_frame_bytes).unwrap_or_else(|| {
            // Scale with a raised value limit so the default never contradicts it.
            DEFAULT_MAX_FRAME_BYTES.max(2 * max_value_bytes + (64 << 10))
        });
        // A replica record may carry several siblings of a maximal value; the frame limit must
        // at least fit one value plus key, context and envelope.
        let min_frame = max_value_bytes + MAX_KEY_BYTES + (16 << 10);
        if max_frame_bytes < min_frame || max_frame_bytes > (256 << 20) {
            return Err(out_of_range(
                "max_frame_bytes",
                format!("{min_frame}..=268435456 (max_value_bytes + key + 16 KiB at least)"),
                max_frame_bytes,
            ));
        }
        let sibling_cap = a
            .sibling_cap
            .or(f.sibling_cap)
            .unwrap_or(DEFAULT_SIBLING_CAP);
        if !(1..=1024).contains(&sibling_cap) {
            return Err(out_of_range("sibling_cap", "1..=1024", sibling_cap));
        }
        let sync = match a.sync.clone().or(f.sync) {
            Some(s) => s.parse()?,
            None => SyncMode::Durable,
        };
        let tombstone_grace_ms = a
            .tombstone_grace_ms
            .or(f.tombstone_grace_ms)
            .unwrap_or(DEFAULT_TOMBSTONE_GRACE_MS);
        let memtable_bytes = a
            .memtable_bytes
            .or(f.memtable_bytes)
            .unwrap_or(DEFAULT_MEMTABLE_BYTES);
        if !((64 << 10)..=(4 << 30)).contains(&memtable_bytes) {
            return Err(out_of_range(
                "memtable_bytes",
                "65536..=4294967296",
                memtable_bytes,
            ));
        }
        let max_inflight_per_conn = a
            .max_inflight_per_conn
            .or(f.max_inflight_per_conn)
            .unwrap_or(DEFAULT_MAX_INFLIGHT_PER_CONN);
        if !(1..=65_536).contains(&max_inflight_per_conn) {
            return Err(out_of_range(
                "max_inflight_per_conn",
                "1..=65536",
                max_inflight_per_conn,
            ));
        }
        let max_connections_per_shard = a
            .max_connections_per_shard
            .or(f.max_connections_per_shard)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_SHARD);
        if !(1..=1_000_000).contains(&max_connections_per_shard) {
            return Err(out_of_range(
                "max_connections_per_shard",
                "1..=1000000",
                max_connections_per_shard,
            ));
        }
        let peer_connections = a
            .peer_connections
            .or(f.peer_connections)
            .unwrap_or(DEFAULT_PEER_CONNECTIONS);
        if !(1..=64).contains(&peer_connections) {
            return Err(out_of_range("peer_connections", "1..=64", peer_connections));
        }
        let connect_timeout_ms = a
            .connect_timeout_ms
            .or(f.connect_timeout_ms)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS);
        if !(1..=60_000).contains(&connect_timeout_ms) {
            return Err(out_of_range(
                "connect_timeout_ms",
                "1..=60000",
                connect_timeout_ms,
            ));
        }
        Ok(Config {
            node_id,
            data_dir: a
                .data_dir
                .clone()
                .or(f.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            port,
            shards,
            nodes,
            replication,
            vnodes,
            timeout_ms,
            slow_request_ms,
            max_key_bytes: MAX_KEY_BYTES,
            max_value_bytes,
            max_frame_bytes,
            sibling_cap,
            sync,
            tombstone_grace_ms,
            memtable_bytes,
            max_inflight_per_conn,
            max_connections_per_shard,
            peer_connections,
            connect_timeout_ms,
            pin_cpus: a.pin_cpus.or(f.pin_cpus).unwrap_or(true),
            idle_poll_us,
            log: a.log.clone().or(f.log),
            skip_damaged_segments: a.skip_damaged_segments,
        })
    }

    /// This node's own entry.
    pub fn me(&self) -> &NodeInfo {
        // Validated: exactly one entry carries `node_id`.
        let found = self.nodes.iter().find(|n| n.id == self.node_id);
        debug_assert!(found.is_some());
        found.unwrap_or(&self.nodes[0])
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The ring specs of all members.
    pub fn ring_specs(&self) -> Vec<NodeSpec> {
        self.nodes
            .iter()
            .map(|n| n.ring_spec(self.vnodes))
            .collect()
    }

    /// Directory of one shard's storage.
    pub fn shard_dir(&self, shard: u16) -> PathBuf {
        self.data_dir.join(format!("shard-{shard}"))
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Finds this node in the list (or makes a one-node list) and fills unknown shard counts.
fn resolve_nodes(
    entries: Vec<NodeEntry>,
    node_id: Option<NodeId>,
    me: SocketAddr,
    shards: u16,
) -> Result<(NodeId, Vec<NodeInfo>), ConfigError> {
    if entries.is_empty() {
        let id = node_id.unwrap_or(1);
        return Ok((
            id,
            vec![NodeInfo {
                id,
                ip: me.ip(),
                port: me.port(),
                shards,
                zone: None,
            }],
        ));
    }
    let mut nodes: Vec<NodeInfo> = Vec::with_capacity(entries.len());
    for e in entries {
        if nodes.iter().any(|n| n.id == e.id) {
            return Err(ConfigError::DuplicateNodeId(e.id));
        }
        let s = e.shards.unwrap_or(shards);
        let addr = SocketAddr::new(e.ip, e.port);
        if u32::from(e.port) + 1 + u32::from(s) > u32::from(u16::MAX) || e.port == 0 {
            return Err(ConfigError::BadNode {
                entry: format!("{}@{addr}/{s}", e.id),
                reason: "shard ports (port+1+shard) do not fit in 1..=65535".into(),
            });
        }
        // Shard port ranges of two nodes on one IP must not overlap.
        for n in &nodes {
            let overlap = n.ip == e.ip
                && u32::from(e.port) <= u32::from(n.port) + u32::from(n.shards)
                && u32::from(n.port) <= u32::from(e.port) + u32::from(s);
            if overlap {
                return Err(ConfigError::DuplicateAddress(addr));
            }
        }
        nodes.push(NodeInfo {
            id: e.id,
            ip: e.ip,
            port: e.port,
            shards: s,
            zone: e.zone,
        });
    }
    let id = match node_id {
        Some(id) => id,
        None => nodes
            .iter()
            .find(|n| n.client_addr() == me)
            .map(|n| n.id)
            .ok_or_else(|| ConfigError::SelfNotInNodes(me.to_string()))?,
    };
    let mine = nodes
        .iter_mut()
        .find(|n| n.id == id)
        .ok_or_else(|| ConfigError::SelfNotInNodes(format!("node id {id}")))?;
    if mine.client_addr() != me {
        return Err(ConfigError::AddressMismatch {
            id,
            listed: mine.client_addr(),
            actual: me,
        });
    }
    if mine.shards != shards {
        return Err(ConfigError::BadNode {
            entry: format!("{id}@{me}/{}", mine.shards),
            reason: format!("this node runs {shards} shards (--shards); the entry must agree"),
        });
    }
    Ok((id, nodes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
