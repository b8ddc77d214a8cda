//! Commit-log damage seen from the operator's side, through the real `tern serve` binary: a
//! flipped byte in a record before the log's tail stops start-up with a clear error naming the
//! segment file and offset (exit status 1, nothing served from a damaged log), and
//! `--skip-damaged-segments` lets the node start, serving what precedes the damage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tern::client::{Client, ClientConfig};

fn marker(i: u32) -> String {
    format!("MARKER-{i:03}-{}", "x".repeat(64))
}

fn segment_holding(dir: &Path, needle: &[u8]) -> (PathBuf, usize) {
    let log_dir = dir.join("shard-0").join("log");
    for e in std::fs::read_dir(&log_dir).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        if let Some(at) = data.windows(needle.len()).position(|w| w == needle) {
            return (p, at);
        }
    }
    panic!(
        "no log segment under {} holds the marker",
        log_dir.display()
    );
}

#[test]
fn damaged_log_refuses_to_start_until_told_to_skip() {
    let port = free_ports(&[ip(1)], 2);
    let data = temp_dir("recovery").join("data");
    let mut n = Node::start(1, ip(1), port, 1, &data, &[]);
    {
        let mut c = Client::connect(&n.addr(), ClientConfig::default()).unwrap();
        for i in 0..20u32 {
            c.put(format!("k{i}"), marker(i), None).unwrap();
        }
    }
    n.kill();

    // Damage the record of k5: records of k6..k19 follow it, so this is not a torn tail.
    let (seg, at) = segment_holding(&data, marker(5).as_bytes());
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[at + 10] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();

    // Start-up refuses, within a deadline, naming the file.
    let mut child = Command::new(BIN)
        .args(n_args(&n))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("tern serve kept running on a damaged commit log");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("start-up on the damaged log said:\n{err}");
    assert_eq!(status.code(), Some(1), "stderr:\n{err}");
    let seg_name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&seg_name) && err.contains("offset"),
        "the error names the segment and offset:\n{err}"
    );

    // With the explicit flag it starts and serves what precedes the damage.
    n.args.push("--skip-damaged-segments".into());
    n.restart();
    let mut c = Client::connect(&n.addr(), ClientConfig::default()).unwrap();
    for i in 0..5u32 {
        let g = c
            .get(format!("k{i}"))
            .unwrap()
            .expect("written before the damage");
        assert_eq!(&g.siblings[0].value[..], marker(i).as_bytes());
    }
}

fn n_args(n: &Node) -> Vec<String> {
    let mut a = vec![
        "serve".to_owned(),
        format!("--data-dir={}", n.data_dir.display()),
        format!("--listen={}", n.ip),
        format!("--port={}", n.port),
        format!("--shards={}", n.shards),
        "--pin-cpus=false".to_owned(),
    ];
    a.extend(n.args.iter().cloned());
    a
}
