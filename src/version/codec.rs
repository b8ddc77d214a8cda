//! Compact binary encoding helpers shared by [`super::VersionVector`] and [`super::Record`]:
//! LEB128 varints and a bounds-checked reader. Decoding never panics and never allocates more
//! than the input could describe.

use thiserror::Error;

use super::vv::NodeId;

/// Format byte of an encoded [`super::Record`] (first byte; bump on any layout change).
pub const RECORD_FORMAT_V1: u8 = 1;
/// Format byte of an encoded causal context ([`super::VersionVector::encode`]).
pub const CONTEXT_FORMAT_V1: u8 = 1;

/// Why bytes could not be decoded into a record or a context.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated input while reading {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("unknown {what} format byte {format} (this build reads format 1)")]
    UnknownFormat { what: &'static str, format: u8 },
    #[error("varint for {what} at byte {offset} is longer than 10 bytes or overflows")]
    BadVarint { what: &'static str, offset: usize },
    #[error("{what} count {count} cannot fit in the {remaining} remaining bytes")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: usize,
    },
    #[error("{0}")]
    Invalid(&'static str),
    #[error("{0} trailing bytes after the encoded value")]
    Trailing(usize),
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated {
            what,
            offset: self.pos,
        })?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8(what)?;
            let low = u64::from(b & 0x7f);
            // The 10th byte may only carry the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(DecodeError::BadVarint {
                    what,
                    offset: start,
                });
            }
            v |= low << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint {
            what,
            offset: start,
        })
    }

    pub(crate) fn node_id(&mut self) -> Result<NodeId, DecodeError> {
        let v = self.varint("node id")?;
        NodeId::try_from(v).map_err(|_| DecodeError::Invalid("node id does not fit in 32 bits"))
    }

    /// A count of items that each take at least `min_item_len` bytes, checked against the input.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        min_item_len: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.varint(what)?;
        let remaining = self.remaining();
        if count > (remaining / min_item_len.max(1)) as u64 {
            return Err(DecodeError::CountTooLarge {
                what,
                count,
                remaining,
            });
        }
        // Fits: bounded by remaining, which is a usize.
        Ok(count as usize)
    }

    pub(crate) fn bytes(
        &mut self,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < len {
            return Err(DecodeError::Truncated {
                what,
                offset: self.pos,
            });
        }
        let s = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_roundtrip(v: u64) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.varint("v").unwrap(), v);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn varint_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut r = Reader::new(&bytes);
            let _ = r.varint("v");
        }
    }

    #[test]
    fn overlong_varint_rejected() {
        let bytes = [0xffu8; 11];
        assert!(matches!(
            Reader::new(&bytes).varint("v"),
            Err(DecodeError::BadVarint { .. })
        ));
        // 10th byte carrying more than the top bit overflows u64.
        let mut b = vec![0xffu8; 9];
        b.push(0x02);
        assert!(matches!(
            Reader::new(&b).varint("v"),
            Err(DecodeError::BadVarint { .. })
        ));
    }
}
