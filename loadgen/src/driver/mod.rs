//! Targets: the wire protocols the generator can drive. Each driver owns its connection and
//! moves bytes; what to send and how to account for it lives in [`crate::conn::ConnState`], so
//! a protocol plugs in by implementing `connect` + `run_phase` and adding a [`Conn`] variant.
//!
//! Must not: decide op mix, pacing or stop conditions (that is `conn`), or touch other cores.

pub mod resp;
pub mod tern;

use crate::conn::ConnState;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Which protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// tern's flatbuffers protocol.
    Tern,
    /// Redis' RESP (GET/SET/DEL).
    Resp,
}

/// Per-connection settings common to every protocol.
#[derive(Debug, Clone)]
pub struct ConnParams {
    pub addr: SocketAddr,
    /// Requests in flight at most (pipelining depth); 1 = no pipelining.
    pub depth: usize,
    /// A request with no progress on its connection for this long fails as "timeout".
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// Failures to set a connection up.
#[derive(Debug, Error)]
pub enum TargetError {
    #[error("connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
}

/// A live connection of some protocol.
pub enum Conn {
    Resp(resp::RespConn),
    Tern(tern::TernConn),
}

impl Conn {
    pub async fn connect(
        proto: Protocol,
        params: ConnParams,
        tern: tern::TernSetup,
    ) -> Result<Conn, TargetError> {
        match proto {
            Protocol::Resp => Ok(Conn::Resp(resp::RespConn::connect(params).await?)),
            Protocol::Tern => Ok(Conn::Tern(tern::TernConn::connect(params, tern).await?)),
        }
    }

    /// Sets the pipelining depth; returns the previous one.
    pub fn set_depth(&mut self, depth: usize) -> usize {
        match self {
            Conn::Resp(c) => std::mem::replace(&mut c.params.depth, depth.max(1)),
            Conn::Tern(c) => std::mem::replace(&mut c.params.depth, depth.max(1)),
        }
    }

    pub fn health(&self) -> Rc<Health> {
        match self {
            Conn::Resp(c) => c.health(),
            Conn::Tern(c) => c.health(),
        }
    }

    /// Drives the connection until its state says the phase is over.
    pub async fn run_phase(&mut self, st: &Rc<RefCell<ConnState>>) {
        match self {
            Conn::Resp(c) => c.run_phase(st).await,
            Conn::Tern(c) => c.run_phase(st).await,
        }
    }
}

/// What the per-core watchdog needs to see of a connection, shared with it (same core only).
#[derive(Debug)]
pub struct Health {
    /// The socket, or -1 when there is none.
    pub fd: Cell<RawFd>,
    /// Set while the connection waits for a reply: since when it has seen no progress.
    pub waiting_since: Cell<Option<Instant>>,
    /// Set by the watchdog when it shut the socket down for lack of progress.
    pub timed_out: Cell<bool>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            fd: Cell::new(-1),
            waiting_since: Cell::new(None),
            timed_out: Cell::new(false),
        }
    }
}

/// Enforces the request timeout of every connection of a core without a timer per request:
/// every `timeout / 20` (at least 1 ms, at most 100 ms) it shuts down the sockets that have
/// waited longer than `timeout`, which wakes their pending read. Runs until cancelled.
pub async fn watchdog(conns: Vec<Rc<Health>>, timeout: Duration) {
    let period = (timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        glommio::timer::sleep(period).await;
        let now = Instant::now();
        for h in &conns {
            let (Some(since), fd) = (h.waiting_since.get(), h.fd.get()) else {
                continue;
            };
            if fd >= 0 && now.saturating_duration_since(since) >= timeout && !h.timed_out.get() {
                h.timed_out.set(true);
                // SAFETY: shutdown on an fd this core's connection owns (it is only closed by
                // that connection, on this thread, after it resets `fd` to -1); it does not free
                // the fd, only ends its I/O.
                unsafe {
                    libc::shutdown(fd, libc::SHUT_RDWR);
                }
            }
        }
    }
}

/// Sleeps until `t` (returns at once if it has passed).
pub async fn sleep_until(t: Instant) {
    let d = t.saturating_duration_since(Instant::now());
    if !d.is_zero() {
        glommio::timer::sleep(d).await;
    }
}
