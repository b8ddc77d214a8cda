//! Real multi-process clusters on 127.0.0.x (each node binds its outgoing sockets to its own
//! address): replication through every coordinator, a SIGKILLed replica (W=2/R=2 still work,
//! W=3 fails in time naming it, read repair after restart), siblings from concurrent
//! coordinators, and zone-spread replicas.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tern::client::{Client, ClientConfig, ClientError, OpOptions, Quorum};

fn client(n: &Node) -> Client {
    Client::connect(&n.addr(), ClientConfig::default()).unwrap()
}

fn opts(r: u8, w: u8, timeout_ms: u32) -> OpOptions {
    OpOptions {
        r: Quorum::N(r),
        w: Quorum::N(w),
        strict: false,
        timeout_ms,
    }
}

/// What `tern debug-read` prints for one node: `Some(values)` or `None` (no record there).
fn replica_values(node: &Node, key: &str) -> Result<Option<Vec<String>>, String> {
    let o = tern(&["debug-read", "--node", &node.addr(), "--key", key]);
    match o.status.code() {
        Some(0) => Ok(Some(
            stdout(&o)
                .lines()
                .filter_map(|l| l.split_once(" value ").map(|(_, v)| v.to_owned()))
                .collect(),
        )),
        Some(1) => Ok(None),
        _ => Err(stderr(&o)),
    }
}

fn write_everywhere_read_elsewhere(c: &mut Cluster, keys: usize) {
    let count = c.nodes.len();
    let mut clients: Vec<Client> = c.nodes.iter().map(client).collect();
    for i in 0..keys {
        let key = format!("key-{i}");
        let val = format!("value-{i}");
        let w = i % count;
        let r = (i + 1) % count;
        clients[w]
            .put_with(key.clone(), val.clone(), None, &opts(2, 2, 2000))
            .unwrap();
        let g = clients[r]
            .get_with(key.clone(), &opts(2, 2, 2000))
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "{key} written via node {} not found via node {}",
                    w + 1,
                    r + 1
                )
            });
        assert_eq!(g.siblings.len(), 1, "{key}: {:?}", g.siblings);
        assert_eq!(&g.siblings[0].value[..], val.as_bytes());
    }
}

#[test]
fn three_nodes_replicate_through_every_coordinator() {
    let mut c = Cluster::start("c3", 3, 2, 0, &["--replication=3"]);
    write_everywhere_read_elsewhere(&mut c, 60);
    // With N=3 of 3 nodes, every node holds every key.
    for n in &c.nodes {
        assert_eq!(
            replica_values(n, "key-7").unwrap(),
            Some(vec!["value-7".to_owned()])
        );
    }
}

