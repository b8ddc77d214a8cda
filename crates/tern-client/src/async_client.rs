//! Pipelined client on glommio (`glommio::net::TcpStream`), for code inside a glommio executor.
//!
//! One connection carries many requests at once. Callers encode into a shared output buffer
//! and get a [`ResponseFuture`]; a single driver task per connection owns the socket, writes
//! whatever is queued (so concurrent requests coalesce into few writes) and reads answers,
//! handing each to the waiting future by request id. Everything lives on one executor thread:
//! state is `Rc<RefCell<..>>`, never shared across threads, and no borrow is held across an
//! `.await`.
//!
//! Invariants: at most `max_in_flight` requests per connection (a glommio semaphore); each
//! future resolves by its answer, the connection's failure, or `response_timeout`; dropping a
//! future forgets its request (a late answer is discarded); dropping the last [`AsyncClient`]
//! handle stops the driver and closes the socket.
//!
//! Per-request cost: request ids are consecutive, so pending requests live in a window indexed
//! by `id - base` (no hashing), and since every request has the same timeout their deadlines
//! grow with their id: the driver keeps ONE timer, on the oldest pending request's deadline,
//! instead of one glommio timer per request (each was a reactor insert and remove).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use glommio::timer::Timer;

use super::{
    delete_request, get_request, get_result, put_request, response_from_message, write_result,
    ClientConfig, ClientError, Context, GetResult, OpOptions,
};
use tern_proto::codec::{decode_frame, DecodeFailure};
use tern_proto::handshake::{ServerHello, SERVER_HELLO_LEN};
use tern_proto::{
    ClientHello, ClientRequest, ClientResponse, Encoder, Envelope, FrameDecoder, Message, NetError,
};

type Outcome = Result<ClientResponse, ClientError>;

struct Slot {
    result: Option<Outcome>,
    waker: Option<Waker>,
    /// When the request times out (send time + `response_timeout`).
    deadline: Instant,
}

/// Requests waiting for an answer, by id. Ids are handed out consecutively, so `slots[i]` is
/// request `base + i`; answered or forgotten requests leave `None` until the front catches up.
/// Length is bounded by the requests sent within one `response_timeout` (each slot is freed by
/// its answer, its future's drop, the timeout sweep, or the connection's close).
#[derive(Default)]
struct Pending {
    base: u64,
    slots: VecDeque<Option<Slot>>,
    live: usize,
}

impl Pending {
    fn new(first_id: u64) -> Self {
        Pending {
            base: first_id,
            ..Pending::default()
        }
    }

    /// Adds request `id`, which must be the next id after the last one added.
    fn insert(&mut self, id: u64, slot: Slot) {
        debug_assert_eq!(
            id,
            self.base + self.slots.len() as u64,
            "request ids must be consecutive"
        );
        self.slots.push_back(Some(slot));
        self.live += 1;
    }

