//! One accepted connection: hello, then a read loop that splits frames, verifies them and spawns
//! a task per request (pipelining: answers go out in completion order, matched by request id),
//! and a writer task that batches encoded answers into as few writes as possible.
//!
//! Bounds: at most `max_inflight` requests of one connection run at once (the read loop waits
//! for a permit, so a client that pipelines more simply stops being read); the hello must
//! arrive within [`HELLO_TIMEOUT`]; the reader pauses while more than [`WRITE_HIGH_WATER`] bytes
//! of answers wait for the client to read them.
//!
//! Bad input never takes the server down: a frame that fails verification is answered with an
//! error (with its request id when it could be read) and the connection continues; a frame
//! header over the limit or a truncated stream closes this connection only.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};

use crate::net::handshake::{answer_hello, ClientHello, CLIENT_HELLO_LEN, FLAG_PEER_NODE};
use crate::net::{
    decode_frame, ClientRequest, ClientResponse, Encoder, Envelope, ErrorCode, FrameDecoder,
    Limits, Message, NetError, ReplicaRequestWire, ReplicaResponseWire, WireError,
};

/// Time a new connection has to send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers buffered for a slow reader before we stop reading its requests.
pub const WRITE_HIGH_WATER: usize = 8 << 20;
/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 64 << 10;

/// What the connection layer hands requests to (the server's shard, or a test stub).
#[allow(async_fn_in_trait)]
pub trait Dispatch: 'static {
    /// Serve one client request. Takes the dispatcher by `Rc` so the future owns what it needs
    /// and the connection can spawn it as is (see [`ClientTask`]).
    fn client(
        self: Rc<Self>,
        req: ClientRequest,
    ) -> impl Future<Output = Result<ClientResponse, WireError>> + 'static;
    /// `shard`: the frame's target shard (replica messages name the owning shard).
    async fn replica(
        &self,
        shard: Option<u16>,
        req: ReplicaRequestWire,
    ) -> Result<ReplicaResponseWire, WireError>;
}

/// Per-connection settings.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub net: Limits,
    pub max_inflight: usize,
}

/// Outgoing side shared by the request tasks and the writer.
struct Out {
    buf: RefCell<Vec<u8>>,
    encoder: RefCell<Encoder>,
    /// Wakes the writer (capacity 1: a pending wake-up is enough).
    wake: LocalSender<()>,
    /// Wakes a reader waiting for the buffer to drain.
    drained: LocalSender<()>,
    closed: Cell<bool>,
}

impl Out {
    fn push(&self, env: &Envelope) {
        if self.closed.get() {
            return;
        }
        let mut enc = self.encoder.borrow_mut();
        let mut buf = self.buf.borrow_mut();
        if let Err(e) = enc.encode_into(env, &mut buf) {
            // The answer itself breaks a limit (e.g. siblings of large values exceed a frame):
            // tell the client instead of sending nothing.
            let err = Envelope::new(
                env.request_id,
                Message::Error(WireError::new(
                    e.code(),
                    format!("the answer could not be sent: {e}"),
                )),
            );
            if let Err(e2) = enc.encode_into(&err, &mut buf) {
                tracing::error!(error = %e2, "cannot encode an error answer");
            }
        }
        let _ = self.wake.try_send(());
    }
}

