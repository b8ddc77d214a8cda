//! Model test: random sequences of put / delete / get / scan with forced flushes, compactions,
//! clean restarts and crashes (power loss after the last acknowledged write) against a
//! `BTreeMap`. Every operation is acknowledged before the next, so after a crash the engine
//! must equal the model exactly. Deletes with an already-expired tombstone may be collected by
//! a compaction: then the key may read as "absent", but never as an older value.
//!
//! Fixed proptest seed (deterministic in CI); `PROPTEST_CASES=N` runs more cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use tern::runtime::disk_sim::SimDisk;
use tern::storage::compaction::CompactionPolicy;
use tern::storage::engine::{Engine, EngineConfig, NewRecord};
use tern::storage::entry::token;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    /// Delete with a tombstone already past its grace period.
    DeleteExpired(u8),
    Get(u8),
    Scan(u64, u8),
    Flush,
    Compact,
    Restart,
    Crash(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (any::<u8>(), 1u16..600).prop_map(|(k, l)| Op::Put(k % 32, l)),
        6 => any::<u8>().prop_map(|k| Op::Delete(k % 32)),
        3 => any::<u8>().prop_map(|k| Op::DeleteExpired(k % 32)),
        15 => any::<u8>().prop_map(|k| Op::Get(k % 32)),
        3 => (any::<u64>(), 1u8..20).prop_map(|(t, n)| Op::Scan(t, n)),
        2 => Just(Op::Flush),
        2 => Just(Op::Compact),
        1 => Just(Op::Restart),
        1 => any::<u64>().prop_map(Op::Crash),
    ]
}

/// What the model holds for a key.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Live(Bytes),
    Tomb(Bytes),
    /// A tombstone compaction may drop: reads as that tombstone or as absent.
    ExpiredTomb(Bytes),
}

fn cfg() -> EngineConfig {
    EngineConfig {
        memtable_bytes: 2 << 10,
        segment_bytes: 8 << 10,
        max_value_bytes: 1024,
        tombstone_grace_ms: 60_000,
        compaction: CompactionPolicy {
            base_tier_bytes: 8 << 10,
            min_threshold: 2,
            max_tables: 4,
            ..CompactionPolicy::default()
        },
        ..EngineConfig::new("/m")
    }
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k}").into_bytes()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn check(
    got: Option<&tern::storage::entry::Stored>,
    want: Option<&Val>,
    ctx: &str,
) -> Result<(), TestCaseError> {
    match (want, got) {
        (None, None) => Ok(()),
        (Some(Val::Live(p)), Some(g)) if g.tombstone_at_ms.is_none() && g.payload == p => Ok(()),
        (Some(Val::Tomb(p)), Some(g)) if g.tombstone_at_ms.is_some() && g.payload == p => Ok(()),
        (Some(Val::ExpiredTomb(_)), None) => Ok(()),
        (Some(Val::ExpiredTomb(p)), Some(g)) if g.tombstone_at_ms.is_some() && g.payload == p => {
            Ok(())
        }
        _ => {
            let short = |b: &Bytes| format!("{} bytes {:?}..", b.len(), &b[..b.len().min(8)]);
            let want = want.map(|v| match v {
                Val::Live(b) => format!("live {}", short(b)),
                Val::Tomb(b) => format!("tombstone {}", short(b)),
                Val::ExpiredTomb(b) => format!("expired tombstone {}", short(b)),
            });
            let got = got.map(|g| {
                format!(
                    "seqno {} tomb {:?} {}",
                    g.seqno,
                    g.tombstone_at_ms,
                    short(&g.payload)
                )
            });
            Err(TestCaseError::fail(format!(
                "{ctx}: want {want:?}, got {got:?}"
            )))
        }
    }
}

async fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut disk = SimDisk::new();
    let mut e = Engine::open(disk.clone(), cfg()).await.unwrap();
    let mut model: BTreeMap<Vec<u8>, Val> = BTreeMap::new();
    for (i, op) in ops.into_iter().enumerate() {
        let ctx = format!("op {i} {op:?}");
        match op {
            Op::Put(k, len) => {
                let p = Bytes::from(vec![(i % 251) as u8; len as usize]);
                let p2 = p.clone();
                e.update(&key(k), |_| {
                    Ok::<_, Infallible>(Some(NewRecord {
                        payload: p2,
                        tombstone_at_ms: None,
                    }))
                })
                .await
                .unwrap();
                model.insert(key(k), Val::Live(p));
            }
            Op::Delete(k) | Op::DeleteExpired(k) => {
                let expired = matches!(op, Op::DeleteExpired(_));
                let at = if expired { 1 } else { now_ms() };
                let p = Bytes::from(format!("tomb{i}"));
                let p2 = p.clone();
                e.update(&key(k), |_| {
                    Ok::<_, Infallible>(Some(NewRecord {
                        payload: p2,
                        tombstone_at_ms: Some(at),
                    }))
                })
                .await
                .unwrap();
                model.insert(
                    key(k),
                    if expired {
                        Val::ExpiredTomb(p)
                    } else {
                        Val::Tomb(p)
                    },
                );
            }
            Op::Get(k) => {
                let got = e.get(&key(k)).await.unwrap();
                check(got.as_ref(), model.get(&key(k)), &ctx)?;
            }
            Op::Scan(from, n) => {
                let got = e.scan(from..=u64::MAX, n as usize).await.unwrap();
                prop_assert!(
                    got.windows(2)
                        .all(|w| (token(&w[0].0), &w[0].0) < (token(&w[1].0), &w[1].0)),
                    "{ctx}: scan out of order"
                );
                // Expected: model keys with token >= from, in token order; expired tombstones
                // may be missing, so compare on the keys that must be there.
                let mut want: Vec<(u64, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, v)| token(k) >= from && !matches!(v, Val::ExpiredTomb(_)))
                    .map(|(k, _)| (token(k), k.clone()))
                    .collect();
                want.sort();
                let got_keys: Vec<Vec<u8>> = got.iter().map(|(k, _)| k.to_vec()).collect();
                for (k, s) in &got {
                    check(Some(s), model.get(&k.to_vec()), &ctx)?;
                }
                if got.len() < n as usize {
                    for (_, k) in &want {
                        prop_assert!(got_keys.contains(k), "{ctx}: scan misses {k:?}");
                    }
                } else {
                    let last = got.last().map(|(k, _)| (token(k), k.to_vec())).unwrap();
                    for w in want.iter().filter(|w| **w <= last) {
                        prop_assert!(got_keys.contains(&w.1), "{ctx}: scan skipped {:?}", w.1);
                    }
                }
            }
            Op::Flush => e.flush_now().await.unwrap(),
            Op::Compact => {
                e.flush_now().await.unwrap();
                e.compact_now().await.unwrap();
            }
            Op::Restart => {
                e.close().await.unwrap();
                e = Engine::open(disk.clone(), cfg()).await.unwrap();
            }
            Op::Crash(seed) => {
                let crashed = disk.crash(seed);
                drop(e);
                disk = crashed;
                e = Engine::open(disk.clone(), cfg())
                    .await
                    .map_err(|err| TestCaseError::fail(format!("{ctx}: {err}")))?;
            }
        }
    }
    // Final full comparison.
    for k in 0..32u8 {
        let got = e.get(&key(k)).await.unwrap();
        check(got.as_ref(), model.get(&key(k)), &format!("final key{k}"))?;
    }
    e.close().await.unwrap();
    Ok(())
}

#[test]
fn engine_matches_btreemap_model() {
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    // One executor on this thread; proptest drives it case by case (with shrinking).
    let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(0x7e57_0001),
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let strategy = proptest::collection::vec(op(), 1..300);
    if let Err(e) = runner.run(&strategy, |ops| ex.run(run_case(ops))) {
        panic!("{e}");
    }
}
