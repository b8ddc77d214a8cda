//! Connection-layer tests against a stub dispatcher over real sockets.

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use glommio::net::TcpListener;
use glommio::LocalExecutorBuilder;

use super::conn::{serve_conn, ConnLimits, Dispatch};
use super::shutdown::Shutdown;
use crate::net::handshake::{ClientHello, ServerHello, SERVER_HELLO_LEN};
use crate::net::*;

/// Answers a Get with one sibling holding the key reversed; a key "slow" answers after 50 ms.
struct Echo;

impl Dispatch for Echo {
    async fn client(self: Rc<Self>, req: ClientRequest) -> Result<ClientResponse, WireError> {
        match req {
            ClientRequest::Get(g) => {
                if &g.key[..] == b"slow" {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
                let mut v = g.key.to_vec();
                v.reverse();
                Ok(ClientResponse::Get {
                    siblings: vec![SiblingWire {
                        value: Bytes::from(v),
                        tombstone: false,
                        dot: Dot {
                            node: 1,
                            counter: 1,
                        },
                        vv: vec![],
                    }],
                    context: Bytes::new(),
                })
            }
            _ => Err(WireError::new(ErrorCode::Internal, "stub")),
        }
    }
    async fn replica(
        &self,
        _shard: Option<u16>,
        _req: ReplicaRequestWire,
    ) -> Result<ReplicaResponseWire, WireError> {
        Ok(ReplicaResponseWire::PutAck)
    }
}

/// Starts a stub server on its own executor thread; returns its address and shutdown handle.
fn start() -> (std::net::SocketAddr, Shutdown) {
    let stop = Shutdown::manual();
    let (tx, rx) = std::sync::mpsc::channel();
    let stop2 = stop.clone();
    LocalExecutorBuilder::default()
        .spawn(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let limits = ConnLimits {
                net: Limits::default(),
                max_inflight: 4,
            };
            let d = Rc::new(Echo);
            loop {
                let accepted =
                    futures_lite::future::or(async { Some(listener.accept().await) }, async {
                        stop2.wait().await;
                        None
                    })
                    .await;
                match accepted {
                    Some(Ok(s)) => {
                        let stop3 = stop2.clone();
                        glommio::spawn_local(serve_conn(s, d.clone(), limits, async move {
                            stop3.wait().await
                        }))
                        .detach();
                    }
                    Some(Err(_)) => continue,
                    None => break,
                }
            }
        })
        .unwrap();
    (rx.recv().unwrap(), stop)
}

fn connect(addr: std::net::SocketAddr) -> StdStream {
    let mut s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&ClientHello::default().encode()).unwrap();
    let mut h = [0u8; SERVER_HELLO_LEN];
    s.read_exact(&mut h).unwrap();
    ServerHello::decode(&h).unwrap().check().unwrap();
    s
}

fn get_frame(id: u64, key: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::new(Limits::default());
    let mut out = Vec::new();
    let env = Envelope::new(
        id,
        Message::Request(ClientRequest::Get(GetRequest {
            key: Bytes::copy_from_slice(key),
            opts: ReqOptions::default(),
        })),
    );
    enc.encode_into(&env, &mut out).unwrap();
    out
}

fn read_envelopes(s: &mut StdStream, count: usize) -> Vec<Envelope> {
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < count {
        while let Some(f) = dec.next_frame().unwrap() {
            out.push(decode_frame(&f, &Limits::default()).unwrap());
        }
        if out.len() >= count {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed early");
        dec.push(&buf[..n]);
    }
    out
}

#[test]
fn pipelined_requests_are_answered_by_id_in_completion_order() {
    let (addr, stop) = start();
    let mut s = connect(addr);
    let mut batch = get_frame(1, b"slow");
    for id in 2..=10u64 {
        batch.extend(get_frame(id, format!("key{id}").as_bytes()));
    }
    s.write_all(&batch).unwrap();
    let envs = read_envelopes(&mut s, 10);
    let ids: Vec<u64> = envs.iter().map(|e| e.request_id).collect();
    assert_ne!(ids[0], 1, "the slow request must not hold back the others");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=10).collect::<Vec<_>>());
    for e in envs {
        let Message::Response(ClientResponse::Get { siblings, .. }) = e.message else {
            panic!("unexpected {e:?}");
        };
        let key = if e.request_id == 1 {
            "slow".to_string()
        } else {
            format!("key{}", e.request_id)
        };
        let mut want = key.into_bytes();
        want.reverse();
        assert_eq!(&siblings[0].value[..], &want[..]);
    }
    stop.trigger();
}

