//! Both client libraries against an in-process fake node speaking the real protocol: the
//! request/answer model, pipelining with out-of-order answers, typed errors, handshake
//! failures and bounded waits. (The real server is exercised by the server's own tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::fake_node::{start, HelloMode};
use tern::client::{
    get_request, put_request, AsyncClient, Client, ClientConfig, ClientError, OpOptions,
};
use tern::net::{ClientResponse, NetError};

fn cfg() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

#[test]
fn blocking_put_get_delete() {
    let addr = start(HelloMode::Normal);
    let mut c = Client::connect(&addr, cfg()).unwrap();
    assert_eq!(c.get("k").unwrap(), None);
    let ctx = c.put("k", "v1", None).unwrap();
    assert_eq!(ctx.as_bytes().as_ref(), &1u64.to_le_bytes());
    let got = c.get("k").unwrap().unwrap();
    assert_eq!(got.siblings.len(), 1);
    assert_eq!(got.siblings[0].value.as_ref(), b"v1");
    assert!(!got.is_deleted());
    c.put("k", "v2", Some(&got.context)).unwrap();
    assert_eq!(
        c.get("k").unwrap().unwrap().siblings[0].value.as_ref(),
        b"v2"
    );
    c.delete("k", None).unwrap();
    assert_eq!(c.get("k").unwrap(), None);
}

#[test]
fn blocking_quorum_failure_is_typed() {
    let addr = start(HelloMode::Normal);
    let mut c = Client::connect(&addr, cfg()).unwrap();
    match c.put("quorum-fail", "x", None) {
        Err(ClientError::QuorumFailed {
            acked,
            needed,
            failed,
            ..
        }) => {
            assert_eq!((acked, needed), (1, 2));
            assert_eq!(failed[0].node, 3);
        }
        other => panic!("expected QuorumFailed, got {other:?}"),
    }
    // The connection is still usable afterwards.
    c.put("k", "v", None).unwrap();
}

#[test]
fn blocking_pipeline_matches_out_of_order_answers() {
    let addr = start(HelloMode::Normal);
    let mut c = Client::connect(&addr, cfg()).unwrap();
    let o = OpOptions::default();
    let mut ids = Vec::new();
    for i in 0..200u32 {
        ids.push((
            c.send(&put_request(format!("p{i}"), i.to_string(), None, &o))
                .unwrap(),
            i,
        ));
    }
    c.flush().unwrap();
    let mut seen = std::collections::HashMap::new();
    for _ in 0..200 {
        let (id, r) = c.recv().unwrap();
        assert!(matches!(r.unwrap(), ClientResponse::Put { .. }));
        assert!(seen.insert(id, ()).is_none(), "answer {id} twice");
    }
    assert_eq!(c.in_flight(), 0);
    for (id, _) in &ids {
        assert!(seen.contains_key(id));
    }
    // Each value is where the pipelined put put it.
    for i in [0u32, 57, 199] {
        let g = c.get(format!("p{i}")).unwrap().unwrap();
        assert_eq!(g.siblings[0].value.as_ref(), i.to_string().as_bytes());
    }
}

#[test]
fn oversize_requests_are_refused_before_sending() {
    let addr = start(HelloMode::Normal);
    let mut c = Client::connect(&addr, cfg()).unwrap();
    // Larger than the node's frame (from its hello): refused here, before a byte is sent.
    let big = vec![0u8; 3 << 20];
    match c.put("k", big, None) {
        Err(ClientError::InvalidRequest(NetError::ValueTooLarge { .. })) => {}
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    match c.get(vec![b'k'; 1025]) {
        Err(e @ ClientError::InvalidRequest(NetError::KeyTooLarge { .. })) => {
            assert!(e.is_bad_input())
        }
        other => panic!("expected KeyTooLarge, got {other:?}"),
    }
    // Exactly 1 MiB is fine.
    c.put("k", vec![7u8; 1 << 20], None).unwrap();
    assert_eq!(
        c.get("k").unwrap().unwrap().siblings[0].value.len(),
        1 << 20
    );
}

#[test]
fn refused_version_is_a_clear_handshake_error() {
    let addr = start(HelloMode::RefuseVersion);
    let err = Client::connect(&addr, cfg()).err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Handshake { .. }), "{text}");
    assert!(text.contains("unsupported protocol version"), "{text}");
}

