//! Codec tests: every message type survives encode -> frame -> decode unchanged; limits hold at
//! the documented sizes; arbitrary and mutated bytes never panic the decoder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use rand::SeedableRng;
use tern::net::codec::{decode_frame, Encoder};
use tern::net::frame::FrameDecoder;
use tern::net::*;

fn bytes_upto(n: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from)
}
fn key() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 1..64).prop_map(Bytes::from)
}
fn quorum() -> impl Strategy<Value = Quorum> {
    prop_oneof![
        Just(Quorum::Default),
        Just(Quorum::One),
        Just(Quorum::Majority),
        Just(Quorum::All),
        (1u8..=255).prop_map(Quorum::N),
    ]
}
fn opts() -> impl Strategy<Value = ReqOptions> {
    (quorum(), any::<bool>(), any::<u32>()).prop_map(|(quorum, strict, timeout_ms)| ReqOptions {
        quorum,
        strict,
        timeout_ms,
    })
}
fn sibling() -> impl Strategy<Value = SiblingWire> {
    (
        bytes_upto(64),
        any::<bool>(),
        any::<(u32, u64)>(),
        prop::collection::vec(any::<(u32, u64)>(), 0..8),
    )
        .prop_map(|(value, tombstone, (n, c), vv)| SiblingWire {
            value,
            tombstone,
            dot: Dot {
                node: n,
                counter: c,
            },
            vv: vv
                .into_iter()
                .map(|(node, counter)| VvEntry { node, counter })
                .collect(),
        })
}
fn error_code() -> impl Strategy<Value = ErrorCode> {
    // Known codes come back as themselves, unknown ones as Other(v): from_u16 is the mapping.
    any::<u16>().prop_map(ErrorCode::from_u16)
}
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (key(), opts())
            .prop_map(|(key, opts)| Message::Request(ClientRequest::Get(GetRequest { key, opts }))),
        (key(), bytes_upto(256), bytes_upto(32), opts()).prop_map(|(key, value, context, opts)| {
            Message::Request(ClientRequest::Put(PutRequest {
                key,
                value,
                context,
                opts,
            }))
        }),
        (key(), bytes_upto(32), opts()).prop_map(|(key, context, opts)| Message::Request(
            ClientRequest::Delete(DeleteRequest { key, context, opts })
        )),
        (prop::collection::vec(sibling(), 0..5), bytes_upto(32)).prop_map(|(siblings, context)| {
            Message::Response(ClientResponse::Get { siblings, context })
        }),
        bytes_upto(32).prop_map(|context| Message::Response(ClientResponse::Put { context })),
        bytes_upto(32).prop_map(|context| Message::Response(ClientResponse::Delete { context })),
        (
            error_code(),
            ".{0,40}",
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec((any::<u32>(), any::<u16>(), ".{0,20}", error_code()), 0..4)
        )
            .prop_map(
                |(code, message, acked, needed, failed)| Message::Error(WireError {
                    code,
                    message,
                    acked,
                    needed,
                    failed: failed
                        .into_iter()
                        .map(|(node, shard, reason, code)| FailedReplica {
                            node,
                            shard,
                            reason,
                            code,
                        })
                        .collect(),
                })
            ),
        (key(), bytes_upto(128), any::<Option<u32>>()).prop_map(|(key, record, hint_for)| {
            Message::Replica(ReplicaRequestWire::Put {
                key,
                record,
                hint_for,
            })
        }),
        Just(Message::ReplicaReply(ReplicaResponseWire::PutAck)),
        key().prop_map(|key| Message::Replica(ReplicaRequestWire::Get { key })),
        prop::option::of(bytes_upto(64))
            .prop_map(|record| Message::ReplicaReply(ReplicaResponseWire::GetReply { record })),
        (
            key(),
            bytes_upto(128),
            any::<bool>(),
            bytes_upto(32),
            opts()
        )
            .prop_map(|(key, value, tombstone, context, opts)| Message::Replica(
                ReplicaRequestWire::Coordinate(CoordinateWire {
                    key,
                    value,
                    tombstone,
                    context,
                    opts
                })
            )),
        bytes_upto(32).prop_map(|context| Message::ReplicaReply(
            ReplicaResponseWire::CoordinateReply { context }
        )),
    ]
}
fn envelope() -> impl Strategy<Value = Envelope> {
    (any::<u16>(), any::<u64>(), any::<Option<u16>>(), message()).prop_map(
        |(version, request_id, target_shard, message)| Envelope {
            version,
            request_id,
            target_shard,
            message,
        },
    )
}

