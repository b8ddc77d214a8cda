//! The Rust client library used by the CLI and the load generator. Depends on no server internals.
