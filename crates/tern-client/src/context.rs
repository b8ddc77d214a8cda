//! The causal context: opaque bytes a node returns with every read and write, which the client
//! hands back on its next write of the same key so the node can tell what that write replaces.
//! The client never interprets them; it only carries them and prints/parses them as text.

use base64::Engine;
use bytes::Bytes;

/// Opaque causal context. Empty means "no context" (a blind write).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct Context(Bytes);

impl Context {
    pub fn from_bytes(b: impl Into<Bytes>) -> Self {
        Self(b.into())
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Lower-case hex, how the CLI prints it.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(self.0.len() * 2);
        for b in self.0.iter() {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses hex (as printed by `tern get`) or standard/URL-safe base64 (with or without
    /// padding). An empty string is the empty context.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.len() % 2 == 0 && t.bytes().all(|c| c.is_ascii_hexdigit()) {
            let bytes = (0..t.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&t[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| format!("invalid hex context: {e}"))?;
            return Ok(Self(bytes.into()));
        }
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines
            .iter()
            .find_map(|e| e.decode(t).ok())
            .map(|b| Self(b.into()))
            .ok_or_else(|| {
                format!("context {t:?} is neither hex nor base64 (pass the value printed by `tern get`)")
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hex_roundtrip(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let c = Context::from_bytes(b);
            prop_assert_eq!(Context::parse(&c.to_hex()).unwrap(), c);
        }
    }

    #[test]
    fn base64_and_garbage() {
        assert_eq!(
            Context::parse("AQL/").unwrap().as_bytes().as_ref(),
            &[1, 2, 255]
        );
        assert!(Context::parse("not a context!").is_err());
    }
}
