//! tern driver: one connection through `tern_client::AsyncClient` (flatbuffers protocol,
//! pipelined, answers matched by request id), or, token-aware (`--nodes`), one
//! `tern_client::AsyncRoutedClient`: a connection to every shard of the cluster, each request
//! sent to its key's owning shard.
//!
//! Owns the client handle and `depth` worker tasks per connection, each of which takes the next
//! planned request from the connection's [`ConnState`], sends it with [`AsyncClient::send`]
//! (queued at once, so open-loop requests leave at their scheduled instant) and records the
//! answer. Causal contexts: tern keeps concurrent blind writes as siblings, so a benchmark of
//! plain overwrites must pass back the context of the key's last answer; a per-core
//! [`ContextCache`] (bounded by the key space) remembers the latest context seen per key.
//!
//! Invariants: at most `depth` requests in flight per connection; every request ends by its
//! answer, a typed error or the client's response timeout; a broken connection is replaced at
//! most [`MAX_RECONNECTS`] times per phase, after which its workers stop.

use super::{sleep_until, ConnParams, Health, TargetError};
use crate::conn::{ConnState, Next, Outcome};
use crate::stats::OpKind;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tern_client::{
    async_client::ResponseFuture, delete_request, get_request, get_result, put_request,
    write_result, AsyncClient, AsyncRoutedClient, ClientConfig, ClientError, Context, OpOptions,
    Topology,
};
use tern_proto::ClientRequest;

/// Reconnect attempts per phase before the connection gives up.
const MAX_RECONNECTS: u32 = 5;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// Latest causal context per key index, shared by the connections of one core.
pub type ContextCache = Rc<RefCell<HashMap<u64, Context>>>;

/// What every tern connection of a core shares.
#[derive(Clone)]
pub struct TernSetup {
    pub opts: OpOptions,
    pub contexts: ContextCache,
    /// Most requests in flight the client allows (the deepest pipeline of any phase).
    pub max_in_flight: usize,
    /// Token-aware routing: the cluster's topology (None: talk to `params.addr` only).
    pub topology: Option<Rc<Topology>>,
}

/// One connection, or a token-aware set of them.
#[derive(Clone)]
enum Client {
    Plain(AsyncClient),
    Routed(AsyncRoutedClient),
}

impl Client {
    fn send(&self, req: &ClientRequest) -> Result<ResponseFuture, ClientError> {
        match self {
            Client::Plain(c) => c.send(req),
            Client::Routed(c) => c.send(req),
        }
    }
}

/// The client handle, replaced when the connection breaks.
struct Link {
    params: ConnParams,
    cfg: ClientConfig,
    topology: Option<Rc<Topology>>,
    client: RefCell<Option<Client>>,
    reconnects: Cell<u32>,
    /// Set while one worker reconnects, so the others wait instead of piling on.
    reconnecting: Cell<bool>,
    /// Bumped at every replacement, so a late failure of an old client cannot drop a new one.
    generation: Cell<u64>,
}

/// One tern connection.
pub struct TernConn {
    pub(super) params: ConnParams,
    setup: TernSetup,
    link: Rc<Link>,
    health: Rc<Health>,
}

async fn open(
    params: &ConnParams,
    cfg: ClientConfig,
    topology: Option<&Rc<Topology>>,
) -> Result<Client, TargetError> {
    let res = match topology {
        Some(t) => AsyncRoutedClient::connect(t.clone(), cfg)
            .await
            .map(Client::Routed),
        None => AsyncClient::connect(&params.addr.to_string(), cfg)
            .await
            .map(Client::Plain),
    };
    res.map_err(|e| TargetError::Connect {
        addr: params.addr,
        reason: e.to_string(),
    })
}

/// A short, stable name for an error kind: its variant (the details vary per request and would
/// make one report line per request).
fn error_kind(e: &ClientError) -> String {
    let dbg = format!("{e:?}");
    let end = dbg
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(dbg.len());
    dbg[..end].to_owned()
}

fn broken(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Closed(_) | ClientError::Protocol(_) | ClientError::Connect { .. }
    )
}

impl TernConn {
    pub async fn connect(params: ConnParams, setup: TernSetup) -> Result<Self, TargetError> {
        let cfg = ClientConfig {
            connect_timeout: params.connect_timeout,
            response_timeout: params.timeout,
            op: setup.opts,
            max_in_flight: setup.max_in_flight.max(params.depth).max(1),
            ..ClientConfig::default()
        };
        let client = open(&params, cfg, setup.topology.as_ref()).await?;
        Ok(TernConn {
            link: Rc::new(Link {
                params: params.clone(),
                cfg,
                topology: setup.topology.clone(),
                client: RefCell::new(Some(client)),
                reconnects: Cell::new(0),
                reconnecting: Cell::new(false),
                generation: Cell::new(0),
            }),
            params,
            setup,
            health: Rc::new(Health::default()),
        })
    }