    fn index(&self, id: u64) -> Option<usize> {
        let i = usize::try_from(id.checked_sub(self.base)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Slot> {
        let i = self.index(id)?;
        self.slots[i].as_mut()
    }

    fn remove(&mut self, id: u64) -> Option<Slot> {
        let i = self.index(id)?;
        let slot = self.slots[i].take()?;
        self.live -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(slot)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.iter_mut().flatten()
    }

    /// Deadline of the oldest request still waiting for its answer (deadlines grow with ids).
    fn first_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flatten()
            .find(|s| s.result.is_none())
            .map(|s| s.deadline)
    }

    /// Fails every unanswered request whose deadline passed; returns how many.
    fn expire(&mut self, now: Instant, timeout: Duration) -> usize {
        let mut n = 0;
        for slot in self.slots.iter_mut().flatten() {
            if slot.deadline > now {
                break;
            }
            if slot.result.is_none() {
                slot.result = Some(Err(ClientError::ResponseTimeout {
                    timeout_ms: timeout.as_millis() as u64,
                }));
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
                n += 1;
            }
        }
        n
    }
}

struct State {
    enc: Encoder,
    out: Vec<u8>,
    next_id: u64,
    pending: Pending,
    driver: Option<Waker>,
    /// The timeout sweeper's waker; `sweeper_idle` when it waits for a first pending request
    /// (only then does a new request wake it).
    sweeper: Option<Waker>,
    sweeper_idle: bool,
    closed: Option<String>,
}

struct Shared {
    state: RefCell<State>,
    sem: Rc<Semaphore>,
    cfg: ClientConfig,
    peer: SocketAddr,
}

impl Shared {
    fn close(&self, why: String) {
        let mut st = self.state.borrow_mut();
        if st.closed.is_none() {
            st.closed = Some(why.clone());
        }
        for slot in st.pending.values_mut() {
            if slot.result.is_none() {
                slot.result = Some(Err(ClientError::Closed(why.clone())));
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
        }
        if let Some(w) = st.driver.take() {
            w.wake();
        }
        if let Some(w) = st.sweeper.take() {
            w.wake();
        }
    }
}

/// Closes the connection when the last [`AsyncClient`] clone is dropped.
struct HandleGuard(Rc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.close("client dropped".into());
    }
}

/// A pipelined connection to one node; clone it freely within the executor.
#[derive(Clone)]
pub struct AsyncClient {
    shared: Rc<Shared>,
    _guard: Rc<HandleGuard>,
}

impl AsyncClient {
    /// Connects to `addr` and exchanges the hello within `cfg.connect_timeout`, then spawns the
    /// connection's driver task on the current executor.
    pub async fn connect(addr: &str, cfg: ClientConfig) -> Result<Self, ClientError> {
        let conn_err = |source: io::Error| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(conn_err)?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(a, cfg.connect_timeout).await {
                Ok(s) => {
                    stream = Some((s, a));
                    break;
                }
                Err(e) => last = e.into(),
            }
        }
        let (mut stream, peer) = stream.ok_or_else(|| conn_err(last))?;
        let hs = |source: NetError| ClientError::Handshake {
            addr: peer.to_string(),
            source,
        };
        stream
            .set_nodelay(true)
            .map_err(|e| hs(NetError::Io(e.into())))?;
        let hello = async {
            stream.write_all(&ClientHello::default().encode()).await?;
            let mut reply = [0u8; SERVER_HELLO_LEN];
            stream.read_exact(&mut reply).await?;
            Ok::<_, io::Error>(reply)
        };
        let reply = with_timeout(cfg.connect_timeout, hello)
            .await
            .map_err(|e| hs(NetError::Io(e)))?;
        let hello = ServerHello::decode(&reply).map_err(hs)?;
        hello.check().map_err(hs)?;
        // The node's frame size, not a guess (see the blocking client).
        let cfg = ClientConfig {
            limits: cfg.limits.for_node(hello.max_frame_len),
            ..cfg
        };

        let shared = Rc::new(Shared {
            state: RefCell::new(State {
                enc: Encoder::new(cfg.limits),
                out: Vec::with_capacity(16 << 10),
                next_id: 1,
                pending: Pending::new(1),
                driver: None,
                sweeper: None,
                sweeper_idle: false,
                closed: None,
            }),
            sem: Rc::new(Semaphore::new(cfg.max_in_flight as u64)),
            cfg,
            peer,
        });
        glommio::spawn_local(drive(stream, shared.clone())).detach();
        glommio::spawn_local(sweep(shared.clone())).detach();
        Ok(Self {
            _guard: Rc::new(HandleGuard(shared.clone())),
            shared,
        })
    }

    /// The node this client talks to.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Requests sent and not yet answered (or given up).
    pub fn in_flight(&self) -> usize {
        self.shared.state.borrow().pending.live
    }

    /// Queues `req` now, without waiting for capacity: fails with `TooManyInFlight` when
    /// `max_in_flight` requests are outstanding. The returned future resolves to the answer.
    /// Open-loop load generators use this to send at the scheduled instant.
    pub fn send(&self, req: &ClientRequest) -> Result<ResponseFuture, ClientError> {
        let permit = match self.shared.sem.try_acquire_static_permit(1) {
            Ok(p) => p,
            Err(_) => {
                return Err(ClientError::TooManyInFlight {
                    max: self.shared.cfg.max_in_flight,
                })
            }
        };
        self.enqueue(req, permit)
    }

    /// Sends `req` (waiting for capacity if needed) and waits for its answer.
    pub async fn call(&self, req: &ClientRequest) -> Result<ClientResponse, ClientError> {
        let permit = self
            .shared
            .sem
            .acquire_static_permit(1)
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        self.enqueue(req, permit)?.await
    }

    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<GetResult>, ClientError> {
        let o = self.shared.cfg.op;
        self.get_with(key, &o).await
    }

    pub async fn get_with(
        &self,
        key: impl Into<Bytes>,
        o: &OpOptions,
    ) -> Result<Option<GetResult>, ClientError> {
        get_result(self.call(&get_request(key, o)).await)
    }

