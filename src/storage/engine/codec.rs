//! The engine's commit-log payload: one write of one key.
//! `[u8 version=1][u8 flags][u16 key_len][key][u64 tombstone_at_ms if flags&1][payload]`.
//! The LSN of the log record is the write's `seqno`, so it is not stored again.

use bytes::Bytes;

use crate::config::MAX_KEY_BYTES;

const VERSION: u8 = 1;
const TOMBSTONE: u8 = 1;

pub(crate) fn encode(key: &[u8], tombstone_at_ms: Option<u64>, payload: &[u8]) -> Vec<u8> {
    debug_assert!(key.len() <= MAX_KEY_BYTES);
    let mut v = Vec::with_capacity(4 + key.len() + 8 + payload.len());
    v.push(VERSION);
    v.push(if tombstone_at_ms.is_some() {
        TOMBSTONE
    } else {
        0
    });
    v.extend_from_slice(&(key.len() as u16).to_le_bytes());
    v.extend_from_slice(key);
    if let Some(t) = tombstone_at_ms {
        v.extend_from_slice(&t.to_le_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// `(key, tombstone_at_ms, payload)`, or a description of what is wrong.
pub(crate) fn decode(buf: &[u8]) -> Result<(Bytes, Option<u64>, Bytes), &'static str> {
    let (&ver, rest) = buf.split_first().ok_or("empty record")?;
    if ver != VERSION {
        return Err("unknown record version");
    }
    let (&flags, rest) = rest.split_first().ok_or("truncated flags")?;
    if flags & !TOMBSTONE != 0 {
        return Err("unknown flags");
    }
    let klen = rest
        .get(..2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or("truncated key length")? as usize;
    if klen > MAX_KEY_BYTES {
        return Err("key longer than the maximum");
    }
    let rest = &rest[2..];
    let key = rest.get(..klen).ok_or("truncated key")?;
    let mut rest = &rest[klen..];
    let tomb = if flags & TOMBSTONE != 0 {
        let t = rest
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or("truncated tombstone time")?;
        rest = &rest[8..];
        Some(t)
    } else {
        None
    };
    Ok((
        Bytes::copy_from_slice(key),
        tomb,
        Bytes::copy_from_slice(rest),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(key in proptest::collection::vec(any::<u8>(), 0..MAX_KEY_BYTES),
                     t in proptest::option::of(any::<u64>()),
                     p in proptest::collection::vec(any::<u8>(), 0..500)) {
            let e = encode(&key, t, &p);
            let (k2, t2, p2) = decode(&e).unwrap();
            prop_assert_eq!(&k2[..], &key[..]);
            prop_assert_eq!(t2, t);
            prop_assert_eq!(&p2[..], &p[..]);
        }

        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&buf);
        }
    }
}
