//! Test support, compiled always so that integration tests, the fuzz target's seed corpus and the
//! server's malformed-frame tests share one source of frames: one sample of every message type,
//! and seeded mutations of real frames. Not used on any serving path.

use bytes::Bytes;
use rand::{Rng, RngCore};

use crate::codec::Encoder;
use crate::error::NetError;
use crate::msg::*;
use crate::Limits;

fn opts(quorum: Quorum) -> ReqOptions {
    ReqOptions {
        quorum,
        strict: true,
        timeout_ms: 250,
    }
}

/// One representative envelope of every message type, named (names are file-name safe).
pub fn sample_envelopes() -> Vec<(&'static str, Envelope)> {
    let key = Bytes::from_static(b"user:42");
    let ctx = Bytes::from_static(b"\x01\x02ctx");
    let sib = |v: &'static [u8], node: u32| SiblingWire {
        value: Bytes::from_static(v),
        tombstone: v.is_empty(),
        dot: Dot { node, counter: 7 },
        vv: vec![
            VvEntry {
                node: 1,
                counter: 7,
            },
            VvEntry {
                node: 2,
                counter: 3,
            },
        ],
    };
    let msgs = vec![
        (
            "get_request",
            Message::Request(ClientRequest::Get(GetRequest {
                key: key.clone(),
                opts: opts(Quorum::Majority),
            })),
        ),
        (
            "put_request",
            Message::Request(ClientRequest::Put(PutRequest {
                key: key.clone(),
                value: Bytes::from_static(b"hello world"),
                context: ctx.clone(),
                opts: opts(Quorum::N(2)),
            })),
        ),
        (
            "delete_request",
            Message::Request(ClientRequest::Delete(DeleteRequest {
                key: key.clone(),
                context: ctx.clone(),
                opts: opts(Quorum::All),
            })),
        ),
        (
            "get_response",
            Message::Response(ClientResponse::Get {
                siblings: vec![sib(b"v1", 1), sib(b"", 2)],
                context: ctx.clone(),
            }),
        ),
        (
            "put_response",
            Message::Response(ClientResponse::Put {
                context: ctx.clone(),
            }),
        ),
        (
            "delete_response",
            Message::Response(ClientResponse::Delete {
                context: ctx.clone(),
            }),
        ),
        (
            "error",
            Message::Error(WireError {
                code: ErrorCode::QuorumFailed,
                message: "1 of 2 replicas acknowledged".into(),
                acked: 1,
                needed: 2,
                failed: vec![FailedReplica {
                    node: 3,
                    shard: 1,
                    reason: "timeout after 250 ms".into(),
                    code: ErrorCode::Timeout,
                }],
            }),
        ),
        (
            "replica_put",
            Message::Replica(ReplicaRequestWire::Put {
                key: key.clone(),
                record: Bytes::from_static(b"record-bytes"),
                hint_for: Some(4),
            }),
        ),
        (
            "replica_put_ack",
            Message::ReplicaReply(ReplicaResponseWire::PutAck),
        ),
        (
            "replica_get",
            Message::Replica(ReplicaRequestWire::Get { key: key.clone() }),
        ),
        (
            "replica_get_reply",
            Message::ReplicaReply(ReplicaResponseWire::GetReply {
                record: Some(Bytes::from_static(b"record-bytes")),
            }),
        ),
        (
            "coordinate",
            Message::Replica(ReplicaRequestWire::Coordinate(CoordinateWire {
                key,
                value: Bytes::new(),
                tombstone: true,
                context: ctx.clone(),
                opts: opts(Quorum::One),
            })),
        ),
        (
            "coordinate_reply",
            Message::ReplicaReply(ReplicaResponseWire::CoordinateReply { context: ctx }),
        ),
    ];
    msgs.into_iter()
        .enumerate()
        .map(|(i, (name, m))| {
            let mut env = Envelope::new(1000 + i as u64, m);
            if matches!(env.message, Message::Replica(_)) {
                env.target_shard = Some(1);
            }
            (name, env)
        })
        .collect()
}

/// The payload (no length header) of every sample envelope.
pub fn sample_frames() -> Result<Vec<(&'static str, Vec<u8>)>, NetError> {
    let mut enc = Encoder::new(Limits::default());
    sample_envelopes()
        .into_iter()
        .map(|(name, env)| Ok((name, enc.encode(&env)?.to_vec())))
        .collect()
}

/// A copy of `frame` with a few random byte flips, truncations or insertions: frames that get
/// past the length header and exercise the verifier and the conversion.
pub fn mutate(frame: &[u8], rng: &mut impl RngCore) -> Vec<u8> {
    let mut f = frame.to_vec();
    let edits = rng.gen_range(1..=4);
    for _ in 0..edits {
        match rng.gen_range(0..4) {
            0 if !f.is_empty() => {
                let i = rng.gen_range(0..f.len());
                f[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !f.is_empty() => {
                let i = rng.gen_range(0..f.len());
                f[i] = rng.gen();
            }
            2 if f.len() > 1 => {
                let n = rng.gen_range(1..f.len());
                f.truncate(n);
            }
            _ => {
                let i = rng.gen_range(0..=f.len());
                f.insert(i, rng.gen());
            }
        }
    }
    f
}