proptest! {
    #[test]
    fn roundtrip_every_message(envs in prop::collection::vec(envelope(), 1..8)) {
        let limits = Limits::default();
        let mut enc = Encoder::new(limits);
        let mut wire = Vec::new();
        for e in &envs {
            enc.encode_into(e, &mut wire).unwrap();
        }
        // Pipelined frames on one stream come back in order.
        let mut dec = FrameDecoder::new(limits.max_frame_len);
        dec.push(&wire);
        for e in &envs {
            let f = dec.next_frame().unwrap().unwrap();
            prop_assert_eq!(&decode_frame(&f, &limits).unwrap(), e);
        }
        prop_assert!(dec.next_frame().unwrap().is_none());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..4096)) {
        let limits = Limits::default();
        let _ = decode_frame(&Bytes::from(data.clone()), &limits);
        let mut dec = FrameDecoder::new(limits.max_frame_len);
        dec.push(&data);
        while let Ok(Some(f)) = dec.next_frame() {
            let _ = decode_frame(&f, &limits);
        }
    }
}

#[test]
fn mutated_real_frames_never_panic() {
    let limits = Limits::default();
    let frames = tern::net::testgen::sample_frames().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7e54);
    let mut rejected = 0;
    for i in 0..20_000 {
        let (_, f) = &frames[i % frames.len()];
        let m = tern::net::testgen::mutate(f, &mut rng);
        if decode_frame(&Bytes::from(m), &limits).is_err() {
            rejected += 1;
        }
    }
    // The verifier must be catching a good share of the damage, or it is not running.
    assert!(
        rejected > 5_000,
        "only {rejected} of 20000 mutated frames rejected"
    );
}

#[test]
fn every_sample_decodes_to_itself() {
    let limits = Limits::default();
    let mut enc = Encoder::new(limits);
    for (name, env) in tern::net::testgen::sample_envelopes() {
        let f = Bytes::copy_from_slice(enc.encode(&env).unwrap());
        assert_eq!(decode_frame(&f, &limits).unwrap(), env, "{name}");
    }
}

fn put(key_len: usize, value_len: usize) -> Envelope {
    Envelope::new(
        1,
        Message::Request(ClientRequest::Put(PutRequest {
            key: Bytes::from(vec![b'k'; key_len]),
            value: Bytes::from(vec![0xAB; value_len]),
            context: Bytes::from(vec![1; 4096]),
            opts: ReqOptions::default(),
        })),
    )
}

#[test]
fn one_mib_value_fits_and_two_mib_does_not() {
    let limits = Limits::default();
    let mut enc = Encoder::new(limits);
    let f = Bytes::copy_from_slice(enc.encode(&put(1024, 1 << 20)).unwrap());
    assert!(decode_frame(&f, &limits).is_ok());

    // The sender refuses a 2 MiB value with a clear error naming the sizes...
    let err = enc.encode(&put(1024, 2 << 20)).unwrap_err();
    assert!(
        matches!(err, NetError::ValueTooLarge { len, max } if len == 2 << 20 && max == 1 << 20)
    );
    assert!(err.to_string().contains("exceeds the limit"), "{err}");

    // ...and a receiver refuses it too, even from a sender without limits: the frame limit
    // (2 MiB + 64 KiB) leaves room for two 1 MiB siblings in a get response, so a 2 MiB value
    // passes framing and is refused by the value check, with the request id so the server can
    // answer it and keep the connection.
    let mut lax = Encoder::new(Limits {
        max_value_len: usize::MAX,
        max_frame_len: usize::MAX,
        ..limits
    });
    let f = Bytes::copy_from_slice(lax.encode(&put(1024, 2 << 20)).unwrap());
    let e = decode_frame(&f, &limits).unwrap_err();
    assert_eq!(e.request_id, Some(1));
    assert!(matches!(e.error, NetError::ValueTooLarge { .. }), "{e}");
    assert_eq!(e.error.code(), ErrorCode::ValueTooLarge);

    // A 3 MiB value does not even pass the frame header.
    let mut wire = Vec::new();
    lax.encode_into(&put(1024, 3 << 20), &mut wire).unwrap();
    let mut dec = FrameDecoder::new(limits.max_frame_len);
    dec.push(&wire[..4]);
    assert!(matches!(
        dec.next_frame(),
        Err(NetError::FrameTooLarge { .. })
    ));
}

