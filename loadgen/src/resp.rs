//! RESP (REdis Serialization Protocol, v2) codec: encodes GET/SET/DEL requests and parses replies.
//!
//! Owns only byte-level encoding and decoding; it knows nothing about sockets, timing or stats.
//! Invariants: encoding appends to a caller-owned buffer (no allocation per request once the
//! buffer has grown); the parser never reads past the slice it is given, returns `Ok(None)` for
//! an incomplete reply (the caller reads more bytes and retries from the same offset), and
//! returns an error instead of panicking on malformed input. Lengths are bounded by
//! [`MAX_BULK_LEN`] and nesting by [`MAX_DEPTH`] so a hostile server cannot make us allocate or
//! recurse without limit.

use thiserror::Error;

/// Largest bulk string we accept (Redis' own `proto-max-bulk-len` default is 512 MiB; values
/// this tool writes are far smaller).
pub const MAX_BULK_LEN: usize = 64 * 1024 * 1024;
/// Deepest array nesting we follow.
pub const MAX_DEPTH: usize = 8;
/// Longest simple string / error / integer line we accept.
const MAX_LINE: usize = 64 * 1024;

/// A reply parsed from the wire, borrowing from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK\r\n`
    Simple(&'a [u8]),
    /// `-ERR message\r\n`
    Error(&'a [u8]),
    /// `:123\r\n`
    Integer(i64),
    /// `$n\r\n...\r\n`, or `None` for the nil bulk `$-1\r\n`.
    Bulk(Option<&'a [u8]>),
    /// `*n\r\n` followed by n replies (skipped, only the count is kept), `None` for `*-1`.
    Array(Option<usize>),
}

/// Malformed input from the server.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RespError {
    #[error("RESP: unknown reply type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("RESP: bad length or integer {0:?}")]
    BadNumber(String),
    #[error("RESP: line longer than {MAX_LINE} bytes without CRLF")]
    LineTooLong,
    #[error("RESP: bulk string of {0} bytes exceeds the {MAX_BULK_LEN}-byte limit")]
    BulkTooLarge(usize),
    #[error("RESP: bulk string not terminated by CRLF")]
    MissingCrlf,
    #[error("RESP: arrays nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Appends `*argc\r\n` and each argument as a bulk string.
fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        push_decimal(out, a.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// `GET key`
pub fn encode_get(out: &mut Vec<u8>, key: &[u8]) {
    encode_command(out, &[b"GET", key]);
}

/// `SET key value`
pub fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    encode_command(out, &[b"SET", key, value]);
}

/// `DEL key`
pub fn encode_del(out: &mut Vec<u8>, key: &[u8]) {
    encode_command(out, &[b"DEL", key]);
}

/// Writes `n` in decimal without going through `fmt` (which is slow and may allocate).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Finds the CRLF-terminated line starting at `pos`; returns (line, offset after CRLF).
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = &buf[pos..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            if nl == 0 || rest[nl - 1] != b'\r' {
                return Err(RespError::MissingCrlf);
            }
            Ok(Some((&rest[..nl - 1], pos + nl + 1)))
        }
        None if rest.len() > MAX_LINE => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

fn parse_int(s: &[u8]) -> Result<i64, RespError> {
    let bad = || RespError::BadNumber(String::from_utf8_lossy(s).into_owned());
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(bad());
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d - b'0')))
            .ok_or_else(bad)?;
    }
    Ok(if neg { -v } else { v })
}

