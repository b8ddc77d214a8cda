//! Compaction tests: the pure `pick` policy (cases and invariants) and `run` on real tables,
//! including the tombstone-resurrection hazard the drop rule exists for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::storage::entry::{InternalKey, Stored};
use crate::storage::manifest::sst_file_name;
use crate::storage::merge::{AnySource, IterSource};
use crate::storage::testdisk::{block_on, MemDisk};

const MIB: u64 = 1 << 20;

/// A manifest with tables of the given sizes, created oldest first (seqno ranges disjoint).
fn manifest_of(sizes: &[u64]) -> Manifest {
    let mut m = Manifest::new();
    for (i, &size) in sizes.iter().enumerate() {
        let id = m.alloc_table_id();
        m.tables.push(TableEntry {
            id,
            tier: 0,
            file_name: sst_file_name(id),
            meta: SstMeta {
                file_size: size,
                entry_count: 1,
                tombstone_count: 0,
                min_token: 0,
                max_token: u64::MAX,
                min_seqno: i as u64 * 10,
                max_seqno: i as u64 * 10 + 9,
            },
        });
    }
    // Manifest order must not matter: pick sorts by age.
    m.tables.reverse();
    m
}

#[test]
fn tiers() {
    let p = CompactionPolicy::default();
    assert_eq!(tier_of(0, &p), 0);
    assert_eq!(tier_of(8 * MIB - 1, &p), 0);
    assert_eq!(tier_of(8 * MIB, &p), 1);
    assert_eq!(tier_of(32 * MIB, &p), 2);
    assert!(tier_of(u64::MAX, &p) < 64);
}

#[test]
fn pick_policy_cases() {
    let p = CompactionPolicy::default();
    assert_eq!(pick(&Manifest::new(), &p), None);
    assert_eq!(pick(&manifest_of(&[MIB; 3]), &p), None);

    let t = pick(&manifest_of(&[MIB; 4]), &p).unwrap();
    assert_eq!(t.inputs, vec![0, 1, 2, 3]);
    assert!(t.drop_tombstones);
    assert_eq!(t.reason, CompactionReason::Tier(0));
    assert_eq!(t.output_tier, 0);

    // An older big table is not in the run: tombstones must be kept.
    let t = pick(&manifest_of(&[20 * MIB, MIB, MIB, MIB, MIB]), &p).unwrap();
    assert_eq!(t.inputs, vec![1, 2, 3, 4]);
    assert!(!t.drop_tombstones);

    // Runs are age-contiguous: a different tier in the middle splits them.
    assert_eq!(
        pick(&manifest_of(&[MIB, MIB, 20 * MIB, MIB, MIB]), &p),
        None
    );

    // Lower tier preferred over an older higher-tier run.
    let t = pick(
        &manifest_of(&[20 * MIB, 20 * MIB, 20 * MIB, 20 * MIB, MIB, MIB, MIB, MIB]),
        &p,
    )
    .unwrap();
    assert_eq!(t.inputs, vec![4, 5, 6, 7]);
    assert_eq!(t.reason, CompactionReason::Tier(0));

    // Long run: capped at max_threshold, oldest first.
    let p2 = CompactionPolicy {
        max_threshold: 5,
        ..p.clone()
    };
    assert_eq!(
        pick(&manifest_of(&[MIB; 8]), &p2).unwrap().inputs,
        vec![0, 1, 2, 3, 4]
    );

    // Table cap: alternating tiers never form a run, but 17 tables merge all.
    let sizes: Vec<u64> = (0..17)
        .map(|i| if i % 2 == 0 { MIB } else { 20 * MIB })
        .collect();
    assert_eq!(pick(&manifest_of(&sizes[..16]), &p), None);
    let t = pick(&manifest_of(&sizes), &p).unwrap();
    assert_eq!(t.reason, CompactionReason::TableCap);
    assert_eq!(t.inputs, (0..17).collect::<Vec<u64>>());
    assert!(t.drop_tombstones);
}