#[test]
fn non_tern_peer_is_detected() {
    let addr = start(HelloMode::Garbage);
    let err = Client::connect(&addr, cfg()).err().unwrap();
    assert!(
        matches!(
            err,
            ClientError::Handshake {
                source: NetError::BadMagic(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn silent_peer_does_not_hang_connect() {
    let addr = start(HelloMode::Silent);
    let t = Instant::now();
    let c = ClientConfig {
        connect_timeout: Duration::from_millis(300),
        ..cfg()
    };
    assert!(matches!(
        Client::connect(&addr, c),
        Err(ClientError::Handshake { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn unanswered_request_times_out_and_connection_survives() {
    let addr = start(HelloMode::Normal);
    let c = ClientConfig {
        response_timeout: Duration::from_millis(300),
        ..cfg()
    };
    let mut c = Client::connect(&addr, c).unwrap();
    let t = Instant::now();
    assert!(matches!(
        c.get("slow"),
        Err(ClientError::ResponseTimeout { .. })
    ));
    assert!(t.elapsed() < Duration::from_secs(3));
    c.put("k", "v", None).unwrap();
}

#[test]
fn connect_refused_names_the_address() {
    // Bind then drop a listener to get a port nothing listens on; the top of the range, which
    // the fake nodes of parallel tests (allocated from the bottom) are unlikely to take.
    let port = (31900..32000u16)
        .rev()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let err = Client::connect(&addr, cfg()).err().unwrap();
    assert!(matches!(err, ClientError::Connect { .. }));
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn async_client_pipelines_from_many_tasks() {
    let addr = start(HelloMode::Normal);
    let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
    ex.run(async move {
        let c = AsyncClient::connect(&addr, cfg()).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u32 {
            let c = c.clone();
            tasks.push(glommio::spawn_local(async move {
                for i in 0..50u32 {
                    let key = format!("t{t}-{i}");
                    c.put(key.clone(), format!("{t}:{i}"), None).await.unwrap();
                }
                for i in 0..50u32 {
                    let g = c.get(format!("t{t}-{i}")).await.unwrap().unwrap();
                    assert_eq!(g.siblings[0].value.as_ref(), format!("{t}:{i}").as_bytes());
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        // Many in flight at once via send(): all answered, each with its own id.
        let o = OpOptions::default();
        let futs: Vec<_> = (0..300u32)
            .map(|i| c.send(&get_request(format!("t0-{}", i % 50), &o)).unwrap())
            .collect();
        assert!(c.in_flight() > 0);
        for f in futs {
            assert!(matches!(f.await.unwrap(), ClientResponse::Get { .. }));
        }
        assert_eq!(c.in_flight(), 0);
    });
}

#[test]
fn async_client_bounds_in_flight_and_times_out() {
    let addr = start(HelloMode::Normal);
    let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
    ex.run(async move {
        let c = ClientConfig {
            max_in_flight: 2,
            response_timeout: Duration::from_millis(300),
            ..cfg()
        };
        let c = AsyncClient::connect(&addr, c).await.unwrap();
        let o = OpOptions::default();
        let a = c.send(&get_request("slow", &o)).unwrap();
        let b = c.send(&get_request("slow", &o)).unwrap();
        assert!(matches!(
            c.send(&get_request("k", &o)),
            Err(ClientError::TooManyInFlight { max: 2 })
        ));
        let t = Instant::now();
        assert!(matches!(a.await, Err(ClientError::ResponseTimeout { .. })));
        assert!(matches!(b.await, Err(ClientError::ResponseTimeout { .. })));
        assert!(t.elapsed() < Duration::from_secs(3));
        // Capacity is back, the connection still works.
        c.put("k", "v", None).await.unwrap();
        match c.put("quorum-fail", "v", None).await {
            Err(ClientError::QuorumFailed {
                acked: 1,
                needed: 2,
                ..
            }) => {}
            other => panic!("expected QuorumFailed, got {other:?}"),
        }
    });
}

/// The server half of the hello (`answer_hello`, through the helper below) with the real async
/// client, all on glommio.
#[test]
fn accept_hello_serves_the_async_client_and_refuses_bad_versions() {
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    use tern::net::handshake::{HelloStatus, ServerHello, SERVER_HELLO_LEN};
    use tern::net::*;

    let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
    ex.run(async move {
        let port = support::fake_node::bind().local_addr().unwrap().port();
        let listener = glommio::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let server = glommio::spawn_local(async move {
            // First connection: a good client answered with "not found" for every request.
            let mut s = listener.accept().await.unwrap();
            let limits = Limits::default();
            accept_hello(&mut s, limits.max_frame_len, Duration::from_secs(2))
                .await
                .unwrap();
            let mut dec = FrameDecoder::new(limits.max_frame_len);
            let mut enc = Encoder::new(limits);
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            dec.push(&buf[..n]);
            let f = dec.next_frame().unwrap().unwrap();
            let env = tern::net::codec::decode_frame(&f, &limits).unwrap();
            let reply = Envelope::new(
                env.request_id,
                Message::Response(ClientResponse::Get {
                    siblings: vec![],
                    context: bytes::Bytes::new(),
                }),
            );
            let mut out = Vec::new();
            enc.encode_into(&reply, &mut out).unwrap();
            s.write_all(&out).await.unwrap();
            // Second: a wrong version is answered, then refused.
            let mut s2 = listener.accept().await.unwrap();
            let r = accept_hello(&mut s2, limits.max_frame_len, Duration::from_secs(2)).await;
            assert!(matches!(r, Err(NetError::UnsupportedVersion { .. })));
        });

        let c = AsyncClient::connect(&addr, cfg()).await.unwrap();
        assert_eq!(c.get("k").await.unwrap(), None);

        let mut raw = glommio::net::TcpStream::connect(addr.as_str())
            .await
            .unwrap();
        let hello = tern::net::ClientHello {
            version: PROTOCOL_VERSION + 9,
            flags: 0,
        };
        raw.write_all(&hello.encode()).await.unwrap();
        let mut reply = [0u8; SERVER_HELLO_LEN];
        raw.read_exact(&mut reply).await.unwrap();
        assert_eq!(
            ServerHello::decode(&reply).unwrap().status,
            HelloStatus::UnsupportedVersion
        );

        server.await;
    });
}

/// Enough pipelined bytes to fill both socket buffers: the driver must keep reading answers
/// while its writes are blocked, or this deadlocks (bounded by the response timeout).
#[test]
fn async_client_survives_full_socket_buffers() {
    let addr = start(HelloMode::Normal);
    let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
    ex.run(async move {
        let c = ClientConfig {
            max_in_flight: 4096,
            ..cfg()
        };
        let c = AsyncClient::connect(&addr, c).await.unwrap();
        let o = OpOptions::default();
        let value = bytes::Bytes::from(vec![0x5a; 16 << 10]);
        let futs: Vec<_> = (0..1000u32)
            .map(|i| {
                c.send(&put_request(format!("big{i}"), value.clone(), None, &o))
                    .unwrap()
            })
            .collect();
        for f in futs {
            assert!(matches!(f.await.unwrap(), ClientResponse::Put { .. }));
        }
        let futs: Vec<_> = (0..1000u32)
            .map(|i| c.send(&get_request(format!("big{i}"), &o)).unwrap())
            .collect();
        for f in futs {
            match f.await.unwrap() {
                ClientResponse::Get { siblings, .. } => assert_eq!(siblings[0].value, value),
                other => panic!("{other:?}"),
            }
        }
    });
}

/// Test server side of the hello (the real server does the same in `server::conn`) on a freshly accepted stream (inside a glommio executor): reads the
/// client's 8 bytes within `timeout`, always answers when it got them, and returns the agreed
/// hello, or why the caller must now close the connection. A silent or slow client costs at
/// most `timeout`; it never holds a connection slot forever.
async fn accept_hello<S>(
    stream: &mut S,
    max_frame_len: usize,
    timeout: std::time::Duration,
) -> Result<tern::net::ClientHello, tern::net::NetError>
where
    S: futures_lite::io::AsyncRead + futures_lite::io::AsyncWrite + Unpin,
{
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut hello = [0u8; tern::net::handshake::CLIENT_HELLO_LEN];
        stream.read_exact(&mut hello).await?;
        let (reply, verdict) = tern::net::handshake::answer_hello(&hello, max_frame_len);
        stream.write_all(&reply.encode()).await?;
        stream.flush().await?;
        Ok::<_, std::io::Error>(verdict)
    };
    let timed_out = async {
        glommio::timer::sleep(timeout).await;
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no hello from the client within {} ms", timeout.as_millis()),
        ))
    };
    futures_lite::future::or(exchange, timed_out).await?
}
