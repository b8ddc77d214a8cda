//! The history of a simulated run and its checker.
//!
//! Checked properties:
//! - every read result keeps the record invariants (no sibling obsoletes another);
//! - every returned value was written by some client to that key, with exactly the context that
//!   client sent (nothing invented, nothing mixed up);
//! - with `R + W > N`, a read that starts after a write was acknowledged sees it or a descendant
//!   (it is a sibling, or a sibling's context covers its dot), and returns no sibling the write overwrote (covered by
//!   the context the write was sent with);
//! - the final reads at `R = N` after healing are reads of that kind for every acknowledged write.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::coordinator::PutAck;
use crate::version::{Record, VersionVector};

#[derive(Debug, Clone)]
pub enum Outcome {
    Acked(PutAck),
    /// Failed or lost: it may or may not have been applied.
    Unknown(String),
}

#[derive(Debug, Clone)]
pub struct WriteOp {
    pub client: usize,
    pub key: Bytes,
    /// `None`: a delete.
    pub value: Option<Bytes>,
    pub ctx: VersionVector,
    pub w: usize,
    pub start_ms: u64,
    pub end_ms: u64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct ReadOp {
    pub client: usize,
    pub key: Bytes,
    pub r: usize,
    pub start_ms: u64,
    pub end_ms: u64,
    pub record: Record,
}

/// Client id of the final R = N reads after healing.
pub const FINAL_READER: usize = usize::MAX;

fn who(client: usize) -> String {
    if client == FINAL_READER {
        "the final reader".to_owned()
    } else {
        format!("client {client}")
    }
}

#[derive(Debug, Default)]
pub struct History {
    pub writes: Vec<WriteOp>,
    pub reads: Vec<ReadOp>,
    pub failed_reads: usize,
}

/// Counters showing that a run exercised something.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckStats {
    pub acked_writes: usize,
    pub unknown_writes: usize,
    pub reads: usize,
    pub failed_reads: usize,
    pub quorum_pairs_checked: usize,
    pub reads_with_siblings: usize,
    pub max_siblings: usize,
}