/// Serves one connection until the peer closes it, it breaks the protocol, or `stop` resolves
/// (then in-flight requests are finished and answered before returning).
pub async fn serve_conn<D, S>(stream: TcpStream, dispatch: Rc<D>, limits: ConnLimits, stop: S)
where
    D: Dispatch,
    S: Future<Output = ()> + 'static,
{
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = stream.set_nodelay(true);
    let mut stream = stream;
    let hello = match handshake(&mut stream, &limits).await {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "connection refused at hello");
            let _ = stream.close().await;
            return;
        }
    };
    // Replica messages write records verbatim; only connections that introduced themselves as
    // cluster nodes (or debug tools) may send them, so a client bug cannot forge replica state.
    let is_peer = hello.flags & FLAG_PEER_NODE != 0;
    // A second handle on the same socket for the writer, so a pending read never blocks a write
    // and neither side needs a lock or a RefCell borrow across an await.
    let wstream = match dup_stream(&stream) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot duplicate the socket; closing");
            let _ = stream.close().await;
            return;
        }
    };
    let (wake_tx, wake_rx) = local_channel::new_bounded(1);
    let (drained_tx, drained_rx) = local_channel::new_bounded(1);
    let out = Rc::new(Out {
        buf: RefCell::new(Vec::with_capacity(16 << 10)),
        encoder: RefCell::new(Encoder::new(limits.net)),
        wake: wake_tx,
        drained: drained_tx,
        closed: Cell::new(false),
    });
    let writer = glommio::spawn_local(write_loop(wstream, out.clone(), wake_rx)).detach();
    let permits = Rc::new(Semaphore::new(limits.max_inflight.max(1) as u64));
    // `stop` runs in its own task: raced directly against the read loop it would be polled at
    // every wake-up of the connection, i.e. per request, and the server's stop future polls a
    // glommio timer (a clock read and a timer re-check each time: 2-3% of GET CPU). The
    // watcher is cancelled when it is dropped at the end of this function.
    let (stop_tx, stop_rx) = local_channel::new_bounded::<()>(1);
    let watcher = glommio::spawn_local(async move {
        stop.await;
        let _ = stop_tx.try_send(());
    });
    let reason = futures_lite::future::or(
        read_loop(
            &mut stream,
            &dispatch,
            &out,
            &permits,
            limits,
            &drained_rx,
            is_peer,
        ),
        async {
            let _ = stop_rx.recv().await;
            "shutting down".to_owned()
        },
    )
    .await;
    drop(watcher);
    tracing::debug!(%peer, %reason, "connection read side done");
    // Let every running request finish (each is bounded by its own deadline) and be answered.
    let _ = permits.acquire(limits.max_inflight.max(1) as u64).await;
    out.closed.set(true);
    let _ = out.wake.try_send(());
    let _ = writer.await;
    let _ = stream.close().await;
}

pub(crate) fn dup_stream(stream: &TcpStream) -> std::io::Result<TcpStream> {
    use std::os::unix::io::{AsRawFd, FromRawFd};
    // SAFETY: dup of a descriptor we own; the new descriptor is owned by the returned stream.
    let fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid socket descriptor not owned by anything else.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

async fn handshake(stream: &mut TcpStream, limits: &ConnLimits) -> Result<ClientHello, NetError> {
    let mut hello = [0u8; CLIENT_HELLO_LEN];
    let read = stream.read_exact(&mut hello);
    let timed = glommio::timer::timeout(HELLO_TIMEOUT, async { Ok(read.await) }).await;
    match timed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(NetError::Io(e)),
        Err(_) => {
            return Err(NetError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no hello within 10 s",
            )))
        }
    }
    let (reply, verdict) = answer_hello(&hello, limits.net.max_frame_len);
    stream
        .write_all(&reply.encode())
        .await
        .map_err(NetError::Io)?;
    verdict
}

async fn read_loop<D: Dispatch>(
    stream: &mut TcpStream,
    dispatch: &Rc<D>,
    out: &Rc<Out>,
    permits: &Rc<Semaphore>,
    limits: ConnLimits,
    drained: &LocalReceiver<()>,
    is_peer: bool,
) -> String {
    let mut decoder = FrameDecoder::new(limits.net.max_frame_len);
    loop {
        // Drain every complete frame before reading more.
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    // Framing is lost (oversize or empty header): answer, then close.
                    out.push(&error_env(0, e.code(), e.to_string()));
                    return format!("framing error: {e}");
                }
            };
            let env = match decode_frame(&frame, &limits.net) {
                Ok(env) => env,
                Err(fail) => {
                    let id = fail.request_id.unwrap_or(0);
                    out.push(&error_env(id, fail.error.code(), fail.error.to_string()));
                    continue;
                }
            };
            while out.buf.borrow().len() > WRITE_HIGH_WATER {
                if drained.recv().await.is_none() {
                    return "writer closed".into();
                }
            }
            let Ok(permit) = permits.acquire_static_permit(1).await else {
                return "closing".into();
            };
            let id = env.request_id;
            match env.message {
                Message::Request(req) => {
                    let read = matches!(req, ClientRequest::Get(_));
                    let task = client_task(dispatch.clone(), out.clone(), id, req, permit);
                    if read {
                        // A read usually completes without waiting (a memtable hit): poll it
                        // once here and spawn a task only when it has to wait. Saves glommio's
                        // per-task work (task header, executor notifier lookup, scheduling,
                        // waker refcounts) for most reads. The no-op waker is safe because the
                        // spawned task polls the future again at once (`spawn_local` runs it
                        // right away), and every future re-registers its waker on each poll.
                        // Writes nearly always wait for the commit log: spawned directly.
                        let mut task = Box::pin(task);
                        let mut cx = Context::from_waker(Waker::noop());
                        if task.as_mut().poll(&mut cx).is_pending() {
                            glommio::spawn_local(task).detach();
                        }
                    } else {
                        glommio::spawn_local(task).detach();
                    }
                }
                Message::Replica(_) if !is_peer => {
                    drop(permit);
                    out.push(&error_env(
                        id,
                        ErrorCode::BadRequest,
                        "replica messages are accepted only on connections that said hello as a cluster node".into(),
                    ));
                }
                Message::Replica(req) => {
                    let (d, o) = (dispatch.clone(), out.clone());
                    let shard = env.target_shard;
                    glommio::spawn_local(async move {
                        let msg = match d.replica(shard, req).await {
                            Ok(resp) => Message::ReplicaReply(resp),
                            Err(e) => Message::Error(e),
                        };
                        o.push(&Envelope::new(id, msg));
                        drop(permit);
                    })
                    .detach();
                }
                other => {
                    drop(permit);
                    let kind = match other {
                        Message::Response(_) => "a response",
                        Message::ReplicaReply(_) => "a replica reply",
                        _ => "an error",
                    };
                    out.push(&error_env(
                        id,
                        ErrorCode::BadRequest,
                        format!("a server accepts requests, not {kind}"),
                    ));
                }
            }
        }
        let n = {
            let slot = decoder.read_slot(READ_CHUNK);
            match stream.read(slot).await {
                Ok(n) => {
                    decoder.commit(READ_CHUNK, n);
                    n
                }
                Err(e) => {
                    decoder.commit(READ_CHUNK, 0);
                    return format!("read error: {e}");
                }
            }
        };
        if n == 0 {
            return match decoder.finish() {
                Ok(()) => "peer closed".into(),
                Err(e) => format!("peer closed: {e}"),
            };
        }
    }
}

