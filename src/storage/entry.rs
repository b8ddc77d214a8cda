//! Keys and values as the storage engine stores them.
//!
//! Owns the internal key `(token, key)` with `token = xxh3_64(key)`, ordered token first, so that
//! the storage order is the ring's token order (DESIGN.md) and a token range is a contiguous run
//! of an SSTable or memtable. Owns `Stored`, the engine's value: the engine never parses
//! `payload` (the version layer's encoded record); it only reads `seqno` (newest wins) and
//! `tombstone_at_ms` (when compaction may drop a tombstone).
//!
//! Invariant: `InternalKey::token == token(&InternalKey::key)` always; construct through
//! [`InternalKey::new`].

use std::cmp::Ordering;

use bytes::Bytes;

use super::error::{Result, StorageError};
use crate::config::MAX_KEY_BYTES;

/// The ring token of a user key. Fixed forever: SSTables and the ring depend on it.
#[inline]
pub fn token(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Storage-order key: token first, then the user key bytes (tie-break for token collisions).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InternalKey {
    token: u64,
    key: Bytes,
}

impl InternalKey {
    /// Build the internal key of `key`, refusing keys longer than [`MAX_KEY_BYTES`].
    pub fn new(key: impl Into<Bytes>) -> Result<Self> {
        let key = key.into();
        if key.len() > MAX_KEY_BYTES {
            return Err(StorageError::KeyTooLarge {
                len: key.len(),
                max: MAX_KEY_BYTES,
            });
        }
        Ok(InternalKey {
            token: token(&key),
            key,
        })
    }

    /// For decoders that already validated the length; still hashes, so the invariant holds.
    pub(crate) fn from_trusted(key: Bytes) -> Self {
        debug_assert!(key.len() <= MAX_KEY_BYTES);
        InternalKey {
            token: token(&key),
            key,
        }
    }

    /// The smallest possible internal key with token `token`: a search bound only (its key is
    /// empty, so it breaks the token invariant and must never be stored).
    pub(crate) fn lower_bound_of(token: u64) -> Self {
        InternalKey {
            token,
            key: Bytes::new(),
        }
    }

    #[inline]
    pub fn token(&self) -> u64 {
        self.token
    }

    #[inline]
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// Order-preserving byte encoding: big-endian token then the key, so byte order == storage
    /// order (useful for anything that sorts bytes, e.g. Merkle ranges).
    pub fn to_ordered_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.key.len());
        v.extend_from_slice(&self.token.to_be_bytes());
        v.extend_from_slice(&self.key);
        v
    }

    /// Compare against a `(token, key)` pair without building an `InternalKey`.
    #[inline]
    pub fn cmp_parts(&self, token: u64, key: &[u8]) -> Ordering {
        self.token
            .cmp(&token)
            .then_with(|| self.key.as_ref().cmp(key))
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_parts(other.token, &other.key)
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Default time a tombstone is kept before compaction may drop it: 10 days.
pub const DEFAULT_TOMBSTONE_GRACE_MS: u64 = 864_000_000;

/// One stored version of a key as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The engine's write sequence number; for equal keys the larger one wins.
    pub seqno: u64,
    /// Set by the version layer when this record is a tombstone: the wall-clock time of the
    /// delete, so compaction can drop it after the grace period without parsing `payload`.
    pub tombstone_at_ms: Option<u64>,
    /// Opaque to the engine.
    pub payload: Bytes,
}

impl Stored {
    /// True if this is a tombstone whose grace period has passed at `now_ms`.
    pub fn is_expired_tombstone(&self, now_ms: u64, grace_ms: u64) -> bool {
        match self.tombstone_at_ms {
            Some(t) => now_ms.saturating_sub(t) >= grace_ms,
            None => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_long_keys() {
        assert!(InternalKey::new(vec![0u8; MAX_KEY_BYTES]).is_ok());
        assert!(matches!(
            InternalKey::new(vec![0u8; MAX_KEY_BYTES + 1]),
            Err(StorageError::KeyTooLarge {
                len: 1025,
                max: 1024
            })
        ));
    }

    #[test]
    fn tombstone_expiry() {
        let s = Stored {
            seqno: 1,
            tombstone_at_ms: Some(1_000),
            payload: Bytes::new(),
        };
        assert!(!s.is_expired_tombstone(1_500, 1_000));
        assert!(s.is_expired_tombstone(2_000, 1_000));
        // A clock that went backwards never expires anything.
        assert!(!s.is_expired_tombstone(10, 1_000));
        let live = Stored {
            tombstone_at_ms: None,
            ..s
        };
        assert!(!live.is_expired_tombstone(u64::MAX, 0));
    }

    proptest! {
        #[test]
        fn ordered_bytes_match_ord(a in proptest::collection::vec(any::<u8>(), 0..40),
                                   b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let ka = InternalKey::new(a).unwrap();
            let kb = InternalKey::new(b).unwrap();
            prop_assert_eq!(ka.cmp(&kb), ka.to_ordered_bytes().cmp(&kb.to_ordered_bytes()));
            prop_assert_eq!(ka.token(), token(ka.key()));
        }
    }
}