/// Parses one complete reply at the start of `buf`.
///
/// Returns `Ok(Some((reply, consumed)))`, `Ok(None)` if more bytes are needed, or an error if
/// the bytes can never form a valid reply.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, RespError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply<'_>, usize)>, RespError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((l, after)) = line(buf, pos + 1)? else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((Reply::Simple(l), after))),
        b'-' => Ok(Some((Reply::Error(l), after))),
        b':' => Ok(Some((Reply::Integer(parse_int(l)?), after))),
        b'$' => {
            let n = parse_int(l)?;
            if n == -1 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let n = usize::try_from(n)
                .map_err(|_| RespError::BadNumber(String::from_utf8_lossy(l).into_owned()))?;
            if n > MAX_BULK_LEN {
                return Err(RespError::BulkTooLarge(n));
            }
            let end = after + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::MissingCrlf);
            }
            Ok(Some((Reply::Bulk(Some(&buf[after..end])), end + 2)))
        }
        b'*' => {
            let n = parse_int(l)?;
            if n == -1 {
                return Ok(Some((Reply::Array(None), after)));
            }
            let n = usize::try_from(n)
                .map_err(|_| RespError::BadNumber(String::from_utf8_lossy(l).into_owned()))?;
            if depth + 1 > MAX_DEPTH {
                return Err(RespError::TooDeep);
            }
            let mut p = after;
            for _ in 0..n {
                match parse_at(buf, p, depth + 1)? {
                    Some((_, next)) => p = next,
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(n)), p)))
        }
        other => Err(RespError::UnknownType(other)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut b = Vec::new();
        encode_get(&mut b, b"k1");
        assert_eq!(b, b"*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n");
        b.clear();
        encode_set(&mut b, b"key", b"");
        assert_eq!(b, b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n");
        b.clear();
        encode_del(&mut b, b"0123456789");
        assert_eq!(b, b"*2\r\n$3\r\nDEL\r\n$10\r\n0123456789\r\n");
    }

    #[test]
    fn decimal_encoding() {
        for n in [0u64, 7, 10, 99, 100, 123_456_789, u64::MAX] {
            let mut b = Vec::new();
            push_decimal(&mut b, n);
            assert_eq!(b, n.to_string().as_bytes());
        }
    }

    #[test]
    fn parses_each_reply_type() {
        assert_eq!(
            parse_reply(b"+OK\r\n").unwrap(),
            Some((Reply::Simple(b"OK"), 5))
        );
        assert_eq!(
            parse_reply(b"-ERR wrong type\r\n").unwrap(),
            Some((Reply::Error(b"ERR wrong type"), 17))
        );
        assert_eq!(
            parse_reply(b":-42\r\n").unwrap(),
            Some((Reply::Integer(-42), 6))
        );
        assert_eq!(
            parse_reply(b"$-1\r\n").unwrap(),
            Some((Reply::Bulk(None), 5))
        );
        assert_eq!(
            parse_reply(b"$0\r\n\r\n").unwrap(),
            Some((Reply::Bulk(Some(b"")), 6))
        );
        assert_eq!(
            parse_reply(b"$5\r\nhe\r\no\r\n+OK").unwrap(),
            Some((Reply::Bulk(Some(b"he\r\no")), 11))
        );
        assert_eq!(
            parse_reply(b"*2\r\n$1\r\na\r\n:1\r\n").unwrap(),
            Some((Reply::Array(Some(2)), 15))
        );
        assert_eq!(
            parse_reply(b"*-1\r\n").unwrap(),
            Some((Reply::Array(None), 5))
        );
    }

    #[test]
    fn incomplete_replies_ask_for_more() {
        for partial in [
            &b""[..],
            b"+",
            b"+OK",
            b"+OK\r",
            b"$5\r\nhel",
            b"$5\r\nhello",
            b"$5\r\nhello\r",
            b"*2\r\n$1\r\na\r\n",
            b":12",
        ] {
            assert_eq!(parse_reply(partial).unwrap(), None, "{partial:?}");
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert_eq!(parse_reply(b"?x\r\n"), Err(RespError::UnknownType(b'?')));
        assert!(matches!(
            parse_reply(b":12a\r\n"),
            Err(RespError::BadNumber(_))
        ));
        assert!(matches!(
            parse_reply(b"$-5\r\n"),
            Err(RespError::BadNumber(_))
        ));
        assert_eq!(parse_reply(b"+OK\n"), Err(RespError::MissingCrlf));
        assert_eq!(parse_reply(b"$2\r\nabcd\r\n"), Err(RespError::MissingCrlf));
        assert_eq!(
            parse_reply(b"$99999999999\r\n"),
            Err(RespError::BulkTooLarge(99_999_999_999))
        );
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert_eq!(parse_reply(&deep), Err(RespError::TooDeep));
        let long = vec![b'a'; MAX_LINE + 2];
        let mut msg = vec![b'+'];
        msg.extend_from_slice(&long);
        assert_eq!(parse_reply(&msg), Err(RespError::LineTooLong));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((_, used))) = parse_reply(&data) {
                prop_assert!(used <= data.len());
            }
        }

        #[test]
        fn bulk_roundtrip_and_split_points(value in proptest::collection::vec(any::<u8>(), 0..512),
                                           cut in 0usize..600) {
            let mut wire = Vec::new();
            wire.push(b'$');
            push_decimal(&mut wire, value.len() as u64);
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(&value);
            wire.extend_from_slice(b"\r\n");
            let (r, used) = parse_reply(&wire).unwrap().unwrap();
            prop_assert_eq!(r, Reply::Bulk(Some(&value[..])));
            prop_assert_eq!(used, wire.len());
            let cut = cut.min(wire.len() - 1);
            prop_assert_eq!(parse_reply(&wire[..cut]).unwrap(), None);
        }
    }
}
