//! On-disk encoding of an SSTable: entries, data blocks, the block index and the footer.
//! Pure byte code, no I/O, so it can be fuzzed and property-tested directly.
//!
//! File layout (all integers little-endian):
//! ```text
//! [data block | zero padding]* [index] [bloom filter] [zero padding] [footer: FOOTER_LEN bytes]
//! ```
//! The file length is a multiple of `ALIGN`; the footer always ends the file, so a reader finds
//! it by reading the last `ALIGN` bytes.
//! - entry:  `key_len u16 | key | seqno u64 | flags u8 | [tombstone_at_ms u64 if flags&1] |
//!   payload_len u32 | payload`. The token is not stored: it is `xxh3_64(key)`.
//! - block:  `entry* | entry_count u32 | crc32 u32` (crc over everything before it). A block
//!   ends at a page boundary when it can, and may be preceded by under a page of zero padding,
//!   so a block of small entries is read with one page-sized O_DIRECT read.
//! - index:  `block_count u32 | (offset u64 | len u32 | first_key_len u16 | first_key |
//!   last_key_len u16 | last_key)*`, checksummed in the footer.
//! - footer: see [`Footer::encode`]; ends with a crc32 of its own first `FOOTER_LEN - 4` bytes.
//!
//! Invariant: every decoder bounds-checks against its buffer and reports the file offset of the
//! first bad byte; nothing here panics on any input.

use std::path::Path;

use bytes::Bytes;

use crate::config::MAX_KEY_BYTES;
use crate::runtime::disk::ALIGN;
use crate::storage::entry::{InternalKey, Stored};
use crate::storage::error::{Result, StorageError};

pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"TERNSST\x01");
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const FOOTER_LEN: usize = 128;
/// Bytes after the entries of a block: entry count and crc.
pub(crate) const BLOCK_TRAILER: usize = 8;
const FLAG_TOMBSTONE: u8 = 1;

/// Largest payload a table stores. The configured value limit (default 1 MiB) is enforced above
/// the engine; this only keeps lengths within `u32` with margin.
pub const MAX_PAYLOAD_LEN: usize = 64 << 20;

pub(crate) fn entry_len(key_len: usize, v: &Stored) -> usize {
    2 + key_len + 8 + 1 + if v.tombstone_at_ms.is_some() { 8 } else { 0 } + 4 + v.payload.len()
}

