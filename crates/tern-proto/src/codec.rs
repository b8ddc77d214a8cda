//! Conversion between plain messages ([`crate::msg`]) and verified flatbuffers frames.
//!
//! Decoding: the frame is verified with `root_with_opts` and [`Limits::verifier_options`], its
//! file identifier checked, then every field is copied out as a zero-copy [`Bytes`] slice and
//! checked against the [`Limits`]. Encoding: one [`Encoder`] per connection reuses its
//! `FlatBufferBuilder` (`reset()` per message) and refuses to produce a frame the peer would
//! refuse, so limit violations surface at the sender with a clear error.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use crate::error::NetError;
use crate::frame::frame_header;
use crate::generated as w;
use crate::msg::*;
use crate::Limits;

/// A frame that could not be decoded; `request_id` is set when the frame verified far enough
/// to read it, so the server can answer the request with an error instead of dropping it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct DecodeFailure {
    pub request_id: Option<u64>,
    #[source]
    pub error: NetError,
}

impl DecodeFailure {
    /// The error frame to send back: addressed to the failed request when its id is known,
    /// else to id 0 (the server then closes the connection, as framing can no longer be
    /// trusted or the peer is not speaking the protocol).
    pub fn error_reply(&self) -> Envelope {
        Envelope::new(
            self.request_id.unwrap_or(0),
            Message::Error(WireError::new(self.error.code(), self.error.to_string())),
        )
    }
}

impl From<DecodeFailure> for NetError {
    fn from(f: DecodeFailure) -> Self {
        f.error
    }
}

/// Verifies and converts one frame payload (without its length header).
pub fn decode_frame(frame: &Bytes, limits: &Limits) -> Result<Envelope, DecodeFailure> {
    let fail = |request_id, error| DecodeFailure { request_id, error };
    if frame.len() > limits.max_frame_len {
        return Err(fail(
            None,
            NetError::FrameTooLarge {
                len: frame.len(),
                max: limits.max_frame_len,
            },
        ));
    }
    // buffer_has_identifier asserts on short input: check the length first.
    if frame.len() < 8 || !flatbuffers::buffer_has_identifier(frame, w::FRAME_IDENTIFIER, false) {
        return Err(fail(None, NetError::NotAFrame { len: frame.len() }));
    }
    let opts = limits.verifier_options();
    let f = flatbuffers::root_with_opts::<w::Frame>(&opts, frame)
        .map_err(|e| fail(None, NetError::Malformed(e)))?;
    let id = f.request_id();
    let message = convert_body(frame, &f, limits).map_err(|e| fail(Some(id), e))?;
    Ok(Envelope {
        version: f.version(),
        request_id: id,
        target_shard: f.target_shard(),
        message,
    })
}

