//! Blocking client over `std::net::TcpStream`: no runtime needed.
//!
//! Invariants: at most `max_in_flight` requests outstanding; every read waits at most until the
//! request's deadline (`response_timeout`), re-armed before each read so a trickling peer cannot
//! stretch it; after a framing or I/O error the connection is unusable and says so.

use std::collections::{HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{
    delete_request, get_request, get_result, put_request, response_from_message, write_result,
    ClientConfig, ClientError, Context, GetResult, OpOptions,
};
use tern_proto::codec::{decode_frame, DecodeFailure};
use tern_proto::handshake::{ServerHello, SERVER_HELLO_LEN};
use tern_proto::{
    ClientHello, ClientRequest, ClientResponse, Encoder, Envelope, FrameDecoder, Message, NetError,
};

/// One answer as returned by [`Client::recv`]: its request id and the outcome.
pub type Answer = (u64, Result<ClientResponse, ClientError>);

/// A connection to one node (any node can coordinate any request).
pub struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    cfg: ClientConfig,
    enc: Encoder,
    dec: FrameDecoder,
    out: Vec<u8>,
    next_id: u64,
    pending: HashSet<u64>,
    stash: VecDeque<Answer>,
    broken: Option<String>,
}

impl Client {
    /// Connects to `addr` (`host:port`; every resolved address is tried in turn) and exchanges
    /// the hello, all within `cfg.connect_timeout`.
    pub fn connect(addr: &str, cfg: ClientConfig) -> Result<Self, ClientError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?
            .collect();
        let mut last = std::io::Error::new(ErrorKind::NotFound, "address resolved to nothing");
        for a in addrs {
            match TcpStream::connect_timeout(&a, cfg.connect_timeout) {
                Ok(s) => return Self::handshake(s, a, cfg),
                Err(e) => last = e,
            }
        }
        Err(ClientError::Connect {
            addr: addr.to_owned(),
            source: last,
        })
    }

    fn handshake(
        mut stream: TcpStream,
        peer: SocketAddr,
        cfg: ClientConfig,
    ) -> Result<Self, ClientError> {
        let hs = |source: NetError| ClientError::Handshake {
            addr: peer.to_string(),
            source,
        };
        let io = |e: std::io::Error| hs(NetError::Io(e));
        stream.set_nodelay(true).map_err(io)?;
        stream
            .set_read_timeout(Some(cfg.connect_timeout))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(cfg.connect_timeout))
            .map_err(io)?;
        stream
            .write_all(&ClientHello::default().encode())
            .map_err(io)?;
        let mut reply = [0u8; SERVER_HELLO_LEN];
        stream.read_exact(&mut reply).map_err(io)?;
        let hello = ServerHello::decode(&reply).map_err(hs)?;
        hello.check().map_err(hs)?;
        // The node's frame size, not a guess: a node started with a larger value limit takes
        // larger values, and refuses what it does not take with its own limit in the error.
        let cfg = ClientConfig {
            limits: cfg.limits.for_node(hello.max_frame_len),
            ..cfg
        };
        stream
            .set_write_timeout(Some(cfg.response_timeout))
            .map_err(io)?;
        Ok(Self {
            stream,
            peer,
            cfg,
            enc: Encoder::new(cfg.limits),
            dec: FrameDecoder::new(cfg.limits.max_frame_len),
            out: Vec::with_capacity(16 << 10),
            next_id: 1,
            pending: HashSet::new(),
            stash: VecDeque::new(),
            broken: None,
        })
    }

    /// The limits requests are checked against before sending (the node's, from its hello).
    pub fn limits(&self) -> &tern_proto::Limits {
        &self.cfg.limits
    }

    /// The node this client talks to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Reads `key` with the default options.
    pub fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<GetResult>, ClientError> {
        let o = self.cfg.op;
        self.get_with(key, &o)
    }

    pub fn get_with(
        &mut self,
        key: impl Into<Bytes>,
        o: &OpOptions,
    ) -> Result<Option<GetResult>, ClientError> {
        get_result(self.call(&get_request(key, o)))
    }

    /// Writes `value` under `key`; `ctx` from an earlier get says which versions it replaces.
    /// Returns the context of the new version.
    pub fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ctx: Option<&Context>,
    ) -> Result<Context, ClientError> {
        let o = self.cfg.op;
        self.put_with(key, value, ctx, &o)
    }

    pub fn put_with(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ctx: Option<&Context>,
        o: &OpOptions,
    ) -> Result<Context, ClientError> {
        write_result(self.call(&put_request(key, value, ctx, o)))
    }

    /// Deletes `key` (a versioned tombstone); `ctx` as for [`Client::put`].
    pub fn delete(
        &mut self,
        key: impl Into<Bytes>,
        ctx: Option<&Context>,
    ) -> Result<Context, ClientError> {
        let o = self.cfg.op;
        self.delete_with(key, ctx, &o)
    }

    pub fn delete_with(
        &mut self,
        key: impl Into<Bytes>,
        ctx: Option<&Context>,
        o: &OpOptions,
    ) -> Result<Context, ClientError> {
        write_result(self.call(&delete_request(key, ctx, o)))
    }

    /// Sends one request and waits for its answer (answers to earlier pipelined requests that
    /// arrive meanwhile are kept for [`Client::recv`]).
    pub fn call(&mut self, req: &ClientRequest) -> Result<ClientResponse, ClientError> {
        let id = self.send(req)?;
        self.flush()?;
        loop {
            match self.read_answer() {
                Ok((got, r)) if got == id => return r,
                Ok(other) => self.stash.push_back(other),
                Err(e) => {
                    self.pending.remove(&id);
                    return Err(e);
                }
            }
        }
    }

    /// Queues a request without waiting (pipelining); returns its id. Sent on
    /// [`Client::flush`] or the next [`Client::recv`].
    pub fn send(&mut self, req: &ClientRequest) -> Result<u64, ClientError> {
        self.check_usable()?;
        if self.pending.len() >= self.cfg.max_in_flight {
            return Err(ClientError::TooManyInFlight {
                max: self.cfg.max_in_flight,
            });
        }
        let id = self.next_id;
        let env = Envelope::new(id, Message::Request(req.clone()));
        self.enc
            .encode_into(&env, &mut self.out)
            .map_err(ClientError::InvalidRequest)?;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.pending.insert(id);
        Ok(id)
    }

    /// Writes every queued request.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.check_usable()?;
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.stream.write_all(&self.out);
        self.out.clear();
        r.map_err(|e| self.fail(NetError::Io(e)))
    }

    /// Requests sent (or queued) and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The next answer to any pipelined request, in arrival order.
    pub fn recv(&mut self) -> Result<Answer, ClientError> {
        if let Some(a) = self.stash.pop_front() {
            return Ok(a);
        }
        if self.pending.is_empty() {
            return Err(ClientError::Closed("recv with no request in flight".into()));
        }
        self.flush()?;
        self.read_answer()
    }

    fn check_usable(&self) -> Result<(), ClientError> {
        match &self.broken {
            Some(why) => Err(ClientError::Closed(why.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, e: NetError) -> ClientError {
        self.broken = Some(e.to_string());
        ClientError::Protocol(e)
    }

    /// Reads until one answer for a pending request is complete, within `response_timeout`.
    fn read_answer(&mut self) -> Result<Answer, ClientError> {
        self.check_usable()?;
        let deadline = Instant::now() + self.cfg.response_timeout;
        loop {
            match self.dec.next_frame() {
                Err(e) => return Err(self.fail(e)),
                Ok(Some(frame)) => match decode_frame(&frame, &self.cfg.limits) {
                    Ok(env) => {
                        if self.pending.remove(&env.request_id) {
                            return Ok((env.request_id, response_from_message(env.message)));
                        }
                        // An answer to a request we gave up on (timed out): drop it.
                        tracing::debug!(id = env.request_id, "dropping answer to unknown request");
                    }
                    Err(DecodeFailure {
                        request_id: Some(id),
                        error,
                    }) if self.pending.remove(&id) => {
                        return Ok((id, Err(ClientError::Protocol(error))));
                    }
                    Err(f) => return Err(self.fail(f.error)),
                },
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::ResponseTimeout {
                            timeout_ms: self.cfg.response_timeout.as_millis() as u64,
                        });
                    }
                    // Re-arm per read so the whole wait, not each read, is bounded.
                    if let Err(e) = self
                        .stream
                        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    {
                        return Err(self.fail(NetError::Io(e)));
                    }
                    let slot = self.dec.read_slot(64 << 10);
                    let r = self.stream.read(slot);
                    match r {
                        Ok(0) => {
                            self.dec.commit(64 << 10, 0);
                            self.broken = Some(format!("node {} closed the connection", self.peer));
                            return Err(ClientError::Closed(format!(
                                "node {} closed the connection",
                                self.peer
                            )));
                        }
                        Ok(n) => self.dec.commit(64 << 10, n),
                        Err(e) => {
                            self.dec.commit(64 << 10, 0);
                            if matches!(
                                e.kind(),
                                ErrorKind::WouldBlock
                                    | ErrorKind::TimedOut
                                    | ErrorKind::Interrupted
                            ) {
                                continue;
                            }
                            return Err(self.fail(NetError::Io(e)));
                        }
                    }
                }
            }
        }
    }
}
