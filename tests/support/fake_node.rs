//! A minimal in-process stand-in for a node, speaking the real wire protocol through the real
//! codec, so the client libraries can be tested before (and independently of) the server.
//! It answers the frames it has read so far in REVERSE order, to prove clients match answers
//! by id. Special keys: `quorum-fail` answers QuorumFailed, `slow` is never answered.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;
use tern::net::codec::decode_frame;
use tern::net::handshake::{answer_hello, HelloStatus, ServerHello, CLIENT_HELLO_LEN};
use tern::net::*;

/// How the fake answers the hello.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum HelloMode {
    Normal,
    RefuseVersion,
    Garbage,
    Silent,
}

/// Binds a listener on 127.0.0.1 within the test port range 31000-31999.
pub fn bind() -> TcpListener {
    let start = 31000 + (std::process::id() % 500) as u16;
    for p in (start..32000).chain(31000..start) {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", p)) {
            return l;
        }
    }
    panic!("no free port in 31000-31999");
}

/// Starts the fake; returns its `host:port`. Threads end when their connections close.
pub fn start(mode: HelloMode) -> String {
    let l = bind();
    let addr = l.local_addr().unwrap().to_string();
    let store: Arc<Mutex<HashMap<Bytes, (Bytes, u64)>>> = Arc::default();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let store = store.clone();
            thread::spawn(move || serve(s, mode, store));
        }
    });
    addr
}

fn serve(mut s: TcpStream, mode: HelloMode, store: Arc<Mutex<HashMap<Bytes, (Bytes, u64)>>>) {
    let mut hello = [0u8; CLIENT_HELLO_LEN];
    if s.read_exact(&mut hello).is_err() {
        return;
    }
    let limits = Limits::default();
    match mode {
        HelloMode::Silent => {
            let mut sink = [0u8; 64];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
        HelloMode::Garbage => {
            let _ = s.write_all(b"-ERR unknown command\r\n");
            return;
        }
        HelloMode::RefuseVersion => {
            let reply = ServerHello {
                version: PROTOCOL_VERSION + 1,
                status: HelloStatus::UnsupportedVersion,
                max_frame_len: 0,
            };
            let _ = s.write_all(&reply.encode());
            return;
        }
        HelloMode::Normal => {
            let (reply, res) = answer_hello(&hello, limits.max_frame_len);
            s.write_all(&reply.encode()).unwrap();
            if res.is_err() {
                return;
            }
        }
    }
    let mut dec = FrameDecoder::new(limits.max_frame_len);
    let mut enc = Encoder::new(limits);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        let mut batch = Vec::new();
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => batch.push(f),
                Ok(None) => break,
                Err(e) => {
                    let env =
                        Envelope::new(0, Message::Error(WireError::new(e.code(), e.to_string())));
                    let mut out = Vec::new();
                    enc.encode_into(&env, &mut out).unwrap();
                    let _ = s.write_all(&out);
                    return;
                }
            }
        }
        let mut out = Vec::new();
        for f in batch.iter().rev() {
            let env = match decode_frame(f, &limits) {
                Ok(env) => env,
                Err(e) => {
                    let err = WireError::new(e.error.code(), e.error.to_string());
                    enc.encode_into(
                        &Envelope::new(e.request_id.unwrap_or(0), Message::Error(err)),
                        &mut out,
                    )
                    .unwrap();
                    continue;
                }
            };
            let Message::Request(req) = env.message else {
                continue;
            };
            if req.key().as_ref() == b"slow" {
                continue;
            }
            let answer = answer(&req, &store);
            enc.encode_into(&Envelope::new(env.request_id, answer), &mut out)
                .unwrap();
        }
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

fn answer(req: &ClientRequest, store: &Mutex<HashMap<Bytes, (Bytes, u64)>>) -> Message {
    if req.key().as_ref() == b"quorum-fail" {
        return Message::Error(WireError {
            code: ErrorCode::QuorumFailed,
            message: "1 of 2 replicas acknowledged".into(),
            acked: 1,
            needed: 2,
            failed: vec![FailedReplica {
                node: 3,
                shard: 0,
                reason: "timeout".into(),
                code: ErrorCode::Timeout,
            }],
        });
    }
    let mut st = store.lock().unwrap();
    match req {
        ClientRequest::Get(g) => match st.get(&g.key) {
            None => Message::Response(ClientResponse::Get {
                siblings: vec![],
                context: Bytes::new(),
            }),
            Some((v, c)) => Message::Response(ClientResponse::Get {
                siblings: vec![SiblingWire {
                    value: v.clone(),
                    tombstone: false,
                    dot: Dot {
                        node: 1,
                        counter: *c,
                    },
                    vv: vec![VvEntry {
                        node: 1,
                        counter: *c,
                    }],
                }],
                context: Bytes::copy_from_slice(&c.to_le_bytes()),
            }),
        },
        ClientRequest::Put(p) => {
            let c = st.get(&p.key).map_or(0, |e| e.1) + 1;
            st.insert(p.key.clone(), (p.value.clone(), c));
            Message::Response(ClientResponse::Put {
                context: Bytes::copy_from_slice(&c.to_le_bytes()),
            })
        }
        ClientRequest::Delete(d) => {
            st.remove(&d.key);
            Message::Response(ClientResponse::Delete {
                context: Bytes::new(),
            })
        }
    }
}
