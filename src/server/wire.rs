//! Conversions between the wire messages of `net` and the plain types of `coordinator` /
//! `coordinator::protocol`. Pure functions; no I/O. Lossy spots are named where they occur.

use bytes::Bytes;

use crate::coordinator::{
    CoordError, CoordinateRequest, FailureReason, PutAck, Quorum as CQuorum, QuorumError, QuorumOp,
    Replica, ReplicaFailure, ReplicaRequest, ReplicaResponse, RequestOptions, StoreFault,
    TransportError,
};
use crate::net::{
    CoordinateWire, Dot as WDot, ErrorCode, FailedReplica, Quorum as WQuorum, ReplicaRequestWire,
    ReplicaResponseWire, ReqOptions, SiblingWire, VvEntry, WireError,
};
use crate::version::{Dot, Record, VersionVector};

/// Client quorum -> coordinator quorum (`Default` = majority of N).
pub fn quorum_from_wire(q: WQuorum) -> CQuorum {
    match q {
        WQuorum::Default | WQuorum::Majority => CQuorum::Quorum,
        WQuorum::One => CQuorum::One,
        WQuorum::All => CQuorum::All,
        WQuorum::N(k) => CQuorum::Count(u32::from(k)),
    }
}

pub fn read_options(o: &ReqOptions) -> RequestOptions {
    RequestOptions {
        r: quorum_from_wire(o.quorum),
        w: CQuorum::Quorum,
        strict: o.strict,
        timeout_ms: (o.timeout_ms > 0).then_some(u64::from(o.timeout_ms)),
    }
}

pub fn write_options(o: &ReqOptions) -> RequestOptions {
    RequestOptions {
        r: CQuorum::Quorum,
        w: quorum_from_wire(o.quorum),
        strict: o.strict,
        timeout_ms: (o.timeout_ms > 0).then_some(u64::from(o.timeout_ms)),
    }
}

/// The client's opaque context; empty = a blind write.
pub fn context_from_wire(b: &Bytes) -> Result<VersionVector, WireError> {
    if b.is_empty() {
        return Ok(VersionVector::new());
    }
    VersionVector::decode(b).map_err(|e| {
        WireError::new(
            ErrorCode::BadContext,
            format!("the causal context is not one this store produced ({e}); pass the context printed by get, or none"),
        )
    })
}

pub fn context_to_wire(vv: &VersionVector) -> Bytes {
    Bytes::from(vv.encode())
}

/// A record as a client sees it: every sibling, tombstones included (a key whose siblings are
/// all tombstones reads as deleted, and its context still orders a following put after the
/// deletes), and the context covering all. An unknown key has no siblings.
pub fn record_to_client(record: &Record) -> (Vec<SiblingWire>, Bytes) {
    let context = context_to_wire(&record.context());
    let siblings = record
        .siblings()
        .iter()
        .map(|s| SiblingWire {
            value: s.value.clone().unwrap_or_default(),
            tombstone: s.value.is_none(),
            dot: WDot {
                node: s.dot.node,
                counter: s.dot.counter,
            },
            vv: s
                .history()
                .iter()
                .map(|(node, counter)| VvEntry { node, counter })
                .collect(),
        })
        .collect();
    (siblings, context)
}

