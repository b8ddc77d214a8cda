//! Commit-log record codec and the per-segment recovery scan. Pure functions over byte slices
//! (no I/O), so they are property-tested and fuzzable.
//!
//! Record layout (little-endian, every record starts 8-byte aligned):
//! `[u32 len][u32 crc][u64 lsn][u64 stamp][payload: len bytes][zero pad to 8]`
//! - `crc = crc32(segment_seq ‖ len ‖ lsn ‖ stamp ‖ payload)`. Seeding with the segment's
//!   sequence number (taken from its file name) makes records left over from an earlier life of
//!   a recycled segment file fail the check, so they are never mistaken for current ones.
//! - `lsn` is the log sequence number, consecutive inside a segment (checked on replay).
//! - `stamp` is the log's durable LSN when the record was appended: a valid record whose stamp
//!   is `>= n` proves record `n` had been fsynced. Recovery uses it to tell a torn tail (the
//!   damaged record was never proven durable, so never acknowledged) from corruption of
//!   acknowledged data (a later record proves the damaged one had been synced).
//! - `len == 0` is an end marker written on clean close and on rotation: the segment ends
//!   there; its `lsn` repeats the last record's (0 for an empty segment).

use std::ops::Range;

/// Bytes before the payload.
pub const HEADER: usize = 24;
/// Records start at multiples of this.
pub const RECORD_ALIGN: usize = 8;

