//! RESP driver: one TCP connection to a Redis server, pipelined in order.
//!
//! Owns the socket and its read/write buffers. It asks the connection's [`ConnState`] for
//! requests while fewer than `depth` are in flight, writes them in one batch, reads replies and
//! matches them to requests in FIFO order (RESP answers in order on one connection).
//! Invariants: at most `depth` requests in flight; buffers are reused (no allocation per
//! request; the read buffer only grows for a reply bigger than it, up to a bound); every wait is
//! bounded by the request timeout (enforced by the core's watchdog, see [`super::watchdog`]),
//! after which the in-flight requests fail as "timeout" and the connection is replaced (a late reply would otherwise be matched to the wrong request);
//! reconnects are bounded per phase.

use super::{sleep_until, ConnParams, Health, TargetError};
use crate::conn::{ConnState, Next, Outcome, PlannedOp};
use crate::resp::{self, Reply};
use crate::stats::OpKind;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use glommio::net::TcpStream;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

const INITIAL_BUF: usize = 64 * 1024;
/// A reply larger than this is a protocol error for this tool (values are far smaller).
const MAX_BUF: usize = resp::MAX_BULK_LEN + 64 * 1024;
/// Reconnect attempts per phase before the connection gives up.
const MAX_RECONNECTS: u32 = 5;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// One RESP connection.
pub struct RespConn {
    pub(super) params: ConnParams,
    stream: Option<TcpStream>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    inflight: VecDeque<PlannedOp>,
    health: Rc<Health>,
}

/// What a read turned into.
enum ReadEvent {
    Bytes(usize),
    /// The open-loop timer fired first: time to send more.
    Wake,
    /// Nothing arrived for the request timeout (set by the watchdog).
    Timeout,
}

async fn connect(params: &ConnParams) -> Result<TcpStream, TargetError> {
    let s = TcpStream::connect_timeout(params.addr, params.connect_timeout)
        .await
        .map_err(|e| TargetError::Connect {
            addr: params.addr,
            reason: e.to_string(),
        })?;
    // Small requests must leave at once, not wait for Nagle.
    s.set_nodelay(true).map_err(|e| TargetError::Connect {
        addr: params.addr,
        reason: format!("set TCP_NODELAY: {e}"),
    })?;
    Ok(s)
}

fn encode(op: &PlannedOp, value: &[u8], out: &mut Vec<u8>) {
    match op.kind {
        OpKind::Get => resp::encode_get(out, &op.key),
        OpKind::Put => resp::encode_set(out, &op.key, value),
        OpKind::Delete => resp::encode_del(out, &op.key),
    }
}

fn outcome<'a>(kind: OpKind, reply: &Reply<'a>) -> Outcome<'a> {
    match (kind, reply) {
        (_, Reply::Error(m)) => {
            Outcome::Failed(std::str::from_utf8(m).unwrap_or("server error (not UTF-8)"))
        }
        (OpKind::Get, Reply::Bulk(v)) => Outcome::Value(*v),
        (OpKind::Put, Reply::Simple(b"OK")) => Outcome::Done,
        (OpKind::Delete, Reply::Integer(_)) => Outcome::Done,
        (OpKind::Get, _) => Outcome::Failed("protocol: unexpected reply to GET"),
        (OpKind::Put, _) => Outcome::Failed("protocol: unexpected reply to SET"),
        (OpKind::Delete, _) => Outcome::Failed("protocol: unexpected reply to DEL"),
    }
}

impl RespConn {
    pub async fn connect(params: ConnParams) -> Result<Self, TargetError> {
        let stream = connect(&params).await?;
        let health = Rc::new(Health::default());
        health.fd.set(stream.as_raw_fd());
        Ok(RespConn {
            health,
            inflight: VecDeque::with_capacity(params.depth),
            params,
            stream: Some(stream),
            wbuf: Vec::with_capacity(INITIAL_BUF),
            rbuf: vec![0; INITIAL_BUF],
            rstart: 0,
            rend: 0,
        })
    }

    /// Fails every in-flight request with `kind` and drops the socket.
    fn fail_all(&mut self, st: &RefCell<ConnState>, kind: &str) {
        let now = Instant::now();
        let mut s = st.borrow_mut();
        for op in self.inflight.drain(..) {
            s.complete(&op, Outcome::Failed(kind), now);
        }
        self.stream = None;
        self.health.fd.set(-1);
        self.wbuf.clear();
        self.rstart = 0;
        self.rend = 0;
    }

