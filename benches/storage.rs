//! Storage micro-benchmarks: memtable insert, Bloom lookup, SSTable point read (hit, miss,
//! cached hit) and compaction merge throughput, on real files through glommio DMA (O_DIRECT,
//! io_uring).
//!
//! Criterion reports mean/median; for the tail, each SSTable case also times 20k single reads
//! with `Instant` into an HdrHistogram and prints ops/s, p50, p99, p99.9.
//!
//! The `Disk` used here is a minimal inline DmaFile-backed implementation (the production
//! `GlommioDisk` lives on the storage-log branch and was not merged when this was written); it
//! carries the same IOPOLL-probe workaround. Data lives under the cargo target directory (a real
//! file system: O_DIRECT does not work on tmpfs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use glommio::io::{DmaFile, OpenOptions};
use glommio::LocalExecutor;
use hdrhistogram::Histogram;
use tern::runtime::disk::{Disk, DiskFile, ALIGN};
use tern::storage::bloom::Bloom;
use tern::storage::entry::{token, InternalKey, Stored};
use tern::storage::memtable::Memtable;
use tern::storage::sstable::{BlockCache, SstOptions, SstReader, SstWriter};

struct BenchDisk;
struct BenchFile(DmaFile);

fn to_io<T>(e: glommio::GlommioError<T>) -> io::Error {
    io::Error::other(e.to_string())
}

impl Disk for BenchDisk {
    type File = BenchFile;
    async fn create(&self, path: &Path) -> io::Result<BenchFile> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(path)
            .await
            .map_err(to_io)?;
        Ok(BenchFile(f))
    }
    async fn open(&self, path: &Path) -> io::Result<BenchFile> {
        let f = OpenOptions::new()
            .read(true)
            .dma_open(path)
            .await
            .map_err(to_io)?;
        Ok(BenchFile(f))
    }
    async fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    async fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }
    async fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

impl DiskFile for BenchFile {
    async fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut dma = self.0.alloc_dma_buffer(buf.len());
        dma.as_bytes_mut().copy_from_slice(buf);
        let n = self.0.write_at(dma, offset).await.map_err(to_io)?;
        if n != buf.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        Ok(())
    }
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let span = len.div_ceil(ALIGN as usize) * ALIGN as usize;
        let r = self.0.read_at_aligned(offset, span).await.map_err(to_io)?;
        Ok(r[..r.len().min(len)].to_vec())
    }
    async fn sync(&self) -> io::Result<()> {
        self.0.fdatasync().await.map_err(to_io)
    }
    async fn size(&self) -> io::Result<u64> {
        self.0.file_size().await.map_err(to_io)
    }
    async fn preallocate(&self, len: u64) -> io::Result<()> {
        self.0.pre_allocate(len, true).await.map_err(to_io)
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.truncate(len).await.map_err(to_io)
    }
    async fn close(self) -> io::Result<()> {
        self.0.close().await.map_err(to_io)
    }
}

const KEYS: u64 = 200_000;
const PAYLOAD: usize = 100;

fn key(i: u64) -> InternalKey {
    InternalKey::new(format!("user:{i:010}").into_bytes()).unwrap()
}

/// Deterministic pseudo-random index sequence (xorshift), so runs are comparable.
fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    base.join(format!("tern-bench-storage-{}", std::process::id()))
}

/// glommio decides io_uring IOPOLL support from the first DMA file it opens; an empty file
/// fools the probe (reads then fail with EOPNOTSUPP on virtio), so open a non-empty one first.
async fn probe_iopoll(dir: &Path) {
    let p = dir.join("probe");
    std::fs::write(&p, vec![0u8; ALIGN as usize]).unwrap();
    let f = OpenOptions::new().read(true).dma_open(&p).await.unwrap();
    f.close().await.unwrap();
    std::fs::remove_file(&p).unwrap();
}

