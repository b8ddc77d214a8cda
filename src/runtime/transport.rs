//! The generic `Transport` trait: deliver a request to an address and return its response, so
//! the logic above runs the same over the real TCP/channel mesh and over a simulated network.
//! Knows no keys, records or message formats: the protocol spoken over it (addresses, requests,
//! responses) is the user's, named by the associated types (the coordinator's replica protocol
//! lives in `coordinator::protocol`).
//!
//! Contract for implementations: a call either returns the target's response or a
//! [`TransportError`] saying whether the request may have been delivered; a call to the caller's
//! own address should short-circuit to the local handler. Calls are not retried here: the caller
//! decides, within its deadline.

use thiserror::Error;

/// A call that did not produce the target's response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransportError {
    /// The request was certainly not delivered (no connection, node known down).
    #[error("unreachable: {reason}")]
    Unreachable { reason: String },
    /// The connection broke after sending: the request may or may not have been applied.
    #[error("connection lost: {reason}")]
    Lost { reason: String },
    /// The target's queue is full; the request was not delivered.
    #[error("target overloaded")]
    Overloaded,
}

/// Delivers requests. One instance per shard; futures need not be `Send`.
#[expect(
    async_fn_in_trait,
    reason = "single-threaded executors: the futures need not be Send"
)]
pub trait Transport: 'static {
    /// Where a request goes (for the coordinator: a `(node, shard)` replica).
    type Addr: Copy;
    type Request;
    type Response;

    async fn call(
        &self,
        to: Self::Addr,
        req: Self::Request,
    ) -> Result<Self::Response, TransportError>;

    /// Whether a call addressed to the caller's own address would only run its own handler (no
    /// network, no failure of its own). Then the caller may serve such a request itself, under
    /// the same deadline, without boxing it through [`Transport::call`]. A transport that models
    /// self-calls (the simulation's) keeps the default.
    fn self_calls_are_local(&self) -> bool {
        false
    }
}