#[test]
fn garbage_frame_gets_an_error_and_the_connection_keeps_serving() {
    let (addr, stop) = start();
    let mut s = connect(addr);
    let mut bad = 12u32.to_le_bytes().to_vec();
    bad.extend_from_slice(b"not a frame!");
    s.write_all(&bad).unwrap();
    s.write_all(&get_frame(7, b"abc")).unwrap();
    let envs = read_envelopes(&mut s, 2);
    assert!(matches!(&envs[0].message, Message::Error(e) if e.code == ErrorCode::BadRequest));
    assert_eq!(envs[1].request_id, 7);
    stop.trigger();
}

#[test]
fn oversize_frame_header_closes_only_that_connection() {
    let (addr, stop) = start();
    let mut s = connect(addr);
    s.write_all(&(64u32 << 20).to_le_bytes()).unwrap();
    let envs = read_envelopes(&mut s, 1);
    assert!(matches!(&envs[0].message, Message::Error(e) if e.code == ErrorCode::FrameTooLarge));
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "connection closed after the error"
    );
    // Another client is unaffected.
    let mut s2 = connect(addr);
    s2.write_all(&get_frame(3, b"x")).unwrap();
    assert_eq!(read_envelopes(&mut s2, 1)[0].request_id, 3);
    stop.trigger();
}

#[test]
fn wrong_hello_is_refused_with_a_reason() {
    let (addr, stop) = start();
    let mut s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut h = [0u8; SERVER_HELLO_LEN];
    s.read_exact(&mut h).unwrap();
    let err = ServerHello::decode(&h).unwrap().check().unwrap_err();
    assert!(err.to_string().contains("not a tern hello"), "{err}");
    stop.trigger();
}

#[test]
fn proc_net_addresses_parse() {
    let (ip, port) = super::parse_proc_addr("0100007F:1E14", false).unwrap();
    assert_eq!(ip, "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(port, 0x1E14);
    let (ip, _) = super::parse_proc_addr("00000000000000000000000001000000:0050", true).unwrap();
    assert_eq!(ip, "::1".parse::<std::net::IpAddr>().unwrap());
    // A listener we hold right now is seen.
    let l = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert!(super::listening_ports().contains(&("127.0.0.3".parse().unwrap(), port)));
}

#[test]
fn replica_messages_need_a_peer_hello() {
    let (addr, stop) = start();
    let frame = |id| {
        let mut out = Vec::new();
        let env = Envelope::new(
            id,
            Message::Replica(ReplicaRequestWire::Get {
                key: Bytes::from_static(b"k"),
            }),
        );
        Encoder::new(Limits::default())
            .encode_into(&env, &mut out)
            .unwrap();
        out
    };
    let mut client = connect(addr);
    client.write_all(&frame(5)).unwrap();
    let e = read_envelopes(&mut client, 1);
    assert!(
        matches!(&e[0].message, Message::Error(w) if w.code == ErrorCode::BadRequest),
        "{e:?}"
    );
    let mut peer = StdStream::connect(addr).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hello = ClientHello {
        version: PROTOCOL_VERSION,
        flags: crate::net::handshake::FLAG_PEER_NODE,
    };
    peer.write_all(&hello.encode()).unwrap();
    let mut h = [0u8; SERVER_HELLO_LEN];
    peer.read_exact(&mut h).unwrap();
    peer.write_all(&frame(6)).unwrap();
    let e = read_envelopes(&mut peer, 1);
    assert!(
        matches!(
            &e[0].message,
            Message::ReplicaReply(ReplicaResponseWire::PutAck)
        ),
        "{e:?}"
    );
    stop.trigger();
}

/// The per-request task is allocated per request: kept under glibc's thread-cache limit (1,032
/// bytes for the whole allocation, glommio's task header included), it is a cache hit instead of
/// a bin allocation plus a memcpy of the future.
#[test]
fn request_task_fits_glibc_thread_cache() {
    use super::shard::ShardDispatch;
    use super::store::EngineStore;
    let size = super::conn::client_task_size::<ShardDispatch<EngineStore>>();
    eprintln!("per-request future: {size} bytes");
    // glommio adds its task header (40 bytes) and scheduler handle to the future.
    assert!(
        size + 72 <= 1032,
        "per-request future is {size} bytes: with glommio's header above glibc's tcache limit"
    );
}
