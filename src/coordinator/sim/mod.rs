//! Deterministic simulation of the replication logic (test-only): real [`Coordinator`]s on a
//! seeded virtual-time executor, over a simulated network with delays, drops, cut links and node
//! crashes, driven by concurrent clients doing get/put/delete with contexts; then the network
//! heals, every key is read at `R = N`, and the history is checked (see [`history`]) along with
//! replica convergence after read repair.
//!
//! A failing seed replays exactly: `TERN_SIM_SEED=<seed> cargo test --lib coordinator::sim`.
//! `TERN_SIM_SEEDS=<count>` runs another number of seeds (default 500: ~0.5 s release, ~12 s debug).
//!
//! [`Coordinator`]: crate::coordinator::Coordinator

pub mod exec;
pub mod history;
pub mod net;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::coordinator::{CoordError, CoordinatorConfig, Quorum, Replica, RequestOptions};
use crate::version::{NodeId, VersionVector};

use exec::{Sim, Stall};
use history::{CheckStats, History, Outcome, ReadOp, WriteOp};
use net::{NetParams, SimNet};

/// Shape of one simulated run, drawn from its seed.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: u32,
    pub shards: u16,
    pub n: usize,
    pub keys: usize,
    pub clients: usize,
    pub ops_per_client: usize,
    pub max_down: usize,
    pub chaos: bool,
    pub params: NetParams,
}

impl Scenario {
    pub fn from_seed(seed: u64, sim: &Sim) -> Scenario {
        let nodes = sim.gen_range(3..=5u32);
        Scenario {
            seed,
            nodes,
            shards: sim.gen_range(1..=2u16),
            n: 3,
            keys: sim.gen_range(1..=4usize),
            clients: sim.gen_range(2..=5usize),
            ops_per_client: sim.gen_range(10..=30usize),
            max_down: sim.gen_range(1..=(nodes as usize - 1)),
            chaos: sim.chance(0.85),
            params: NetParams {
                min_delay_ms: 1,
                max_delay_ms: sim.gen_range(2..=20u64),
                drop_chance: if sim.chance(0.5) {
                    sim.gen_range(0.0..0.08)
                } else {
                    0.0
                },
                max_store_delay_ms: sim.gen_range(0..=5u64),
            },
        }
    }
}

/// The key's preference list: N consecutive nodes from a hash-chosen start, one shard each.
pub fn preference(key: &[u8], nodes: u32, shards: u16, n: usize) -> Vec<Replica> {
    let h = xxhash_rust::xxh3::xxh3_64(key);
    let start = (h % u64::from(nodes)) as u32;
    let shard = ((h >> 32) % u64::from(shards)) as u16;
    (0..n as u32)
        .map(|i| Replica {
            node: (start + i) % nodes + 1,
            shard,
        })
        .collect()
}

/// What one run produced.
#[derive(Debug)]
pub struct RunReport {
    pub scenario: Scenario,
    pub stats: CheckStats,
    pub end_ms: u64,
    pub messages: u64,
    /// A digest of the whole history: equal for equal seeds.
    pub digest: u64,
}

struct World {
    sc: Scenario,
    net: Rc<SimNet>,
    history: RefCell<History>,
    clients_running: Cell<usize>,
}

impl World {
    fn key(&self, i: usize) -> Bytes {
        Bytes::from(format!("key-{i}"))
    }

    fn prefs(&self, key: &[u8]) -> Vec<Replica> {
        preference(key, self.sc.nodes, self.sc.shards, self.sc.n)
    }

    fn random_quorum(&self) -> Quorum {
        match self.net.sim.gen_range(0..4u32) {
            0 => Quorum::One,
            1 | 2 => Quorum::Quorum,
            _ => Quorum::All,
        }
    }

    /// A random shard of a node that is up (clients connect to any shard of any node).
    fn entry(&self) -> Option<Replica> {
        let up: Vec<Replica> = self
            .net
            .replicas()
            .into_iter()
            .filter(|r| self.net.is_up(r.node))
            .collect();
        if up.is_empty() {
            return None;
        }
        Some(up[self.net.sim.gen_range(0..up.len())])
    }

