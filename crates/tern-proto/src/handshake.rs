//! The fixed hello exchanged once when a connection opens, before any frame.
//!
//! Client -> server, 8 bytes: `b"TERN"`, u16 LE protocol version, u16 LE flags.
//! Server -> client, 12 bytes: `b"TERN"`, u16 LE version (the accepted one, or the newest the
//! server speaks when refusing), u16 LE [`HelloStatus`], u32 LE largest frame payload accepted.
//!
//! A server that refuses (bad magic, unknown version) still sends its 12-byte hello with the
//! reason and then closes, so a client never waits on a silent peer. Sizes are fixed so neither
//! side needs framing (or trusts any length) before the versions agree.

use crate::error::NetError;
use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// First bytes of every hello.
pub const MAGIC: [u8; 4] = *b"TERN";
/// Length of [`ClientHello`] on the wire.
pub const CLIENT_HELLO_LEN: usize = 8;
/// Length of [`ServerHello`] on the wire.
pub const SERVER_HELLO_LEN: usize = 12;
/// Flag: the connecting side is a cluster node (internal traffic), not a client.
pub const FLAG_PEER_NODE: u16 = 1;

/// What a connecting side sends first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientHello {
    pub version: u16,
    pub flags: u16,
}

impl Default for ClientHello {
    fn default() -> Self {
        Self {
            version: PROTOCOL_VERSION,
            flags: 0,
        }
    }
}

impl ClientHello {
    pub fn encode(&self) -> [u8; CLIENT_HELLO_LEN] {
        let mut b = [0u8; CLIENT_HELLO_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Parses a hello; fails only on a wrong magic (version is judged by [`answer_hello`]).
    pub fn decode(b: &[u8; CLIENT_HELLO_LEN]) -> Result<Self, NetError> {
        check_magic(b)?;
        Ok(Self {
            version: u16::from_le_bytes([b[4], b[5]]),
            flags: u16::from_le_bytes([b[6], b[7]]),
        })
    }
}

/// Outcome of a hello, as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloStatus {
    Accepted,
    UnsupportedVersion,
    BadMagic,
    /// The server is at its connection limit or shutting down; try another node.
    Busy,
    /// A status this build does not know (a newer server).
    Other(u16),
}

impl HelloStatus {
    pub fn to_u16(self) -> u16 {
        match self {
            HelloStatus::Accepted => 0,
            HelloStatus::UnsupportedVersion => 1,
            HelloStatus::BadMagic => 2,
            HelloStatus::Busy => 3,
            HelloStatus::Other(v) => v,
        }
    }

    pub fn from_u16(v: u16) -> Self {
        match v {
            0 => HelloStatus::Accepted,
            1 => HelloStatus::UnsupportedVersion,
            2 => HelloStatus::BadMagic,
            3 => HelloStatus::Busy,
            v => HelloStatus::Other(v),
        }
    }

    fn reason(self) -> &'static str {
        match self {
            HelloStatus::Accepted => "accepted",
            HelloStatus::UnsupportedVersion => "unsupported protocol version",
            HelloStatus::BadMagic => "hello was not a tern hello",
            HelloStatus::Busy => "server busy or shutting down",
            HelloStatus::Other(_) => "unknown refusal status (newer server?)",
        }
    }
}

/// What the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello {
    pub version: u16,
    pub status: HelloStatus,
    pub max_frame_len: u32,
}

impl ServerHello {
    pub fn encode(&self) -> [u8; SERVER_HELLO_LEN] {
        let mut b = [0u8; SERVER_HELLO_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_le_bytes());
        b[6..8].copy_from_slice(&self.status.to_u16().to_le_bytes());
        b[8..12].copy_from_slice(&self.max_frame_len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; SERVER_HELLO_LEN]) -> Result<Self, NetError> {
        check_magic(b)?;
        Ok(Self {
            version: u16::from_le_bytes([b[4], b[5]]),
            status: HelloStatus::from_u16(u16::from_le_bytes([b[6], b[7]])),
            max_frame_len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    /// The agreed version, or why the server refused.
    pub fn check(&self) -> Result<u16, NetError> {
        match self.status {
            HelloStatus::Accepted
                if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&self.version) =>
            {
                Ok(self.version)
            }
            HelloStatus::Accepted => Err(NetError::UnsupportedVersion {
                theirs: self.version,
                min: MIN_PROTOCOL_VERSION,
                max: PROTOCOL_VERSION,
            }),
            s => Err(NetError::HelloRejected {
                reason: s.reason(),
                server_version: self.version,
            }),
        }
    }
}

/// Server side: judges a client hello. Always returns the hello to send back; the `Err` side
/// says the connection must be closed right after sending it.
pub fn answer_hello(
    b: &[u8; CLIENT_HELLO_LEN],
    max_frame_len: usize,
) -> (ServerHello, Result<ClientHello, NetError>) {
    let refuse = |status| ServerHello {
        version: PROTOCOL_VERSION,
        status,
        max_frame_len: 0,
    };
    match ClientHello::decode(b) {
        Err(e) => (refuse(HelloStatus::BadMagic), Err(e)),
        Ok(h) if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&h.version) => (
            refuse(HelloStatus::UnsupportedVersion),
            Err(NetError::UnsupportedVersion {
                theirs: h.version,
                min: MIN_PROTOCOL_VERSION,
                max: PROTOCOL_VERSION,
            }),
        ),
        Ok(h) => (
            ServerHello {
                version: h.version,
                status: HelloStatus::Accepted,
                max_frame_len: u32::try_from(max_frame_len).unwrap_or(u32::MAX),
            },
            Ok(h),
        ),
    }
}

fn check_magic(b: &[u8]) -> Result<(), NetError> {
    let mut m = [0u8; 4];
    m.copy_from_slice(&b[..4]);
    if m == MAGIC {
        Ok(())
    } else {
        Err(NetError::BadMagic(m))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn current_version_is_accepted() {
        let (reply, res) = answer_hello(&ClientHello::default().encode(), 4096);
        assert_eq!(res.unwrap(), ClientHello::default());
        let reply = ServerHello::decode(&reply.encode()).unwrap();
        assert_eq!(reply.check().unwrap(), PROTOCOL_VERSION);
        assert_eq!(reply.max_frame_len, 4096);
    }

    #[test]
    fn unknown_version_gets_an_error_hello() {
        let hello = ClientHello {
            version: PROTOCOL_VERSION + 7,
            flags: 0,
        };
        let (reply, res) = answer_hello(&hello.encode(), 4096);
        assert!(matches!(res, Err(NetError::UnsupportedVersion { .. })));
        let reply = ServerHello::decode(&reply.encode()).unwrap();
        assert_eq!(reply.status, HelloStatus::UnsupportedVersion);
        let err = reply.check().unwrap_err();
        assert!(
            err.to_string().contains("unsupported protocol version"),
            "{err}"
        );
    }

    #[test]
    fn garbage_hello_is_refused_with_bad_magic() {
        let (reply, res) = answer_hello(b"GET / HT", 4096);
        assert!(matches!(res, Err(NetError::BadMagic(_))));
        assert_eq!(reply.status, HelloStatus::BadMagic);
        // And a client talking to something that is not tern sees it too.
        assert!(matches!(
            ServerHello::decode(b"-ERR unknown"),
            Err(NetError::BadMagic(_))
        ));
    }
}