pin_project_lite::pin_project! {
    /// The task spawned per client request: the dispatcher's future, polled in place, then its
    /// answer queued. Hand-written rather than an `async` block, which would keep the request
    /// beside the dispatcher's future (an argument moved into an awaited callee stays in the
    /// caller's state) and the future beside its moved-in copy.
    ///
    /// glommio allocates it (header + this) per request, so its size matters: under glibc's
    /// thread-cache limit (1,032 bytes) the allocation is a thread-cache hit, above it a
    /// "large" bin allocation that first consolidates the fast bins, plus a memcpy of the
    /// whole future ([`client_task_size`] and its test keep it under).
    struct ClientTask<F> {
        #[pin]
        call: F,
        out: Rc<Out>,
        id: u64,
        permit: Option<StaticPermit>,
    }
}

impl<F: Future<Output = Result<ClientResponse, WireError>>> Future for ClientTask<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let msg = match std::task::ready!(this.call.poll(cx)) {
            Ok(resp) => Message::Response(resp),
            Err(e) => Message::Error(e),
        };
        this.out.push(&Envelope::new(*this.id, msg));
        // The in-flight slot is freed once the answer is queued, as before.
        drop(this.permit.take());
        Poll::Ready(())
    }
}

fn client_task<D: Dispatch>(
    d: Rc<D>,
    out: Rc<Out>,
    id: u64,
    req: ClientRequest,
    permit: StaticPermit,
) -> impl Future<Output = ()> {
    ClientTask {
        call: d.client(req),
        out,
        id,
        permit: Some(permit),
    }
}

/// Size in bytes of the per-request task's future for dispatcher `D` (without glommio's task
/// header), for tests and measurements.
pub fn client_task_size<D: Dispatch>() -> usize {
    fn ret_size<A, B, C, E, G, F>(_: fn(A, B, C, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    ret_size(client_task::<D>)
}

async fn write_loop(mut stream: TcpStream, out: Rc<Out>, wake: LocalReceiver<()>) {
    let mut spare = Vec::with_capacity(16 << 10);
    loop {
        if out.buf.borrow().is_empty() {
            if out.closed.get() {
                break;
            }
            if wake.recv().await.is_none() {
                break;
            }
            continue;
        }
        std::mem::swap(&mut *out.buf.borrow_mut(), &mut spare);
        let _ = out.drained.try_send(());
        let res = stream.write_all(&spare).await;
        spare.clear();
        if spare.capacity() > (1 << 20) {
            spare.shrink_to(16 << 10);
        }
        if let Err(e) = res {
            tracing::debug!(error = %e, "write failed; dropping the connection's answers");
            out.closed.set(true);
            break;
        }
    }
    let _ = stream.close().await;
}

fn error_env(id: u64, code: ErrorCode, message: String) -> Envelope {
    Envelope::new(id, Message::Error(WireError::new(code, message)))
}
