//! End to end: the real `loadgen` binary against a real single-node `tern serve` on loopback.
//!
//! The `tern` binary is looked up next to `loadgen` in the same target directory (a workspace
//! test run builds both: `cargo test --workspace`). The node runs with a temp data dir and is
//! killed by PID when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two consecutive free ports of 30000-30999 (client port + shard 0's port).
fn free_port_pair() -> u16 {
    let start = 30000 + (std::process::id() % 500) as u16 * 2;
    (0..500u16)
        .map(|i| 30000 + (start - 30000 + 2 * i) % 1000)
        .find(|&p| {
            TcpListener::bind(("127.0.0.1", p)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        })
        .expect("no free port pair in 30000-30999")
}

fn start_node() -> Node {
    let loadgen = PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
    let tern = loadgen.with_file_name("tern");
    assert!(
        tern.exists(),
        "{} is missing: build it first (cargo build -p tern, or cargo test --workspace)",
        tern.display()
    );
    let port = free_port_pair();
    let dir = std::env::temp_dir().join(format!("loadgen-tern-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(&tern)
        .args([
            "serve",
            "--shards",
            "1",
            "--pin-cpus",
            "false",
            "--log",
            "warn",
        ])
        .args(["--port", &port.to_string(), "--data-dir"])
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Node { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            node.child.try_wait().unwrap().is_none(),
            "tern serve exited while starting"
        );
        assert!(
            Instant::now() < deadline,
            "tern serve did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

#[test]
fn mixed_workload_with_verify_against_a_tern_node() {
    let node = start_node();
    let json = node.dir.join("run.json");
    let status = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--protocol",
            "tern",
            "--addr",
            &format!("127.0.0.1:{}", node.port),
        ])
        .args(["--cores", "0", "--connections", "8", "--pipeline", "2"])
        .args(["--requests", "5000", "--duration", "60", "--workload", "a"])
        .args([
            "--delete-ratio",
            "0.05",
            "--keys",
            "500",
            "--load",
            "--verify",
            "--quiet",
        ])
        .args(["--r", "one", "--w", "one"])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "loadgen failed: {status}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["total_requests"], 5000, "{v}");
    assert_eq!(v["total_errors"], 0, "{v}");
    assert_eq!(v["load"]["count"], 500);
    for o in v["ops"].as_array().unwrap() {
        assert_eq!(o["verify_mismatches"], 0, "{o}");
        // Contexts are passed back, so overwrites replace versions instead of piling siblings.
        assert_eq!(o["sibling_reads"], 0, "{o}");
    }
}
