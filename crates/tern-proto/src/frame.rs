//! Length-prefixed framing: `[u32 little-endian payload length][payload]`.
//!
//! [`FrameDecoder`] works incrementally on whatever bytes the socket produced (the server read
//! loop, the clients and the fuzzer all use it). Invariants: a frame is yielded only once all its
//! bytes arrived; a header announcing more than `max_frame_len` is an error as soon as the 4
//! header bytes are seen, so an attacker cannot make us buffer more than one maximal frame plus
//! one read; the error is sticky (the header stays in the buffer), so the caller cannot skip it
//! and resynchronise on garbage.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::NetError;

/// Bytes of the length header in front of every frame.
pub const HEADER_LEN: usize = 4;

/// The header for a payload of `len` bytes.
///
/// Callers check `len` against their limit first; a `len` over `u32::MAX` saturates, which any
/// peer refuses as too large.
pub fn frame_header(len: usize) -> [u8; HEADER_LEN] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

/// Incremental frame splitter over a byte stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    /// Reused read target of [`FrameDecoder::read_slot`]: zeroed once when it grows, never per
    /// read (zeroing a 64 KiB slot per read was the top item of the server's GET profile).
    scratch: Vec<u8>,
    max_frame_len: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames whose payload exceeds `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(64 << 10),
            scratch: Vec::new(),
            max_frame_len,
        }
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// A slice of `n` bytes to read the socket into; follow with [`FrameDecoder::commit`] with
    /// the count actually read. The slice is a reused scratch buffer (its contents are whatever
    /// the last read left): `commit` copies only the bytes read, which costs far less than
    /// zero-filling `n` bytes per read.
    pub fn read_slot(&mut self, n: usize) -> &mut [u8] {
        if self.scratch.len() < n {
            self.scratch.resize(n, 0);
        }
        &mut self.scratch[..n]
    }

    /// Keeps `filled` bytes of the last [`FrameDecoder::read_slot`] of `slot_len` bytes.
    pub fn commit(&mut self, slot_len: usize, filled: usize) {
        debug_assert!(filled <= slot_len && slot_len <= self.scratch.len());
        let filled = filled.min(slot_len).min(self.scratch.len());
        self.buf.extend_from_slice(&self.scratch[..filled]);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame's payload, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, NetError> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(header);
        let len = u32::from_le_bytes(h) as usize;
        if len > self.max_frame_len {
            return Err(NetError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        if len == 0 {
            return Err(NetError::EmptyFrame);
        }
        if self.buf.len() < HEADER_LEN + len {
            // Reserve once for the whole frame so a large value does not regrow repeatedly.
            self.buf.reserve(HEADER_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Call at end of stream: an error if a partial frame was left.
    pub fn finish(&self) -> Result<(), NetError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(NetError::Truncated {
                buffered: self.buf.len(),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            out.extend_from_slice(&frame_header(p.len()));
            out.extend_from_slice(p);
        }
        out
    }

    #[test]
    fn oversize_header_is_refused_before_payload_arrives() {
        let mut d = FrameDecoder::new(100);
        d.push(&frame_header(101));
        assert!(matches!(
            d.next_frame(),
            Err(NetError::FrameTooLarge { len: 101, max: 100 })
        ));
        // Sticky: asking again does not skip the bad header.
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn empty_frame_is_an_error() {
        let mut d = FrameDecoder::new(100);
        d.push(&[0, 0, 0, 0]);
        assert!(matches!(d.next_frame(), Err(NetError::EmptyFrame)));
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut d = FrameDecoder::new(100);
        d.push(&framed(&[vec![1, 2, 3]])[..5]);
        assert_eq!(d.next_frame().unwrap(), None);
        assert!(matches!(
            d.finish(),
            Err(NetError::Truncated { buffered: 5 })
        ));
    }

    #[test]
    fn read_slot_and_commit_keep_only_filled_bytes() {
        let mut d = FrameDecoder::new(100);
        let wire = framed(&[vec![9, 8, 7]]);
        let slot = d.read_slot(64);
        slot[..wire.len()].copy_from_slice(&wire);
        d.commit(64, wire.len());
        assert_eq!(d.buffered(), wire.len());
        assert_eq!(d.next_frame().unwrap().unwrap().as_ref(), &[9, 8, 7]);
        assert_eq!(d.next_frame().unwrap(), None);
    }

    proptest! {
        /// Any split of a stream of frames into chunks yields the same frames in order.
        #[test]
        fn chunking_does_not_change_frames(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..20),
            cuts in prop::collection::vec(1usize..97, 1..50),
        ) {
            let wire = framed(&payloads);
            let mut d = FrameDecoder::new(1000);
            let mut got = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < wire.len() {
                let n = cuts[i % cuts.len()].min(wire.len() - pos);
                i += 1;
                d.push(&wire[pos..pos + n]);
                pos += n;
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f.to_vec());
                }
            }
            d.finish().unwrap();
            prop_assert_eq!(got, payloads);
        }

        /// Arbitrary bytes never panic the decoder and never yield an oversize frame.
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = FrameDecoder::new(512);
            d.push(&data);
            for _ in 0..data.len() + 1 {
                match d.next_frame() {
                    Ok(Some(f)) => prop_assert!(!f.is_empty() && f.len() <= 512),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
