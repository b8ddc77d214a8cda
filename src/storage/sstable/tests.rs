//! SSTable tests: format roundtrip, proptests against a BTreeMap model, token-range scans,
//! corruption detection and the block cache, all on the in-memory test disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::runtime::disk::ALIGN;
use crate::storage::entry::{InternalKey, Stored};
use crate::storage::error::StorageError;
use crate::storage::testdisk::{block_on, MemDisk};

fn ik(s: &str) -> InternalKey {
    InternalKey::new(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

fn model(n: usize, payload: usize) -> BTreeMap<InternalKey, Stored> {
    (0..n)
        .map(|i| {
            let v = Stored {
                seqno: i as u64 + 1,
                tombstone_at_ms: (i % 7 == 0).then_some(i as u64 * 10),
                payload: Bytes::from(vec![(i % 251) as u8; payload + i % 13]),
            };
            (ik(&format!("key-{i}")), v)
        })
        .collect()
}

async fn write(
    disk: &MemDisk,
    path: &Path,
    m: &BTreeMap<InternalKey, Stored>,
    opts: &SstOptions,
) -> SstMeta {
    let mut w = SstWriter::create(disk, path, m.len(), opts).await.unwrap();
    for (k, v) in m {
        w.add(k, v).await.unwrap();
    }
    w.finish().await.unwrap()
}

async fn collect<F: crate::runtime::disk::DiskFile>(
    mut s: SstScan<'_, F>,
) -> Vec<(InternalKey, Stored)> {
    let mut out = Vec::new();
    while let Some(e) = s.next().await.unwrap() {
        out.push(e);
    }
    out
}

#[test]
fn roundtrip_get_scan_meta() {
    block_on(async {
        let disk = MemDisk::default();
        let path = Path::new("/d/1.sst");
        let m = model(3000, 40);
        let opts = SstOptions {
            readahead: 16 << 10,
            ..SstOptions::default()
        };
        let meta = write(&disk, path, &m, &opts).await;
        assert_eq!(meta.entry_count, 3000);
        assert_eq!(
            meta.tombstone_count,
            m.values().filter(|v| v.tombstone_at_ms.is_some()).count() as u64
        );
        assert_eq!((meta.min_seqno, meta.max_seqno), (1, 3000));
        assert_eq!(meta.min_token, m.keys().next().unwrap().token());
        assert_eq!(meta.max_token, m.keys().last().unwrap().token());
        assert_eq!(meta.file_size % ALIGN, 0);
        assert_eq!(disk.bytes(path).unwrap().len() as u64, meta.file_size);

        let r = SstReader::open(&disk, path, &opts).await.unwrap();
        assert_eq!(r.meta(), meta);
        assert!(
            r.index.len() > 10,
            "expected many ~4 KiB blocks, got {}",
            r.index.len()
        );
        for (k, v) in m.iter().step_by(17) {
            assert_eq!(r.get(k).await.unwrap().as_ref(), Some(v));
        }
        for i in 0..2000 {
            assert_eq!(r.get(&ik(&format!("absent-{i}"))).await.unwrap(), None);
        }
        let st = r.stats();
        assert!(
            st.bloom_skips >= 1900,
            "bloom should skip most absent keys: {st:?}"
        );
        let all = collect(r.iter()).await;
        assert_eq!(all, m.into_iter().collect::<Vec<_>>());
    });
}

#[test]
fn empty_table_and_single_huge_entry() {
    block_on(async {
        let disk = MemDisk::default();
        let opts = SstOptions::default();
        let p = Path::new("/d/e.sst");
        let meta = write(&disk, p, &BTreeMap::new(), &opts).await;
        assert_eq!(meta.entry_count, 0);
        let r = SstReader::open(&disk, p, &opts).await.unwrap();
        assert_eq!(r.get(&ik("x")).await.unwrap(), None);
        assert!(collect(r.iter()).await.is_empty());

        let mut m = BTreeMap::new();
        m.insert(
            ik("big"),
            Stored {
                seqno: 5,
                tombstone_at_ms: None,
                payload: Bytes::from(vec![7u8; 1 << 20]),
            },
        );
        m.insert(
            ik("small"),
            Stored {
                seqno: 6,
                tombstone_at_ms: None,
                payload: Bytes::from_static(b"s"),
            },
        );
        let p = Path::new("/d/big.sst");
        write(&disk, p, &m, &opts).await;
        let r = SstReader::open(&disk, p, &opts).await.unwrap();
        for (k, v) in &m {
            assert_eq!(r.get(k).await.unwrap().as_ref(), Some(v));
        }
        assert_eq!(collect(r.iter()).await.len(), 2);
    });
}

#[test]
fn value_too_large_is_refused() {
    block_on(async {
        let disk = MemDisk::default();
        let mut w = SstWriter::create(&disk, Path::new("/d/x.sst"), 1, &SstOptions::default())
            .await
            .unwrap();
        let v = Stored {
            seqno: 1,
            tombstone_at_ms: None,
            payload: Bytes::from(vec![0u8; MAX_PAYLOAD_LEN + 1]),
        };
        assert!(matches!(
            w.add(&ik("k"), &v).await,
            Err(StorageError::ValueTooLarge { .. })
        ));
    });
}

/// Flip one byte in a data block, in the index, in the filter and in the footer: every case
/// is `Corrupt` naming the file and the offset of the damaged region, never data.
#[test]
fn flipped_bytes_are_reported_as_corrupt() {
    block_on(async {
        let opts = SstOptions::default();
        let m = model(500, 30);
        let path = Path::new("/d/c.sst");
        let clean = MemDisk::default();
        write(&clean, path, &m, &opts).await;
        let r = SstReader::open(&clean, path, &opts).await.unwrap();
        let f = r.footer.clone();
        let blk = r.index[3].clone();
        let size = r.file_size;

        // Data block: open succeeds (blocks are checked on read), get/scan of that block fail.
        let disk = MemDisk::default();
        write(&disk, path, &m, &opts).await;
        disk.flip_byte(path, (blk.offset + 10) as usize);
        let r = SstReader::open(&disk, path, &opts).await.unwrap();
        let e = r.get(&blk.first).await.unwrap_err();
        match &e {
            StorageError::Corrupt {
                path: p, offset, ..
            } => {
                assert_eq!((p.as_path(), *offset), (path, blk.offset));
            }
            other => panic!("expected Corrupt, got {other}"),
        }
        let mut s = r.iter();
        let err = loop {
            match s.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("scan served a corrupt block"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, StorageError::Corrupt { offset, .. } if offset == blk.offset));

        for (at, want_off) in [
            (f.index_off + 5, f.index_off),
            (f.filter_off + 20, f.filter_off),
            (size - 50, size - FOOTER_LEN_U64),
        ] {
            let disk = MemDisk::default();
            write(&disk, path, &m, &opts).await;
            disk.flip_byte(path, at as usize);
            let e = SstReader::open(&disk, path, &opts)
                .await
                .err()
                .expect("must fail");
            match e {
                StorageError::Corrupt {
                    path: p,
                    offset,
                    what,
                } => {
                    assert_eq!(p, path);
                    assert_eq!(offset, want_off, "{what}");
                }
                other => panic!("expected Corrupt, got {other}"),
            }
        }
    });
}

const FOOTER_LEN_U64: u64 = super::format::FOOTER_LEN as u64;

#[test]
fn truncated_file_is_corrupt() {
    block_on(async {
        let disk = MemDisk::default();
        let path = Path::new("/d/t.sst");
        let opts = SstOptions::default();
        write(&disk, path, &model(300, 50), &opts).await;
        let f = disk.bytes(path).unwrap();
        let t = Path::new("/d/t2.sst");
        let w = crate::runtime::disk::Disk::create(&disk, t).await.unwrap();
        crate::runtime::disk::DiskFile::write_at(&w, &f[..f.len() - ALIGN as usize], 0)
            .await
            .unwrap();
        assert!(SstReader::open(&disk, t, &opts)
            .await
            .err()
            .unwrap()
            .is_corrupt());
    });
}

fn arb_entries() -> impl Strategy<Value = BTreeMap<InternalKey, Stored>> {
    proptest::collection::btree_map(
        proptest::collection::vec(any::<u8>(), 0..24),
        (
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            proptest::collection::vec(any::<u8>(), 0..300),
        ),
        0..400,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, (seqno, tombstone_at_ms, p))| {
                (
                    InternalKey::new(k).unwrap(),
                    Stored {
                        seqno,
                        tombstone_at_ms,
                        payload: Bytes::from(p),
                    },
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random sorted entries, random block size: every key reads back, every token range scan
    /// equals the model's range.
    #[test]
    fn prop_roundtrip_and_scans(m in arb_entries(), block_size in 64usize..6000,
                                ra in 1usize..40_000, ranges in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..6)) {
        block_on(async {
            let disk = MemDisk::default();
            let path = Path::new("/p/x.sst");
            let opts = SstOptions { block_size, readahead: ra, write_buffer: 8192, ..SstOptions::default() };
            write(&disk, path, &m, &opts).await;
            let r = SstReader::open(&disk, path, &opts).await.unwrap();
            for (k, v) in &m {
                let got = r.get(k).await.unwrap();
                prop_assert_eq!(got.as_ref(), Some(v));
            }
            prop_assert_eq!(collect(r.iter()).await, m.clone().into_iter().collect::<Vec<_>>());
            let tokens: Vec<u64> = m.keys().map(|k| k.token()).collect();
            let mut bounds: Vec<(u64, u64)> = ranges;
            // Also ranges that start/end exactly on stored tokens.
            if tokens.len() >= 2 {
                bounds.push((tokens[tokens.len() / 3], tokens[tokens.len() * 2 / 3]));
            }
            for (a, b) in bounds {
                let (lo, hi) = (a.min(b), a.max(b));
                let want: Vec<_> = m.iter().filter(|(k, _)| (lo..=hi).contains(&k.token()))
                    .map(|(k, v)| (k.clone(), v.clone())).collect();
                prop_assert_eq!(collect(r.scan(lo..=hi)).await, want.clone());
                let want_ex: Vec<_> = want.into_iter().filter(|(k, _)| k.token() != hi).collect();
                prop_assert_eq!(collect(r.scan(lo..hi)).await, want_ex);
            }
            Ok(())
        })?;
    }
}

#[test]
fn block_cache_serves_repeat_reads_without_io() {
    block_on(async {
        let disk = MemDisk::default();
        let path = Path::new("/d/cache.sst");
        let m = model(2000, 40);
        let opts = SstOptions::default();
        write(&disk, path, &m, &opts).await;
        let cache = std::rc::Rc::new(BlockCache::new(1 << 20));
        let r = SstReader::open(&disk, path, &opts)
            .await
            .unwrap()
            .with_cache(cache.clone(), 7);
        let keys: Vec<_> = m.iter().step_by(50).collect();
        for (k, v) in &keys {
            assert_eq!(r.get(k).await.unwrap().as_ref(), Some(*v));
        }
        let reads = r.stats().block_reads;
        assert!(reads > 0);
        for (k, v) in &keys {
            assert_eq!(r.get(k).await.unwrap().as_ref(), Some(*v));
        }
        assert_eq!(
            r.stats().block_reads,
            reads,
            "second pass must come from the cache"
        );
        assert!(cache.stats().hits >= keys.len() as u64);
        cache.evict_table(7);
        assert_eq!(cache.stats().blocks, 0);
    });
}

#[test]
fn corrupt_block_is_never_cached() {
    block_on(async {
        let disk = MemDisk::default();
        let path = Path::new("/d/cc.sst");
        let m = model(200, 40);
        let opts = SstOptions::default();
        write(&disk, path, &m, &opts).await;
        disk.flip_byte(path, 20);
        let cache = std::rc::Rc::new(BlockCache::new(1 << 20));
        let r = SstReader::open(&disk, path, &opts)
            .await
            .unwrap()
            .with_cache(cache.clone(), 1);
        let first = m.keys().next().unwrap();
        assert!(r.get(first).await.unwrap_err().is_corrupt());
        assert!(r.get(first).await.unwrap_err().is_corrupt());
        assert_eq!(cache.stats().blocks, 0);
    });
}

/// Blocks of small entries never straddle a page (one O_DIRECT page per point read), also after
/// an occasional large entry left the next block starting mid-page; the padding costs little.
#[test]
fn small_entry_blocks_fit_in_one_page() {
    block_on(async {
        let disk = MemDisk::default();
        let path = Path::new("/d/al.sst");
        let mut m = model(5000, 150);
        for (i, v) in m.values_mut().enumerate() {
            if i % 97 == 0 {
                v.payload = Bytes::from(vec![1u8; 5000 + i % 1000]);
            }
        }
        let opts = SstOptions::default();
        write(&disk, path, &m, &opts).await;
        let r = SstReader::open(&disk, path, &opts).await.unwrap();
        let mut data = 0u64;
        let mut mid_page_starts = 0;
        for b in &r.index {
            let end = b.offset + u64::from(b.len) - 1;
            if u64::from(b.len) <= ALIGN {
                assert_eq!(
                    b.offset / ALIGN,
                    end / ALIGN,
                    "block at {} straddles a page",
                    b.offset
                );
            }
            mid_page_starts += usize::from(b.offset % ALIGN != 0);
            data += u64::from(b.len);
        }
        assert!(mid_page_starts > 10, "the case under test did not occur");
        let region = r.footer.data_len;
        // About half a small entry (~190 B here) per 4 KiB page.
        assert!(
            (region - data) * 100 < region * 5,
            "padding {} of {region} bytes",
            region - data
        );
        // A point read stays within one page (read from the page start up to the block end).
        let before = r.stats().bytes_read;
        let (k, v) = m.iter().nth(2501).unwrap();
        assert_eq!(r.get(k).await.unwrap().as_ref(), Some(v));
        let read = r.stats().bytes_read - before;
        assert!(read > 0 && read <= ALIGN, "read {read} bytes");
    });
}
