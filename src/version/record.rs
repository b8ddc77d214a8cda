//! Siblings and records: what one replica stores for one key.
//!
//! A [`Record`] is a set of concurrent [`Sibling`]s, each a write identified by its [`Dot`] and
//! carrying the causal context the client wrote it with. Invariants (checked by `debug_assert!`
//! and by [`Record::decode`]):
//! - siblings are sorted strictly by dot (one sibling per dot), so equal records are equal values;
//! - no sibling's own context covers its dot;
//! - no sibling is obsoleted by another: `b` obsoletes `a` iff `b.context` covers `a.dot`.

use bytes::Bytes;

use super::codec::{self, DecodeError, Reader};
use super::vv::{Dot, NodeId, VersionVector};
use super::VersionError;

/// One write of a key. `value == None` is a tombstone (a versioned delete).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sibling {
    pub dot: Dot,
    /// The causal context the client sent with this write: what it had seen.
    pub context: VersionVector,
    pub value: Option<Bytes>,
    /// Coordinator's wall-clock time of the write; only used to age tombstones.
    pub written_at_ms: u64,
}

impl Sibling {
    /// The history this write carries: its context plus its own dot.
    pub fn history(&self) -> VersionVector {
        let mut h = self.context.clone();
        h.add_dot(self.dot);
        h
    }

    /// Whether `self` obsoletes `other`: a distinct write whose context covers `other`'s dot.
    ///
    /// Deliberately not "`history()` covers `other.dot`": two blind writes coordinated by the
    /// same node get dots (n, 1) and (n, 2) with empty contexts; they are concurrent, and the
    /// vector join of (n, 2) would claim (n, 1) and silently lose it.
    pub fn obsoletes(&self, other: &Sibling) -> bool {
        self.dot != other.dot && self.context.covers(other.dot)
    }

    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Deterministic choice between two siblings claiming the same dot (only possible after a
    /// replica lost data or a peer sent garbage); keeps `sync` commutative even then.
    fn tiebreak_gt(&self, other: &Sibling) -> bool {
        (self.context.entries(), &self.value, self.written_at_ms)
            > (other.context.entries(), &other.value, other.written_at_ms)
    }
}

/// Everything one replica knows about one key: the concurrent writes not yet resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Record {
    siblings: Vec<Sibling>,
}

impl Record {
    /// The record of a key nobody wrote: no siblings, empty context.
    pub fn empty() -> Self {
        Record::default()
    }

    /// Build from siblings, normalising (sorting, dropping duplicates and obsoleted siblings).
    pub fn from_siblings(siblings: Vec<Sibling>) -> Self {
        Self::normalise(siblings)
    }

