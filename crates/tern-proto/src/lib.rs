//! Framing, the connection handshake, the generated flatbuffers code and the conversion between
//! wire frames and plain Rust messages. Holds no request semantics: what a `Get` *means* is the
//! coordinator's business; this module only guarantees that every message it hands out came
//! from a verified frame within the configured [`Limits`].
//!
//! Invariants:
//! - Network bytes are read through flatbuffers only after `root_with_opts` verified them with
//!   limits derived from [`Limits::max_frame_len`] (never `root_unchecked`).
//! - A frame longer than `max_frame_len` is refused from its 4-byte header alone, before any of
//!   its payload is buffered.
//! - Decoding never panics, whatever the bytes (fuzzed by `fuzz/fuzz_targets/frame_decode.rs`).
//!
//! Must not touch: storage, ring, membership or any other server state.

pub mod codec;
pub mod error;
pub mod frame;
pub mod generated;
pub mod handshake;
pub mod limits;
pub mod msg;
#[cfg(feature = "test-support")]
pub mod testgen;

pub use codec::{decode_frame, Encoder};
pub use error::NetError;
pub use frame::FrameDecoder;
pub use handshake::{ClientHello, HelloStatus, ServerHello};
pub use limits::{DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_VALUE_BYTES, MAX_KEY_BYTES};
pub use msg::*;

/// The protocol version this build speaks (sent in the hello and in every frame).
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Size limits applied to every frame and message, on both encode and decode.
///
/// The defaults let a 1 MiB value plus a 1 KiB key and a context fit in one frame while a 2 MiB
/// value does not. The server builds this from its validated config (the config module owns the
/// settings; this struct is only how they reach the codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest flatbuffer payload of one frame, excluding the 4-byte length header.
    pub max_frame_len: usize,
    /// Largest key (DESIGN.md: keys are up to 1 KiB).
    pub max_key_len: usize,
    /// Largest value of a put or of one sibling.
    pub max_value_len: usize,
    /// Largest opaque causal context.
    pub max_context_len: usize,
    /// Most siblings in one get response.
    pub max_siblings: usize,
    /// Most entries in one version vector.
    pub max_vv_entries: usize,
    /// Most failed replicas listed in one error.
    pub max_failed_replicas: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_BYTES,
            max_key_len: MAX_KEY_BYTES,
            max_value_len: DEFAULT_MAX_VALUE_BYTES,
            max_context_len: limits::MAX_CONTEXT_BYTES,
            max_siblings: limits::MAX_SIBLINGS,
            max_vv_entries: limits::MAX_VV_ENTRIES,
            max_failed_replicas: limits::MAX_FAILED_REPLICAS,
        }
    }
}

impl Limits {
    /// What a client checks before sending to a node whose hello announced `max_frame_len`: that
    /// node's frame size, and values up to it. The node enforces its own value limit
    /// (`--max-value-bytes`, which a client cannot know in advance) and answers `ValueTooLarge`
    /// naming it, so a client never refuses a value the node would take.
    pub fn for_node(self, max_frame_len: u32) -> Limits {
        let frame = usize::try_from(max_frame_len).unwrap_or(usize::MAX);
        Limits {
            max_frame_len: frame,
            max_value_len: frame,
            ..self
        }
    }

    /// Verifier options that bound the work done on one frame of at most `max_frame_len` bytes.
    pub fn verifier_options(&self) -> flatbuffers::VerifierOptions {
        flatbuffers::VerifierOptions {
            // Frame -> body -> sibling/failed vector -> element: 4 levels; leave headroom for
            // union members added later but keep recursion shallow.
            max_depth: 16,
            // One table per sibling and failed replica, plus the frame and body.
            max_tables: self.max_siblings + self.max_failed_replicas + 16,
            // Our messages share no sub-objects, so the apparent size of a valid frame is at
            // most its real size; anything larger is a DAG bomb.
            max_apparent_size: self.max_frame_len,
            ignore_missing_null_terminator: false,
        }
    }
}
