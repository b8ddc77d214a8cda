//! `tern debug-read`: asks ONE node for its own replica's record of a key (a replica `Get`, no
//! quorum, no read repair), to see what each replica holds, e.g. before and after a repair.
//! Exit codes: 0 record printed, 1 this replica has no record, 3 unreachable, 4 other error.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;

use crate::net::handshake::{ClientHello, ServerHello, FLAG_PEER_NODE, SERVER_HELLO_LEN};
use crate::net::{
    decode_frame, Encoder, Envelope, FrameDecoder, Limits, Message, ReplicaRequestWire,
    ReplicaResponseWire, PROTOCOL_VERSION,
};
use crate::version::Record;

#[derive(clap::Args, Debug, Clone)]
pub struct DebugReadArgs {
    /// The node to ask (its client port, or one of its shard ports).
    #[arg(long)]
    pub node: String,
    /// The shard to ask (default: the node's replica shard of the key).
    #[arg(long)]
    pub shard: Option<u16>,
    /// The key (UTF-8 text).
    #[arg(long)]
    pub key: String,
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

pub fn run(args: DebugReadArgs) -> ExitCode {
    match read(&args) {
        Ok(Some(rec)) => {
            let mut out = std::io::stdout().lock();
            let _ = print_record(&mut out, &rec);
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("no record of {:?} on {}", args.key, args.node);
            ExitCode::from(1)
        }
        Err((code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Prints one sibling per line: dot, context, and the value (text when printable).
pub fn print_record(out: &mut dyn Write, rec: &Record) -> std::io::Result<()> {
    writeln!(out, "siblings: {}", rec.siblings().len())?;
    for s in rec.siblings() {
        let ctx: Vec<String> = s.context.iter().map(|(n, c)| format!("{n}:{c}")).collect();
        let value = match &s.value {
            None => "<tombstone>".to_owned(),
            Some(v) => super::client_cmds::render_value(v),
        };
        writeln!(
            out,
            "dot {}:{} context [{}] value {}",
            s.dot.node,
            s.dot.counter,
            ctx.join(" "),
            value
        )?;
    }
    Ok(())
}

fn read(args: &DebugReadArgs) -> Result<Option<Record>, (u8, String)> {
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let addr = args
        .node
        .to_socket_addrs()
        .map_err(|e| (2, format!("bad --node {}: {e}", args.node)))?
        .next()
        .ok_or((2, format!("--node {} resolves to nothing", args.node)))?;
    let unreachable = |e: std::io::Error| (3, format!("{addr}: {e}"));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    s.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    s.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    let hello = ClientHello {
        version: PROTOCOL_VERSION,
        flags: FLAG_PEER_NODE,
    };
    s.write_all(&hello.encode()).map_err(unreachable)?;
    let mut h = [0u8; SERVER_HELLO_LEN];
    s.read_exact(&mut h).map_err(unreachable)?;
    ServerHello::decode(&h)
        .and_then(|sh| sh.check())
        .map_err(|e| (4, e.to_string()))?;
    let limits = Limits::default();
    let env = Envelope {
        version: PROTOCOL_VERSION,
        request_id: 1,
        target_shard: args.shard,
        message: Message::Replica(ReplicaRequestWire::Get {
            key: Bytes::copy_from_slice(args.key.as_bytes()),
        }),
    };
    let mut buf = Vec::new();
    Encoder::new(limits)
        .encode_into(&env, &mut buf)
        .map_err(|e| (2, e.to_string()))?;
    s.write_all(&buf).map_err(unreachable)?;
    let mut dec = FrameDecoder::new(limits.max_frame_len);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        if let Some(frame) = dec.next_frame().map_err(|e| (4, e.to_string()))? {
            let env = decode_frame(&frame, &limits).map_err(|e| (4, e.to_string()))?;
            return match env.message {
                Message::ReplicaReply(ReplicaResponseWire::GetReply { record: None }) => Ok(None),
                Message::ReplicaReply(ReplicaResponseWire::GetReply { record: Some(b) }) => {
                    Record::decode_bytes(&b)
                        .map(Some)
                        .map_err(|e| (4, format!("record does not decode: {e}")))
                }
                Message::Error(e) => Err((4, e.to_string())),
                other => Err((4, format!("unexpected answer: {other:?}"))),
            };
        }
        let n = s.read(&mut chunk).map_err(unreachable)?;
        if n == 0 {
            return Err((3, format!("{addr} closed the connection")));
        }
        dec.push(&chunk[..n]);
    }
}