impl History {
    pub fn check(&self, n: usize) -> Result<CheckStats, String> {
        let mut stats = CheckStats {
            failed_reads: self.failed_reads,
            reads: self.reads.len(),
            ..CheckStats::default()
        };
        let mut by_value: BTreeMap<&Bytes, &WriteOp> = BTreeMap::new();
        for w in &self.writes {
            match &w.outcome {
                Outcome::Acked(_) => stats.acked_writes += 1,
                Outcome::Unknown(_) => stats.unknown_writes += 1,
            }
            if let Some(v) = &w.value {
                if by_value.insert(v, w).is_some() {
                    return Err(format!("workload bug: value {v:?} written twice"));
                }
            }
        }
        for rd in &self.reads {
            let rec = &rd.record;
            rec.check_invariants().map_err(|e| {
                format!(
                    "read by {} of {:?} at {}: {e}: {rec:?}",
                    who(rd.client),
                    rd.key,
                    rd.start_ms
                )
            })?;
            let live = rec.values().count();
            stats.max_siblings = stats.max_siblings.max(rec.siblings().len());
            if live > 1 {
                stats.reads_with_siblings += 1;
            }
            for s in rec.siblings() {
                match &s.value {
                    Some(v) => {
                        let Some(w) = by_value.get(v) else {
                            return Err(format!(
                                "read of {:?} returned value {v:?} nobody wrote",
                                rd.key
                            ));
                        };
                        if w.key != rd.key {
                            return Err(format!(
                                "value {v:?} written to {:?} read from {:?}",
                                w.key, rd.key
                            ));
                        }
                        if w.ctx != s.context {
                            return Err(format!(
                                "value {v:?} returned with context {:?}, written with {:?}",
                                s.context, w.ctx
                            ));
                        }
                    }
                    None => {
                        let known = self
                            .writes
                            .iter()
                            .any(|w| w.value.is_none() && w.key == rd.key && w.ctx == s.context);
                        if !known {
                            return Err(format!(
                                "tombstone {} with a context no delete of {:?} sent",
                                s.dot, rd.key
                            ));
                        }
                    }
                }
            }
        }
        for w in &self.writes {
            let Outcome::Acked(ack) = &w.outcome else {
                continue;
            };
            for rd in &self.reads {
                if rd.key != w.key || rd.start_ms <= w.end_ms || rd.r + w.w <= n {
                    continue;
                }
                stats.quorum_pairs_checked += 1;
                // Present, or superseded: some present sibling's own context covers it. (The
                // record's context alone is weaker: a vector entry n:5 also claims n:4.)
                let seen = rd
                    .record
                    .siblings()
                    .iter()
                    .any(|s| s.dot == ack.dot || s.context.covers(ack.dot));
                if !seen {
                    return Err(format!(
                        "read (R={}) by {} of {:?} at {} ms misses write {} (W={}, acked at {} ms by client {}); read: {:?}",
                        rd.r, who(rd.client), rd.key, rd.start_ms, ack.dot, w.w, w.end_ms, w.client, rd.record
                    ));
                }
                for s in rd.record.siblings() {
                    // What the write replaced is exactly what its client context covered.
                    if w.ctx.covers(s.dot) {
                        return Err(format!(
                            "read (R={}) of {:?} at {} ms returned {} ({:?}), overwritten by write {} acked at {} ms",
                            rd.r, rd.key, rd.start_ms, s.dot, s.value, ack.dot, w.end_ms
                        ));
                    }
                }
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::version::Dot;

    fn write(value: &'static str, ctx: VersionVector, ack: Option<Dot>, end_ms: u64) -> WriteOp {
        let outcome = match ack {
            Some(dot) => {
                let mut h = ctx.clone();
                h.add_dot(dot);
                Outcome::Acked(PutAck {
                    dot,
                    context: h,
                    acked: 2,
                })
            }
            None => Outcome::Unknown("lost".into()),
        };
        WriteOp {
            client: 0,
            key: Bytes::from_static(b"k"),
            value: Some(Bytes::from_static(value.as_bytes())),
            ctx,
            w: 2,
            start_ms: 0,
            end_ms,
            outcome,
        }
    }

    fn read(record: Record, start_ms: u64) -> ReadOp {
        ReadOp {
            client: 1,
            key: Bytes::from_static(b"k"),
            r: 2,
            start_ms,
            end_ms: start_ms + 1,
            record,
        }
    }

    fn rec(writes: &[(&'static str, VersionVector, Dot)]) -> Record {
        let mut r = Record::empty();
        for (v, ctx, dot) in writes {
            let s = Record::empty()
                .update(ctx, dot.node, Some(Bytes::from_static(v.as_bytes())), 0, 64)
                .unwrap();
            assert_eq!(s.siblings()[0].dot.node, dot.node);
            r = Record::sync(&r, &s);
        }
        r
    }

    #[test]
    fn accepts_a_correct_history() {
        let a = rec(&[("a", VersionVector::new(), Dot::new(1, 1))]);
        let h = History {
            writes: vec![write("a", VersionVector::new(), Some(Dot::new(1, 1)), 10)],
            reads: vec![read(a, 11)],
            failed_reads: 0,
        };
        let s = h.check(3).unwrap();
        assert_eq!(s.quorum_pairs_checked, 1);
    }

    #[test]
    fn detects_a_missed_acknowledged_write() {
        let h = History {
            writes: vec![write("a", VersionVector::new(), Some(Dot::new(1, 1)), 10)],
            reads: vec![read(Record::empty(), 11)],
            failed_reads: 0,
        };
        assert!(h.check(3).unwrap_err().contains("misses write"));
        // Not a violation when the read started before the ack, or R + W <= N.
        let mut early = h.reads.clone();
        early[0].start_ms = 5;
        assert!(History {
            writes: h.writes.clone(),
            reads: early,
            failed_reads: 0
        }
        .check(3)
        .is_ok());
        let mut weak = h.reads.clone();
        weak[0].r = 1;
        assert!(History {
            writes: h.writes.clone(),
            reads: weak,
            failed_reads: 0
        }
        .check(3)
        .is_ok());
    }

    #[test]
    fn detects_an_overwritten_value_coming_back() {
        // "b" overwrote "a" and was acked. A later read covers b (through "c", whose writer saw
        // b but claims not to have seen a) and still shows "a": causality was lost somewhere.
        let ctx_b = VersionVector::from_pairs([(1, 1)]);
        let ctx_c = VersionVector::from_pairs([(2, 1)]);
        let bad = rec(&[
            ("a", VersionVector::new(), Dot::new(1, 1)),
            ("c", ctx_c.clone(), Dot::new(3, 1)),
        ]);
        let h = History {
            writes: vec![
                write("a", VersionVector::new(), Some(Dot::new(1, 1)), 5),
                write("b", ctx_b, Some(Dot::new(2, 1)), 10),
                write("c", ctx_c, None, 12),
            ],
            reads: vec![read(bad, 13)],
            failed_reads: 0,
        };
        let e = h.check(3).unwrap_err();
        assert!(e.contains("overwritten by write 2:1"), "{e}");
    }

    #[test]
    fn detects_invented_values_and_wrong_contexts() {
        let a = rec(&[("zzz", VersionVector::new(), Dot::new(1, 1))]);
        let h = History {
            writes: vec![],
            reads: vec![read(a, 1)],
            failed_reads: 0,
        };
        assert!(h.check(3).unwrap_err().contains("nobody wrote"));
        let a = rec(&[("a", VersionVector::from_pairs([(3, 1)]), Dot::new(1, 1))]);
        let h = History {
            writes: vec![write("a", VersionVector::new(), None, 5)],
            reads: vec![read(a, 1)],
            failed_reads: 0,
        };
        assert!(h.check(3).unwrap_err().contains("context"));
    }
}
