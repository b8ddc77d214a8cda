//! Power-loss test: the real `Engine` on `SimDisk`, concurrent writers, and crash states taken
//! at arbitrary moments (unsynced writes dropped, reordered or torn at 512 B; directory
//! operations lost unless synced). After each crash the engine is recovered and checked:
//! - it starts (a torn tail is never reported as corruption);
//! - every acknowledged write is present, or a newer write of the same key is;
//! - every value served is one that was actually written for that key (no corrupt data);
//!
//! Then it keeps writing on the recovered disk, so later crashes also hit recycled log
//! segments, torn tails of earlier crashes, flushes and compactions in progress.
//!
//! 250 seeds x 4 chained crashes = 1,000 crash states in CI. `TERN_POWERLOSS_SEEDS=N` runs N
//! seeds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern::runtime::disk_sim::SimDisk;
use tern::storage::compaction::CompactionPolicy;
use tern::storage::engine::{Engine, EngineConfig, NewRecord};

const KEYS: u32 = 24;
const WRITERS: u32 = 4;
const CRASHES_PER_SEED: u32 = 4;

thread_local! {
    /// (acknowledged writes, flushes, compactions, recycled log segments) over all phases.
    static STATS: RefCell<(u64, u64, u64, u64)> = const { RefCell::new((0, 0, 0, 0)) };
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn cfg() -> EngineConfig {
    EngineConfig {
        memtable_bytes: 3 << 10,
        segment_bytes: 12 << 10,
        max_value_bytes: 1024,
        compaction: CompactionPolicy {
            base_tier_bytes: 16 << 10,
            min_threshold: 3,
            max_tables: 6,
            ..CompactionPolicy::default()
        },
        ..EngineConfig::new("/shard")
    }
}

fn key(k: u32) -> Vec<u8> {
    format!("k{k:03}").into_bytes()
}

/// What a key must hold: the acknowledged (seqno, payload, is_tombstone) with the largest seqno.
type Acked = HashMap<Vec<u8>, (u64, Bytes)>;

async fn verify(
    e: &Engine<SimDisk>,
    required: &Acked,
    attempted: &HashMap<Vec<u8>, HashSet<Bytes>>,
    ctx: &str,
) -> Acked {
    let mut now = Acked::new();
    for k in 0..KEYS {
        let k = key(k);
        let got = e
            .get(&k)
            .await
            .unwrap_or_else(|err| panic!("{ctx}: get failed: {err}"));
        if let Some((s, p)) = required.get(&k) {
            let g = got
                .as_ref()
                .unwrap_or_else(|| panic!("{ctx}: acknowledged write of {k:?} (seqno {s}) lost"));
            assert!(
                g.seqno >= *s,
                "{ctx}: {k:?} went back from seqno {s} to {}",
                g.seqno
            );
            if g.seqno == *s {
                assert_eq!(
                    &g.payload, p,
                    "{ctx}: {k:?} seqno {s} has a different payload"
                );
            }
        }
        if let Some(g) = &got {
            let ok = attempted.get(&k).is_some_and(|a| a.contains(&g.payload));
            assert!(
                ok,
                "{ctx}: {k:?} holds a payload never written: {:?}",
                g.payload
            );
            now.insert(k, (g.seqno, g.payload.clone()));
        }
    }
    // A scan must agree with point reads.
    let all = e.scan(0..=u64::MAX, 1000).await.unwrap();
    let scanned: BTreeMap<Vec<u8>, u64> = all.iter().map(|(k, v)| (k.to_vec(), v.seqno)).collect();
    let points: BTreeMap<Vec<u8>, u64> = now.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    assert_eq!(scanned, points, "{ctx}: scan disagrees with get");
    now
}

async fn one_seed(seed: u64) -> u32 {
    let mut disk = SimDisk::new();
    let mut required = Acked::new();
    let attempted: Rc<RefCell<HashMap<Vec<u8>, HashSet<Bytes>>>> = Rc::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut crashes = 0;
    for phase in 0..CRASHES_PER_SEED {
        disk.set_yield_every(rng.gen_range(1..4));
        let ctx = format!("seed {seed} phase {phase}");
        let e = Rc::new(
            Engine::open(disk.clone(), cfg())
                .await
                .unwrap_or_else(|err| panic!("{ctx}: recovery failed: {err}")),
        );
        let seen = attempted.borrow().clone();
        required = verify(&e, &required, &seen, &ctx).await;
        let acked: Rc<RefCell<Acked>> = Rc::new(RefCell::new(required.clone()));
        // Power fails just before a random disk operation of this phase.
        let crash_at = rng.gen_range(1..800);
        disk.arm_crash(crash_at, rng.gen());
        let stop = Rc::new(Cell::new(false));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (e, acked, attempted, stop, disk) = (
                e.clone(),
                acked.clone(),
                attempted.clone(),
                stop.clone(),
                disk.clone(),
            );
            let mut wrng =
                StdRng::seed_from_u64(seed ^ (u64::from(phase) << 32) ^ u64::from(w) << 48);
            tasks.push(glommio::spawn_local(async move {
                let mut n = 0u32;
                while !stop.get() && n < 200 && disk.crashed().is_none() {
                    n += 1;
                    let k = key(wrng.gen_range(0..KEYS));
                    let len = wrng.gen_range(1..300);
                    let mut v = format!("{seed}/{phase}/{w}/{n}/").into_bytes();
                    v.resize(len.max(v.len()), b'a' + (n % 26) as u8);
                    // Recent delete times, so no tombstone is past its grace period (compaction
                    // dropping an expired tombstone is correct, but would look like a loss here).
                    let tomb = wrng.gen_bool(0.15).then_some(now_ms());
                    let payload = Bytes::from(v);
                    attempted
                        .borrow_mut()
                        .entry(k.clone())
                        .or_default()
                        .insert(payload.clone());
                    let p2 = payload.clone();
                    let r = e
                        .update(&k, |_| {
                            Ok::<_, Infallible>(Some(NewRecord {
                                payload: p2,
                                tombstone_at_ms: tomb,
                            }))
                        })
                        .await;
                    match r {
                        // Acknowledged after the power failed: not required to survive.
                        Ok(Some(_)) if disk.crashed().is_some() => {}
                        Ok(Some(s)) => {
                            let mut a = acked.borrow_mut();
                            let cur = a.entry(k).or_insert((0, Bytes::new()));
                            if s.seqno > cur.0 {
                                *cur = (s.seqno, payload);
                            }
                        }
                        Ok(None) => unreachable!(),
                        Err(err) => panic!("write failed: {err}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let st = e.stats();
        if std::env::var_os("TERN_POWERLOSS_DEBUG").is_some() {
            eprintln!("{ctx}: crash at op {crash_at}: {st:?}");
        }
        STATS.with(|c| {
            let mut c = c.borrow_mut();
            c.0 += st.writes;
            c.1 += st.flushes;
            c.2 += st.compactions;
            c.3 += st.log.recycled;
        });
        let crashed = disk.crashed().unwrap_or_else(|| disk.crash(seed));
        required = acked.borrow().clone();
        stop.set(true);
        drop(e);
        disk = crashed;
        crashes += 1;
    }
    // Final recovery check of the last crash state.
    let e = Engine::open(disk.clone(), cfg())
        .await
        .unwrap_or_else(|err| panic!("seed {seed} final: {err}"));
    let seen = attempted.borrow().clone();
    verify(&e, &required, &seen, &format!("seed {seed} final")).await;
    crashes
}

#[test]
fn acknowledged_writes_survive_power_loss() {
    let seeds: u64 = std::env::var("TERN_POWERLOSS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250);
    let total = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let mut total = 0;
            for seed in 0..seeds {
                total += one_seed(seed).await;
            }
            let (w, f, c, r) = STATS.with(|s| *s.borrow());
            eprintln!("power loss: {total} crash states, {w} acknowledged writes, {f} flushes, {c} compactions, {r} recycled segments");
            // The crashes must have hit a busy engine, not an idle one.
            assert!(w > seeds * 50 && f > seeds && c > 0 && r > 0, "too little activity");
            total
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(total as u64, seeds * u64::from(CRASHES_PER_SEED));
}