    /// Parses every complete reply in the read buffer. Returns false on a protocol error (the
    /// connection has then been failed).
    fn drain_replies(&mut self, st: &RefCell<ConnState>, now: Instant) -> bool {
        let mut s = st.borrow_mut();
        while !self.inflight.is_empty() {
            match resp::parse_reply(&self.rbuf[self.rstart..self.rend]) {
                Ok(Some((reply, used))) => {
                    let Some(op) = self.inflight.pop_front() else {
                        break;
                    };
                    s.complete(&op, outcome(op.kind, &reply), now);
                    self.rstart += used;
                }
                Ok(None) => break,
                Err(e) => {
                    drop(s);
                    self.fail_all(st, &format!("protocol: {e}"));
                    return false;
                }
            }
        }
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        true
    }

    /// Makes room at the end of the read buffer. False if a reply exceeds [`MAX_BUF`].
    fn make_room(&mut self) -> bool {
        if self.rend < self.rbuf.len() {
            return true;
        }
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
            return true;
        }
        if self.rbuf.len() >= MAX_BUF {
            return false;
        }
        let n = (self.rbuf.len() * 2).min(MAX_BUF);
        self.rbuf.resize(n, 0);
        true
    }

    /// Replaces a failed socket; false when the attempts of this phase are used up.
    async fn reconnect(&mut self, attempts: &mut u32, st: &RefCell<ConnState>) -> bool {
        while self.stream.is_none() {
            if *attempts >= MAX_RECONNECTS {
                return false;
            }
            *attempts += 1;
            glommio::timer::sleep(RECONNECT_BACKOFF).await;
            match connect(&self.params).await {
                Ok(s) => {
                    self.health.fd.set(s.as_raw_fd());
                    self.stream = Some(s);
                }
                Err(e) => {
                    // Counted once per failed attempt, so a dead server is visible in the report.
                    let now = Instant::now();
                    let mut s = st.borrow_mut();
                    if let Next::Op(op) = s.next(now) {
                        s.complete(&op, Outcome::Failed(&e.to_string()), now);
                    }
                }
            }
        }
        true
    }

    pub fn health(&self) -> Rc<Health> {
        self.health.clone()
    }

    /// Runs the connection's current phase to its end.
    pub async fn run_phase(&mut self, st: &RefCell<ConnState>) {
        let depth = self.params.depth.max(1);
        let mut attempts = 0u32;
        let mut last_progress = Instant::now();
        loop {
            if self.stream.is_none() && !self.reconnect(&mut attempts, st).await {
                return;
            }
            let now = Instant::now();
            let mut wake = None;
            let mut done = false;
            {
                let mut s = st.borrow_mut();
                if self.inflight.is_empty() {
                    last_progress = now;
                }
                while self.inflight.len() < depth {
                    match s.next(now) {
                        Next::Op(op) => {
                            encode(&op, s.value(), &mut self.wbuf);
                            self.inflight.push_back(op);
                        }
                        Next::Wait(t) => {
                            wake = Some(t);
                            break;
                        }
                        Next::Done => {
                            done = true;
                            break;
                        }
                    }
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            if !self.wbuf.is_empty() {
                if let Err(e) = stream.write_all(&self.wbuf).await {
                    self.fail_all(st, &format!("io: write: {e}"));
                    continue;
                }
                self.wbuf.clear();
            }
            if self.inflight.is_empty() {
                match (done, wake) {
                    (true, _) => return,
                    (false, Some(t)) => sleep_until(t).await,
                    (false, None) => {}
                }
                continue;
            }
            if !self.make_room() {
                self.fail_all(st, "protocol: reply larger than the read buffer limit");
                continue;
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            let buf = &mut self.rbuf[self.rend..];
            // The per-core watchdog enforces the timeout (no timer per read): it shuts the
            // socket down, which ends this read, and flags why.
            self.health.waiting_since.set(Some(last_progress));
            let read = async { stream.read(buf).await.map(ReadEvent::Bytes) };
            let event = match wake {
                // Open loop with a free pipeline slot: the next send may be due before a reply.
                // Cancel-safe: glommio's socket read waits for readiness and then reads, so
                // dropping it when the timer wins loses no bytes.
                Some(t) if self.inflight.len() < depth => {
                    read.or(async {
                        sleep_until(t).await;
                        Ok(ReadEvent::Wake)
                    })
                    .await
                }
                _ => read.await,
            };
            self.health.waiting_since.set(None);
            let event = if self.health.timed_out.replace(false) {
                Ok(ReadEvent::Timeout)
            } else {
                event
            };
            match event {
                Ok(ReadEvent::Bytes(0)) => self.fail_all(st, "io: server closed the connection"),
                Ok(ReadEvent::Bytes(n)) => {
                    self.rend += n;
                    let now = Instant::now();
                    last_progress = now;
                    self.drain_replies(st, now);
                }
                Ok(ReadEvent::Wake) => {}
                Ok(ReadEvent::Timeout) => self.fail_all(st, "timeout"),
                Err(e) => self.fail_all(st, &format!("io: read: {e}")),
            }
        }
    }
}
