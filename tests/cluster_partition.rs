//! A cut link, not a dead node: iptables drops every packet between nodes 2 and 3 of a real
//! 3-node cluster (each node binds its outgoing sockets to its own 127.0.0.x address, so the
//! rule cuts exactly that link while both nodes stay up and reachable from everyone else).
//!
//! Shows: a write coordinated by node 2 at W=3 fails within its deadline naming node 3; W=2
//! succeeds; node 3 misses that write; a read at R=3 through node 1 (which still reaches node 3)
//! returns it and repairs node 3; after the link heals, W=3 through node 2 succeeds again.
//!
//! Needs root and iptables (`.ci/run` installs it). The rules live in a dedicated chain named
//! after the test's pid, limited to the cluster's ports, and are removed on drop (also when the
//! test fails). Set `TERN_SKIP_IPTABLES=1` to skip on a machine without iptables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tern::client::{Client, ClientConfig, ClientError, OpOptions, Quorum};

fn opts(r: u8, w: u8, timeout_ms: u32) -> OpOptions {
    OpOptions {
        r: Quorum::N(r),
        w: Quorum::N(w),
        strict: false,
        timeout_ms,
    }
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let o = Command::new("iptables")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// A dedicated OUTPUT sub-chain that drops TCP between two loopback addresses on a port range
/// (both directions, requests and replies). Flushed and deleted on drop.
struct Cut {
    chain: String,
}

impl Cut {
    fn link(a: &str, b: &str, ports: (u16, u16)) -> Result<Cut, String> {
        let chain = format!("TERN_CUT_{}", std::process::id());
        let range = format!("{}:{}", ports.0, ports.1);
        iptables(&["-N", &chain])?;
        let cut = Cut { chain };
        iptables(&["-I", "OUTPUT", "-j", &cut.chain])?;
        for (src, dst) in [(a, b), (b, a)] {
            for dir in ["--dport", "--sport"] {
                iptables(&[
                    "-A", &cut.chain, "-p", "tcp", "-s", src, "-d", dst, dir, &range, "-j", "DROP",
                ])?;
            }
        }
        Ok(cut)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = iptables(&["-D", "OUTPUT", "-j", &self.chain]);
        let _ = iptables(&["-F", &self.chain]);
        let _ = iptables(&["-X", &self.chain]);
    }
}

fn replica_has(node: &Node, key: &str, value: &str) -> bool {
    let o = tern(&["debug-read", "--node", &node.addr(), "--key", key]);
    o.status.code() == Some(0)
        && stdout(&o)
            .lines()
            .any(|l| l.ends_with(&format!(" value {value}")))
}

#[test]
fn cut_link_fails_w3_naming_the_far_node_and_read_repair_crosses_the_cut() {
    if std::env::var_os("TERN_SKIP_IPTABLES").is_some() {
        eprintln!("TERN_SKIP_IPTABLES set: partition test skipped");
        return;
    }
    let c = Cluster::start("cut", 3, 1, 0, &["--replication=3"]);
    let port = c.nodes[0].port;
    let cut = Cut::link("127.0.0.2", "127.0.0.3", (port, port + 1))
        .expect("iptables is needed for this test (run as root; TERN_SKIP_IPTABLES=1 skips)");

    // The test talks from 127.0.0.1, which the cut does not touch.
    let mut via2 = Client::connect(&c.nodes[1].addr(), ClientConfig::default()).unwrap();
    let mut via1 = Client::connect(&c.nodes[0].addr(), ClientConfig::default()).unwrap();

    let t0 = Instant::now();
    let err = via2
        .put_with("across", "v-all", None, &opts(2, 3, 1000))
        .unwrap_err();
    eprintln!("W=3 across the cut failed after {:?}: {err}", t0.elapsed());
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
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
            assert!(
                failed.iter().all(|f| f.node == 3),
                "only node 3 fails: {err}"
            );
            assert!(!failed.is_empty(), "names node 3: {err}");
        }
        other => panic!("expected a quorum error naming node 3, got {other:?}"),
    }

    via2.put_with("split", "v2", None, &opts(2, 2, 1000))
        .unwrap();
    assert!(
        !replica_has(&c.nodes[2], "split", "v2"),
        "node 3 cannot have a write node 2 could not send it"
    );

    // Node 1 still reaches node 3: a full read through it returns the value and repairs node 3.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(g)) = via1.get_with("split", &opts(3, 2, 1000)) {
            assert_eq!(&g.siblings[0].value[..], b"v2");
        }
        if replica_has(&c.nodes[2], "split", "v2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "read repair never crossed to node 3"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Heal: W=3 through node 2 works again once its peer connection to node 3 recovers.
    drop(cut);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match via2.put_with("healed", "v3", None, &opts(2, 3, 1000)) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "link never healed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(replica_has(&c.nodes[2], "healed", "v3"));
}