/// Size on disk of a record with a `len`-byte payload (header + payload + padding).
pub fn encoded_len(len: usize) -> usize {
    (HEADER + len).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

fn crc(seg_seq: u64, len: u32, lsn: u64, stamp: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seg_seq.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(&lsn.to_le_bytes());
    h.update(&stamp.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Append one encoded record (with padding) to `out`.
pub fn encode(out: &mut Vec<u8>, seg_seq: u64, lsn: u64, stamp: u64, payload: &[u8]) {
    debug_assert_eq!(out.len() % RECORD_ALIGN, 0, "record must start aligned");
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(seg_seq, len, lsn, stamp, payload).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&stamp.to_le_bytes());
    out.extend_from_slice(payload);
    let pad = encoded_len(payload.len()) - HEADER - payload.len();
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// A record that decoded and passed its checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub lsn: u64,
    pub stamp: u64,
    pub payload: Range<usize>,
    /// Offset of the next record.
    pub next: usize,
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}
fn u64_at(d: &[u8], at: usize) -> Option<u64> {
    d.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Decode the record at `at` if it is complete, within `max_len`, and its checksum matches.
pub fn decode_at(data: &[u8], at: usize, seg_seq: u64, max_len: usize) -> Option<Decoded> {
    let len = u32_at(data, at)?;
    if len as usize > max_len {
        return None;
    }
    let stored = u32_at(data, at + 4)?;
    let lsn = u64_at(data, at + 8)?;
    let stamp = u64_at(data, at + 16)?;
    let start = at + HEADER;
    let end = start.checked_add(len as usize)?;
    let payload = data.get(start..end)?;
    if crc(seg_seq, len, lsn, stamp, payload) != stored {
        return None;
    }
    Some(Decoded {
        lsn,
        stamp,
        payload: start..end,
        next: at + encoded_len(len as usize),
    })
}

/// How a segment's scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// An end marker at this offset (clean close or rotation).
    Marker(usize),
    /// Only zero bytes (or nothing) from this offset on: never written.
    Zeros(usize),
    /// A damaged or stale record at `offset` and no later record proving it was synced:
    /// the unacknowledged tail of a crash. Everything from `offset` on is ignored.
    TornTail { offset: usize },
    /// A damaged record at `offset`, followed at `proof_at` by a valid record whose stamp shows
    /// the damaged one had been synced: acknowledged data is corrupt.
    Corrupt { offset: usize, proof_at: usize },
}

/// Result of scanning one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Valid records, in order; their LSNs are consecutive.
    pub records: Vec<Decoded>,
    pub end: End,
}

/// Scan a whole segment. Stops at the first record that is not the valid successor of the
/// previous one, then classifies the stop (see [`End`]). Cost of the forward search after a
/// stop is one cheap header check per 8 bytes; the CRC is computed only for plausible headers.
pub fn scan(data: &[u8], seg_seq: u64, max_len: usize) -> Scan {
    let mut records: Vec<Decoded> = Vec::new();
    let mut at = 0usize;
    loop {
        if at + HEADER > data.len() {
            return Scan {
                records,
                end: End::Zeros(at.min(data.len())),
            };
        }
        let last = records.last().map(|r| r.lsn);
        match decode_at(data, at, seg_seq, max_len) {
            Some(d) if d.payload.is_empty() && last.is_none_or(|l| d.lsn == l) => {
                return Scan {
                    records,
                    end: End::Marker(at),
                };
            }
            Some(d) if !d.payload.is_empty() && last.is_none_or(|l| d.lsn == l + 1) => {
                at = d.next;
                records.push(d);
            }
            _ => {
                if data[at..].iter().all(|&b| b == 0) {
                    return Scan {
                        records,
                        end: End::Zeros(at),
                    };
                }
                let end = classify_damage(data, at, seg_seq, max_len, last);
                return Scan { records, end };
            }
        }
    }
}

/// After a bad record at `bad`, look for a later valid record that proves it was synced.
fn classify_damage(
    data: &[u8],
    bad: usize,
    seg_seq: u64,
    max_len: usize,
    last: Option<u64>,
) -> End {
    let mut q = bad + RECORD_ALIGN;
    while q + HEADER <= data.len() {
        // Cheap filters before the CRC: plausible length and LSN.
        let plausible = match (u32_at(data, q), u64_at(data, q + 8)) {
            (Some(len), Some(lsn)) => {
                len as usize <= max_len
                    && q + HEADER + len as usize <= data.len()
                    && last.is_none_or(|l| lsn > l + 1)
                    && lsn > 0
            }
            _ => false,
        };
        if plausible {
            if let Some(d) = decode_at(data, q, seg_seq, max_len) {
                // The first damaged record's LSN is last+1; if unknown (damage at the segment's
                // first record) the best bound is d.lsn - 1.
                let first_damaged = last.map_or(d.lsn.saturating_sub(1), |l| l + 1);
                if d.stamp >= first_damaged && first_damaged > 0 {
                    return End::Corrupt {
                        offset: bad,
                        proof_at: q,
                    };
                }
            }
        }
        q += RECORD_ALIGN;
    }
    End::TornTail { offset: bad }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(seq: u64, first: u64, payloads: &[Vec<u8>], stamps: &[u64]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode(&mut v, seq, first + i as u64, stamps[i], p);
        }
        v
    }

    proptest! {
        #[test]
        fn roundtrip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
                     seq in 1u64..1000, first in 1u64..1_000_000, zeros in 0usize..5000) {
            let stamps: Vec<u64> = (0..payloads.len() as u64).map(|i| first + i).collect();
            let mut v = build(seq, first, &payloads, &stamps);
            v.extend(std::iter::repeat_n(0u8, zeros));
            let s = scan(&v, seq, 1 << 20);
            prop_assert_eq!(s.records.len(), payloads.len());
            for (r, p) in s.records.iter().zip(&payloads) {
                prop_assert_eq!(&v[r.payload.clone()], &p[..]);
            }
            prop_assert!(matches!(s.end, End::Zeros(_)));
            // Another segment sequence number sees nothing valid.
            let other = scan(&v, seq + 1, 1 << 20);
            prop_assert!(other.records.is_empty());
        }

        #[test]
        fn any_truncation_or_garbage_tail_is_a_torn_tail(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 1..10),
            cut in any::<prop::sample::Index>(), garbage in proptest::collection::vec(any::<u8>(), 0..64)) {
            // Stamps lag by one batch: each record's stamp is the previous LSN (not itself).
            let stamps: Vec<u64> = (0..payloads.len() as u64).collect();
            let mut v = build(1, 1, &payloads, &stamps);
            let cut = cut.index(v.len());
            v.truncate(cut);
            v.extend_from_slice(&garbage);
            let s = scan(&v, 1, 1 << 20);
            prop_assert!(!matches!(s.end, End::Corrupt { .. }), "{:?}", s.end);
            for (i, r) in s.records.iter().enumerate() {
                prop_assert_eq!(r.lsn, 1 + i as u64);
            }
        }
    }

    #[test]
    fn damage_before_a_proving_record_is_corruption() {
        let p: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8 + 1; 40]).collect();
        // Record n (lsn n+1) was appended after lsn n was durable: stamp = lsn - 1.
        let stamps = [0, 1, 2, 3, 4];
        let v = build(9, 1, &p, &stamps);
        let rec = encoded_len(40);
        // Flip a payload byte of the 2nd record (lsn 2); lsn 3 has stamp 2 -> proof.
        let mut bad = v.clone();
        bad[rec + HEADER + 3] ^= 0x40;
        let s = scan(&bad, 9, 1 << 20);
        assert_eq!(s.records.len(), 1);
        assert_eq!(
            s.end,
            End::Corrupt {
                offset: rec,
                proof_at: 2 * rec
            }
        );
        // Flip the length field instead: the forward search still finds the proof.
        let mut bad = v.clone();
        bad[rec + 1] ^= 0x01;
        assert!(matches!(scan(&bad, 9, 1 << 20).end, End::Corrupt { offset, .. } if offset == rec));
        // Damage in the last record: torn tail.
        let mut bad = v.clone();
        bad[4 * rec + HEADER] ^= 1;
        let s = scan(&bad, 9, 1 << 20);
        assert_eq!(s.records.len(), 4);
        assert_eq!(s.end, End::TornTail { offset: 4 * rec });
    }

    #[test]
    fn same_batch_hole_is_torn_not_corrupt() {
        // Records 2..5 were written in one unsynced batch (stamps all 1); a hole at record 2
        // with 3..5 intact is a torn write, not corruption.
        let p: Vec<Vec<u8>> = (0..5).map(|_| vec![7u8; 40]).collect();
        let v = build(3, 1, &p, &[0, 1, 1, 1, 1]);
        let rec = encoded_len(40);
        let mut bad = v.clone();
        bad[rec + HEADER] ^= 0xff;
        assert_eq!(scan(&bad, 3, 1 << 20).end, End::TornTail { offset: rec });
    }

    #[test]
    fn end_marker_stops_the_scan() {
        let mut v = build(5, 10, &[vec![1u8; 10]], &[9]);
        encode(&mut v, 5, 10, 10, &[]);
        // Stale bytes from an earlier life after the marker are ignored quietly.
        v.extend_from_slice(&[0xAB; 100]);
        let s = scan(&v, 5, 1 << 20);
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.end, End::Marker(encoded_len(10)));
    }
}