fn convert_body(buf: &Bytes, f: &w::Frame<'_>, l: &Limits) -> Result<Message, NetError> {
    let missing = || NetError::UnknownBody(f.body_type().0);
    let bytes = |v: Vector<'_, u8>| buf.slice_ref(v.bytes());
    let opt_bytes =
        |v: Option<Vector<'_, u8>>| v.map(|v| buf.slice_ref(v.bytes())).unwrap_or_default();
    let msg = match f.body_type() {
        w::Body::GetRequest => {
            let r = f.body_as_get_request().ok_or_else(missing)?;
            Message::Request(ClientRequest::Get(GetRequest {
                key: bytes(r.key()),
                opts: opts_from(r.r(), r.strict(), r.timeout_ms())?,
            }))
        }
        w::Body::PutRequest => {
            let r = f.body_as_put_request().ok_or_else(missing)?;
            Message::Request(ClientRequest::Put(PutRequest {
                key: bytes(r.key()),
                value: opt_bytes(r.value()),
                context: opt_bytes(r.context()),
                opts: opts_from(r.w(), r.strict(), r.timeout_ms())?,
            }))
        }
        w::Body::DeleteRequest => {
            let r = f.body_as_delete_request().ok_or_else(missing)?;
            Message::Request(ClientRequest::Delete(DeleteRequest {
                key: bytes(r.key()),
                context: opt_bytes(r.context()),
                opts: opts_from(r.w(), r.strict(), r.timeout_ms())?,
            }))
        }
        w::Body::GetResponse => {
            let r = f.body_as_get_response().ok_or_else(missing)?;
            let sibs = r.siblings();
            check_count("siblings", sibs.map_or(0, |s| s.len()), l.max_siblings)?;
            let mut siblings = Vec::with_capacity(sibs.map_or(0, |s| s.len()));
            for s in sibs.iter().flatten() {
                let vv = s.vv();
                check_count(
                    "version vector entries",
                    vv.map_or(0, |v| v.len()),
                    l.max_vv_entries,
                )?;
                siblings.push(SiblingWire {
                    value: opt_bytes(s.value()),
                    tombstone: s.tombstone(),
                    dot: s.dot().map_or(Dot::default(), |d| Dot {
                        node: d.node(),
                        counter: d.counter(),
                    }),
                    vv: vv
                        .iter()
                        .flatten()
                        .map(|e| VvEntry {
                            node: e.node(),
                            counter: e.counter(),
                        })
                        .collect(),
                });
            }
            Message::Response(ClientResponse::Get {
                siblings,
                context: opt_bytes(r.context()),
            })
        }
        w::Body::PutResponse => {
            let r = f.body_as_put_response().ok_or_else(missing)?;
            Message::Response(ClientResponse::Put {
                context: opt_bytes(r.context()),
            })
        }
        w::Body::DeleteResponse => {
            let r = f.body_as_delete_response().ok_or_else(missing)?;
            Message::Response(ClientResponse::Delete {
                context: opt_bytes(r.context()),
            })
        }
        w::Body::Error => {
            let r = f.body_as_error().ok_or_else(missing)?;
            let failed = r.failed();
            check_count(
                "failed replicas",
                failed.map_or(0, |v| v.len()),
                l.max_failed_replicas,
            )?;
            Message::Error(WireError {
                code: ErrorCode::from_u16(r.code().0),
                message: r.message().unwrap_or_default().to_owned(),
                acked: r.acked(),
                needed: r.needed(),
                failed: failed
                    .iter()
                    .flatten()
                    .map(|x| FailedReplica {
                        node: x.node(),
                        shard: x.shard(),
                        reason: x.reason().unwrap_or_default().to_owned(),
                        code: ErrorCode::from_u16(x.code().0),
                    })
                    .collect(),
            })
        }
        w::Body::ReplicaPut => {
            let r = f.body_as_replica_put().ok_or_else(missing)?;
            Message::Replica(ReplicaRequestWire::Put {
                key: bytes(r.key()),
                record: bytes(r.record()),
                hint_for: r.hint_for(),
            })
        }
        w::Body::ReplicaPutAck => {
            f.body_as_replica_put_ack().ok_or_else(missing)?;
            Message::ReplicaReply(ReplicaResponseWire::PutAck)
        }
        w::Body::ReplicaGet => {
            let r = f.body_as_replica_get().ok_or_else(missing)?;
            Message::Replica(ReplicaRequestWire::Get {
                key: bytes(r.key()),
            })
        }
        w::Body::ReplicaGetReply => {
            let r = f.body_as_replica_get_reply().ok_or_else(missing)?;
            Message::ReplicaReply(ReplicaResponseWire::GetReply {
                record: r.record().map(bytes),
            })
        }
        w::Body::Coordinate => {
            let r = f.body_as_coordinate().ok_or_else(missing)?;
            Message::Replica(ReplicaRequestWire::Coordinate(CoordinateWire {
                key: bytes(r.key()),
                value: opt_bytes(r.value()),
                tombstone: r.tombstone(),
                context: opt_bytes(r.context()),
                opts: opts_from(r.w(), r.strict(), r.timeout_ms())?,
            }))
        }
        w::Body::CoordinateReply => {
            let r = f.body_as_coordinate_reply().ok_or_else(missing)?;
            Message::ReplicaReply(ReplicaResponseWire::CoordinateReply {
                context: opt_bytes(r.context()),
            })
        }
        other => return Err(NetError::UnknownBody(other.0)),
    };
    validate(&msg, l)?;
    Ok(msg)
}