    pub async fn put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ctx: Option<&Context>,
    ) -> Result<Context, ClientError> {
        let o = self.shared.cfg.op;
        self.put_with(key, value, ctx, &o).await
    }

    pub async fn put_with(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ctx: Option<&Context>,
        o: &OpOptions,
    ) -> Result<Context, ClientError> {
        write_result(self.call(&put_request(key, value, ctx, o)).await)
    }

    pub async fn delete(
        &self,
        key: impl Into<Bytes>,
        ctx: Option<&Context>,
    ) -> Result<Context, ClientError> {
        let o = self.shared.cfg.op;
        self.delete_with(key, ctx, &o).await
    }

    pub async fn delete_with(
        &self,
        key: impl Into<Bytes>,
        ctx: Option<&Context>,
        o: &OpOptions,
    ) -> Result<Context, ClientError> {
        write_result(self.call(&delete_request(key, ctx, o)).await)
    }

    fn enqueue(
        &self,
        req: &ClientRequest,
        permit: StaticPermit,
    ) -> Result<ResponseFuture, ClientError> {
        let mut st = self.shared.state.borrow_mut();
        if let Some(why) = &st.closed {
            return Err(ClientError::Closed(why.clone()));
        }
        let id = st.next_id;
        let env = Envelope::new(id, Message::Request(req.clone()));
        let State { enc, out, .. } = &mut *st;
        enc.encode_into(&env, out)
            .map_err(ClientError::InvalidRequest)?;
        // u64 ids do not wrap in practice (585 years at 1e9 requests/s); the window relies on
        // them being consecutive.
        st.next_id = st.next_id.wrapping_add(1);
        let deadline = Instant::now() + self.shared.cfg.response_timeout;
        st.pending.insert(
            id,
            Slot {
                result: None,
                waker: None,
                deadline,
            },
        );
        if let Some(w) = st.driver.take() {
            w.wake();
        }
        if st.sweeper_idle {
            if let Some(w) = st.sweeper.take() {
                st.sweeper_idle = false;
                w.wake();
            }
        }
        Ok(ResponseFuture {
            shared: self.shared.clone(),
            id,
            _permit: permit,
            done: false,
        })
    }
}

/// The answer to one request sent with [`AsyncClient::send`].
pub struct ResponseFuture {
    shared: Rc<Shared>,
    id: u64,
    _permit: StaticPermit,
    done: bool,
}

impl ResponseFuture {
    /// The request id used on the wire.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Future for ResponseFuture {
    type Output = Result<ClientResponse, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Err(ClientError::Closed("response already taken".into())));
        }
        {
            let mut st = this.shared.state.borrow_mut();
            match st.pending.get_mut(this.id) {
                Some(slot) => {
                    if let Some(r) = slot.result.take() {
                        st.pending.remove(this.id);
                        this.done = true;
                        return Poll::Ready(r);
                    }
                    // The driver's sweep times the request out (and wakes us).
                    match &slot.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => slot.waker = Some(cx.waker().clone()),
                    }
                }
                None => {
                    this.done = true;
                    let closed = st.closed.clone();
                    return Poll::Ready(Err(ClientError::Closed(
                        closed.unwrap_or_else(|| "request forgotten".into()),
                    )));
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if !self.done {
            self.shared.state.borrow_mut().pending.remove(self.id);
        }
    }
}

/// Resolves `fut`, or fails with `TimedOut` after `d`.
async fn with_timeout<T>(d: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(d).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no hello from the node within {} ms", d.as_millis()),
        ))
    })
    .await
}

const READ_CHUNK: usize = 64 << 10;

/// Times requests out: sleeps until the oldest unanswered request's deadline, fails every
/// request due by then, and repeats; idles while nothing is pending. Ends when the connection
/// closes (`Shared::close` wakes it). One timer per connection, re-armed about once per
/// `response_timeout` under steady load, instead of one per request.
async fn sweep(shared: Rc<Shared>) {
    let timeout = shared.cfg.response_timeout;
    let mut timer: Option<Timer> = None;
    std::future::poll_fn(|cx| loop {
        let mut st = shared.state.borrow_mut();
        if st.closed.is_some() {
            return Poll::Ready(());
        }
        let now = Instant::now();
        st.pending.expire(now, timeout);
        let Some(due) = st.pending.first_deadline() else {
            st.sweeper = Some(cx.waker().clone());
            st.sweeper_idle = true;
            timer = None;
            return Poll::Pending;
        };
        st.sweeper = Some(cx.waker().clone());
        st.sweeper_idle = false;
        drop(st);
        // A timer armed for an earlier request that was answered since fires early; the loop
        // then finds nothing due and arms the next deadline.
        let t = timer.get_or_insert_with(|| Timer::new(due.saturating_duration_since(now)));
        if Pin::new(t).poll(cx).is_ready() {
            timer = None;
            continue;
        }
        return Poll::Pending;
    })
    .await;
}

