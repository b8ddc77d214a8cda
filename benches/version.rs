//! Cost of the versioning work on the write and read paths: `Record::update` (run inside the
//! shard's read-modify-write), `Record::sync` (replica and read merge), and the codec.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tern::version::{Record, VersionVector};

/// A record with `siblings` concurrent writes from `siblings` different nodes, values of `len`.
fn record(siblings: u32, len: usize) -> Record {
    let mut r = Record::empty();
    for node in 1..=siblings {
        let w = Record::empty()
            .update(
                &VersionVector::new(),
                node,
                Some(Bytes::from(vec![7u8; len])),
                0,
                64,
            )
            .unwrap();
        r = Record::sync(&r, &w);
    }
    r
}

fn bench(c: &mut Criterion) {
    for siblings in [1u32, 3] {
        let r = record(siblings, 1024);
        let ctx = r.context();
        let value = Bytes::from(vec![1u8; 1024]);
        c.bench_function(&format!("update/resolve {siblings} siblings"), |b| {
            b.iter(|| {
                black_box(&r)
                    .update(&ctx, 1, Some(value.clone()), 0, 64)
                    .unwrap()
            })
        });
        let newer = r.update(&ctx, 2, Some(value.clone()), 0, 64).unwrap();
        c.bench_function(&format!("sync/stale vs newer {siblings} siblings"), |b| {
            b.iter(|| Record::sync(black_box(&r), black_box(&newer)))
        });
        c.bench_function(&format!("sync/equal {siblings} siblings"), |b| {
            b.iter(|| Record::sync(black_box(&r), black_box(&r)))
        });
        let enc = Bytes::from(r.encode());
        c.bench_function(&format!("encode {siblings} x 1 KiB"), |b| {
            b.iter(|| black_box(&r).encode())
        });
        c.bench_function(&format!("decode_bytes {siblings} x 1 KiB"), |b| {
            b.iter(|| Record::decode_bytes(black_box(&enc)).unwrap())
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
