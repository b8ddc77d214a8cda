//! The Rust client library the CLI and the load generator use. Depends on no server internals:
//! only on the wire protocol in [`tern_proto`].
//!
//! Two clients share one request/response model:
//! - [`blocking::Client`]: `std::net::TcpStream`, usable from any plain Rust program. One
//!   request at a time through `get`/`put`/`delete`, or pipelined with `send`/`flush`/`recv`.
//! - [`async_client::AsyncClient`]: `glommio::net::TcpStream`, for code running inside a glommio
//!   executor (the load generator). Any number of tasks may call it at once; requests are
//!   pipelined on one connection (up to `max_in_flight`) and answers matched by request id.
//! - [`routing`]: token-aware wrappers of both ([`RoutedClient`], [`AsyncRoutedClient`]) that
//!   send each request to its key's owning shard, computed from a [`Topology`] with the ring.
//!
//! Invariants: a request breaking a [`Limits`] check is refused before it is sent; every wait
//! for the network is bounded (`connect_timeout`, `response_timeout`); request ids are unique
//! per connection.

pub mod async_client;
pub mod blocking;
mod context;
mod error;
pub mod routing;

use std::time::Duration;

use bytes::Bytes;

pub use async_client::AsyncClient;
pub use blocking::Client;
pub use context::Context;
pub use error::ClientError;
pub use routing::{AsyncRoutedClient, RoutedClient, RoutingError, Topology};
use tern_proto::{
    ClientRequest, ClientResponse, DeleteRequest, GetRequest, Limits, Message, PutRequest,
    ReqOptions,
};
pub use tern_proto::{Dot, Quorum, SiblingWire as SiblingView, VvEntry};

/// Per-operation choices: read quorum R, write quorum W, strict quorum, server-side timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpOptions {
    pub r: Quorum,
    pub w: Quorum,
    /// Fail fast rather than write to stand-in replicas.
    pub strict: bool,
    /// Deadline the node applies; 0 uses the node's default.
    pub timeout_ms: u32,
}

impl OpOptions {
    fn read(&self) -> ReqOptions {
        ReqOptions {
            quorum: self.r,
            strict: self.strict,
            timeout_ms: self.timeout_ms,
        }
    }

    fn write(&self) -> ReqOptions {
        ReqOptions {
            quorum: self.w,
            strict: self.strict,
            timeout_ms: self.timeout_ms,
        }
    }
}

/// Connection settings shared by both clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Bound on TCP connect plus the hello exchange.
    pub connect_timeout: Duration,
    /// Bound on waiting for one answer (should exceed the node-side `timeout_ms`).
    pub response_timeout: Duration,
    /// Defaults for `get`/`put`/`delete` without explicit options.
    pub op: OpOptions,
    /// Size limits checked before sending. The frame and value sizes are replaced at connect by
    /// the node's own (from its hello, see [`Limits::for_node`]); the others apply as set.
    pub limits: Limits,
    /// Most requests in flight on one connection.
    pub max_in_flight: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(10),
            op: OpOptions::default(),
            limits: Limits::default(),
            max_in_flight: 1024,
        }
    }
}

/// The answer to a get that found the key: all concurrent versions and one context covering
/// them (pass it to the next put to resolve the siblings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    pub siblings: Vec<SiblingView>,
    pub context: Context,
}

impl GetResult {
    /// Siblings that hold a value (not tombstones).
    pub fn live(&self) -> impl Iterator<Item = &SiblingView> {
        self.siblings.iter().filter(|s| !s.tombstone)
    }

    /// True when every version is a delete: the key reads as absent, but `context` still
    /// orders a following put after those deletes.
    pub fn is_deleted(&self) -> bool {
        self.siblings.iter().all(|s| s.tombstone)
    }
}

/// Builds the wire request of a get.
pub fn get_request(key: impl Into<Bytes>, o: &OpOptions) -> ClientRequest {
    ClientRequest::Get(GetRequest {
        key: key.into(),
        opts: o.read(),
    })
}

/// Builds the wire request of a put.
pub fn put_request(
    key: impl Into<Bytes>,
    value: impl Into<Bytes>,
    ctx: Option<&Context>,
    o: &OpOptions,
) -> ClientRequest {
    ClientRequest::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        context: ctx.map(|c| c.as_bytes().clone()).unwrap_or_default(),
        opts: o.write(),
    })
}

/// Builds the wire request of a delete.
pub fn delete_request(
    key: impl Into<Bytes>,
    ctx: Option<&Context>,
    o: &OpOptions,
) -> ClientRequest {
    ClientRequest::Delete(DeleteRequest {
        key: key.into(),
        context: ctx.map(|c| c.as_bytes().clone()).unwrap_or_default(),
        opts: o.write(),
    })
}

/// Turns a decoded answer into the response or the node's typed error.
pub fn response_from_message(m: Message) -> Result<ClientResponse, ClientError> {
    match m {
        Message::Response(r) => Ok(r),
        Message::Error(e) => Err(e.into()),
        other => Err(ClientError::UnexpectedResponse {
            expected: "a client response",
            got: format!("{other:?}").chars().take(120).collect(),
        }),
    }
}

/// The result of a get from its answer: `None` when the node has no version at all.
pub fn get_result(
    r: Result<ClientResponse, ClientError>,
) -> Result<Option<GetResult>, ClientError> {
    match r {
        Ok(ClientResponse::Get { siblings, .. }) if siblings.is_empty() => Ok(None),
        Ok(ClientResponse::Get { siblings, context }) => Ok(Some(GetResult {
            siblings,
            context: Context::from_bytes(context),
        })),
        Err(ClientError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
        Ok(other) => Err(unexpected("a get response", &other)),
    }
}

/// The context returned by a put or delete.
pub fn write_result(r: Result<ClientResponse, ClientError>) -> Result<Context, ClientError> {
    match r? {
        ClientResponse::Put { context } | ClientResponse::Delete { context } => {
            Ok(Context::from_bytes(context))
        }
        other => Err(unexpected("a put or delete response", &other)),
    }
}

fn unexpected(expected: &'static str, got: &ClientResponse) -> ClientError {
    ClientError::UnexpectedResponse {
        expected,
        got: format!("{got:?}").chars().take(120).collect(),
    }
}