/// Owns the socket: writes queued frames, reads and dispatches answers, until the connection
/// fails or the last client handle is dropped.
async fn drive(mut stream: TcpStream, shared: Rc<Shared>) {
    let mut dec = FrameDecoder::new(shared.cfg.limits.max_frame_len);
    let mut wbuf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut wpos = 0usize;
    let mut rbuf = vec![0u8; READ_CHUNK];
    let end: Result<(), String> = std::future::poll_fn(|cx| {
        if let Some(why) = shared.state.borrow().closed.clone() {
            return Poll::Ready(Err(why));
        }
        // Write side: drain our buffer, then take everything queued since.
        loop {
            if wpos == wbuf.len() {
                wbuf.clear();
                wpos = 0;
                let mut st = shared.state.borrow_mut();
                std::mem::swap(&mut wbuf, &mut st.out);
                if wbuf.is_empty() {
                    st.driver = Some(cx.waker().clone());
                    break;
                }
            }
            match Pin::new(&mut stream).poll_write(cx, &wbuf[wpos..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err("node stopped accepting data".into()))
                }
                Poll::Ready(Ok(n)) => wpos += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("write failed: {e}"))),
                Poll::Pending => {
                    // Also wake when new requests are queued; harmless if the write wakes first.
                    shared.state.borrow_mut().driver = Some(cx.waker().clone());
                    break;
                }
            }
        }
        // Read side: bounded per poll so writes are not starved by a fast reader.
        for _ in 0..64 {
            match Pin::new(&mut stream).poll_read(cx, &mut rbuf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(format!("node {} closed the connection", shared.peer)))
                }
                Poll::Ready(Ok(n)) => {
                    dec.push(&rbuf[..n]);
                    if let Err(e) = dispatch(&mut dec, &shared) {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(format!("read failed: {e}"))),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Yielded after many reads: ask to be polled again.
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
    let why = match end {
        Ok(()) => "connection finished".to_owned(),
        Err(e) => e,
    };
    tracing::debug!(peer = %shared.peer, reason = %why, "client connection ends");
    shared.close(why);
    let _ = stream.close().await;
}

/// Hands every complete answer to its waiting future. An error here is fatal for the connection.
fn dispatch(dec: &mut FrameDecoder, shared: &Shared) -> Result<(), String> {
    loop {
        let frame = match dec.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let (id, outcome) = match decode_frame(&frame, &shared.cfg.limits) {
            Ok(env) => (env.request_id, response_from_message(env.message)),
            Err(DecodeFailure {
                request_id: Some(id),
                error,
            }) => (id, Err(ClientError::Protocol(error))),
            Err(f) => return Err(format!("undecodable frame from node: {}", f.error)),
        };
        let mut st = shared.state.borrow_mut();
        match st.pending.get_mut(id) {
            Some(slot) => {
                slot.result = Some(outcome);
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
            None => tracing::debug!(id, "dropping answer to a request no one waits for"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn slot(deadline: Instant) -> Slot {
        Slot {
            result: None,
            waker: None,
            deadline,
        }
    }

    #[test]
    fn window_frees_out_of_order_and_advances_its_base() {
        let t0 = Instant::now();
        let mut p = Pending::new(1);
        for id in 1..=4 {
            p.insert(id, slot(t0 + Duration::from_millis(id)));
        }
        assert!(p.remove(3).is_some());
        assert!(p.remove(3).is_none(), "a slot is freed once");
        assert_eq!((p.base, p.slots.len(), p.live), (1, 4, 3));
        assert!(p.remove(1).is_some());
        assert_eq!(
            (p.base, p.slots.len()),
            (2, 3),
            "front advances past freed slots"
        );
        assert!(p.remove(2).is_some());
        assert_eq!((p.base, p.slots.len(), p.live), (4, 1, 1));
        assert!(p.get_mut(0).is_none() && p.get_mut(3).is_none() && p.get_mut(9).is_none());
        assert!(p.get_mut(4).is_some());
        p.insert(5, slot(t0 + Duration::from_millis(5)));
        assert_eq!(p.first_deadline(), Some(t0 + Duration::from_millis(4)));
    }

    #[test]
    fn expire_fails_only_due_unanswered_requests() {
        let t0 = Instant::now();
        let mut p = Pending::new(7);
        for (i, id) in (7..=10).enumerate() {
            p.insert(id, slot(t0 + Duration::from_millis(10 * i as u64)));
        }
        // Request 8 already has its answer: it must keep it.
        p.get_mut(8).unwrap().result = Some(Err(ClientError::Closed("x".into())));
        let n = p.expire(t0 + Duration::from_millis(15), Duration::from_millis(1));
        assert_eq!(n, 1, "only request 7 is due and unanswered");
        assert!(matches!(
            p.get_mut(7).unwrap().result,
            Some(Err(ClientError::ResponseTimeout { .. }))
        ));
        assert!(matches!(
            p.get_mut(8).unwrap().result,
            Some(Err(ClientError::Closed(_)))
        ));
        assert!(p.get_mut(9).unwrap().result.is_none());
        assert_eq!(p.first_deadline(), Some(t0 + Duration::from_millis(20)));
    }
}