fn opts_from(q: Option<&w::Quorum>, strict: bool, timeout_ms: u32) -> Result<ReqOptions, NetError> {
    let quorum = match q {
        None => Quorum::Default,
        Some(q) => {
            let bad = || NetError::BadQuorum {
                kind: q.kind().0,
                count: q.count(),
            };
            match q.kind() {
                w::QuorumKind::Default => Quorum::Default,
                w::QuorumKind::One => Quorum::One,
                w::QuorumKind::Quorum => Quorum::Majority,
                w::QuorumKind::All => Quorum::All,
                w::QuorumKind::Count if q.count() >= 1 => Quorum::N(q.count()),
                _ => return Err(bad()),
            }
        }
    };
    Ok(ReqOptions {
        quorum,
        strict,
        timeout_ms,
    })
}

fn quorum_to_wire(q: Quorum) -> Option<w::Quorum> {
    let (kind, count) = match q {
        Quorum::Default => return None,
        Quorum::One => (w::QuorumKind::One, 0),
        Quorum::Majority => (w::QuorumKind::Quorum, 0),
        Quorum::All => (w::QuorumKind::All, 0),
        Quorum::N(k) => (w::QuorumKind::Count, k),
    };
    Some(w::Quorum::new(kind, count))
}

fn check_count(what: &'static str, len: usize, max: usize) -> Result<(), NetError> {
    if len > max {
        Err(NetError::TooMany { what, len, max })
    } else {
        Ok(())
    }
}

fn check_key(key: &[u8], l: &Limits) -> Result<(), NetError> {
    if key.is_empty() {
        return Err(NetError::EmptyKey { max: l.max_key_len });
    }
    if key.len() > l.max_key_len {
        return Err(NetError::KeyTooLarge {
            len: key.len(),
            max: l.max_key_len,
        });
    }
    Ok(())
}

fn check_value(v: &[u8], l: &Limits) -> Result<(), NetError> {
    if v.len() > l.max_value_len {
        return Err(NetError::ValueTooLarge {
            len: v.len(),
            max: l.max_value_len,
        });
    }
    Ok(())
}

fn check_context(c: &[u8], l: &Limits) -> Result<(), NetError> {
    if c.len() > l.max_context_len {
        return Err(NetError::ContextTooLarge {
            len: c.len(),
            max: l.max_context_len,
        });
    }
    Ok(())
}

/// Checks a message against the limits (done on decode and before encode).
pub fn validate(m: &Message, l: &Limits) -> Result<(), NetError> {
    match m {
        Message::Request(ClientRequest::Get(r)) => check_key(&r.key, l),
        Message::Request(ClientRequest::Put(r)) => {
            check_key(&r.key, l)?;
            check_value(&r.value, l)?;
            check_context(&r.context, l)
        }
        Message::Request(ClientRequest::Delete(r)) => {
            check_key(&r.key, l)?;
            check_context(&r.context, l)
        }
        Message::Response(ClientResponse::Get { siblings, context }) => {
            check_count("siblings", siblings.len(), l.max_siblings)?;
            for s in siblings {
                check_value(&s.value, l)?;
                check_count("version vector entries", s.vv.len(), l.max_vv_entries)?;
            }
            check_context(context, l)
        }
        Message::Response(ClientResponse::Put { context })
        | Message::Response(ClientResponse::Delete { context })
        | Message::ReplicaReply(ReplicaResponseWire::CoordinateReply { context }) => {
            check_context(context, l)
        }
        Message::Replica(ReplicaRequestWire::Put { key, .. })
        | Message::Replica(ReplicaRequestWire::Get { key }) => check_key(key, l),
        Message::Replica(ReplicaRequestWire::Coordinate(c)) => {
            check_key(&c.key, l)?;
            check_value(&c.value, l)?;
            check_context(&c.context, l)
        }
        Message::ReplicaReply(_) => Ok(()),
        Message::Error(e) => check_count("failed replicas", e.failed.len(), l.max_failed_replicas),
    }
}

/// Builds frames; keep one per connection so the builder's buffer is reused.
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
    limits: Limits,
}