    /// The client enforces its own response timeout: nothing for the watchdog to do.
    pub fn health(&self) -> Rc<Health> {
        self.health.clone()
    }

    /// Runs the connection's current phase to its end with `depth` concurrent workers.
    pub async fn run_phase(&mut self, st: &Rc<RefCell<ConnState>>) {
        self.link.reconnects.set(0);
        let workers: Vec<_> = (0..self.params.depth.max(1))
            .map(|_| {
                glommio::spawn_local(worker(self.link.clone(), st.clone(), self.setup.clone()))
            })
            .collect();
        for w in workers {
            w.await;
        }
    }
}

/// The current client and its generation, reconnecting (bounded) if it broke. None: give up.
async fn client_of(link: &Link) -> Option<(Client, u64)> {
    loop {
        if let Some(c) = link.client.borrow().as_ref() {
            return Some((c.clone(), link.generation.get()));
        }
        if link.reconnects.get() >= MAX_RECONNECTS {
            return None;
        }
        if link.reconnecting.get() {
            glommio::timer::sleep(RECONNECT_BACKOFF).await;
            continue;
        }
        link.reconnecting.set(true);
        link.reconnects.set(link.reconnects.get() + 1);
        glommio::timer::sleep(RECONNECT_BACKOFF).await;
        if let Ok(c) = open(&link.params, link.cfg, link.topology.as_ref()).await {
            *link.client.borrow_mut() = Some(c);
        }
        link.reconnecting.set(false);
    }
}

async fn worker(link: Rc<Link>, st: Rc<RefCell<ConnState>>, setup: TernSetup) {
    loop {
        let Some((client, generation)) = client_of(&link).await else {
            return;
        };
        let now = Instant::now();
        let step = {
            let mut s = st.borrow_mut();
            match s.next(now) {
                Next::Done => None,
                Next::Wait(t) => Some(Err(t)),
                Next::Op(op) => {
                    let key = Bytes::copy_from_slice(&op.key);
                    let ctxs = setup.contexts.borrow();
                    let ctx = ctxs.get(&op.key_idx);
                    let req = match op.kind {
                        OpKind::Get => get_request(key, &setup.opts),
                        OpKind::Put => {
                            put_request(key, Bytes::copy_from_slice(s.value()), ctx, &setup.opts)
                        }
                        OpKind::Delete => delete_request(key, ctx, &setup.opts),
                    };
                    Some(Ok((op, req)))
                }
            }
        };
        let (op, req) = match step {
            None => return,
            Some(Err(t)) => {
                sleep_until(t).await;
                continue;
            }
            Some(Ok(x)) => x,
        };
        let res = match client.send(&req) {
            Ok(fut) => fut.await,
            Err(e) => Err(e),
        };
        let now = Instant::now();
        let err = match op.kind {
            OpKind::Get => match get_result(res) {
                Ok(None) => {
                    st.borrow_mut().complete(&op, Outcome::Value(None), now);
                    None
                }
                Ok(Some(g)) => {
                    // All tombstones read as "not found"; several live versions are siblings.
                    let mut live = g.live();
                    let first_two = (live.next(), live.next());
                    match first_two {
                        (None, _) => st.borrow_mut().complete(&op, Outcome::Value(None), now),
                        (Some(v), None) => {
                            st.borrow_mut()
                                .complete(&op, Outcome::Value(Some(&v.value)), now)
                        }
                        _ => {
                            let vs: Vec<Bytes> = g.live().map(|s| s.value.clone()).collect();
                            st.borrow_mut().complete(&op, Outcome::Siblings(&vs), now);
                        }
                    }
                    setup
                        .contexts
                        .borrow_mut()
                        .insert(op.key_idx, g.context.clone());
                    None
                }
                Err(e) => Some(e),
            },
            OpKind::Put | OpKind::Delete => match write_result(res) {
                Ok(ctx) => {
                    st.borrow_mut().complete(&op, Outcome::Done, now);
                    setup.contexts.borrow_mut().insert(op.key_idx, ctx);
                    None
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = err {
            let kind = error_kind(&e);
            st.borrow_mut().complete(&op, Outcome::Failed(&kind), now);
            if broken(&e) && link.generation.get() == generation {
                // Drop the broken client once; the next `client_of` reconnects.
                *link.client.borrow_mut() = None;
                link.generation.set(generation + 1);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_variant_names() {
        assert_eq!(
            error_kind(&ClientError::ResponseTimeout { timeout_ms: 5 }),
            "ResponseTimeout"
        );
        assert_eq!(error_kind(&ClientError::Closed("x y".into())), "Closed");
        assert!(broken(&ClientError::Closed("gone".into())));
        assert!(!broken(&ClientError::Overloaded("busy".into())));
    }
}
