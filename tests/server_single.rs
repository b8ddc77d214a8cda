//! A single real `tern serve` process: CLI and client-library round trips, value limits,
//! restart durability, siblings and their resolution, the data-dir lock, and malformed input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rand::{Rng, SeedableRng};
use tern::client::{Client, ClientConfig, ClientError};
use tern::net::handshake::{ClientHello, ServerHello, SERVER_HELLO_LEN};
use tern::net::testgen::{mutate, sample_frames};
use tern::net::Limits;

fn single(name: &str, shards: u16) -> Node {
    let port = free_ports(&[ip(1)], shards + 1);
    let dir = temp_dir(name);
    Node::start(1, ip(1), port, shards, &dir.join("data"), &[])
}

fn client(n: &Node) -> Client {
    Client::connect(&n.addr(), ClientConfig::default()).unwrap()
}

#[test]
fn cli_put_get_delete() {
    let n = single("cli", 2);
    let addr = n.addr();
    let put = tern(&["put", "--addr", &addr, "greeting", "hello world"]);
    assert!(put.status.success(), "put failed: {}", stderr(&put));
    let get = tern(&["get", "--addr", &addr, "greeting"]);
    assert!(get.status.success(), "get failed: {}", stderr(&get));
    let out = stdout(&get);
    assert!(
        out.contains("hello world") && out.contains("siblings: 1"),
        "{out}"
    );
    let ctx = out
        .lines()
        .find_map(|l| l.strip_prefix("context: "))
        .expect("get prints the context")
        .trim()
        .to_owned();
    let del = tern(&["delete", "--addr", &addr, "--context", &ctx, "greeting"]);
    assert!(del.status.success(), "delete failed: {}", stderr(&del));
    let gone = tern(&["get", "--addr", &addr, "greeting"]);
    assert_eq!(
        gone.status.code(),
        Some(1),
        "deleted key exits 1: {}",
        stdout(&gone)
    );
    let missing = tern(&["get", "--addr", &addr, "never-written"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn large_values_roundtrip_and_oversize_is_refused() {
    let n = single("values", 2);
    let mut c = client(&n);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for size in [10 << 10, 1 << 20] {
        let v: Vec<u8> = (0..size).map(|_| rng.gen()).collect();
        let key = format!("big-{size}");
        c.put(key.clone(), v.clone(), None).unwrap();
        let g = c.get(key).unwrap().expect("present");
        assert_eq!(g.siblings.len(), 1);
        assert_eq!(&g.siblings[0].value[..], &v[..]);
    }
    // A client with looser limits sends 1 MiB + 1: the node refuses it with a clear error.
    let loose = ClientConfig {
        limits: Limits {
            max_value_len: 2 << 20,
            ..Limits::default()
        },
        ..ClientConfig::default()
    };
    let mut c2 = Client::connect(&n.addr(), loose).unwrap();
    let err = c2
        .put("too-big", vec![0u8; (1 << 20) + 1], None)
        .unwrap_err();
    assert!(matches!(err, ClientError::ValueTooLarge(_)), "{err:?}");
    assert!(
        err.to_string().contains("1048576"),
        "names the limit: {err}"
    );
    // The connection still works afterwards.
    c2.put("small", "ok", None).unwrap();
    // And the CLI reports it as bad input (exit 2).
    let file = temp_dir("oversize").join("v");
    std::fs::write(&file, vec![b'x'; (1 << 20) + 1]).unwrap();
    let o = tern(&[
        "put",
        "--addr",
        &n.addr(),
        "--value-file",
        file.to_str().unwrap(),
        "k",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("exceeds the limit of 1048576"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_file(&file);
}

/// A client learns how large a value may be from the node (its hello and its errors), never
/// from a built-in 1 MiB: a node started with a 4 MiB limit takes 3 MB values from the default
/// client and from `tern put`.
#[test]
fn a_larger_value_limit_on_the_node_is_usable_by_default_clients() {
    let port = free_ports(&[ip(1)], 2);
    let dir = temp_dir("value-limit");
    let n = Node::start(
        1,
        ip(1),
        port,
        1,
        &dir.join("data"),
        &["--max-value-bytes".to_owned(), "4194304".to_owned()],
    );
    let three_mb = vec![b'v'; 3_000_000];
    let mut c = client(&n);
    c.put("lib", three_mb.clone(), None).unwrap();
    assert_eq!(
        c.get("lib").unwrap().unwrap().siblings[0].value.len(),
        3_000_000
    );

    let file = dir.join("v3mb");
    std::fs::write(&file, &three_mb).unwrap();
    let o = tern(&[
        "put",
        "--addr",
        &n.addr(),
        "--value-file",
        file.to_str().unwrap(),
        "cli",
    ]);
    assert!(
        o.status.success(),
        "tern put of 3 MB failed: {}",
        stderr(&o)
    );
    assert_eq!(
        c.get("cli").unwrap().unwrap().siblings[0].value.len(),
        3_000_000
    );

    // Over the node's limit (but inside its frame): refused by the node, naming its limit.
    let err = c.put("over", vec![0u8; (4 << 20) + 1], None).unwrap_err();
    assert!(matches!(err, ClientError::ValueTooLarge(_)), "{err:?}");
    assert!(
        err.to_string().contains("4194304"),
        "names the limit: {err}"
    );
    // Over the node's frame: refused before sending, without misreporting the size.
    std::fs::write(&file, vec![b'x'; 9 << 20]).unwrap();
    let o = tern(&[
        "put",
        "--addr",
        &n.addr(),
        "--value-file",
        file.to_str().unwrap(),
        "k",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("value is larger than"),
        "{}",
        stderr(&o)
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn restart_keeps_acknowledged_data() {
    let mut n = single("restart", 2);
    {
        let mut c = client(&n);
        for i in 0..200u32 {
            c.put(format!("k{i}"), format!("v{i}"), None).unwrap();
        }
        c.delete("k7", None).unwrap();
    }
    // Crash (no clean shutdown): acknowledged writes must survive.
    n.kill();
    n.restart();
    let mut c = client(&n);
    for i in 0..200u32 {
        let g = c.get(format!("k{i}")).unwrap().expect("survived the crash");
        let live: Vec<_> = g.live().collect();
        assert_eq!(&live[0].value[..], format!("v{i}").as_bytes());
    }
    // Clean stop exits 0 and keeps data too.
    let st = n.terminate();
    assert!(
        st.success(),
        "SIGTERM exit status {st}; log:\n{}",
        n.read_log()
    );
    n.restart();
    let mut c = client(&n);
    assert!(c.get("k199").unwrap().is_some());
}

#[test]
fn concurrent_stale_puts_make_siblings_and_a_merged_put_resolves_them() {
    let n = single("siblings", 2);
    let mut a = client(&n);
    let mut b = client(&n);
    a.put("doc", "v0", None).unwrap();
    let ctx = a.get("doc").unwrap().unwrap().context;
    // Two writers both saw v0 and write concurrently.
    a.put("doc", "from-a", Some(&ctx)).unwrap();
    b.put("doc", "from-b", Some(&ctx)).unwrap();
    let g = a.get("doc").unwrap().unwrap();
    let mut vals: Vec<Bytes> = g.live().map(|s| s.value.clone()).collect();
    vals.sort();
    assert_eq!(vals, vec![Bytes::from("from-a"), Bytes::from("from-b")]);
    // The merged write with the read's context replaces both.
    a.put("doc", "merged", Some(&g.context)).unwrap();
    let g = b.get("doc").unwrap().unwrap();
    let vals: Vec<Bytes> = g.live().map(|s| s.value.clone()).collect();
    assert_eq!(vals, vec![Bytes::from("merged")]);
    assert_eq!(g.siblings.len(), 1);
}

#[test]
fn second_start_on_the_same_data_dir_fails_clearly() {
    let n = single("lock", 1);
    let other_port = free_ports(&[ip(1)], 2);
    let o = std::process::Command::new(BIN)
        .args(["serve", "--shards=1", "--pin-cpus=false"])
        .arg(format!("--port={other_port}"))
        .arg(format!("--data-dir={}", n.data_dir.display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("already in use"), "{err}");
    assert!(err.contains(&n.pid().to_string()), "names the pid: {err}");
    assert!(
        err.contains(&n.data_dir.display().to_string()),
        "names the dir: {err}"
    );
}

#[test]
fn random_and_mutated_frames_do_not_hurt_the_server() {
    let n = single("fuzz", 2);
    // Warm up so the baseline RSS includes normal buffers.
    let mut c = client(&n);
    for i in 0..50 {
        c.put(format!("w{i}"), vec![1u8; 4096], None).unwrap();
    }
    let rss_before = n.rss_kib();
    let samples = sample_frames().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7e57);
    let mut sent = 0;
    while sent < 10_000 {
        let mut s = TcpStream::connect(n.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&ClientHello::default().encode()).unwrap();
        let mut h = [0u8; SERVER_HELLO_LEN];
        s.read_exact(&mut h).unwrap();
        ServerHello::decode(&h).unwrap().check().unwrap();
        // 500 frames per connection: mutated real frames and pure noise, correctly or wrongly
        // length-prefixed. The server may close the connection on a bad header; then reconnect.
        let mut batch = Vec::new();
        for _ in 0..500 {
            let payload: Vec<u8> = if rng.gen_bool(0.7) {
                let (_, f) = &samples[rng.gen_range(0..samples.len())];
                mutate(f, &mut rng)
            } else {
                (0..rng.gen_range(1..256)).map(|_| rng.gen()).collect()
            };
            let len = if rng.gen_bool(0.95) {
                payload.len() as u32
            } else {
                rng.gen()
            };
            batch.extend_from_slice(&len.to_le_bytes());
            batch.extend_from_slice(&payload);
            sent += 1;
        }
        let _ = s.write_all(&batch);
        let _ = s.shutdown(std::net::Shutdown::Write);
        // Drain whatever the server answers until it closes (bounded by the read timeout).
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // Well-formed requests still work, on new and old connections.
    let mut fresh = client(&n);
    fresh.put("after", "fuzz", None).unwrap();
    assert_eq!(
        &fresh.get("after").unwrap().unwrap().siblings[0].value[..],
        b"fuzz"
    );
    assert!(c.get("w3").unwrap().is_some());
    let rss_after = n.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn default_relative_data_dir_serves_writes() {
    // The README's first command: no --data-dir, so ./tern-data relative to the working dir.
    let port = free_ports(&[ip(1)], 2);
    let cwd = temp_dir("reldir");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--shards=1", "--pin-cpus=false"])
        .arg(format!("--port={port}"))
        .current_dir(&cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while !hello_ok(addr.parse().unwrap()) {
        assert!(
            std::time::Instant::now() < deadline,
            "server never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = (|| {
        let mut c = Client::connect(&addr, ClientConfig::default())?;
        c.put("rel", "ok", None)?;
        c.get("rel")
    })();
    let _ = child.kill();
    let _ = child.wait();
    let g = result.unwrap().expect("written");
    assert_eq!(&g.siblings[0].value[..], b"ok");
    assert!(cwd.join("tern-data").join("shard-0").is_dir());
    let _ = std::fs::remove_dir_all(&cwd);
}

/// A replica put carrying `hint_for` (a stand-in write) is refused with `Unsupported` until
/// hinted handoff exists, and the record does not land on this node under any range.
#[test]
fn hinted_replica_put_is_refused_and_stores_nothing() {
    use tern::net::codec::decode_frame;
    use tern::net::{
        Encoder, Envelope, ErrorCode, FrameDecoder, Message, ReplicaRequestWire, PROTOCOL_VERSION,
    };
    use tern::version::{Record, VersionVector};

    let n = single("hint", 1);
    let record = Record::empty()
        .update(
            &VersionVector::default(),
            9,
            Some(Bytes::from_static(b"stray")),
            1,
            64,
        )
        .unwrap();
    let mut peer = TcpStream::connect(n.addr()).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hello = ClientHello {
        version: PROTOCOL_VERSION,
        flags: tern::net::handshake::FLAG_PEER_NODE,
    };
    peer.write_all(&hello.encode()).unwrap();
    let mut h = [0u8; SERVER_HELLO_LEN];
    peer.read_exact(&mut h).unwrap();
    ServerHello::decode(&h).unwrap().check().unwrap();
    let env = Envelope::new(
        7,
        Message::Replica(ReplicaRequestWire::Put {
            key: Bytes::from_static(b"hinted-key"),
            record: Bytes::from(record.encode()),
            hint_for: Some(9),
        }),
    );
    let mut out = Vec::new();
    Encoder::new(Limits::default())
        .encode_into(&env, &mut out)
        .unwrap();
    peer.write_all(&out).unwrap();
    let mut dec = FrameDecoder::new(Limits::default().max_frame_len);
    let mut buf = [0u8; 4096];
    let answer = loop {
        if let Some(f) = dec.next_frame().unwrap() {
            break decode_frame(&f, &Limits::default()).unwrap();
        }
        let k = peer.read(&mut buf).unwrap();
        assert!(k > 0, "node closed the peer connection");
        dec.push(&buf[..k]);
    };
    match &answer.message {
        Message::Error(e) => {
            assert_eq!(e.code, ErrorCode::Unsupported, "{e}");
            assert!(e.message.contains("hint"), "{e}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(client(&n).get("hinted-key").unwrap().is_none());
}
