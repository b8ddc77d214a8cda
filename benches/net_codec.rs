//! Codec cost per message: encode (builder reuse) and verify+decode, for the shapes that
//! dominate traffic (small get, 1 KiB put, 1 MiB put, 2-sibling get response).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tern::net::codec::decode_frame;
use tern::net::*;

fn put(len: usize) -> Envelope {
    Envelope::new(
        7,
        Message::Request(ClientRequest::Put(PutRequest {
            key: Bytes::from_static(b"user:000000042"),
            value: Bytes::from(vec![0xAB; len]),
            context: Bytes::from(vec![1; 48]),
            opts: ReqOptions::default(),
        })),
    )
}

fn cases() -> Vec<(&'static str, Envelope, usize)> {
    let get = Envelope::new(
        1,
        Message::Request(ClientRequest::Get(GetRequest {
            key: Bytes::from_static(b"user:000000042"),
            opts: ReqOptions::default(),
        })),
    );
    let sib = |v: u8| SiblingWire {
        value: Bytes::from(vec![v; 1024]),
        tombstone: false,
        dot: Dot {
            node: 1,
            counter: 9,
        },
        vv: vec![
            VvEntry {
                node: 1,
                counter: 9,
            },
            VvEntry {
                node: 2,
                counter: 4,
            },
        ],
    };
    let resp = Envelope::new(
        1,
        Message::Response(ClientResponse::Get {
            siblings: vec![sib(1), sib(2)],
            context: Bytes::from(vec![1; 48]),
        }),
    );
    vec![
        ("get", get, 14),
        ("put_1k", put(1024), 1024),
        ("put_1m", put(1 << 20), 1 << 20),
        ("get_resp_2x1k", resp, 2048),
    ]
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, env, bytes) in cases() {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(bytes as u64));
        let mut enc = Encoder::new(limits);
        let mut out = Vec::with_capacity(bytes + 4096);
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                enc.encode_into(&env, &mut out).unwrap_or_default();
                out.len()
            })
        });
        let frame = Bytes::copy_from_slice(enc.encode(&env).unwrap_or_default());
        g.bench_function("decode", |b| {
            b.iter_batched(
                || frame.clone(),
                |f| decode_frame(&f, &limits).is_ok(),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
