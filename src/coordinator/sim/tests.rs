//! The simulation's seed sweep plus targeted scenarios for the coordinator's paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use bytes::Bytes;

use super::exec::Sim;
use super::net::{cluster, NetParams, SimNet};
use super::*;
use crate::coordinator::{FailureReason, QuorumOp, ReplicaFailure, TransportError};
use crate::version::Record;

fn run_checked(seed: u64) -> Result<RunReport, String> {
    match catch_unwind(AssertUnwindSafe(|| run_seed(seed))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("seed {seed}: panicked: {msg}"))
        }
    }
}

#[test]
fn simulation_seeds() {
    let seeds: Vec<u64> = match std::env::var("TERN_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("TERN_SIM_SEED must be a u64")],
        Err(_) => {
            let count: u64 = std::env::var("TERN_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
            (0..count).map(|i| 0x7e57_0000 + i).collect()
        }
    };
    let mut total = CheckStats::default();
    let mut messages = 0;
    for &seed in &seeds {
        let report = run_checked(seed)
            .unwrap_or_else(|e| panic!("{e}\nreplay with: TERN_SIM_SEED={seed} cargo test --lib coordinator::sim::tests::simulation_seeds"));
        let s = report.stats;
        total.acked_writes += s.acked_writes;
        total.unknown_writes += s.unknown_writes;
        total.reads += s.reads;
        total.failed_reads += s.failed_reads;
        total.quorum_pairs_checked += s.quorum_pairs_checked;
        total.reads_with_siblings += s.reads_with_siblings;
        total.max_siblings = total.max_siblings.max(s.max_siblings);
        messages += report.messages;
    }
    println!("{} seeds: {total:?}, {messages} messages", seeds.len());
    // The sweep must have exercised what it claims to check.
    if seeds.len() >= 50 {
        assert!(total.acked_writes > total.unknown_writes, "{total:?}");
        assert!(
            total.unknown_writes > 0,
            "faults never failed a write: {total:?}"
        );
        assert!(
            total.failed_reads > 0,
            "faults never failed a read: {total:?}"
        );
        assert!(total.quorum_pairs_checked > 1000, "{total:?}");
        assert!(
            total.reads_with_siblings > 10,
            "no concurrency observed: {total:?}"
        );
    }
}

#[test]
fn same_seed_same_history() {
    for seed in [3, 17] {
        let a = run_checked(seed).unwrap();
        let b = run_checked(seed).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.end_ms, b.end_ms);
        assert_eq!(a.messages, b.messages);
    }
    assert_ne!(
        run_checked(3).unwrap().digest,
        run_checked(4).unwrap().digest
    );
}

// ---- targeted scenarios on a quiet network ----

fn quiet() -> NetParams {
    NetParams {
        min_delay_ms: 1,
        max_delay_ms: 3,
        drop_chance: 0.0,
        max_store_delay_ms: 1,
    }
}

fn setup(nodes: u32) -> (Rc<Sim>, Rc<SimNet>) {
    let sim = Sim::new(42);
    let cfg = CoordinatorConfig::new(3, nodes as usize);
    let net = cluster(&sim, nodes, 1, &cfg, quiet());
    (sim, net)
}

fn prefs3() -> Vec<Replica> {
    (1..=3).map(|node| Replica { node, shard: 0 }).collect()
}

/// Run `f` against the coordinator of `entry` to completion and return its output.
fn drive<T: 'static, F, Fut>(sim: &Rc<Sim>, net: &Rc<SimNet>, entry: u32, f: F) -> T
where
    F: FnOnce(Rc<net::SimCoordinator>) -> Fut,
    Fut: std::future::Future<Output = T> + 'static,
{
    let out = Rc::new(RefCell::new(None));
    let o = Rc::clone(&out);
    let fut = f(net
        .shard(Replica {
            node: entry,
            shard: 0,
        })
        .unwrap());
    sim.spawn(async move {
        *o.borrow_mut() = Some(fut.await);
    });
    sim.run_until(|| out.borrow().is_some(), sim.now_ms() + 60_000)
        .unwrap();
    let v = out.borrow_mut().take().unwrap();
    v
}

fn opts(r: Quorum, w: Quorum) -> RequestOptions {
    RequestOptions {
        r,
        w,
        strict: false,
        timeout_ms: Some(500),
    }
}

fn key() -> Bytes {
    Bytes::from_static(b"k")
}

#[test]
fn write_then_read_through_a_non_replica_node() {
    let (sim, net) = setup(4);
    // Node 4 is not a replica: it forwards to the first replica, which coordinates.
    let ack = drive(&sim, &net, 4, |c| async move {
        c.put(
            key(),
            Some(Bytes::from_static(b"v1")),
            VersionVector::new(),
            &prefs3(),
            &opts(Quorum::All, Quorum::All),
        )
        .await
    })
    .unwrap();
    assert_eq!(ack.dot.node, 1);
    assert_eq!(ack.acked, 3);
    let got = drive(&sim, &net, 4, |c| async move {
        c.get(key(), &prefs3(), &opts(Quorum::All, Quorum::All))
            .await
    })
    .unwrap();
    assert_eq!(
        got.record.values().collect::<Vec<_>>(),
        vec![&Bytes::from_static(b"v1")]
    );
    assert_eq!(got.record.context(), ack.context);
    assert!(net
        .shard(Replica { node: 4, shard: 0 })
        .unwrap()
        .store()
        .mem
        .get_now(b"k")
        .is_none());
}

