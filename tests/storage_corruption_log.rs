//! Commit-log corruption on real files (GlommioDisk): one flipped byte in a record before the
//! tail stops the engine's start-up with `StorageError::Corrupt` naming the segment file and
//! the record's offset; with `skip_damaged_segments` it starts (the rest of that segment is
//! skipped); a flipped byte in the tail record is a torn tail: dropped with a warning, and the
//! engine starts with every earlier record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tern::runtime::disk_glommio::GlommioDisk;
use tern::storage::commitlog::record;
use tern::storage::engine::{Engine, EngineConfig, NewRecord};
use tern::storage::error::StorageError;

const N: u32 = 10;

fn cfg(dir: &Path, skip: bool) -> EngineConfig {
    EngineConfig {
        skip_damaged_segments: skip,
        ..EngineConfig::new(dir)
    }
}

fn value(i: u32) -> Bytes {
    Bytes::from(format!("value-{i}-{}", "v".repeat(i as usize * 10)))
}

/// Run `f` on a fresh glommio executor on this thread.
fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(f)
}

/// Write N keys (each acknowledged, so each later record proves the earlier ones durable) and
/// return the log segment path and each record's offset in it.
fn populate(dir: &Path) -> (PathBuf, Vec<u64>) {
    let d = dir.to_path_buf();
    run(async move {
        let e = Engine::open(GlommioDisk::new(), cfg(&d, false))
            .await
            .unwrap();
        for i in 0..N {
            let v = value(i);
            e.update(format!("k{i}").as_bytes(), |_| {
                Ok::<_, Infallible>(Some(NewRecord {
                    payload: v,
                    tombstone_at_ms: None,
                }))
            })
            .await
            .unwrap();
        }
        e.close().await.unwrap();
    });
    let log_dir = dir.join("log");
    let seg = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("log-"))
        .unwrap();
    // Record offsets from the format: each record is header + engine payload, 8-aligned.
    let data = std::fs::read(&seg).unwrap();
    let mut offs = Vec::new();
    let mut at = 0usize;
    for _ in 0..N {
        offs.push(at as u64);
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        at += record::encoded_len(len);
    }
    (seg, offs)
}

fn flip(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).unwrap();
    data[offset as usize] ^= 0x20;
    std::fs::write(path, data).unwrap();
}

fn open_and_count(dir: &Path, skip: bool) -> Result<usize, StorageError> {
    let d = dir.to_path_buf();
    run(async move {
        let e = Engine::open(GlommioDisk::new(), cfg(&d, skip)).await?;
        let mut n = 0;
        for i in 0..N {
            if let Some(s) = e.get(format!("k{i}").as_bytes()).await? {
                assert_eq!(s.payload, value(i), "served a wrong value");
                n += 1;
            }
        }
        e.close().await?;
        Ok(n)
    })
}

fn tmp(tag: &str) -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("tern-logcorrupt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn flipped_byte_before_the_tail_stops_startup_and_skip_flag_starts() {
    let dir = tmp("mid");
    let (seg, offs) = populate(&dir);
    // A payload byte of record 4 (of 10).
    flip(&seg, offs[3] + record::HEADER as u64 + 2);
    match open_and_count(&dir, false) {
        Err(StorageError::Corrupt { path, offset, what }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, offs[3]);
            assert!(what.contains("skip_damaged_segments"), "{what}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // With the skip flag the engine starts with the records before the damage.
    assert_eq!(open_and_count(&dir, true).unwrap(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flipped_byte_in_the_tail_record_is_dropped_as_a_torn_tail() {
    let dir = tmp("tail");
    let (seg, offs) = populate(&dir);
    flip(&seg, offs[N as usize - 1] + record::HEADER as u64 + 1);
    assert_eq!(open_and_count(&dir, false).unwrap(), N as usize - 1);
    let _ = std::fs::remove_dir_all(&dir);
}