impl Encoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            fbb: FlatBufferBuilder::with_capacity(16 << 10),
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Encodes `env` and returns the flatbuffer payload (no length header).
    pub fn encode(&mut self, env: &Envelope) -> Result<&[u8], NetError> {
        validate(&env.message, &self.limits)?;
        self.fbb.reset();
        let (body_type, body) = build_body(&mut self.fbb, &env.message);
        let frame = w::Frame::create(
            &mut self.fbb,
            &w::FrameArgs {
                version: env.version,
                request_id: env.request_id,
                body_type,
                body: Some(body),
                target_shard: env.target_shard,
            },
        );
        w::finish_frame_buffer(&mut self.fbb, frame);
        let data = self.fbb.finished_data();
        if data.len() > self.limits.max_frame_len {
            return Err(NetError::FrameTooLarge {
                len: data.len(),
                max: self.limits.max_frame_len,
            });
        }
        Ok(data)
    }

    /// Appends `[length][payload]` for `env` to `out` (batching several frames per write).
    /// On error `out` is unchanged.
    pub fn encode_into(&mut self, env: &Envelope, out: &mut Vec<u8>) -> Result<(), NetError> {
        let data = self.encode(env)?;
        out.extend_from_slice(&frame_header(data.len()));
        out.extend_from_slice(data);
        Ok(())
    }
}

type Fbb = FlatBufferBuilder<'static>;
type Union = WIPOffset<flatbuffers::UnionWIPOffset>;

fn opt_vec<'a>(fbb: &mut FlatBufferBuilder<'a>, b: &[u8]) -> Option<WIPOffset<Vector<'a, u8>>> {
    // An empty field is omitted: the decoder maps absent to empty, and this keeps frames small.
    (!b.is_empty()).then(|| fbb.create_vector(b))
}