fn memtable_insert(c: &mut Criterion) {
    let n = 10_000u64;
    let rows: Vec<(InternalKey, Stored)> = (0..n)
        .map(|i| {
            (
                key(i.wrapping_mul(0x9E37_79B9) % 1_000_000),
                Stored {
                    seqno: i,
                    tombstone_at_ms: None,
                    payload: Bytes::from(vec![1u8; PAYLOAD]),
                },
            )
        })
        .collect();
    let mut g = c.benchmark_group("memtable");
    g.throughput(Throughput::Elements(n));
    g.bench_function("insert_10k", |b| {
        b.iter_batched(
            || (Memtable::new(), rows.clone()),
            |(mut m, rows)| {
                for (k, v) in rows {
                    m.insert(k, v);
                }
                m
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bloom_lookup(c: &mut Criterion) {
    let n = 1_000_000u64;
    let mut b = Bloom::new(n as usize, 10);
    for i in 0..n {
        b.insert(token(&i.to_le_bytes()));
    }
    // Half present, half absent.
    let probes: Vec<u64> = (0..4096u64)
        .map(|i| token(&(i * 977 + (i % 2) * n * 2).to_le_bytes()))
        .collect();
    let mut i = 0usize;
    c.bench_function("bloom/lookup_1M_keys", |bch| {
        bch.iter(|| {
            i = (i + 1) % probes.len();
            black_box(b.may_contain(black_box(probes[i])))
        })
    });
}

fn sstable_reads(c: &mut Criterion) {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let ex = LocalExecutor::default();
    let path = dir.join("bench.sst");
    let opts = SstOptions::default();
    let reader = ex.run(async {
        probe_iopoll(&dir).await;
        let mut rows: Vec<InternalKey> = (0..KEYS).map(key).collect();
        rows.sort();
        let mut w = SstWriter::create(&BenchDisk, &path, rows.len(), &opts)
            .await
            .unwrap();
        let payload = Bytes::from(vec![7u8; PAYLOAD]);
        for (i, k) in rows.iter().enumerate() {
            let v = Stored {
                seqno: i as u64,
                tombstone_at_ms: None,
                payload: payload.clone(),
            };
            w.add(k, &v).await.unwrap();
        }
        let meta = w.finish().await.unwrap();
        println!(
            "sstable: {} entries, {} bytes on disk",
            meta.entry_count, meta.file_size
        );
        SstReader::open(&BenchDisk, &path, &opts).await.unwrap()
    });
    let hit_keys: Vec<InternalKey> = {
        let mut s = 0x1234_5678u64;
        (0..4096).map(|_| key(next_rand(&mut s) % KEYS)).collect()
    };
    let miss_keys: Vec<InternalKey> = (0..4096).map(|i| key(KEYS + 1 + i)).collect();
    // The same table behind a block cache large enough for the hot keys' blocks.
    let cache = std::rc::Rc::new(BlockCache::new(64 << 20));
    let cached = ex.run(async {
        let r = SstReader::open(&BenchDisk, &path, &opts)
            .await
            .unwrap()
            .with_cache(cache.clone(), 1);
        for k in &hit_keys {
            r.get(k).await.unwrap();
        }
        r
    });

    let mut g = c.benchmark_group("sstable");
    g.measurement_time(Duration::from_secs(4));
    for (name, rd, keys, want_hit) in [
        ("get_hit", &reader, &hit_keys, true),
        ("get_miss", &reader, &miss_keys, false),
        ("get_hit_cached", &cached, &hit_keys, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                ex.run(async {
                    let t = Instant::now();
                    for i in 0..iters as usize {
                        let got = rd.get(&keys[i % keys.len()]).await.unwrap();
                        debug_assert_eq!(got.is_some(), want_hit);
                        black_box(got);
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();

    // Tail latency: single reads timed one by one.
    for (name, rd, keys) in [
        ("get_hit", &reader, &hit_keys),
        ("get_miss", &reader, &miss_keys),
        ("get_hit_cached", &cached, &hit_keys),
    ] {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        let n = 20_000usize;
        let total = ex.run(async {
            let t0 = Instant::now();
            for i in 0..n {
                let t = Instant::now();
                black_box(rd.get(&keys[i % keys.len()]).await.unwrap());
                h.record(t.elapsed().as_nanos() as u64).unwrap();
            }
            t0.elapsed()
        });
        println!(
            "sstable/{name} x{n}: {:.0} ops/s  p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us",
            n as f64 / total.as_secs_f64(),
            h.value_at_quantile(0.50) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.value_at_quantile(0.999) as f64 / 1e3,
            h.max() as f64 / 1e3,
        );
    }
    println!("reader stats: {:?}", reader.stats());
    println!("cache stats: {:?}", cache.stats());
    ex.run(async {
        reader.close().await.unwrap();
        cached.close().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Compaction throughput: merge four overlapping 50k-entry tables (100-byte payloads) into one,
/// on DMA files, as `compaction::run` does for the engine.
fn compaction_merge(c: &mut Criterion) {
    use tern::storage::compaction::{self, CompactionReason, CompactionTask};
    let dir = bench_dir().join("compaction");
    std::fs::create_dir_all(&dir).unwrap();
    let ex = LocalExecutor::default();
    let opts = SstOptions::default();
    let tables = 4u64;
    let per = 50_000u64;
    let readers = ex.run(async {
        probe_iopoll(&dir).await;
        let mut readers = Vec::new();
        for t in 0..tables {
            // Table t holds keys t*per/2 .. t*per/2 + per: each overlaps half of the next.
            let mut keys: Vec<InternalKey> = (0..per).map(|i| key(t * per / 2 + i)).collect();
            keys.sort();
            let p = dir.join(format!("in{t}.sst"));
            let mut w = SstWriter::create(&BenchDisk, &p, keys.len(), &opts)
                .await
                .unwrap();
            let payload = Bytes::from(vec![t as u8; PAYLOAD]);
            for (i, k) in keys.iter().enumerate() {
                let v = Stored {
                    seqno: t * per + i as u64,
                    tombstone_at_ms: None,
                    payload: payload.clone(),
                };
                w.add(k, &v).await.unwrap();
            }
            w.finish().await.unwrap();
            readers.push(SstReader::open(&BenchDisk, &p, &opts).await.unwrap());
        }
        readers
    });
    let task = CompactionTask {
        inputs: (0..tables).collect(),
        drop_tombstones: true,
        output_tier: 0,
        reason: CompactionReason::Tier(0),
    };
    let out = dir.join("out.sst");
    let mut g = c.benchmark_group("compaction");
    g.sample_size(10);
    g.throughput(Throughput::Elements(tables * per));
    g.bench_function("merge_4x50k", |b| {
        b.iter_custom(|iters| {
            ex.run(async {
                let refs: Vec<&SstReader<BenchFile>> = readers.iter().collect();
                let t = Instant::now();
                for _ in 0..iters {
                    let o = compaction::run(&BenchDisk, &task, &refs, &out, 0, 0, &opts)
                        .await
                        .unwrap();
                    assert_eq!(o.meta.entry_count, per * (tables + 1) / 2);
                }
                t.elapsed()
            })
        })
    });
    g.finish();
    ex.run(async {
        for r in readers {
            r.close().await.unwrap();
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn config() -> Criterion {
    // The machine is shared: short, bounded runs.
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = memtable_insert, bloom_lookup, sstable_reads, compaction_merge
}
criterion_main!(benches);
