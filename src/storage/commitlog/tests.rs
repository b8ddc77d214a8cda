#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::runtime::disk_sim::{block_on, SimDisk};

fn cfg(seg: u64) -> LogConfig {
    LogConfig {
        segment_bytes: seg,
        max_record_bytes: 2000,
        ..LogConfig::new("/db/log")
    }
}

fn payload(i: u64) -> Vec<u8> {
    let n = 1 + (i * 37 % 300) as usize;
    (0..n).map(|j| (i as usize * 31 + j) as u8).collect()
}

type Replayed = Vec<(u64, Vec<u8>)>;

fn open(
    disk: &SimDisk,
    c: LogConfig,
) -> Result<(CommitLog<SimDisk>, RecoveryReport, Replayed), StorageError> {
    block_on(async {
        let mut got = Vec::new();
        let (log, rep) = CommitLog::open(Rc::new(disk.clone()), c, |lsn, p| {
            got.push((lsn, p.to_vec()));
            Ok(())
        })
        .await?;
        Ok((log, rep, got))
    })
    .unwrap()
}

#[test]
fn replays_in_order_across_rotations_and_restarts() {
    let disk = SimDisk::new();
    let (log, rep, got) = open(&disk, cfg(16384)).unwrap();
    assert_eq!(rep.records, 0);
    assert!(got.is_empty());
    block_on(async {
        for i in 1..=200u64 {
            let lsn = log.append(&payload(i)).await.unwrap();
            assert_eq!(lsn, i);
            if i % 7 == 0 {
                log.wait_durable(lsn).await.unwrap();
            }
        }
        log.close().await.unwrap();
    })
    .unwrap();
    assert!(log.stats().rotations >= 2, "{:?}", log.stats());
    let (log2, rep, got) = open(&disk, cfg(16384)).unwrap();
    assert_eq!(rep.torn_tails, 0);
    assert_eq!(got.len(), 200);
    for (i, (lsn, p)) in got.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(p, &payload(i as u64 + 1));
    }
    // New appends continue the LSN sequence in a new segment.
    let lsn = block_on(async {
        let l = log2.append(b"more").await.unwrap();
        log2.wait_durable(l).await.unwrap();
        l
    })
    .unwrap();
    assert_eq!(lsn, 201);
    let (_, _, got) = open(&disk, cfg(16384)).unwrap();
    assert_eq!(got.last().unwrap(), &(201, b"more".to_vec()));
}

#[test]
fn retired_segments_are_recycled_without_resurrecting_old_records() {
    let disk = SimDisk::new();
    let (log, _, _) = open(&disk, cfg(8192)).unwrap();
    block_on(async {
        for i in 1..=60u64 {
            let l = log.append(&payload(i)).await.unwrap();
            log.wait_durable(l).await.unwrap();
        }
        let retired = log.retire_upto(50).await.unwrap();
        assert!(retired >= 1);
        for i in 61..=120u64 {
            let l = log.append(&payload(i)).await.unwrap();
            log.wait_durable(l).await.unwrap();
        }
    })
    .unwrap();
    assert!(log.stats().recycled >= 1, "{:?}", log.stats());
    // No clean close: recover from a crash state where everything synced survives.
    let crashed = disk.crash(0);
    let (_, _, got) = open(&crashed, cfg(8192)).unwrap();
    let lsns: Vec<u64> = got.iter().map(|r| r.0).collect();
    assert!(lsns.windows(2).all(|w| w[1] == w[0] + 1), "{lsns:?}");
    assert_eq!(*lsns.last().unwrap(), 120);
    assert!(lsns[0] <= 51);
    for (l, p) in &got {
        assert_eq!(p, &payload(*l));
    }
}

#[test]
fn acknowledged_records_survive_every_crash_state() {
    for seed in 0..200u64 {
        let disk = SimDisk::new();
        let (log, _, _) = open(&disk, cfg(8192)).unwrap();
        let mut acked = 0;
        block_on(async {
            for i in 1..=40u64 {
                let l = log.append(&payload(i)).await.unwrap();
                if i % 3 != 0 {
                    log.wait_durable(l).await.unwrap();
                    acked = l;
                }
            }
        })
        .unwrap();
        let crashed = disk.crash(seed);
        let (_, _, got) = open(&crashed, cfg(8192)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            got.len() as u64 >= acked,
            "seed {seed}: {} < {acked}",
            got.len()
        );
        for (i, (l, p)) in got.iter().enumerate() {
            assert_eq!(*l, i as u64 + 1);
            assert_eq!(p, &payload(*l));
        }
    }
}