proptest! {
    /// Whatever the sizes: the picked inputs are age-contiguous, of one tier (or all tables),
    /// `drop_tombstones` iff the oldest table is included, and the cap always triggers.
    #[test]
    fn pick_invariants(sizes in proptest::collection::vec(0u64..200 * MIB, 0..30)) {
        let p = CompactionPolicy::default();
        let m = manifest_of(&sizes);
        match pick(&m, &p) {
            None => {
                prop_assert!(sizes.len() <= p.max_tables);
                let tiers: Vec<u32> = sizes.iter().map(|&s| tier_of(s, &p)).collect();
                // No run of >= min_threshold equal tiers exists.
                prop_assert!(tiers.windows(p.min_threshold).all(|w| w.iter().any(|&t| t != w[0])));
            }
            Some(t) => {
                let first = t.inputs[0];
                prop_assert_eq!(t.inputs.clone(), (first..first + t.inputs.len() as u64).collect::<Vec<_>>());
                prop_assert_eq!(t.drop_tombstones, first == 0);
                match t.reason {
                    CompactionReason::TableCap => prop_assert_eq!(t.inputs.len(), sizes.len()),
                    CompactionReason::Tier(tier) => {
                        prop_assert!(t.inputs.len() >= p.min_threshold && t.inputs.len() <= p.max_threshold);
                        for id in &t.inputs {
                            prop_assert_eq!(tier_of(sizes[*id as usize], &p), tier);
                        }
                    }
                }
            }
        }
    }
}

