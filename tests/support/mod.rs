//! Shared helpers for integration tests.
pub mod fake_node;
