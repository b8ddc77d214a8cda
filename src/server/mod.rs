//! The server: per shard, accept loops on the shared client port (SO_REUSEPORT) and on the
//! shard's own port, connection tasks, and dispatch of client and replica requests to the
//! coordinator and the replica handlers. Wiring only: request semantics live in `coordinator`,
//! bytes on disk in `storage`, frames in `net`.

pub mod conn;
pub mod lock;
pub mod shutdown;

pub mod shard;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
pub mod transport;
pub mod wire;