#[test]
fn unmet_write_quorum_names_the_failed_replicas() {
    let (sim, net) = setup(3);
    net.crash(2);
    net.crash(3);
    let err = drive(&sim, &net, 1, |c| async move {
        c.put(
            key(),
            Some(Bytes::from_static(b"v")),
            VersionVector::new(),
            &prefs3(),
            &opts(Quorum::One, Quorum::Quorum),
        )
        .await
    })
    .unwrap_err();
    let CoordError::Quorum(q) = &err else {
        panic!("{err}")
    };
    assert_eq!((q.op, q.needed, q.acked), (QuorumOp::Write, 2, 1));
    let failed: Vec<u32> = q.failures.iter().map(|(r, _)| r.node).collect();
    assert_eq!(failed, vec![2, 3]);
    assert!(q.failures.iter().all(|(_, why)| matches!(
        why,
        FailureReason::Transport(TransportError::Unreachable { .. })
    )));
    let msg = err.to_string();
    assert!(
        msg.contains("1 of 2") && msg.contains("node 2 shard 0"),
        "{msg}"
    );
    // W=1 succeeds with only the coordinator.
    let ack = drive(&sim, &net, 1, |c| async move {
        c.put(
            key(),
            Some(Bytes::from_static(b"v")),
            VersionVector::new(),
            &prefs3(),
            &opts(Quorum::One, Quorum::One),
        )
        .await
    })
    .unwrap();
    assert_eq!(ack.acked, 1);
}

#[test]
fn read_quorum_times_out_with_typed_error() {
    let (sim, net) = setup(3);
    net.params.borrow_mut().drop_chance = 1.0; // every message lost: only the deadline ends it
    let start = sim.now_ms();
    let err = drive(&sim, &net, 1, |c| async move {
        c.get(key(), &prefs3(), &opts(Quorum::Quorum, Quorum::One))
            .await
    })
    .unwrap_err();
    let CoordError::Quorum(q) = err else { panic!() };
    assert_eq!(
        (q.op, q.needed, q.acked, q.failures.len()),
        (QuorumOp::Read, 2, 0, 3)
    );
    assert!(q
        .failures
        .iter()
        .all(|(_, why)| *why == FailureReason::TimedOut));
    assert_eq!(sim.now_ms() - start, 500, "answers exactly at the deadline");
}

#[test]
fn read_repair_fixes_a_stale_replica() {
    let (sim, net) = setup(3);
    net.crash(3);
    drive(&sim, &net, 1, |c| async move {
        c.put(
            key(),
            Some(Bytes::from_static(b"v")),
            VersionVector::new(),
            &prefs3(),
            &opts(Quorum::One, Quorum::Quorum),
        )
        .await
    })
    .unwrap();
    sim.run_until(|| false, sim.now_ms() + 10_000).unwrap();
    let store3 = || {
        net.shard(Replica { node: 3, shard: 0 })
            .unwrap()
            .store()
            .mem
            .get_now(b"k")
    };
    assert!(store3().is_none());
    net.restart(3);
    let got = drive(&sim, &net, 2, |c| async move {
        c.get(key(), &prefs3(), &opts(Quorum::One, Quorum::One))
            .await
    })
    .unwrap();
    sim.run_until(|| false, sim.now_ms() + 10_000).unwrap();
    // R=1 may have answered from node 3's empty record; the repair still fixes node 3.
    let full = net
        .shard(Replica { node: 1, shard: 0 })
        .unwrap()
        .store()
        .mem
        .get_now(b"k")
        .unwrap();
    assert_eq!(store3(), Some(full.clone()));
    assert!(got.record == full || got.record.is_empty());
    assert_eq!(
        net.shard(Replica { node: 2, shard: 0 })
            .unwrap()
            .repairs_running(),
        0
    );
}

