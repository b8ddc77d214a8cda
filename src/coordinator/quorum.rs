//! Per-request read/write quorums and the cluster's coordinator settings, validated.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::version::DEFAULT_MAX_SIBLINGS;

/// A requested quorum size, resolved against the replication factor N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quorum {
    One,
    /// A majority: N / 2 + 1.
    #[default]
    Quorum,
    All,
    Count(u32),
}

/// A quorum that cannot be met by the replication factor.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{which}={requested} is invalid with N={n}: it must be between 1 and N")]
pub struct QuorumRangeError {
    pub which: &'static str,
    pub requested: u32,
    pub n: usize,
}

impl Quorum {
    /// Number of replicas for replication factor `n`; `which` ("R" or "W") names it in errors.
    pub fn resolve(self, n: usize, which: &'static str) -> Result<usize, QuorumRangeError> {
        let k = match self {
            Quorum::One => 1,
            Quorum::Quorum => n / 2 + 1,
            Quorum::All => n,
            Quorum::Count(k) => k as usize,
        };
        if k == 0 || k > n {
            let requested = match self {
                Quorum::Count(k) => k,
                _ => u32::try_from(k).unwrap_or(u32::MAX),
            };
            return Err(QuorumRangeError {
                which,
                requested,
                n,
            });
        }
        Ok(k)
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => f.write_str("ONE"),
            Quorum::Quorum => f.write_str("QUORUM"),
            Quorum::All => f.write_str("ALL"),
            Quorum::Count(k) => write!(f, "{k}"),
        }
    }
}

/// Text that is neither ONE/QUORUM/ALL nor a positive number.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid quorum {0:?}: expected ONE, QUORUM, ALL or a positive number")]
pub struct ParseQuorumError(pub String);

impl FromStr for Quorum {
    type Err = ParseQuorumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ONE" => Ok(Quorum::One),
            "QUORUM" => Ok(Quorum::Quorum),
            "ALL" => Ok(Quorum::All),
            other => match other.parse::<u32>() {
                Ok(k) if k > 0 => Ok(Quorum::Count(k)),
                _ => Err(ParseQuorumError(s.to_owned())),
            },
        }
    }
}

/// What a client may choose per request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestOptions {
    pub r: Quorum,
    pub w: Quorum,
    /// Only designated replicas count (no stand-ins). Accepted and forwarded; every replica is
    /// designated until sloppy quorum exists, so today it changes nothing.
    pub strict: bool,
    /// `None`: the configured default.
    pub timeout_ms: Option<u64>,
}

/// Coordinator settings for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// Replication factor N.
    pub n: usize,
    /// Nodes in the cluster (N may not exceed it).
    pub node_count: usize,
    pub max_siblings: usize,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// Read repairs (including waiting for late replies) running at once on one shard; past it
    /// repairs are skipped (anti-entropy catches up).
    pub max_background_repairs: usize,
    /// Deadline of the repair writes themselves.
    pub repair_timeout_ms: u64,
}

impl CoordinatorConfig {
    /// Defaults for a cluster of `node_count` nodes with replication factor `n`.
    pub fn new(n: usize, node_count: usize) -> Self {
        CoordinatorConfig {
            n,
            node_count,
            max_siblings: DEFAULT_MAX_SIBLINGS,
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
            default_timeout_ms: 1_000,
            max_timeout_ms: 60_000,
            max_background_repairs: 256,
            repair_timeout_ms: 1_000,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.n == 0 {
            return Err(ConfigError(
                "replication factor N must be at least 1".into(),
            ));
        }
        if self.n > self.node_count {
            return Err(ConfigError(format!(
                "replication factor N={} exceeds the {} nodes in the cluster",
                self.n, self.node_count
            )));
        }
        if self.max_siblings == 0 {
            return Err(ConfigError("max_siblings must be at least 1".into()));
        }
        if self.default_timeout_ms == 0 || self.default_timeout_ms > self.max_timeout_ms {
            return Err(ConfigError(format!(
                "default_timeout_ms={} must be between 1 and max_timeout_ms={}",
                self.default_timeout_ms, self.max_timeout_ms
            )));
        }
        if self.repair_timeout_ms == 0 {
            return Err(ConfigError("repair_timeout_ms must be at least 1".into()));
        }
        Ok(())
    }
}

/// Settings that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid coordinator configuration: {0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn resolves_named_quorums() {
        assert_eq!(Quorum::One.resolve(3, "R").unwrap(), 1);
        assert_eq!(Quorum::Quorum.resolve(3, "R").unwrap(), 2);
        assert_eq!(Quorum::Quorum.resolve(4, "R").unwrap(), 3);
        assert_eq!(Quorum::All.resolve(5, "W").unwrap(), 5);
        let e = Quorum::Count(4).resolve(3, "W").unwrap_err();
        assert_eq!(
            e.to_string(),
            "W=4 is invalid with N=3: it must be between 1 and N"
        );
        assert!(Quorum::Count(0).resolve(3, "R").is_err());
    }

    #[test]
    fn parses_quorums() {
        assert_eq!("one".parse::<Quorum>().unwrap(), Quorum::One);
        assert_eq!("QUORUM".parse::<Quorum>().unwrap(), Quorum::Quorum);
        assert_eq!("All".parse::<Quorum>().unwrap(), Quorum::All);
        assert_eq!("2".parse::<Quorum>().unwrap(), Quorum::Count(2));
        assert!("0".parse::<Quorum>().is_err());
        assert!("most".parse::<Quorum>().is_err());
    }

    #[test]
    fn config_rejects_n_above_node_count() {
        assert!(CoordinatorConfig::new(3, 3).validate().is_ok());
        let e = CoordinatorConfig::new(4, 3).validate().unwrap_err();
        assert!(e.to_string().contains("N=4 exceeds the 3 nodes"));
        assert!(CoordinatorConfig::new(0, 3).validate().is_err());
    }

    proptest! {
        #[test]
        fn majority_quorums_overlap(n in 1usize..16) {
            let q = Quorum::Quorum.resolve(n, "R").unwrap();
            prop_assert!(2 * q > n);
            prop_assert!(q <= n);
        }

        #[test]
        fn display_parses_back(k in 1u32..100, which in 0usize..4) {
            let q = [Quorum::One, Quorum::Quorum, Quorum::All, Quorum::Count(k)][which];
            prop_assert_eq!(q.to_string().parse::<Quorum>().unwrap(), q);
        }
    }
}