    async fn read(
        &self,
        client: usize,
        entry: Replica,
        key: &Bytes,
        r: Quorum,
        timeout_ms: u64,
    ) -> Option<VersionVector> {
        let coord = self.net.shard(entry)?;
        let prefs = self.prefs(key);
        let opts = RequestOptions {
            r,
            timeout_ms: Some(timeout_ms),
            ..RequestOptions::default()
        };
        let (start, epoch) = (self.net.sim.now_ms(), self.net.epoch(entry.node));
        let res = coord.get(key.clone(), &prefs, &opts).await;
        let end = self.net.sim.now_ms();
        let connected = self.net.is_up(entry.node) && self.net.epoch(entry.node) == epoch;
        match res {
            Ok(reply) if connected => {
                let ctx = reply.record.context();
                let r = r.resolve(self.sc.n, "R").unwrap_or(self.sc.n);
                self.history.borrow_mut().reads.push(ReadOp {
                    client,
                    key: key.clone(),
                    r,
                    start_ms: start,
                    end_ms: end,
                    record: reply.record,
                });
                Some(ctx)
            }
            Ok(_) => None,
            Err(e) => {
                self.history.borrow_mut().failed_reads += 1;
                if !matches!(e, CoordError::Quorum(_)) {
                    panic!("read failed with a non-quorum error: {e}");
                }
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        client: usize,
        entry: Replica,
        key: &Bytes,
        value: Option<Bytes>,
        ctx: VersionVector,
        w: Quorum,
        timeout_ms: u64,
    ) -> Option<VersionVector> {
        let coord = self.net.shard(entry)?;
        let prefs = self.prefs(key);
        let opts = RequestOptions {
            w,
            timeout_ms: Some(timeout_ms),
            ..RequestOptions::default()
        };
        let (start, epoch) = (self.net.sim.now_ms(), self.net.epoch(entry.node));
        let res = coord
            .put(key.clone(), value.clone(), ctx.clone(), &prefs, &opts)
            .await;
        let end = self.net.sim.now_ms();
        let connected = self.net.is_up(entry.node) && self.net.epoch(entry.node) == epoch;
        let (outcome, next_ctx) = match res {
            Ok(ack) if connected => {
                let c = ack.context.clone();
                (Outcome::Acked(ack), Some(c))
            }
            Ok(_) => (Outcome::Unknown("client connection lost".into()), None),
            Err(e) => {
                if !matches!(
                    e,
                    CoordError::Quorum(_) | CoordError::TooManySiblings { .. }
                ) {
                    panic!("write failed with an unexpected error: {e}");
                }
                (Outcome::Unknown(e.to_string()), None)
            }
        };
        let w = w.resolve(self.sc.n, "W").unwrap_or(self.sc.n);
        self.history.borrow_mut().writes.push(WriteOp {
            client,
            key: key.clone(),
            value,
            ctx,
            w,
            start_ms: start,
            end_ms: end,
            outcome,
        });
        next_ctx
    }
}

async fn client_task(world: Rc<World>, client: usize) {
    let sim = Rc::clone(&world.net.sim);
    let mut contexts: BTreeMap<usize, VersionVector> = BTreeMap::new();
    for op in 0..world.sc.ops_per_client {
        sim.sleep(Duration::from_millis(sim.gen_range(0..30u64)))
            .await;
        let Some(entry) = world.entry() else { continue };
        let k = sim.gen_range(0..world.sc.keys);
        let key = world.key(k);
        let timeout = sim.gen_range(40..=300u64);
        let value = Some(Bytes::from(format!("c{client}-op{op}")));
        let kind = sim.gen_range(0..100u32);
        if kind < 30 {
            let r = world.random_quorum();
            if let Some(ctx) = world.read(client, entry, &key, r, timeout).await {
                contexts.insert(k, ctx);
            }
        } else if kind < 60 {
            // Read-modify-write.
            let r = world.random_quorum();
            if let Some(ctx) = world.read(client, entry, &key, r, timeout).await {
                let w = world.random_quorum();
                if let Some(c) = world
                    .write(client, entry, &key, value, ctx, w, timeout)
                    .await
                {
                    contexts.insert(k, c);
                }
            }
        } else if kind < 90 {
            // A write with whatever context this client last had (maybe stale, maybe none).
            let ctx = if kind < 80 {
                contexts.get(&k).cloned().unwrap_or_default()
            } else {
                VersionVector::new()
            };
            let w = world.random_quorum();
            if let Some(c) = world
                .write(client, entry, &key, value, ctx, w, timeout)
                .await
            {
                contexts.insert(k, c);
            }
        } else {
            let ctx = contexts.get(&k).cloned().unwrap_or_default();
            let w = world.random_quorum();
            if let Some(c) = world
                .write(client, entry, &key, None, ctx, w, timeout)
                .await
            {
                contexts.insert(k, c);
            }
        }
    }
    world.clients_running.set(world.clients_running.get() - 1);
}

async fn chaos_task(world: Rc<World>) {
    let sim = Rc::clone(&world.net.sim);
    let nodes = world.sc.nodes;
    while world.clients_running.get() > 0 {
        sim.sleep(Duration::from_millis(sim.gen_range(10..150u64)))
            .await;
        let node: NodeId = sim.gen_range(1..=nodes);
        let down = (1..=nodes).filter(|n| !world.net.is_up(*n)).count();
        if sim.chance(0.6) {
            if world.net.is_up(node) && down < world.sc.max_down {
                world.net.crash(node);
                let (w, back) = (Rc::clone(&world), sim.gen_range(10..400u64));
                sim.spawn(async move {
                    w.net.sim.sleep(Duration::from_millis(back)).await;
                    w.net.restart(node);
                });
            }
        } else {
            let other: NodeId = sim.gen_range(1..=nodes);
            if other != node {
                world.net.cut_link(node, other);
            }
            if sim.chance(0.3) {
                // Heal links now and then so partitions do not only accumulate.
                world.net.heal_links();
            }
        }
    }
}

/// Run one seed to completion and check it.
pub fn run_seed(seed: u64) -> Result<RunReport, String> {
    let sim = Sim::new(seed);
    let sc = Scenario::from_seed(seed, &sim);
    let mut cfg = CoordinatorConfig::new(sc.n, sc.nodes as usize);
    cfg.default_timeout_ms = 200;
    cfg.repair_timeout_ms = 200;
    cfg.max_siblings = 16;
    let net = net::cluster(&sim, sc.nodes, sc.shards, &cfg, sc.params.clone());
    let world = Rc::new(World {
        sc: sc.clone(),
        net: Rc::clone(&net),
        history: RefCell::new(History::default()),
        clients_running: Cell::new(sc.clients),
    });
    for c in 0..sc.clients {
        sim.spawn(client_task(Rc::clone(&world), c));
    }
    if sc.chaos {
        sim.spawn(chaos_task(Rc::clone(&world)));
    }
    let stall = |s: Stall| format!("seed {seed}: simulation stalled: {s:?} ({sc:?})");
    sim.run_until(|| world.clients_running.get() == 0, 600_000)
        .map_err(stall)?;

    // Heal everything, let background work (fan-outs, repairs, restarts) finish.
    net.heal();
    sim.run_until(|| false, sim.now_ms() + 600_000)
        .map_err(stall)?;
    net.heal();
    debug_assert_eq!(sim.live_tasks(), 0);

    // Final reads at R = N through a random shard, then let read repair converge the replicas.
    let mut finals = Vec::new();
    for k in 0..sc.keys {
        let (w, done) = (Rc::clone(&world), Rc::new(Cell::new(false)));
        let d = Rc::clone(&done);
        sim.spawn(async move {
            let entry = w.entry();
            let key = w.key(k);
            if let Some(entry) = entry {
                if w.read(history::FINAL_READER, entry, &key, Quorum::All, 5_000)
                    .await
                    .is_some()
                {
                    d.set(true);
                }
            }
        });
        sim.run_until(|| false, sim.now_ms() + 600_000)
            .map_err(stall)?;
        if !done.get() {
            return Err(format!(
                "seed {seed}: final read of key-{k} failed on a healed network"
            ));
        }
        finals.push(k);
    }
    let history = world.history.borrow();
    let stats = history
        .check(sc.n)
        .map_err(|e| format!("seed {seed}: {e}"))?;

    // Convergence: every replica of a key holds exactly the final read's record; no other shard
    // holds the key at all.
    for k in finals {
        let key = world.key(k);
        let Some(final_read) = history
            .reads
            .iter()
            .rev()
            .find(|r| r.key == key && r.client == history::FINAL_READER)
        else {
            return Err(format!("seed {seed}: no final read of key-{k}"));
        };
        let prefs = world.prefs(&key);
        for r in net.replicas() {
            let Some(shard) = net.shard(r) else { continue };
            let held = shard.store().mem.get_now(&key);
            if prefs.contains(&r) {
                let held = held.unwrap_or_default();
                if held != final_read.record {
                    return Err(format!(
                        "seed {seed}: replica {r} of key-{k} did not converge after read repair: holds {held:?}, final read {:?}",
                        final_read.record
                    ));
                }
            } else if held.is_some() {
                return Err(format!(
                    "seed {seed}: {r} is not a replica of key-{k} but stores it"
                ));
            }
        }
    }
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{:?}{:?}", history.writes, history.reads).hash(&mut h);
        h.finish()
    };
    Ok(RunReport {
        scenario: sc,
        stats,
        end_ms: sim.now_ms(),
        messages: net.messages.get(),
        digest,
    })
}
