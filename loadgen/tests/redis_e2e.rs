//! End to end: the real `loadgen` binary against a real `redis-server` on a free loopback port.
//!
//! Needs `redis-server` on PATH (CI installs it); the server is started per test with no
//! persistence in a temp dir and killed by PID when the test ends, pass or fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start(tag: &str) -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("loadgen-e2e-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test (apt-get install redis-server)");
        let r = Redis { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The listener must be ours: a server that lost the race for the port has exited.
        let mut r = r;
        assert!(
            r.child.try_wait().unwrap().is_none(),
            "redis-server on {port} exited"
        );
        r
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port of 30000-30999 (the range this project's test servers use) that is free now.
fn free_port() -> u16 {
    // Tests run in parallel threads: each call starts its search elsewhere, so two servers
    // starting at once do not both pick the same still-free port.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let spread = NEXT.fetch_add(37, Ordering::Relaxed);
    let start = 30000 + (std::process::id() as u16 % 1000 + spread) % 1000;
    (0..1000u16)
        .map(|i| 30000 + (start - 30000 + i) % 1000)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("no free port in 30000-30999")
}

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
}

#[test]
fn closed_loop_mixed_workload_with_verify_and_every_output() {
    let redis = Redis::start("closed");
    let out = redis.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let json = out.join("run.json");
    let status = loadgen()
        .args([
            "--protocol",
            "resp",
            "--addr",
            &redis.addr(),
            "--cores",
            "0",
        ])
        .args([
            "--connections",
            "8",
            "--pipeline",
            "4",
            "--requests",
            "20000",
        ])
        .args([
            "--workload",
            "a",
            "--delete-ratio",
            "0.05",
            "--keys",
            "2000",
        ])
        .args(["--value-size", "16..300", "--load", "--verify", "--quiet"])
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(out.join("hgrm"))
        .arg("--plot")
        .arg(out.join("run.svg"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "loadgen failed: {status}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["total_requests"], 20000);
    assert_eq!(v["total_errors"], 0);
    assert_eq!(v["load"]["count"], 2000);
    let ops = v["ops"].as_array().unwrap();
    let names: Vec<&str> = ops.iter().map(|o| o["op"].as_str().unwrap()).collect();
    assert_eq!(names, ["get", "put", "delete"]);
    for o in ops {
        assert_eq!(o["verify_mismatches"], 0, "{o}");
        let l = &o["latency"];
        let (p50, p99, max) = (
            l["p50_us"].as_f64().unwrap(),
            l["p99_us"].as_f64().unwrap(),
            l["max_us"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{l}");
    }
    for f in ["get.hgrm", "put.hgrm", "delete.hgrm", "load-put.hgrm"] {
        let text = std::fs::read_to_string(out.join("hgrm").join(f)).unwrap();
        assert!(
            text.contains("1/(1-Percentile)") && text.contains("#[Max"),
            "{f}"
        );
    }
    let svg = std::fs::read_to_string(out.join("run.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3);
}

#[test]
fn verify_catches_values_overwritten_behind_its_back() {
    let redis = Redis::start("verify");
    let port = redis.port;
    // A rogue writer replaces every key with a value loadgen never wrote, while loadgen reads.
    let rogue = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut buf = Vec::new();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            buf.clear();
            for k in 0..200 {
                let key = format!("key:{k:012}");
                write!(
                    buf,
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$5\r\nrogue\r\n",
                    key.len()
                )
                .unwrap();
            }
            s.write_all(&buf).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let json = redis.dir.join("verify.json");
    let status = loadgen()
        .args([
            "--protocol",
            "resp",
            "--addr",
            &redis.addr(),
            "--cores",
            "0",
        ])
        .args([
            "--connections",
            "4",
            "--rate",
            "4000",
            "--duration",
            "2",
            "--keys",
            "200",
        ])
        .args(["--workload", "b", "--load", "--verify", "--quiet", "--json"])
        .arg(&json)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    rogue.join().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "a verify mismatch must fail the run"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let get = &v["ops"][0];
    assert_eq!(get["op"], "get");
    assert!(get["verify_mismatches"].as_u64().unwrap() > 0, "{get}");
    assert!(get["mismatched_keys"][0]
        .as_str()
        .unwrap()
        .starts_with("key:"));
}

#[test]
fn a_stalled_server_shows_up_as_timeouts_and_long_latency() {
    let redis = Redis::start("stall");
    let pid = redis.child.id().to_string();
    let json = redis.dir.join("stall.json");
    let mut run = loadgen()
        .args([
            "--protocol",
            "resp",
            "--addr",
            &redis.addr(),
            "--cores",
            "0",
        ])
        .args([
            "--connections",
            "4",
            "--rate",
            "1000",
            "--duration",
            "3",
            "--keys",
            "100",
        ])
        .args(["--timeout-ms", "500", "--quiet", "--json"])
        .arg(&json)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let stop = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(stop.success());
    std::thread::sleep(Duration::from_millis(1200));
    let cont = Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    assert!(cont.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "loadgen did not stop by itself");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let timeouts: u64 = v["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["errors"]["timeout"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        timeouts > 0,
        "a 1.2 s stall with a 500 ms timeout must time requests out: {v}"
    );
    // Open loop: requests due during the stall carry it in their latency.
    let max = v["ops"][0]["latency"]["max_us"].as_f64().unwrap();
    assert!(
        max >= 400_000.0,
        "max latency {max} us should reflect the stall"
    );
}