    pub fn siblings(&self) -> &[Sibling] {
        &self.siblings
    }

    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty()
    }

    /// Live values (tombstones skipped), in dot order.
    pub fn values(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.siblings.iter().filter_map(|s| s.value.as_ref())
    }

    /// The causal context handed to clients: the join of every sibling's history. A put with
    /// this context replaces every sibling of this record.
    pub fn context(&self) -> VersionVector {
        let mut vv = VersionVector::new();
        for s in &self.siblings {
            vv.join(&s.context);
            vv.add_dot(s.dot);
        }
        vv
    }

    /// True when every sibling is a tombstone (and there is at least one): the key is deleted.
    pub fn is_tombstone(&self) -> bool {
        !self.siblings.is_empty() && self.siblings.iter().all(Sibling::is_tombstone)
    }

    /// For a deleted key, the time of its latest tombstone (the storage GC grace starts there).
    pub fn tombstone_at_ms(&self) -> Option<u64> {
        if !self.is_tombstone() {
            return None;
        }
        self.siblings.iter().map(|s| s.written_at_ms).max()
    }

    /// A new write coordinated by `actor` (which must be a replica of the key, running this inside
    /// its shard's atomic read-modify-write): drops the siblings the client has seen and adds one
    /// with a fresh dot of `actor`.
    ///
    /// The counter is one past both this record's and the client's view of `actor`: on honest
    /// input it is the record's (contiguous dots per actor and key); a client context claiming
    /// more cannot make the new write covered by its own context.
    pub fn update(
        &self,
        client_ctx: &VersionVector,
        actor: NodeId,
        value: Option<Bytes>,
        now_ms: u64,
        max_siblings: usize,
    ) -> Result<Record, VersionError> {
        let seen = self.context().get(actor).max(client_ctx.get(actor));
        let counter = seen
            .checked_add(1)
            .ok_or(VersionError::CounterExhausted { node: actor })?;
        let dot = Dot::new(actor, counter);
        let mut siblings: Vec<Sibling> = self
            .siblings
            .iter()
            .filter(|s| !client_ctx.covers(s.dot))
            .cloned()
            .collect();
        let count = siblings.len() + 1;
        if count > max_siblings {
            return Err(VersionError::TooManySiblings {
                count,
                limit: max_siblings,
            });
        }
        let pos = siblings.partition_point(|s| s.dot < dot);
        siblings.insert(
            pos,
            Sibling {
                dot,
                context: client_ctx.clone(),
                value,
                written_at_ms: now_ms,
            },
        );
        let r = Record { siblings };
        debug_assert!(r.check_invariants().is_ok());
        Ok(r)
    }

    /// The join of two replicas' knowledge: every sibling of either side that the other side
    /// does not obsolete. Commutative, associative and idempotent; never refused (it may exceed
    /// the sibling cap, which only limits new writes).
    pub fn sync(a: &Record, b: &Record) -> Record {
        if a == b {
            return a.clone();
        }
        let mut all = Vec::with_capacity(a.siblings.len() + b.siblings.len());
        all.extend(a.siblings.iter().cloned());
        all.extend(b.siblings.iter().cloned());
        Self::normalise(all)
    }

    /// Join of many records (read merge); an absent record is [`Record::empty`].
    pub fn sync_all<'a>(records: impl IntoIterator<Item = &'a Record>) -> Record {
        let mut all = Vec::new();
        for r in records {
            all.extend(r.siblings.iter().cloned());
        }
        Self::normalise(all)
    }

    /// Sort by dot, keep one sibling per dot, drop every sibling some other sibling's context
    /// covers. Linear after sorting: a sibling is obsoleted iff the join of all contexts covers
    /// its dot (its own context never does, see the invariants).
    fn normalise(mut all: Vec<Sibling>) -> Record {
        all.sort_by_key(|s| s.dot);
        let mut dedup: Vec<Sibling> = Vec::with_capacity(all.len());
        for s in all {
            match dedup.last_mut() {
                Some(last) if last.dot == s.dot => {
                    if s.tiebreak_gt(last) {
                        *last = s;
                    }
                }
                _ => dedup.push(s),
            }
        }
        let mut ctx = VersionVector::new();
        for s in &dedup {
            ctx.join(&s.context);
        }
        dedup.retain(|s| !ctx.covers(s.dot));
        let r = Record { siblings: dedup };
        debug_assert!(r.check_invariants().is_ok());
        r
    }

    /// Checks the invariants listed in the module doc.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        if !self.siblings.windows(2).all(|w| w[0].dot < w[1].dot) {
            return Err("siblings not sorted strictly by dot");
        }
        if self.siblings.iter().any(|s| s.dot.counter == 0) {
            return Err("sibling with a zero dot counter");
        }
        if self.siblings.iter().any(|s| s.context.covers(s.dot)) {
            return Err("sibling whose context covers its own dot");
        }
        let mut ctx = VersionVector::new();
        for s in &self.siblings {
            ctx.join(&s.context);
        }
        if self.siblings.iter().any(|s| ctx.covers(s.dot)) {
            return Err("sibling obsoleted by another sibling");
        }
        Ok(())
    }

    /// Compact binary form: format byte, sibling count, then per sibling its dot, context,
    /// write time, a tombstone flag and the value.
    pub fn encode(&self) -> Vec<u8> {
        let payload: usize = self
            .siblings
            .iter()
            .map(|s| 24 + s.context.len() * 6 + s.value.as_ref().map_or(0, Bytes::len))
            .sum();
        let mut out = Vec::with_capacity(2 + payload);
        out.push(codec::RECORD_FORMAT_V1);
        codec::put_varint(&mut out, self.siblings.len() as u64);
        for s in &self.siblings {
            codec::put_varint(&mut out, u64::from(s.dot.node));
            codec::put_varint(&mut out, s.dot.counter);
            s.context.encode_into(&mut out);
            codec::put_varint(&mut out, s.written_at_ms);
            match &s.value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    codec::put_varint(&mut out, v.len() as u64);
                    out.extend_from_slice(v);
                }
            }
        }
        out
    }

    /// Inverse of [`Record::encode`], copying values out of `buf`. Never panics; rejects input
    /// that breaks the record invariants.
    pub fn decode(buf: &[u8]) -> Result<Record, DecodeError> {
        Self::decode_with(buf, Bytes::copy_from_slice)
    }

    /// Like [`Record::decode`], but values are zero-copy slices of `buf`.
    pub fn decode_bytes(buf: &Bytes) -> Result<Record, DecodeError> {
        Self::decode_with(buf, |v| buf.slice_ref(v))
    }

    fn decode_with(buf: &[u8], value: impl Fn(&[u8]) -> Bytes) -> Result<Record, DecodeError> {
        let mut r = Reader::new(buf);
        let format = r.u8("record format")?;
        if format != codec::RECORD_FORMAT_V1 {
            return Err(DecodeError::UnknownFormat {
                what: "record",
                format,
            });
        }
        // A sibling takes at least 5 bytes: node, counter, context count, time, flag.
        let count = r.count("siblings", 5)?;
        let mut siblings = Vec::with_capacity(count);
        for _ in 0..count {
            let node = r.node_id()?;
            let counter = r.varint("dot counter")?;
            let context = VersionVector::decode_from(&mut r)?;
            let written_at_ms = r.varint("written_at_ms")?;
            let v = match r.u8("tombstone flag")? {
                0 => None,
                1 => {
                    let at = r.pos();
                    let len = r.varint("value length")?;
                    let len = usize::try_from(len).map_err(|_| DecodeError::Truncated {
                        what: "value",
                        offset: at,
                    })?;
                    Some(value(r.bytes(len, "value")?))
                }
                _ => return Err(DecodeError::Invalid("tombstone flag is neither 0 nor 1")),
            };
            siblings.push(Sibling {
                dot: Dot::new(node, counter),
                context,
                value: v,
                written_at_ms,
            });
        }
        r.finish()?;
        let rec = Record { siblings };
        rec.check_invariants().map_err(DecodeError::Invalid)?;
        Ok(rec)
    }
}
