//! Clean shutdown of real processes: SIGTERM while requests are in flight (each gets an answer
//! or a closed connection, never a hang; the node exits 0; every acknowledged write survives),
//! and `tern cluster` starting and stopping its nodes by PID.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tern::client::{put_request, Client, ClientConfig, OpOptions};

#[test]
fn sigterm_answers_or_fails_in_flight_requests_exits_zero_and_keeps_acknowledged_writes() {
    let port = free_ports(&[ip(1)], 3);
    let dir = temp_dir("sigterm");
    let mut n = Node::start(1, ip(1), port, 2, &dir.join("data"), &[]);
    let mut c = Client::connect(&n.addr(), ClientConfig::default()).unwrap();
    let mut ids = HashMap::new();
    for i in 0..400u32 {
        let id = c
            .send(&put_request(
                format!("s{i}"),
                format!("v{i}"),
                None,
                &OpOptions::default(),
            ))
            .unwrap();
        ids.insert(id, i);
    }
    c.flush().unwrap();
    let t0 = Instant::now();
    n.sigterm();
    let mut acked = Vec::new();
    let mut failed = 0;
    while c.in_flight() > 0 {
        match c.recv() {
            Ok((id, Ok(_))) => acked.push(ids[&id]),
            Ok((_, Err(_))) => failed += 1,
            // The node stopped reading and closed: the rest were never acknowledged.
            Err(_) => break,
        }
    }
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "answers took {:?}",
        t0.elapsed()
    );
    let status = n.wait_exit();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        n.read_log()
    );
    assert!(n.read_log().contains("tern node stopped cleanly"));
    eprintln!(
        "{} acknowledged, {failed} failed before shutdown",
        acked.len()
    );
    n.restart();
    let mut c = Client::connect(&n.addr(), ClientConfig::default()).unwrap();
    for i in acked {
        let g = c
            .get(format!("s{i}"))
            .unwrap()
            .expect("acknowledged write survives");
        assert_eq!(&g.siblings[0].value[..], format!("v{i}").as_bytes());
    }
}

#[test]
fn cluster_command_starts_nodes_and_stops_them_by_pid() {
    let ips: Vec<_> = (1..=3).map(ip).collect();
    let port = free_ports(&ips, 2);
    let dir = temp_dir("clustercmd");
    let mut child = Command::new(BIN)
        .args(["cluster", "--nodes=3", "--shards=1"])
        .arg(format!("--port={port}"))
        .arg(format!("--dir={}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    let deadline = Instant::now() + READY_TIMEOUT;
    while !addrs.iter().all(|a| hello_ok(*a)) {
        assert!(Instant::now() < deadline, "cluster not ready");
        assert!(
            child.try_wait().unwrap().is_none(),
            "cluster command exited early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let put = tern(&[
        "put",
        "--addr",
        &addrs[0].to_string(),
        "--w",
        "all",
        "k",
        "v",
    ]);
    assert!(put.status.success(), "{}", stderr(&put));
    let get = tern(&["get", "--addr", &addrs[2].to_string(), "k"]);
    assert!(
        stdout(&get).contains("value (1 bytes): v"),
        "{}",
        stdout(&get)
    );
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "cluster command did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "cluster exit status {status}");
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        out.contains("node 3: 127.0.0.3"),
        "prints how to reach the nodes: {out}"
    );
    // Every node is gone (the parent waited for them before exiting).
    for a in &addrs {
        assert!(!hello_ok(*a), "{a} still answers");
    }
    for i in 1..=3 {
        assert!(dir.join(format!("node{i}")).join("LOCK").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