#[test]
fn concurrent_writes_become_siblings_and_a_merge_resolves_them() {
    let (sim, net) = setup(3);
    for (entry, v) in [(1u32, "a"), (2, "b")] {
        net.cut_link(1, 2);
        drive(&sim, &net, entry, move |c| async move {
            c.put(
                key(),
                Some(Bytes::from_static(v.as_bytes())),
                VersionVector::new(),
                &prefs3(),
                &opts(Quorum::One, Quorum::One),
            )
            .await
        })
        .unwrap();
    }
    sim.run_until(|| false, sim.now_ms() + 10_000).unwrap();
    net.heal();
    let got = drive(&sim, &net, 3, |c| async move {
        c.get(key(), &prefs3(), &opts(Quorum::All, Quorum::One))
            .await
    })
    .unwrap();
    let mut values: Vec<_> = got.record.values().cloned().collect();
    values.sort();
    assert_eq!(
        values,
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );
    let ctx = got.record.context();
    drive(&sim, &net, 3, move |c| async move {
        c.put(
            key(),
            Some(Bytes::from_static(b"ab")),
            ctx,
            &prefs3(),
            &opts(Quorum::All, Quorum::All),
        )
        .await
    })
    .unwrap();
    let got = drive(&sim, &net, 2, |c| async move {
        c.get(key(), &prefs3(), &opts(Quorum::All, Quorum::One))
            .await
    })
    .unwrap();
    assert_eq!(
        got.record.values().collect::<Vec<_>>(),
        vec![&Bytes::from_static(b"ab")]
    );
}

#[test]
fn invalid_requests_are_refused_clearly() {
    let (sim, net) = setup(3);
    let e = drive(&sim, &net, 1, |c| async move {
        c.get(key(), &prefs3(), &opts(Quorum::Count(4), Quorum::One))
            .await
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "R=4 is invalid with N=3: it must be between 1 and N"
    );
    let e = drive(&sim, &net, 1, |c| async move {
        c.get(Bytes::new(), &prefs3(), &opts(Quorum::One, Quorum::One))
            .await
    })
    .unwrap_err();
    assert!(matches!(e, CoordError::InvalidRequest(_)));
    let big = Bytes::from(vec![0u8; (1 << 20) + 1]);
    let e = drive(&sim, &net, 1, move |c| async move {
        c.put(
            key(),
            Some(big),
            VersionVector::new(),
            &prefs3(),
            &opts(Quorum::One, Quorum::One),
        )
        .await
    })
    .unwrap_err();
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    // A Coordinate sent to a shard outside the preference list is refused.
    let resp = drive(&sim, &net, 1, |c| async move {
        let mut prefs = prefs3();
        prefs.retain(|r| r.node != 1);
        c.handle(crate::coordinator::ReplicaRequest::Coordinate(
            crate::coordinator::CoordinateRequest {
                key: key(),
                value: None,
                context: VersionVector::new(),
                w: 1,
                strict: false,
                timeout_ms: 100,
                preference: prefs,
            },
        ))
        .await
    });
    assert_eq!(
        resp,
        crate::coordinator::ReplicaResponse::Failed(ReplicaFailure::NotReplica)
    );
}

#[test]
fn sibling_cap_reaches_the_client() {
    let sim = Sim::new(1);
    let mut cfg = CoordinatorConfig::new(3, 3);
    cfg.max_siblings = 2;
    let net = cluster(&sim, 3, 1, &cfg, quiet());
    for i in 0..2 {
        drive(&sim, &net, 1, move |c| async move {
            c.put(
                key(),
                Some(Bytes::from(format!("v{i}"))),
                VersionVector::new(),
                &prefs3(),
                &opts(Quorum::One, Quorum::All),
            )
            .await
        })
        .unwrap();
    }
    let e = drive(&sim, &net, 1, |c| async move {
        c.put(
            key(),
            Some(Bytes::from_static(b"x")),
            VersionVector::new(),
            &prefs3(),
            &opts(Quorum::One, Quorum::All),
        )
        .await
    })
    .unwrap_err();
    assert_eq!(e, CoordError::TooManySiblings { count: 3, limit: 2 });
    let rec: Record = net
        .shard(Replica { node: 1, shard: 0 })
        .unwrap()
        .store()
        .mem
        .get_now(b"k")
        .unwrap();
    assert_eq!(rec.siblings().len(), 2);
}

#[test]
fn put_ack_context_never_claims_unseen_writes() {
    let (sim, net) = setup(3);
    let put = |v: &'static str, ctx: VersionVector| {
        drive(&sim, &net, 1, move |c| async move {
            c.put(
                key(),
                Some(Bytes::from_static(v.as_bytes())),
                ctx,
                &prefs3(),
                &opts(Quorum::One, Quorum::All),
            )
            .await
        })
        .unwrap()
    };
    let a = put("a", VersionVector::new());
    // Contiguous: the ack context is the write's full history.
    assert!(a.context.covers(a.dot));
    // A second blind write through the same coordinator gets dot 1:2; a vector holding it would
    // also claim 1:1 ("a"), which this client never saw.
    let b = put("b", VersionVector::new());
    assert_eq!(b.dot, crate::version::Dot::new(1, 2));
    assert!(!b.context.covers(a.dot));
    // Writing again with that context keeps "a" (and "b": the client did not claim it either).
    put("c", b.context.clone());
    let got = drive(&sim, &net, 2, |c| async move {
        c.get(key(), &prefs3(), &opts(Quorum::All, Quorum::One))
            .await
    })
    .unwrap();
    let values: Vec<_> = got.record.values().cloned().collect();
    assert_eq!(
        values,
        vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c")
        ]
    );
}
