//! Property tests of the versioning laws, run on records reachable by real executions (writes
//! coordinated by replicas with contexts clients read earlier, and replica syncs): the merge laws
//! rely on contexts being causally consistent, which arbitrary random records are not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

const REPLICAS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// A client reads replica `replica` and remembers the context in `slot`.
    Read { replica: usize, slot: usize },
    /// A client writes through replica `replica` with the context in `slot`.
    Write {
        replica: usize,
        slot: usize,
        tombstone: bool,
    },
    /// Replica `to` receives replica `from`'s record (put fan-out, read repair).
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..REPLICAS, 0..4usize).prop_map(|(replica, slot)| Op::Read { replica, slot }),
        (0..REPLICAS, 0..4usize, prop::bool::weighted(0.2)).prop_map(
            |(replica, slot, tombstone)| Op::Write {
                replica,
                slot,
                tombstone
            }
        ),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// Replays a script and returns every record state it produced.
fn reachable(ops: &[Op]) -> Vec<Record> {
    let mut replicas = vec![Record::empty(); REPLICAS];
    let mut slots = vec![VersionVector::new(); 4];
    let mut pool = vec![Record::empty()];
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Read { replica, slot } => slots[slot] = replicas[replica].context(),
            Op::Write {
                replica,
                slot,
                tombstone,
            } => {
                let value = (!tombstone).then(|| Bytes::from(format!("v{i}")));
                let actor = replica as NodeId + 1;
                if let Ok(r) = replicas[replica].update(&slots[slot], actor, value, i as u64, 1000)
                {
                    replicas[replica] = r;
                    pool.push(replicas[replica].clone());
                }
            }
            Op::Sync { from, to } => {
                replicas[to] = Record::sync(&replicas[to], &replicas[from]);
                pool.push(replicas[to].clone());
            }
        }
    }
    pool
}

fn three_records() -> impl Strategy<Value = (Record, Record, Record)> {
    (
        prop::collection::vec(op(), 1..40),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(ops, i, j, k)| {
            let pool = reachable(&ops);
            (
                pool[i.index(pool.len())].clone(),
                pool[j.index(pool.len())].clone(),
                pool[k.index(pool.len())].clone(),
            )
        })
}

fn vv() -> impl Strategy<Value = VersionVector> {
    prop::collection::vec((0u32..6, 0u64..20), 0..6).prop_map(VersionVector::from_pairs)
}