fn put(seqno: u64, p: &str) -> Stored {
    Stored {
        seqno,
        tombstone_at_ms: None,
        payload: Bytes::copy_from_slice(p.as_bytes()),
    }
}
fn del(seqno: u64, at_ms: u64) -> Stored {
    Stored {
        seqno,
        tombstone_at_ms: Some(at_ms),
        payload: Bytes::from_static(b"tomb"),
    }
}
fn k(s: &str) -> InternalKey {
    InternalKey::new(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

async fn write_table(disk: &MemDisk, name: &str, rows: &[(InternalKey, Stored)]) -> PathBuf {
    let p = PathBuf::from(format!("/c/{name}"));
    let mut sorted = rows.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = SstWriter::create(disk, &p, rows.len(), &SstOptions::default())
        .await
        .unwrap();
    for (k, v) in &sorted {
        w.add(k, v).await.unwrap();
    }
    w.finish().await.unwrap();
    p
}

async fn read_all(disk: &MemDisk, p: &Path) -> BTreeMap<InternalKey, Stored> {
    let r = SstReader::open(disk, p, &SstOptions::default())
        .await
        .unwrap();
    let mut s = r.iter();
    let mut out = BTreeMap::new();
    while let Some((k, v)) = s.next().await.unwrap() {
        out.insert(k, v);
    }
    out
}

const GRACE: u64 = 1_000;
const NOW: u64 = 10_000;

#[test]
fn run_merges_drops_shadowed_and_expired_tombstones() {
    block_on(async {
        let disk = MemDisk::default();
        let opts = SstOptions::default();
        // Oldest to newest.
        let t0 = write_table(
            &disk,
            "0.sst",
            &[
                (k("a"), put(1, "a1")),
                (k("b"), put(2, "b1")),
                (k("c"), put(3, "c1")),
            ],
        )
        .await;
        let t1 = write_table(
            &disk,
            "1.sst",
            &[(k("a"), put(4, "a2")), (k("b"), del(5, 100))],
        )
        .await;
        let t2 = write_table(
            &disk,
            "2.sst",
            &[(k("c"), del(6, NOW - 10)), (k("d"), del(7, 50))],
        )
        .await;
        let readers = [
            SstReader::open(&disk, &t0, &opts).await.unwrap(),
            SstReader::open(&disk, &t1, &opts).await.unwrap(),
            SstReader::open(&disk, &t2, &opts).await.unwrap(),
        ];
        let refs: Vec<&SstReader<_>> = readers.iter().collect();
        let task = CompactionTask {
            inputs: vec![0, 1, 2],
            drop_tombstones: true,
            output_tier: 0,
            reason: CompactionReason::Tier(0),
        };
        let out = run(
            &disk,
            &task,
            &refs,
            Path::new("/c/out.sst"),
            NOW,
            GRACE,
            &opts,
        )
        .await
        .unwrap();
        assert_eq!(out.entries_in, 7);
        assert_eq!(out.tombstones_dropped, 2, "b and d are expired");
        assert_eq!(out.shadowed_dropped, 3, "a1, b1, c1");
        let got = read_all(&disk, Path::new("/c/out.sst")).await;
        let want: BTreeMap<_, _> = [(k("a"), put(4, "a2")), (k("c"), del(6, NOW - 10))]
            .into_iter()
            .collect();
        assert_eq!(got, want);
        assert_eq!(out.meta.entry_count, 2);
        assert_eq!(out.meta.tombstone_count, 1);
    });
}

/// The resurrection hazard: compacting only the newer tables must keep an expired tombstone,
/// or the older table's value would come back on reads.
#[test]
fn tombstones_kept_when_older_tables_are_excluded() {
    block_on(async {
        let disk = MemDisk::default();
        let opts = SstOptions::default();
        let old = write_table(&disk, "old.sst", &[(k("x"), put(1, "alive-once"))]).await;
        let t1 = write_table(&disk, "t1.sst", &[(k("x"), del(2, 100))]).await;
        let t2 = write_table(&disk, "t2.sst", &[(k("y"), put(3, "y"))]).await;
        let r1 = SstReader::open(&disk, &t1, &opts).await.unwrap();
        let r2 = SstReader::open(&disk, &t2, &opts).await.unwrap();
        let m = manifest_of(&[MIB * 20, MIB, MIB]);
        let mut task = pick(
            &m,
            &CompactionPolicy {
                min_threshold: 2,
                ..CompactionPolicy::default()
            },
        )
        .unwrap();
        assert_eq!(task.inputs, vec![1, 2]);
        assert!(!task.drop_tombstones);
        let out_p = Path::new("/c/o.sst");
        run(&disk, &task, &[&r1, &r2], out_p, NOW, GRACE, &opts)
            .await
            .unwrap();

        // A read merged over the output and the untouched old table still sees the delete.
        let ro = SstReader::open(&disk, out_p, &opts).await.unwrap();
        let rold = SstReader::open(&disk, &old, &opts).await.unwrap();
        let mut merged = MergeIter::new(vec![
            AnySource::<_, std::vec::IntoIter<(InternalKey, Stored)>>::Sst(ro.iter()),
            AnySource::Sst(rold.iter()),
        ]);
        let first = merged.next().await.unwrap().unwrap();
        let second = merged.next().await.unwrap().unwrap();
        let x = [first, second]
            .into_iter()
            .find(|(key, _)| *key == k("x"))
            .unwrap();
        assert_eq!(
            x.1.tombstone_at_ms,
            Some(100),
            "the old value must stay deleted"
        );

        // Had the task (wrongly) dropped tombstones, the value would resurrect: the guard matters.
        task.drop_tombstones = true;
        let bad_p = Path::new("/c/bad.sst");
        run(&disk, &task, &[&r1, &r2], bad_p, NOW, GRACE, &opts)
            .await
            .unwrap();
        let rb = SstReader::open(&disk, bad_p, &opts).await.unwrap();
        let mut merged = MergeIter::new(vec![
            AnySource::<_, std::vec::IntoIter<(InternalKey, Stored)>>::Sst(rb.iter()),
            AnySource::Sst(rold.iter()),
            AnySource::Mem(IterSource(Vec::new().into_iter())),
        ]);
        let mut seen_x = None;
        while let Some((key, v)) = merged.next().await.unwrap() {
            if key == k("x") {
                seen_x = Some(v);
            }
        }
        assert_eq!(seen_x.unwrap().payload.as_ref(), b"alive-once");
    });
}

/// Model test across flushes and compactions: random writes go to memtables that are flushed
/// to tables; `pick`/`run` compact them as the engine would (manifest stored and reloaded each
/// time). After every step, a newest-table-first point read (stopping at the first hit) and a
/// merged scan of all tables agree with a BTreeMap model; live tables keep disjoint seqno
/// ranges; an expired tombstone may vanish, but an overwritten or deleted value never returns.
mod model {
    use super::*;
    use crate::storage::memtable::{flush_to_sst, Memtable};

    #[derive(Clone, Debug)]
    struct Op {
        key: u8,
        delete: bool,
    }

    fn ops() -> impl Strategy<Value = Vec<Vec<Op>>> {
        proptest::collection::vec(
            proptest::collection::vec(
                (0u8..40, proptest::bool::weighted(0.3))
                    .prop_map(|(key, delete)| Op { key, delete }),
                1..40,
            ),
            1..14,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]
        #[test]
        fn flush_compact_read_matches_model(batches in ops(), min_threshold in 2usize..5) {
            block_on(async {
                let disk = MemDisk::default();
                let dir = Path::new("/shard");
                let opts = SstOptions { block_size: 256, ..SstOptions::default() };
                let policy = CompactionPolicy {
                    // Tier 0 = one-page tables; padded payloads below make batch tables span
                    // tiers 0..2, so runs that exclude older tables (tombstones kept) occur.
                    base_tier_bytes: 4097,
                    tier_ratio: 2,
                    min_threshold,
                    max_threshold: 6,
                    max_tables: 6,
                };
                let mut manifest = Manifest::new();
                let mut model: BTreeMap<InternalKey, Stored> = BTreeMap::new();
                let mut seqno = 0u64;
                // Time advances one grace period per batch, so early tombstones expire.
                for (b, batch) in batches.iter().enumerate() {
                    let now = (b as u64 + 1) * GRACE;
                    let mut mem = Memtable::new();
                    for op in batch {
                        seqno += 1;
                        let k = InternalKey::new(vec![op.key]).unwrap();
                        let v = Stored {
                            seqno,
                            tombstone_at_ms: op.delete.then_some(now),
                            payload: Bytes::from(format!(
                                "{}@{seqno}{}",
                                op.key,
                                "x".repeat((seqno % 5) as usize * 60)
                            )),
                        };
                        mem.insert(k.clone(), v.clone());
                        model.insert(k, v);
                    }
                    let id = manifest.alloc_table_id();
                    let name = sst_file_name(id);
                    let w = SstWriter::create(&disk, &dir.join(&name), mem.len(), &opts).await.unwrap();
                    let meta = flush_to_sst(&mem, w).await.unwrap();
                    manifest.tables.push(TableEntry { id, tier: tier_of(meta.file_size, &policy), file_name: name, meta });
                    manifest.flushed_upto = seqno;
                    manifest.store(&disk, dir).await.unwrap();

                    let mut rounds = 0;
                    while let Some(task) = pick(&manifest, &policy) {
                        rounds += 1;
                        prop_assert!(rounds <= 8, "compaction does not converge: {:?}", manifest.tables);
                        let mut readers = Vec::new();
                        for id in &task.inputs {
                            let t = manifest.tables.iter().find(|t| t.id == *id).unwrap();
                            readers.push(SstReader::open(&disk, &Manifest::table_path(dir, t), &opts).await.unwrap());
                        }
                        let refs: Vec<&SstReader<_>> = readers.iter().collect();
                        let out_id = manifest.alloc_table_id();
                        let out_name = sst_file_name(out_id);
                        let tmp = dir.join(format!("{out_name}.tmp"));
                        let out = run(&disk, &task, &refs, &tmp, now, GRACE, &opts).await.unwrap();
                        crate::runtime::disk::Disk::rename(&disk, &tmp, &dir.join(&out_name)).await.unwrap();
                        let entry = (out.meta.entry_count > 0).then(|| TableEntry {
                            id: out_id,
                            tier: tier_of(out.meta.file_size, &policy),
                            file_name: out_name.clone(),
                            meta: out.meta.clone(),
                        });
                        manifest.apply_compaction(&task.inputs, entry);
                        manifest.store(&disk, dir).await.unwrap();
                        for id in &task.inputs {
                            crate::runtime::disk::Disk::remove(&disk, &dir.join(sst_file_name(*id))).await.unwrap();
                        }
                    }
                    let loaded = Manifest::load(&disk, dir).await.unwrap().unwrap();
                    prop_assert_eq!(&loaded, &manifest);

                    // Live tables: disjoint seqno ranges (the newest-first read relies on it).
                    let mut ranges: Vec<(u64, u64)> = manifest.tables.iter().map(|t| (t.meta.min_seqno, t.meta.max_seqno)).collect();
                    ranges.sort();
                    prop_assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "overlapping tables: {:?}", ranges);
                    prop_assert!(manifest.tables.len() <= policy.max_tables);

                    let mut by_age: Vec<&TableEntry> = manifest.tables.iter().collect();
                    by_age.sort_by_key(|t| std::cmp::Reverse(t.meta.max_seqno));
                    let mut readers = Vec::new();
                    for t in &by_age {
                        readers.push(SstReader::open(&disk, &Manifest::table_path(dir, t), &opts).await.unwrap());
                    }
                    for key in 0u8..40 {
                        let k = InternalKey::new(vec![key]).unwrap();
                        let mut got = None;
                        for r in &readers {
                            if let Some(v) = r.get(&k).await.unwrap() {
                                got = Some(v);
                                break;
                            }
                        }
                        match (model.get(&k), got) {
                            (None, None) => {}
                            (Some(want), Some(v)) => prop_assert_eq!(want, &v),
                            // Only an expired tombstone may disappear.
                            (Some(want), None) => prop_assert!(want.is_expired_tombstone(now, GRACE), "lost {:?}", want),
                            (None, Some(v)) => prop_assert!(false, "invented {:?}", v),
                        }
                    }
                    let mut merged = MergeIter::new(readers.iter().map(|r| r.iter()).collect());
                    while let Some((k, v)) = merged.next().await.unwrap() {
                        prop_assert_eq!(model.get(&k), Some(&v));
                    }
                }
                Ok(())
            })?;
        }
    }
}