fn build_body(fbb: &mut Fbb, m: &Message) -> (w::Body, Union) {
    match m {
        Message::Request(ClientRequest::Get(r)) => {
            let key = Some(fbb.create_vector(&r.key));
            let q = quorum_to_wire(r.opts.quorum);
            let o = w::GetRequest::create(
                fbb,
                &w::GetRequestArgs {
                    key,
                    r: q.as_ref(),
                    strict: r.opts.strict,
                    timeout_ms: r.opts.timeout_ms,
                },
            );
            (w::Body::GetRequest, o.as_union_value())
        }
        Message::Request(ClientRequest::Put(r)) => {
            let key = Some(fbb.create_vector(&r.key));
            // A put always carries its value field, even when empty: an empty value is data.
            let value = Some(fbb.create_vector(&r.value));
            let context = opt_vec(fbb, &r.context);
            let q = quorum_to_wire(r.opts.quorum);
            let o = w::PutRequest::create(
                fbb,
                &w::PutRequestArgs {
                    key,
                    value,
                    context,
                    w: q.as_ref(),
                    strict: r.opts.strict,
                    timeout_ms: r.opts.timeout_ms,
                },
            );
            (w::Body::PutRequest, o.as_union_value())
        }
        Message::Request(ClientRequest::Delete(r)) => {
            let key = Some(fbb.create_vector(&r.key));
            let context = opt_vec(fbb, &r.context);
            let q = quorum_to_wire(r.opts.quorum);
            let o = w::DeleteRequest::create(
                fbb,
                &w::DeleteRequestArgs {
                    key,
                    context,
                    w: q.as_ref(),
                    strict: r.opts.strict,
                    timeout_ms: r.opts.timeout_ms,
                },
            );
            (w::Body::DeleteRequest, o.as_union_value())
        }
        Message::Response(ClientResponse::Get { siblings, context }) => {
            let mut offs: Vec<WIPOffset<w::Sibling<'static>>> = Vec::with_capacity(siblings.len());
            for s in siblings {
                let value = Some(fbb.create_vector(&s.value));
                let vv: Vec<w::VvEntry> =
                    s.vv.iter()
                        .map(|e| w::VvEntry::new(e.node, e.counter))
                        .collect();
                let vv = Some(fbb.create_vector(&vv));
                let dot = w::Dot::new(s.dot.node, s.dot.counter);
                offs.push(w::Sibling::create(
                    fbb,
                    &w::SiblingArgs {
                        value,
                        tombstone: s.tombstone,
                        dot: Some(&dot),
                        vv,
                    },
                ));
            }
            let siblings: WIPOffset<Vector<'static, ForwardsUOffset<w::Sibling<'static>>>> =
                fbb.create_vector(&offs);
            let context = opt_vec(fbb, context);
            let o = w::GetResponse::create(
                fbb,
                &w::GetResponseArgs {
                    siblings: Some(siblings),
                    context,
                },
            );
            (w::Body::GetResponse, o.as_union_value())
        }
        Message::Response(ClientResponse::Put { context }) => {
            let context = opt_vec(fbb, context);
            let o = w::PutResponse::create(fbb, &w::PutResponseArgs { context });
            (w::Body::PutResponse, o.as_union_value())
        }
        Message::Response(ClientResponse::Delete { context }) => {
            let context = opt_vec(fbb, context);
            let o = w::DeleteResponse::create(fbb, &w::DeleteResponseArgs { context });
            (w::Body::DeleteResponse, o.as_union_value())
        }
        Message::Error(e) => {
            let mut offs = Vec::with_capacity(e.failed.len());
            for r in &e.failed {
                let reason = Some(fbb.create_string(&r.reason));
                offs.push(w::FailedReplica::create(
                    fbb,
                    &w::FailedReplicaArgs {
                        node: r.node,
                        shard: r.shard,
                        reason,
                        code: w::ErrorCode(r.code.to_u16()),
                    },
                ));
            }
            let failed = (!offs.is_empty()).then(|| fbb.create_vector(&offs));
            let message = Some(fbb.create_string(&e.message));
            let o = w::Error::create(
                fbb,
                &w::ErrorArgs {
                    code: w::ErrorCode(e.code.to_u16()),
                    message,
                    acked: e.acked,
                    needed: e.needed,
                    failed,
                },
            );
            (w::Body::Error, o.as_union_value())
        }
        Message::Replica(ReplicaRequestWire::Put {
            key,
            record,
            hint_for,
        }) => {
            let key = Some(fbb.create_vector(key));
            let record = Some(fbb.create_vector(record));
            let o = w::ReplicaPut::create(
                fbb,
                &w::ReplicaPutArgs {
                    key,
                    record,
                    hint_for: *hint_for,
                },
            );
            (w::Body::ReplicaPut, o.as_union_value())
        }
        Message::Replica(ReplicaRequestWire::Get { key }) => {
            let key = Some(fbb.create_vector(key));
            let o = w::ReplicaGet::create(fbb, &w::ReplicaGetArgs { key });
            (w::Body::ReplicaGet, o.as_union_value())
        }
        Message::Replica(ReplicaRequestWire::Coordinate(c)) => {
            let key = Some(fbb.create_vector(&c.key));
            let value = Some(fbb.create_vector(&c.value));
            let context = opt_vec(fbb, &c.context);
            let q = quorum_to_wire(c.opts.quorum);
            let o = w::Coordinate::create(
                fbb,
                &w::CoordinateArgs {
                    key,
                    value,
                    tombstone: c.tombstone,
                    context,
                    w: q.as_ref(),
                    strict: c.opts.strict,
                    timeout_ms: c.opts.timeout_ms,
                },
            );
            (w::Body::Coordinate, o.as_union_value())
        }
        Message::ReplicaReply(ReplicaResponseWire::PutAck) => {
            let o = w::ReplicaPutAck::create(fbb, &w::ReplicaPutAckArgs {});
            (w::Body::ReplicaPutAck, o.as_union_value())
        }
        Message::ReplicaReply(ReplicaResponseWire::GetReply { record }) => {
            // Present-but-empty and absent differ here: absent means "no record".
            let record = record.as_ref().map(|r| fbb.create_vector(r));
            let o = w::ReplicaGetReply::create(fbb, &w::ReplicaGetReplyArgs { record });
            (w::Body::ReplicaGetReply, o.as_union_value())
        }
        Message::ReplicaReply(ReplicaResponseWire::CoordinateReply { context }) => {
            let context = opt_vec(fbb, context);
            let o = w::CoordinateReply::create(fbb, &w::CoordinateReplyArgs { context });
            (w::Body::CoordinateReply, o.as_union_value())
        }
    }
}