proptest! {
    #[test]
    fn sync_is_commutative((a, b, _c) in three_records()) {
        prop_assert_eq!(Record::sync(&a, &b), Record::sync(&b, &a));
    }

    #[test]
    fn sync_is_associative((a, b, c) in three_records()) {
        let left = Record::sync(&Record::sync(&a, &b), &c);
        let right = Record::sync(&a, &Record::sync(&b, &c));
        prop_assert_eq!(&left, &right);
        prop_assert_eq!(left, Record::sync_all([&a, &b, &c]));
    }

    #[test]
    fn sync_is_idempotent((a, b, _c) in three_records()) {
        prop_assert_eq!(Record::sync(&a, &a), a.clone());
        let ab = Record::sync(&a, &b);
        prop_assert_eq!(Record::sync(&a, &ab), ab);
    }

    #[test]
    fn sync_keeps_exactly_what_the_other_side_does_not_obsolete((a, b, _c) in three_records()) {
        let m = Record::sync(&a, &b);
        prop_assert!(m.check_invariants().is_ok());
        for (mine, theirs) in [(&a, &b), (&b, &a)] {
            for s in mine.siblings() {
                let obsoleted = theirs.siblings().iter().any(|t| t.obsoletes(s));
                let kept = m.siblings().contains(s);
                prop_assert_eq!(kept, !obsoleted, "sibling {:?}", s.dot);
            }
        }
        // Nothing is invented.
        for s in m.siblings() {
            prop_assert!(a.siblings().contains(s) || b.siblings().contains(s));
        }
        // The merged context is exactly what both sides had seen.
        prop_assert_eq!(m.context(), a.context().joined(&b.context()));
    }

    #[test]
    fn update_replaces_exactly_what_the_client_saw(
        (a, b, _c) in three_records(), actor in 1u32..=3, tomb: bool,
    ) {
        // The client read `b` (possibly another replica, possibly stale) and writes through `a`.
        let ctx = b.context();
        let value = (!tomb).then(|| Bytes::from_static(b"new"));
        let r = a.update(&ctx, actor, value.clone(), 7, 1000).unwrap();
        prop_assert!(r.check_invariants().is_ok());
        let new: Vec<_> = r.siblings().iter().filter(|s| !a.siblings().contains(s)).collect();
        prop_assert_eq!(new.len(), 1);
        let new = new[0];
        prop_assert_eq!(new.dot.node, actor);
        prop_assert!(!a.context().covers(new.dot), "dot must be fresh for this record");
        prop_assert_eq!(&new.context, &ctx);
        prop_assert_eq!(&new.value, &value);
        for s in a.siblings() {
            prop_assert_eq!(r.siblings().contains(s), !ctx.covers(s.dot));
        }
        prop_assert!(r.context().descends(&a.context()));
    }

    #[test]
    fn record_codec_roundtrip((a, _b, _c) in three_records()) {
        let enc = a.encode();
        prop_assert_eq!(Record::decode(&enc).unwrap(), a.clone());
        prop_assert_eq!(Record::decode_bytes(&Bytes::from(enc)).unwrap(), a);
    }

    #[test]
    fn record_decode_arbitrary_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Record::decode(&bytes);
        let _ = VersionVector::decode(&bytes);
    }

    #[test]
    fn record_decode_mutated_never_panics(
        (a, _b, _c) in three_records(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut enc = a.encode();
        for (i, b) in flips {
            let i = i.index(enc.len());
            enc[i] ^= b;
        }
        if let Ok(r) = Record::decode(&enc) {
            prop_assert!(r.check_invariants().is_ok());
            prop_assert_eq!(Record::decode(&r.encode()).unwrap(), r);
        }
        let len = cut.index(enc.len());
        let _ = Record::decode(&enc[..len]);
    }

    #[test]
    fn vv_codec_roundtrip(a in vv()) {
        prop_assert_eq!(VersionVector::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn vv_join_laws(a in vv(), b in vv(), c in vv()) {
        prop_assert_eq!(a.joined(&b), b.joined(&a));
        prop_assert_eq!(a.joined(&b).joined(&c), a.joined(&b.joined(&c)));
        prop_assert_eq!(a.joined(&a), a.clone());
        let j = a.joined(&b);
        prop_assert!(j.descends(&a) && j.descends(&b));
        // Least upper bound: every entry comes from a or b.
        for (n, x) in j.iter() {
            prop_assert!(a.get(n) == x || b.get(n) == x);
        }
    }

    #[test]
    fn vv_compare_matches_descends(a in vv(), b in vv()) {
        use std::cmp::Ordering::*;
        let expected = match (a.descends(&b), b.descends(&a)) {
            (true, true) => Some(Equal),
            (true, false) => Some(Greater),
            (false, true) => Some(Less),
            (false, false) => None,
        };
        prop_assert_eq!(a.compare(&b), expected);
        prop_assert_eq!(a.compare(&b).map(std::cmp::Ordering::reverse), b.compare(&a));
    }
}

fn val(s: &'static str) -> Option<Bytes> {
    Some(Bytes::from_static(s.as_bytes()))
}

#[test]
fn blind_writes_through_one_node_are_siblings_not_lost() {
    let empty = VersionVector::new();
    let r = Record::empty().update(&empty, 1, val("a"), 0, 64).unwrap();
    let r = r.update(&empty, 1, val("b"), 0, 64).unwrap();
    let values: Vec<_> = r.values().cloned().collect();
    assert_eq!(values, vec![Bytes::from("a"), Bytes::from("b")]);
    // Same after shipping to another replica and merging with an older copy.
    let merged = Record::sync(
        &r,
        &Record::empty().update(&empty, 1, val("a"), 0, 64).unwrap(),
    );
    assert_eq!(merged, r);
}

#[test]
fn write_with_read_context_resolves_siblings() {
    let empty = VersionVector::new();
    let a = Record::empty().update(&empty, 1, val("a"), 0, 64).unwrap();
    let b = Record::empty().update(&empty, 2, val("b"), 0, 64).unwrap();
    let both = Record::sync(&a, &b);
    assert_eq!(both.siblings().len(), 2);
    let resolved = both.update(&both.context(), 2, val("ab"), 1, 64).unwrap();
    assert_eq!(
        resolved.values().collect::<Vec<_>>(),
        vec![&Bytes::from("ab")]
    );
    // A replica that still holds only `a` loses it when the resolution arrives.
    assert_eq!(Record::sync(&a, &resolved), resolved);
}

#[test]
fn tombstones_report_their_time() {
    let empty = VersionVector::new();
    let a = Record::empty().update(&empty, 1, val("a"), 5, 64).unwrap();
    assert!(!a.is_tombstone());
    assert_eq!(a.tombstone_at_ms(), None);
    let d = a.update(&a.context(), 1, None, 9, 64).unwrap();
    assert!(d.is_tombstone());
    assert_eq!(d.tombstone_at_ms(), Some(9));
    assert_eq!(d.values().count(), 0);
    // A concurrent value keeps the key alive.
    let c = Record::sync(
        &d,
        &Record::empty().update(&empty, 2, val("c"), 7, 64).unwrap(),
    );
    assert!(!c.is_tombstone());
    assert_eq!(c.tombstone_at_ms(), None);
    assert!(!Record::empty().is_tombstone());
}

#[test]
fn sibling_cap_refuses_with_typed_error() {
    let empty = VersionVector::new();
    let mut r = Record::empty();
    for _ in 0..3 {
        r = r.update(&empty, 1, val("x"), 0, 3).unwrap();
    }
    let err = r.update(&empty, 1, val("x"), 0, 3).unwrap_err();
    assert_eq!(err, VersionError::TooManySiblings { count: 4, limit: 3 });
    assert!(err.to_string().contains("merge"));
    // Resolving with the full context is always allowed.
    let ok = r.update(&r.context(), 1, val("m"), 0, 3).unwrap();
    assert_eq!(ok.siblings().len(), 1);
}

#[test]
fn forged_context_cannot_cover_the_new_write() {
    let ctx = VersionVector::from_pairs([(1, 100)]);
    let r = Record::empty().update(&ctx, 1, val("x"), 0, 64).unwrap();
    assert_eq!(r.siblings()[0].dot, Dot::new(1, 101));
    assert!(r.check_invariants().is_ok());
}

#[test]
fn decode_rejects_broken_invariants() {
    // Two siblings where the second's context covers the first's dot.
    let s1 = Sibling {
        dot: Dot::new(1, 1),
        context: VersionVector::new(),
        value: val("a"),
        written_at_ms: 0,
    };
    let s2 = Sibling {
        dot: Dot::new(2, 1),
        context: VersionVector::from_pairs([(1, 1)]),
        value: val("b"),
        written_at_ms: 0,
    };
    // Build the bytes by hand through a record that holds only valid pieces, then splice.
    let one = Record::from_siblings(vec![s1.clone()]).encode();
    let two = Record::from_siblings(vec![s2.clone()]).encode();
    let mut bad = vec![1u8, 2];
    bad.extend_from_slice(&one[2..]);
    bad.extend_from_slice(&two[2..]);
    assert!(matches!(Record::decode(&bad), Err(DecodeError::Invalid(_))));
    assert_eq!(
        Record::from_siblings(vec![s1, s2.clone()]).siblings(),
        &[s2]
    );
    assert!(matches!(
        Record::decode(&[9, 0]),
        Err(DecodeError::UnknownFormat { .. })
    ));
    assert!(matches!(
        Record::decode(&[1, 0, 0]),
        Err(DecodeError::Trailing(1))
    ));
    assert_eq!(
        Record::decode(&Record::empty().encode()).unwrap(),
        Record::empty()
    );
    assert_eq!(VersionVector::decode(&[]).unwrap(), VersionVector::new());
}