fn clamp_u8(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

pub fn quorum_error_to_wire(q: &QuorumError) -> WireError {
    let all_timed_out = !q.failures.is_empty()
        && q.failures
            .iter()
            .all(|(_, f)| matches!(f, FailureReason::TimedOut));
    WireError {
        code: if all_timed_out {
            ErrorCode::Timeout
        } else {
            ErrorCode::QuorumFailed
        },
        message: q.to_string(),
        acked: clamp_u8(q.acked),
        needed: clamp_u8(q.needed),
        failed: q
            .failures
            .iter()
            .map(|(r, why)| FailedReplica {
                node: r.node,
                shard: r.shard,
                reason: why.to_string(),
                code: reason_code(why),
            })
            .collect(),
    }
}

/// Inverse of [`quorum_error_to_wire`] for a quorum error reported by a remote coordinator.
/// Each failure comes back typed from its code; only the detail text is carried as text.
pub fn quorum_error_from_wire(e: &WireError, op: QuorumOp) -> QuorumError {
    QuorumError {
        op,
        needed: usize::from(e.needed),
        acked: usize::from(e.acked),
        failures: e
            .failed
            .iter()
            .map(|f| {
                let r = Replica {
                    node: f.node,
                    shard: f.shard,
                };
                (r, reason_from_wire(f))
            })
            .collect(),
    }
}

/// The code that says why one replica did not count (what a client or a forwarding node acts on).
fn reason_code(why: &FailureReason) -> ErrorCode {
    match why {
        FailureReason::TimedOut => ErrorCode::Timeout,
        FailureReason::Transport(TransportError::Overloaded) => ErrorCode::Overloaded,
        FailureReason::Transport(_) => ErrorCode::Unavailable,
        FailureReason::Replica(f) => failure_to_wire(f).code,
    }
}

fn reason_from_wire(f: &FailedReplica) -> FailureReason {
    match f.code {
        ErrorCode::Timeout => FailureReason::TimedOut,
        ErrorCode::Overloaded => FailureReason::Transport(TransportError::Overloaded),
        ErrorCode::Unavailable => {
            // Whether the request may have been delivered matters to a retrying caller: the
            // two transport errors share a code and differ in their text.
            let t = f.reason.as_str();
            FailureReason::Transport(match t.strip_prefix("connection lost: ") {
                Some(rest) => TransportError::Lost {
                    reason: rest.to_owned(),
                },
                None => TransportError::Unreachable {
                    reason: t.strip_prefix("unreachable: ").unwrap_or(t).to_owned(),
                },
            })
        }
        code => {
            let reason = f
                .reason
                .strip_prefix("replica refused: ")
                .unwrap_or(&f.reason);
            FailureReason::Replica(Box::new(failure_from_wire(&WireError::new(code, reason))))
        }
    }
}

/// The code of a storage failure.
fn fault_code(fault: StoreFault) -> ErrorCode {
    match fault {
        StoreFault::DiskFull => ErrorCode::DiskFull,
        StoreFault::Corrupt => ErrorCode::StorageCorrupt,
        StoreFault::Closed => ErrorCode::ShuttingDown,
        StoreFault::Internal => ErrorCode::Internal,
    }
}

pub fn coord_error_to_wire(e: &CoordError) -> WireError {
    match e {
        CoordError::InvalidRequest(m) => {
            let code = if m.contains("value of") {
                ErrorCode::ValueTooLarge
            } else if m.starts_with("key of") {
                ErrorCode::KeyTooLarge
            } else {
                ErrorCode::BadRequest
            };
            WireError::new(code, e.to_string())
        }
        CoordError::InvalidQuorum(_) => WireError::new(ErrorCode::BadRequest, e.to_string()),
        CoordError::Quorum(q) => quorum_error_to_wire(q),
        CoordError::TooManySiblings { count, limit } => WireError {
            code: ErrorCode::TooManySiblings,
            message: e.to_string(),
            // Carried in the count fields so a forwarding node can rebuild the error.
            acked: clamp_u8(*count),
            needed: clamp_u8(*limit),
            failed: Vec::new(),
        },
    }
}

pub fn failure_to_wire(f: &ReplicaFailure) -> WireError {
    match f {
        ReplicaFailure::Storage { fault, .. } => WireError::new(fault_code(*fault), f.to_string()),
        ReplicaFailure::TooManySiblings { count, limit } => {
            coord_error_to_wire(&CoordError::TooManySiblings {
                count: *count,
                limit: *limit,
            })
        }
        ReplicaFailure::NotReplica => WireError::new(ErrorCode::NotOwner, f.to_string()),
        ReplicaFailure::Invalid { .. } => WireError::new(ErrorCode::BadRequest, f.to_string()),
        ReplicaFailure::Quorum(q) => quorum_error_to_wire(q),
        ReplicaFailure::UnexpectedResponse { .. } => {
            WireError::new(ErrorCode::Internal, f.to_string())
        }
    }
}

pub fn failure_from_wire(e: &WireError) -> ReplicaFailure {
    match e.code {
        ErrorCode::TooManySiblings => ReplicaFailure::TooManySiblings {
            count: usize::from(e.acked),
            limit: usize::from(e.needed),
        },
        ErrorCode::NotOwner => ReplicaFailure::NotReplica,
        ErrorCode::BadRequest | ErrorCode::BadContext => ReplicaFailure::Invalid {
            // The sender's message is this failure's own text: keep only its detail, so the
            // prefix does not pile up hop after hop.
            reason: e
                .message
                .strip_prefix("storage failed (")
                .and_then(|m| m.split_once("): ").map(|(_, detail)| detail))
                .unwrap_or(&e.message)
                .to_owned(),
        },
        ErrorCode::QuorumFailed | ErrorCode::Timeout if e.needed > 0 => {
            ReplicaFailure::Quorum(quorum_error_from_wire(e, QuorumOp::Write))
        }
        code => ReplicaFailure::Storage {
            fault: match code {
                ErrorCode::DiskFull => StoreFault::DiskFull,
                ErrorCode::StorageCorrupt => StoreFault::Corrupt,
                ErrorCode::ShuttingDown => StoreFault::Closed,
                _ => StoreFault::Internal,
            },
            // The sender's message is this failure's own text: keep only its detail, so the
            // prefix does not pile up hop after hop.
            reason: e
                .message
                .strip_prefix("storage failed (")
                .and_then(|m| m.split_once("): ").map(|(_, detail)| detail))
                .unwrap_or(&e.message)
                .to_owned(),
        },
    }
}

/// A replica request for the wire. `Coordinate` carries W as an explicit count; the receiver
/// recomputes the preference list from its own ring (the static ring is the same everywhere).
pub fn request_to_wire(req: &ReplicaRequest) -> ReplicaRequestWire {
    match req {
        ReplicaRequest::Put { key, record } => ReplicaRequestWire::Put {
            key: key.clone(),
            record: Bytes::from(record.encode()),
            hint_for: None,
        },
        ReplicaRequest::Get { key } => ReplicaRequestWire::Get { key: key.clone() },
        ReplicaRequest::Coordinate(c) => ReplicaRequestWire::Coordinate(CoordinateWire {
            key: c.key.clone(),
            value: c.value.clone().unwrap_or_default(),
            tombstone: c.value.is_none(),
            context: context_to_wire(&c.context),
            opts: ReqOptions {
                quorum: WQuorum::N(u8::try_from(c.w).unwrap_or(u8::MAX)),
                strict: c.strict,
                timeout_ms: u32::try_from(c.timeout_ms).unwrap_or(u32::MAX),
            },
        }),
    }
}

/// A wire replica request as the coordinator's type; `preference` is the key's list here.
pub fn request_from_wire(
    req: ReplicaRequestWire,
    preference: impl FnOnce(&[u8]) -> Vec<Replica>,
    default_timeout_ms: u64,
) -> Result<ReplicaRequest, WireError> {
    Ok(match req {
        ReplicaRequestWire::Put { key, record, .. } => {
            let record = Record::decode_bytes(&record).map_err(|e| {
                WireError::new(
                    ErrorCode::BadRequest,
                    format!("replica record does not decode: {e}"),
                )
            })?;
            ReplicaRequest::Put { key, record }
        }
        ReplicaRequestWire::Get { key } => ReplicaRequest::Get { key },
        ReplicaRequestWire::Coordinate(c) => {
            let w = match c.opts.quorum {
                WQuorum::N(k) => u32::from(k),
                other => {
                    return Err(WireError::new(
                        ErrorCode::BadRequest,
                        format!("a forwarded write must carry W as a count, not {other}"),
                    ))
                }
            };
            let preference = preference(&c.key);
            ReplicaRequest::Coordinate(CoordinateRequest {
                value: (!c.tombstone).then_some(c.value),
                context: context_from_wire(&c.context)?,
                w,
                strict: c.opts.strict,
                timeout_ms: if c.opts.timeout_ms == 0 {
                    default_timeout_ms
                } else {
                    u64::from(c.opts.timeout_ms)
                },
                preference,
                key: c.key,
            })
        }
    })
}

pub fn response_to_wire(resp: ReplicaResponse) -> Result<ReplicaResponseWire, WireError> {
    match resp {
        ReplicaResponse::PutOk => Ok(ReplicaResponseWire::PutAck),
        ReplicaResponse::GetOk { record } => Ok(ReplicaResponseWire::GetReply {
            record: record.map(|r| Bytes::from(r.encode())),
        }),
        ReplicaResponse::Coordinated(ack) => Ok(ReplicaResponseWire::CoordinateReply {
            context: context_to_wire(&ack.context),
        }),
        ReplicaResponse::Failed(f) => Err(failure_to_wire(&f)),
    }
}

/// Lossy for `Coordinated`: the wire carries only the context, so the dot is read back from
/// nothing (`Dot::new(0, 0)`) and `acked` is the W that was asked for. Callers use the context.
pub fn response_from_wire(
    resp: Result<ReplicaResponseWire, WireError>,
    asked_w: u32,
) -> ReplicaResponse {
    match resp {
        Ok(ReplicaResponseWire::PutAck) => ReplicaResponse::PutOk,
        Ok(ReplicaResponseWire::GetReply { record }) => match record {
            None => ReplicaResponse::GetOk { record: None },
            Some(b) => match Record::decode_bytes(&b) {
                Ok(r) => ReplicaResponse::GetOk { record: Some(r) },
                Err(e) => ReplicaResponse::Failed(ReplicaFailure::Invalid {
                    reason: format!("replica sent a record that does not decode: {e}"),
                }),
            },
        },
        Ok(ReplicaResponseWire::CoordinateReply { context }) => {
            match VersionVector::decode(&context) {
                Ok(context) => ReplicaResponse::Coordinated(PutAck {
                    dot: Dot::new(0, 0),
                    context,
                    acked: asked_w,
                }),
                Err(e) => ReplicaResponse::Failed(ReplicaFailure::Invalid {
                    reason: format!("coordinator sent a context that does not decode: {e}"),
                }),
            }
        }
        Err(e) => ReplicaResponse::Failed(failure_from_wire(&e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quorum_error_roundtrips_through_the_wire() {
        let q = QuorumError {
            op: QuorumOp::Write,
            needed: 3,
            acked: 2,
            failures: vec![
                (Replica { node: 3, shard: 1 }, FailureReason::TimedOut),
                (
                    Replica { node: 2, shard: 0 },
                    FailureReason::Transport(TransportError::Unreachable {
                        reason: "connection refused".into(),
                    }),
                ),
            ],
        };
        let w = quorum_error_to_wire(&q);
        assert_eq!(w.code, ErrorCode::QuorumFailed);
        assert_eq!((w.acked, w.needed), (2, 3));
        assert_eq!(quorum_error_from_wire(&w, QuorumOp::Write), q);
        assert!(w.to_string().contains("node 3 shard 1"), "{w}");
    }

    /// A full disk, corrupt data and a closing store stay themselves from the replica's store
    /// to a remote coordinator and to the client: each has its own code, and a quorum error
    /// names each failed replica's code, not one "internal error" string for all.
    #[test]
    fn storage_failures_keep_their_kind_across_the_wire() {
        let cases = [
            (StoreFault::DiskFull, ErrorCode::DiskFull),
            (StoreFault::Corrupt, ErrorCode::StorageCorrupt),
            (StoreFault::Closed, ErrorCode::ShuttingDown),
            (StoreFault::Internal, ErrorCode::Internal),
        ];
        for (fault, code) in cases {
            let f = ReplicaFailure::Storage {
                fault,
                reason: "disk /data/shard-0/log: detail".into(),
            };
            let w = failure_to_wire(&f);
            assert_eq!(w.code, code);
            // Twice over the wire: the detail does not grow a prefix per hop.
            let back = failure_from_wire(&w);
            assert_eq!(back, f);
            assert_eq!(failure_from_wire(&failure_to_wire(&back)), f);

            let q = QuorumError {
                op: QuorumOp::Write,
                needed: 2,
                acked: 1,
                failures: vec![(
                    Replica { node: 2, shard: 0 },
                    FailureReason::Replica(Box::new(f.clone())),
                )],
            };
            let w = quorum_error_to_wire(&q);
            assert_eq!(w.failed[0].code, code);
            assert_eq!(quorum_error_from_wire(&w, QuorumOp::Write), q);
        }
    }

    #[test]
    fn coordinate_request_roundtrips_with_preference_recomputed() {
        let pref = vec![Replica { node: 1, shard: 0 }, Replica { node: 2, shard: 1 }];
        let c = ReplicaRequest::Coordinate(CoordinateRequest {
            key: Bytes::from_static(b"k"),
            value: None,
            context: VersionVector::from_pairs([(1, 4), (2, 1)]),
            w: 2,
            strict: true,
            timeout_ms: 750,
            preference: pref.clone(),
        });
        let back = request_from_wire(request_to_wire(&c), |_| pref.clone(), 1000).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn garbage_context_is_a_bad_context_error() {
        let e = context_from_wire(&Bytes::from_static(b"\xff\xff\xff")).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadContext);
    }
}