#[test]
fn flipped_byte_before_tail_stops_startup_unless_skipping() {
    let disk = SimDisk::new();
    let (log, _, _) = open(&disk, cfg(1 << 20)).unwrap();
    block_on(async {
        for i in 1..=10u64 {
            let l = log.append(&payload(i)).await.unwrap();
            log.wait_durable(l).await.unwrap();
        }
    })
    .unwrap();
    let seg = disk
        .paths()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("log-"))
        .unwrap();
    // Flip a payload byte of record 3.
    let off3: usize = (1..3).map(|i| record::encoded_len(payload(i).len())).sum();
    assert!(disk.corrupt(&seg, off3 + record::HEADER + 1, 0x10));
    match open(&disk, cfg(1 << 20)) {
        Err(StorageError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, off3 as u64);
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("corruption went unnoticed"),
    }
    let skip = LogConfig {
        skip_damaged_segments: true,
        ..cfg(1 << 20)
    };
    let (_, rep, got) = open(&disk, skip).unwrap();
    assert_eq!(rep.skipped_damaged, 1);
    assert_eq!(got.len(), 2);
}

#[test]
fn flipped_byte_in_tail_record_is_truncated() {
    let disk = SimDisk::new();
    let (log, _, _) = open(&disk, cfg(1 << 20)).unwrap();
    block_on(async {
        for i in 1..=5u64 {
            let l = log.append(&payload(i)).await.unwrap();
            log.wait_durable(l).await.unwrap();
        }
    })
    .unwrap();
    let seg = disk
        .paths()
        .into_iter()
        .find(|p| p.to_string_lossy().contains("log-"))
        .unwrap();
    let off5: usize = (1..5).map(|i| record::encoded_len(payload(i).len())).sum();
    assert!(disk.corrupt(&seg, off5 + record::HEADER, 0x01));
    let (_, rep, got) = open(&disk, cfg(1 << 20)).unwrap();
    assert_eq!(rep.torn_tails, 1);
    assert_eq!(got.len(), 4);
}

#[test]
fn backpressure_flushes_when_too_much_is_buffered() {
    let disk = SimDisk::new();
    let c = LogConfig {
        max_pending_bytes: 4096,
        ..cfg(1 << 16)
    };
    let (log, _, _) = open(&disk, c.clone()).unwrap();
    block_on(async {
        for i in 1..=100u64 {
            log.append(&payload(i)).await.unwrap();
            assert!(log.st.borrow().pending_bytes < 4096 + 400);
        }
    })
    .unwrap();
    assert!(log.durable_lsn() > 50);
}

#[test]
fn disk_full_poisons_writes_with_disk_full() {
    let disk = SimDisk::new();
    disk.set_space_limit(Some(10_000));
    let (log, _, _) = open(&disk, cfg(1 << 16)).unwrap();
    let r = block_on(async {
        let l = log.append(b"x").await.unwrap();
        log.wait_durable(l).await
    })
    .unwrap();
    assert!(matches!(r, Err(StorageError::DiskFull { .. })), "{r:?}");
    let r = block_on(log.append(b"y")).unwrap();
    assert!(matches!(r, Err(StorageError::DiskFull { .. })));
}

#[test]
fn group_commit_shares_syncs_between_concurrent_writers() {
    glommio::LocalExecutorBuilder::default()
        .spawn(|| async {
            let disk = SimDisk::new();
            // Each disk operation yields once, as real I/O would, so writers pile up.
            disk.set_yield_every(1);
            let (log, _) = CommitLog::open(Rc::new(disk.clone()), cfg(1 << 20), |_, _| Ok(()))
                .await
                .unwrap();
            let log = Rc::new(log);
            let mut tasks = Vec::new();
            for w in 0..32u64 {
                let log = log.clone();
                tasks.push(glommio::spawn_local(async move {
                    for i in 0..20u64 {
                        let l = log.append(&payload(w * 100 + i)).await.unwrap();
                        log.wait_durable(l).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            let s = log.stats();
            assert_eq!(s.appends, 640);
            assert_eq!(s.durable_lsn, 640);
            // One writer alone would need 640 syncs.
            assert!(s.syncs < 100, "{s:?}");
        })
        .unwrap()
        .join()
        .unwrap();
}
