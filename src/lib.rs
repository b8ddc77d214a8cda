//! tern: a Dynamo-style distributed key-value store, thread-per-core on glommio.
//!
//! One module per part of `DESIGN.md`; each module's doc comment says what it owns, its
//! invariants, and what it must not touch.

pub mod antientropy;
pub mod cli;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod handoff;
pub mod membership;
pub mod net;
pub mod ring;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod version;
