//! tern: a Dynamo-style distributed key-value store, thread-per-core on glommio.
//!
//! One module per part of `DESIGN.md`; each module's doc comment says what it owns, its
//! invariants, and what it must not touch.

pub mod antientropy;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod handoff;
pub mod membership;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod version;

// The protocol, the ring and the client library are crates of their own (`crates/`), so cargo
// enforces that the client sees no server module; re-exported under their DESIGN.md module
// names so server code reads `crate::net::..`, `crate::ring::..` as before.
pub use tern_client as client;
pub use tern_proto as net;
pub use tern_ring as ring;