#[test]
fn five_nodes_replicate_to_exactly_three() {
    let mut c = Cluster::start("c5", 5, 1, 0, &["--replication=3"]);
    write_everywhere_read_elsewhere(&mut c, 50);
    // Wait (bounded) for the background fan-out past W=2, then count holders per key.
    for i in [0usize, 13, 42] {
        let key = format!("key-{i}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut holders = 0;
            let mut not_owner = 0;
            for n in &c.nodes {
                match replica_values(n, &key) {
                    Ok(Some(v)) => {
                        assert_eq!(v, vec![format!("value-{i}")]);
                        holders += 1;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        assert!(e.contains("holds no replica"), "{e}");
                        not_owner += 1;
                    }
                }
            }
            assert_eq!(not_owner, 2, "exactly N=3 of 5 nodes are replicas of {key}");
            if holders == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key} reached only {holders} replicas"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn killed_replica_w2_r2_work_w3_fails_naming_it_and_read_repair_heals_it() {
    let mut c = Cluster::start("kill", 3, 1, 0, &["--replication=3"]);
    c.node(3).kill();
    let mut c1 = client(&c.nodes[0]);
    let mut c2 = client(&c.nodes[1]);
    // W=2 and R=2 still succeed with one replica down.
    c1.put_with("while-down", "v1", None, &opts(2, 2, 1000))
        .unwrap();
    let g = c2
        .get_with("while-down", &opts(2, 2, 1000))
        .unwrap()
        .unwrap();
    assert_eq!(&g.siblings[0].value[..], b"v1");
    // W=3 cannot be met: a typed error within its deadline that names node 3.
    let t0 = Instant::now();
    let err = c1
        .put_with("needs-all", "v", None, &opts(2, 3, 1000))
        .unwrap_err();
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(3000), "took {took:?}");
    match &err {
        ClientError::QuorumFailed {
            acked,
            needed,
            failed,
            ..
        }
        | ClientError::Timeout {
            acked,
            needed,
            failed,
            ..
        } => {
            assert_eq!((*acked, *needed), (2, 3), "{err}");
            assert!(failed.iter().any(|f| f.node == 3), "names node 3: {err}");
        }
        other => panic!("expected a quorum error, got {other:?}"),
    }
    // The coordinator logs the failure with its request span (written before it answered).
    let log = c.nodes[0].read_log();
    assert!(
        log.lines().any(|l| l.contains("request failed")
            && l.contains("op=\"put\"")
            && l.contains("acked=2")),
        "node 1 logged no failed-request line:\n{log}"
    );
    // Each failed replica is named once in the text a user reads.
    let text = err.to_string();
    assert_eq!(text.matches("node 3 shard 0: ").count(), 1, "{text}");
    // Node 3 comes back without "while-down"; a read through node 1 repairs it.
    c.node(3).restart();
    assert_eq!(replica_values(&c.nodes[2], "while-down").unwrap(), None);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let g = c1.get_with("while-down", &opts(3, 2, 1000));
        if let Ok(Some(g)) = &g {
            assert_eq!(&g.siblings[0].value[..], b"v1");
        }
        if replica_values(&c.nodes[2], "while-down").unwrap() == Some(vec!["v1".to_owned()]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "read repair never reached node 3"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn concurrent_writes_via_different_coordinators_become_siblings_then_resolve() {
    let c = Cluster::start("sib", 3, 1, 0, &["--replication=3"]);
    let mut a = client(&c.nodes[0]);
    let mut b = client(&c.nodes[1]);
    let all = opts(3, 3, 2000);
    a.put_with("cart", "base", None, &all).unwrap();
    let ctx = b.get_with("cart", &all).unwrap().unwrap().context;
    a.put_with("cart", "from-node-1", Some(&ctx), &all).unwrap();
    b.put_with("cart", "from-node-2", Some(&ctx), &all).unwrap();
    let g = a.get_with("cart", &all).unwrap().unwrap();
    let vals: HashSet<Bytes> = g.live().map(|s| s.value.clone()).collect();
    let want: HashSet<Bytes> = [Bytes::from("from-node-1"), Bytes::from("from-node-2")].into();
    assert_eq!(vals, want, "two concurrent siblings");
    let dots: HashSet<u32> = g.siblings.iter().map(|s| s.dot.node).collect();
    assert_eq!(dots, [1, 2].into(), "each coordinator minted its own dot");
    b.put_with("cart", "merged", Some(&g.context), &all)
        .unwrap();
    let g = a.get_with("cart", &all).unwrap().unwrap();
    let vals: Vec<Bytes> = g.live().map(|s| s.value.clone()).collect();
    assert_eq!(vals, vec![Bytes::from("merged")]);
}

#[test]
fn replicas_span_three_zones() {
    // 6 nodes, zones z0 z1 z2 (two nodes each), N=3: every key on one node per zone.
    let c = Cluster::start("zones", 6, 1, 3, &["--replication=3"]);
    let mut cl = client(&c.nodes[0]);
    for i in 0..12 {
        let key = format!("z-{i}");
        cl.put_with(key.clone(), "x", None, &opts(3, 3, 2000))
            .unwrap();
        let mut zones = HashSet::new();
        let mut holders = 0;
        for n in &c.nodes {
            if let Ok(Some(_)) = replica_values(n, &key) {
                holders += 1;
                zones.insert((n.id - 1) % 3);
            }
        }
        assert_eq!(holders, 3, "{key}: W=3 reached three replicas");
        assert_eq!(zones.len(), 3, "{key}: replicas in distinct zones");
    }
}