pub(crate) fn encode_entry(out: &mut Vec<u8>, key: &[u8], v: &Stored) {
    debug_assert!(key.len() <= MAX_KEY_BYTES && v.payload.len() <= MAX_PAYLOAD_LEN);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&v.seqno.to_le_bytes());
    match v.tombstone_at_ms {
        Some(t) => {
            out.push(FLAG_TOMBSTONE);
            out.extend_from_slice(&t.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(v.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&v.payload);
}

/// A bounds-checked reader over a `Bytes`; `None` means "ran past the end".
pub(crate) struct Cursor<'a> {
    buf: &'a Bytes,
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Cursor { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(u64::from_le_bytes(a))
    }
    /// Position of the next `n` bytes, consumed.
    pub(crate) fn range(&mut self, n: usize) -> Option<std::ops::Range<usize>> {
        let start = self.pos;
        self.take(n)?;
        Some(start..start + n)
    }
    /// Zero-copy slice of the underlying buffer.
    pub(crate) fn bytes(&mut self, n: usize) -> Option<Bytes> {
        let start = self.pos;
        self.take(n)?;
        Some(self.buf.slice(start..start + n))
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// One parsed entry as positions in its block, so a point lookup can skip non-matching
/// entries without touching reference counts.
struct EntryView {
    key: std::ops::Range<usize>,
    seqno: u64,
    tombstone_at_ms: Option<u64>,
    payload: std::ops::Range<usize>,
}

impl EntryView {
    fn to_stored(&self, body: &Bytes) -> Stored {
        Stored {
            seqno: self.seqno,
            tombstone_at_ms: self.tombstone_at_ms,
            payload: body.slice(self.payload.clone()),
        }
    }
}

/// Parse one entry; `Err(what)` describes the malformation.
fn parse_entry(c: &mut Cursor<'_>) -> std::result::Result<EntryView, &'static str> {
    let klen = c.u16().ok_or("truncated key length")? as usize;
    if klen > MAX_KEY_BYTES {
        return Err("key length exceeds the maximum");
    }
    let key = c.range(klen).ok_or("truncated key")?;
    let seqno = c.u64().ok_or("truncated seqno")?;
    let flags = c.u8().ok_or("truncated flags")?;
    if flags & !FLAG_TOMBSTONE != 0 {
        return Err("unknown entry flags");
    }
    let tombstone_at_ms = if flags & FLAG_TOMBSTONE != 0 {
        Some(c.u64().ok_or("truncated tombstone time")?)
    } else {
        None
    };
    let plen = c.u32().ok_or("truncated payload length")? as usize;
    if plen > MAX_PAYLOAD_LEN {
        return Err("payload length exceeds the maximum");
    }
    let payload = c.range(plen).ok_or("truncated payload")?;
    Ok(EntryView {
        key,
        seqno,
        tombstone_at_ms,
        payload,
    })
}

/// Check a block's crc and return `(entries region, entry count)`.
fn check_block(path: &Path, offset: u64, block: &Bytes) -> Result<(Bytes, u32)> {
    if block.len() < BLOCK_TRAILER {
        return Err(StorageError::corrupt(
            path,
            offset,
            "data block shorter than its trailer",
        ));
    }
    let body_end = block.len() - 4;
    let stored = u32::from_le_bytes([
        block[body_end],
        block[body_end + 1],
        block[body_end + 2],
        block[body_end + 3],
    ]);
    let computed = crc32fast::hash(&block[..body_end]);
    if stored != computed {
        return Err(StorageError::corrupt(
            path,
            offset,
            format!("data block crc mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    let cnt_at = block.len() - BLOCK_TRAILER;
    let count = u32::from_le_bytes([
        block[cnt_at],
        block[cnt_at + 1],
        block[cnt_at + 2],
        block[cnt_at + 3],
    ]);
    Ok((block.slice(..cnt_at), count))
}

/// Verify and decode a whole data block that starts at file `offset`.
pub(crate) fn decode_block(
    path: &Path,
    offset: u64,
    block: &Bytes,
) -> Result<Vec<(InternalKey, Stored)>> {
    let (body, count) = check_block(path, offset, block)?;
    // Each entry is at least 15 bytes, which bounds the allocation by the block size.
    let mut out = Vec::with_capacity((count as usize).min(body.len() / 15 + 1));
    let mut c = Cursor::new(&body);
    for _ in 0..count {
        let at = c.pos;
        let e =
            parse_entry(&mut c).map_err(|w| StorageError::corrupt(path, offset + at as u64, w))?;
        let key = InternalKey::from_trusted(body.slice(e.key.clone()));
        out.push((key, e.to_stored(&body)));
    }
    if c.remaining() != 0 {
        return Err(StorageError::corrupt(
            path,
            offset + c.pos as u64,
            "trailing bytes after the last entry of a data block",
        ));
    }
    Ok(out)
}

/// Verify a block and find `key` in it without building the other entries' keys.
pub(crate) fn find_in_block(
    path: &Path,
    offset: u64,
    block: &Bytes,
    key: &[u8],
) -> Result<Option<Stored>> {
    let (body, count) = check_block(path, offset, block)?;
    let mut c = Cursor::new(&body);
    for _ in 0..count {
        let at = c.pos;
        let e =
            parse_entry(&mut c).map_err(|w| StorageError::corrupt(path, offset + at as u64, w))?;
        if &body[e.key.clone()] == key {
            return Ok(Some(e.to_stored(&body)));
        }
    }
    Ok(None)
}

/// Where one data block lives and which keys it spans (both inclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockHandle {
    pub offset: u64,
    pub len: u32,
    pub first: InternalKey,
    pub last: InternalKey,
}

pub(crate) fn encode_index(out: &mut Vec<u8>, blocks: &[BlockHandle]) {
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for b in blocks {
        out.extend_from_slice(&b.offset.to_le_bytes());
        out.extend_from_slice(&b.len.to_le_bytes());
        for k in [&b.first, &b.last] {
            out.extend_from_slice(&(k.key().len() as u16).to_le_bytes());
            out.extend_from_slice(k.key());
        }
    }
}

/// Decode the index found at file `offset`; checks block order and bounds against `data_end`.
pub(crate) fn decode_index(
    path: &Path,
    offset: u64,
    buf: &Bytes,
    data_end: u64,
) -> Result<Vec<BlockHandle>> {
    let bad = |at: usize, w: &str| StorageError::corrupt(path, offset + at as u64, w.to_string());
    let mut c = Cursor::new(buf);
    let n = c.u32().ok_or_else(|| bad(0, "truncated index count"))? as usize;
    let mut out: Vec<BlockHandle> = Vec::with_capacity(n.min(buf.len() / 16 + 1));
    let mut expect_offset = 0u64;
    for _ in 0..n {
        let at = c.pos;
        let trunc = || bad(at, "truncated index entry");
        let boff = c.u64().ok_or_else(trunc)?;
        let blen = c.u32().ok_or_else(trunc)?;
        let mut keys = [None, None];
        for k in &mut keys {
            let kl = c.u16().ok_or_else(trunc)? as usize;
            if kl > MAX_KEY_BYTES {
                return Err(bad(at, "index key length exceeds the maximum"));
            }
            *k = Some(InternalKey::from_trusted(c.bytes(kl).ok_or_else(trunc)?));
        }
        let [Some(first), Some(last)] = keys else {
            return Err(bad(at, "index entry without keys"));
        };
        // Blocks follow each other in key order, separated only by the writer's alignment
        // padding (less than one page).
        if boff < expect_offset
            || boff - expect_offset >= ALIGN
            || (blen as usize) < BLOCK_TRAILER
            || boff + u64::from(blen) > data_end
            || first > last
            || out.last().is_some_and(|p| p.last >= first)
        {
            return Err(bad(at, "index entry out of order or out of bounds"));
        }
        expect_offset = boff + u64::from(blen);
        out.push(BlockHandle {
            offset: boff,
            len: blen,
            first,
            last,
        });
    }
    if c.remaining() != 0 || expect_offset != data_end {
        return Err(bad(c.pos, "index does not cover the data region exactly"));
    }
    Ok(out)
}

/// The fixed-size trailer of every SSTable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Footer {
    pub data_len: u64,
    pub index_off: u64,
    pub index_len: u64,
    pub filter_off: u64,
    pub filter_len: u64,
    pub entry_count: u64,
    pub tombstone_count: u64,
    pub min_token: u64,
    pub max_token: u64,
    pub min_seqno: u64,
    pub max_seqno: u64,
    pub index_crc: u32,
    pub filter_crc: u32,
}

impl Footer {
    /// `magic u64 | version u32 | 11 x u64 (fields in declaration order) | index_crc u32 |
    /// filter_crc u32 | zeros | footer_crc u32` = `FOOTER_LEN` bytes.
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut v = Vec::with_capacity(FOOTER_LEN);
        v.extend_from_slice(&MAGIC.to_le_bytes());
        v.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for x in [
            self.data_len,
            self.index_off,
            self.index_len,
            self.filter_off,
            self.filter_len,
            self.entry_count,
            self.tombstone_count,
            self.min_token,
            self.max_token,
            self.min_seqno,
            self.max_seqno,
        ] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&self.index_crc.to_le_bytes());
        v.extend_from_slice(&self.filter_crc.to_le_bytes());
        v.resize(FOOTER_LEN - 4, 0);
        let crc = crc32fast::hash(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        let mut out = [0u8; FOOTER_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// Decode the footer that starts at file `offset`, checking crc, magic, version and that the
    /// regions it names fit before it.
    pub(crate) fn decode(path: &Path, offset: u64, buf: &[u8]) -> Result<Footer> {
        let bad = |w: &str| StorageError::corrupt(path, offset, w.to_string());
        if buf.len() != FOOTER_LEN {
            return Err(bad("footer has the wrong length"));
        }
        let stored = u32::from_le_bytes([
            buf[FOOTER_LEN - 4],
            buf[FOOTER_LEN - 3],
            buf[FOOTER_LEN - 2],
            buf[FOOTER_LEN - 1],
        ]);
        let computed = crc32fast::hash(&buf[..FOOTER_LEN - 4]);
        if stored != computed {
            return Err(bad(&format!(
                "footer crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        let b = Bytes::copy_from_slice(buf);
        let mut c = Cursor::new(&b);
        let magic = c.u64().ok_or_else(|| bad("truncated footer"))?;
        if magic != MAGIC {
            return Err(bad("bad magic: not a tern SSTable"));
        }
        let version = c.u32().ok_or_else(|| bad("truncated footer"))?;
        if version != FORMAT_VERSION {
            return Err(bad(&format!(
                "unsupported SSTable format version {version} (this build reads {FORMAT_VERSION})"
            )));
        }
        let mut f = [0u64; 11];
        for x in &mut f {
            *x = c.u64().ok_or_else(|| bad("truncated footer"))?;
        }
        let index_crc = c.u32().ok_or_else(|| bad("truncated footer"))?;
        let filter_crc = c.u32().ok_or_else(|| bad("truncated footer"))?;
        let footer = Footer {
            data_len: f[0],
            index_off: f[1],
            index_len: f[2],
            filter_off: f[3],
            filter_len: f[4],
            entry_count: f[5],
            tombstone_count: f[6],
            min_token: f[7],
            max_token: f[8],
            min_seqno: f[9],
            max_seqno: f[10],
            index_crc,
            filter_crc,
        };
        let layout_ok = footer.index_off == footer.data_len
            && footer.index_off.checked_add(footer.index_len) == Some(footer.filter_off)
            && footer
                .filter_off
                .checked_add(footer.filter_len)
                .is_some_and(|end| end <= offset);
        if !layout_ok {
            return Err(bad("footer regions overlap or run past the footer"));
        }
        Ok(footer)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block_of(entries: &[(&[u8], Stored)]) -> Bytes {
        let mut b = Vec::new();
        for (k, v) in entries {
            encode_entry(&mut b, k, v);
        }
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        Bytes::from(b)
    }

    #[test]
    fn block_roundtrip_and_every_flip_detected() {
        let v1 = Stored {
            seqno: 7,
            tombstone_at_ms: None,
            payload: Bytes::from_static(b"hello"),
        };
        let v2 = Stored {
            seqno: 9,
            tombstone_at_ms: Some(123),
            payload: Bytes::new(),
        };
        let blk = block_of(&[(b"a", v1.clone()), (b"bb", v2.clone())]);
        assert_eq!(
            blk.len(),
            entry_len(1, &v1) + entry_len(2, &v2) + BLOCK_TRAILER
        );
        let p = Path::new("t.sst");
        let got = decode_block(p, 0, &blk).unwrap();
        assert_eq!(got[0].1, v1);
        assert_eq!(got[1].0.key().as_ref(), b"bb");
        assert_eq!(find_in_block(p, 0, &blk, b"bb").unwrap(), Some(v2));
        assert_eq!(find_in_block(p, 0, &blk, b"zz").unwrap(), None);
        for i in 0..blk.len() {
            let mut m = blk.to_vec();
            m[i] ^= 0x40;
            let e = decode_block(p, 4096, &Bytes::from(m)).unwrap_err();
            assert!(
                matches!(e, StorageError::Corrupt { offset: 4096, .. }),
                "byte {i}: {e}"
            );
        }
    }

    #[test]
    fn footer_roundtrip_and_checks() {
        let f = Footer {
            data_len: 100,
            index_off: 100,
            index_len: 20,
            filter_off: 120,
            filter_len: 30,
            entry_count: 3,
            tombstone_count: 1,
            min_token: 5,
            max_token: 9,
            min_seqno: 1,
            max_seqno: 3,
            index_crc: 0xdead,
            filter_crc: 0xbeef,
        };
        let p = Path::new("t.sst");
        let enc = f.encode();
        assert_eq!(Footer::decode(p, 3968, &enc).unwrap(), f);
        // Regions must end before the footer.
        assert!(Footer::decode(p, 149, &enc).is_err());
        for i in 0..FOOTER_LEN {
            let mut m = enc;
            m[i] ^= 1;
            assert!(Footer::decode(p, 3968, &m).unwrap_err().is_corrupt());
        }
    }

    proptest::proptest! {
        /// Decoders get arbitrary bytes (as a fuzzer would): an error or a value, never a panic.
        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                                fix_crc in proptest::prelude::any::<bool>()) {
            let p = Path::new("f.sst");
            let mut d = data.clone();
            if fix_crc && d.len() >= BLOCK_TRAILER {
                // Make the block checksum valid so the entry parser itself is exercised.
                let n = d.len() - 4;
                let crc = crc32fast::hash(&d[..n]);
                d[n..].copy_from_slice(&crc.to_le_bytes());
            }
            let b = Bytes::from(d);
            let _ = decode_block(p, 0, &b);
            let _ = find_in_block(p, 0, &b, b"k");
            let _ = decode_index(p, 0, &b, 1 << 20);
            let mut f = data.clone();
            f.resize(FOOTER_LEN, 0);
            if fix_crc {
                let crc = crc32fast::hash(&f[..FOOTER_LEN - 4]);
                f[FOOTER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
            }
            let _ = Footer::decode(p, 1 << 20, &f);
            let _ = crate::storage::bloom::Bloom::decode(&data);
        }
    }
}