#[test]
fn oversize_key_and_value_are_typed_errors_with_request_id() {
    let limits = Limits::default();
    let mut lax = Encoder::new(Limits {
        max_key_len: usize::MAX,
        max_value_len: usize::MAX,
        ..limits
    });
    let f = Bytes::copy_from_slice(lax.encode(&put(1025, 1)).unwrap());
    let e = decode_frame(&f, &limits).unwrap_err();
    assert_eq!(e.request_id, Some(1));
    assert!(matches!(
        e.error,
        NetError::KeyTooLarge {
            len: 1025,
            max: 1024
        }
    ));
    assert_eq!(e.error.code(), ErrorCode::KeyTooLarge);
    // The reply a server sends names the request and the limit.
    let reply = e.error_reply();
    assert_eq!(reply.request_id, 1);
    match reply.message {
        Message::Error(w) => {
            assert_eq!(w.code, ErrorCode::KeyTooLarge);
            assert!(w.message.contains("1024"), "{}", w.message);
        }
        other => panic!("{other:?}"),
    }

    let small = Limits {
        max_value_len: 10,
        ..limits
    };
    let f = Bytes::copy_from_slice(lax.encode(&put(3, 11)).unwrap());
    let e = decode_frame(&f, &small).unwrap_err();
    assert!(matches!(
        e.error,
        NetError::ValueTooLarge { len: 11, max: 10 }
    ));

    // An empty key can only come from a hand-built frame: build one with the generated API.
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let key = fbb.create_vector::<u8>(&[]);
    let get = generated::GetRequest::create(
        &mut fbb,
        &generated::GetRequestArgs {
            key: Some(key),
            ..Default::default()
        },
    );
    let frame = generated::Frame::create(
        &mut fbb,
        &generated::FrameArgs {
            request_id: 5,
            body_type: generated::Body::GetRequest,
            body: Some(get.as_union_value()),
            ..Default::default()
        },
    );
    generated::finish_frame_buffer(&mut fbb, frame);
    let f = Bytes::copy_from_slice(fbb.finished_data());
    let e = decode_frame(&f, &limits).unwrap_err();
    assert_eq!(e.request_id, Some(5));
    assert!(matches!(e.error, NetError::EmptyKey { .. }));
}

#[test]
fn verifier_limits_refuse_too_many_siblings() {
    let limits = Limits::default();
    let mut lax = Encoder::new(Limits {
        max_siblings: 10_000,
        ..limits
    });
    let sib = SiblingWire {
        value: Bytes::new(),
        tombstone: true,
        dot: Dot::default(),
        vv: vec![],
    };
    let env = Envelope::new(
        9,
        Message::Response(ClientResponse::Get {
            siblings: vec![sib; 1000],
            context: Bytes::new(),
        }),
    );
    let f = Bytes::copy_from_slice(lax.encode(&env).unwrap());
    assert!(decode_frame(&f, &limits).is_err());
}

#[test]
fn quorum_parses_cli_spellings() {
    assert_eq!("ONE".parse::<Quorum>().unwrap(), Quorum::One);
    assert_eq!("quorum".parse::<Quorum>().unwrap(), Quorum::Majority);
    assert_eq!("all".parse::<Quorum>().unwrap(), Quorum::All);
    assert_eq!("3".parse::<Quorum>().unwrap(), Quorum::N(3));
    assert!("0".parse::<Quorum>().is_err());
    assert!("most".parse::<Quorum>().is_err());
    assert_eq!(Quorum::Majority.resolve(3), Some(2));
    assert_eq!(Quorum::All.resolve(5), Some(5));
}
