//! The size limits that both ends of the protocol must agree on, defined once. The server's
//! `config` module re-exports these (it is where an operator looks for every limit) and the
//! storage engine takes the key limit from there; the client crate sees them here, without
//! seeing server code. Settings an operator can change (value and frame size) have their
//! defaults here; the value in force on a node reaches a client in the hello (`max_frame_len`)
//! and in `ValueTooLarge` errors.

/// Largest key, in bytes (DESIGN.md: keys are up to 1 KiB). Not configurable: the storage
/// format and the ring rely on it.
pub const MAX_KEY_BYTES: usize = 1024;
/// Default largest value: 1 MiB (`tern serve --max-value-bytes` changes it per node).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
/// Default largest frame: 2 MiB for the payload plus 64 KiB for key, context and framing.
pub const DEFAULT_MAX_FRAME_BYTES: usize = (2 << 20) + (64 << 10);
/// Largest opaque causal context in one message.
pub const MAX_CONTEXT_BYTES: usize = 64 << 10;
/// Most siblings in one get response (also the default sibling cap of a node).
pub const MAX_SIBLINGS: usize = 64;
/// Most entries in one version vector on the wire.
pub const MAX_VV_ENTRIES: usize = 1024;
/// Most failed replicas listed in one error.
pub const MAX_FAILED_REPLICAS: usize = 64;
