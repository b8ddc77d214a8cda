//! Key-choice distributions: uniform, zipfian (YCSB's generator, theta 0.99, zeta precomputed)
//! and "latest" (YCSB's skewed-latest: recently written keys are the hot ones).
//!
//! Owns only the math of picking an index in `[0, n)`; it knows nothing about key formats or the
//! network. Invariants: every generated index is `< n`; the zipfian constants are computed once
//! per run (O(n)) and shared read-only by every connection on a core; drawing is O(1).

use rand::Rng;

/// YCSB's default skew.
pub const ZIPF_THETA: f64 = 0.99;

/// Which distribution keys follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistKind {
    Uniform,
    Zipfian,
    Latest,
}

/// Precomputed constants of a zipfian distribution over ranks `0..n` (rank 0 is the most
/// popular), following Gray et al., "Quickly generating billion-record synthetic databases", as
/// YCSB's `ZipfianGenerator` does.
#[derive(Debug, Clone)]
pub struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    /// `1 + 0.5^theta`: the cumulative weight of ranks 0 and 1, scaled by zetan.
    half_pow_theta_plus_one: f64,
}

/// `sum_{i=1..n} 1 / i^theta`.
pub fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    /// Builds the generator; O(n) for the zeta sum. `n` must be >= 1.
    pub fn new(n: u64, theta: f64) -> Self {
        let n = n.max(1);
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2, theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipfian {
            n,
            theta,
            alpha,
            zetan,
            eta,
            half_pow_theta_plus_one: 1.0 + 0.5f64.powf(theta),
        }
    }

    /// Number of ranks.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Draws a rank in `[0, n)`; small ranks are the most frequent.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.half_pow_theta_plus_one {
            return 1.min(self.n - 1);
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        debug_assert!(self.theta > 0.0 && self.theta < 1.0);
        r.min(self.n - 1)
    }
}

/// FNV-1a 64 of the rank's bytes: YCSB's "scrambled zipfian" spreads the hot ranks over the key
/// space so that popularity does not follow key order (which would favour one range/shard).
pub fn fnv1a64(x: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in x.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A key-index chooser for one connection.
#[derive(Debug, Clone)]
pub enum KeyDist {
    Uniform {
        n: u64,
    },
    /// Scrambled zipfian over `n` keys.
    Zipfian {
        zipf: std::rc::Rc<Zipfian>,
    },
    /// Reads favour the most recently written keys: `latest - zipf_rank (mod n)`. Writes move
    /// `latest` forward (see [`KeyDist::next_write`]), like YCSB workload D's inserts.
    Latest {
        zipf: std::rc::Rc<Zipfian>,
        latest: u64,
    },
}

impl KeyDist {
    /// Chooses the key index for a read (or any op under uniform/zipfian).
    pub fn next_read<R: Rng>(&mut self, rng: &mut R) -> u64 {
        match self {
            KeyDist::Uniform { n } => rng.gen_range(0..*n),
            KeyDist::Zipfian { zipf } => fnv1a64(zipf.sample(rng)) % zipf.n(),
            KeyDist::Latest { zipf, latest } => {
                let n = zipf.n();
                (*latest + n - zipf.sample(rng) % n) % n
            }
        }
    }

    /// Chooses the key index for a write.
    pub fn next_write<R: Rng>(&mut self, rng: &mut R) -> u64 {
        match self {
            KeyDist::Latest { zipf, latest } => {
                *latest = (*latest + 1) % zipf.n();
                *latest
            }
            _ => self.next_read(rng),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn zeta_matches_hand_sum() {
        let z = zeta(3, 0.5);
        let want = 1.0 + 1.0 / 2f64.sqrt() + 1.0 / 3f64.sqrt();
        assert!((z - want).abs() < 1e-12);
    }

    #[test]
    fn zipfian_rank_frequencies_follow_the_law() {
        let n = 1000;
        let z = Zipfian::new(n, ZIPF_THETA);
        let mut rng = SmallRng::seed_from_u64(7);
        let draws = 400_000;
        let mut counts = vec![0u64; n as usize];
        for _ in 0..draws {
            let r = z.sample(&mut rng);
            assert!(r < n);
            counts[r as usize] += 1;
        }
        // P(rank 0) = 1 / zeta(n); P(rank 1) = 2^-theta / zeta(n).
        let p0 = 1.0 / zeta(n, ZIPF_THETA);
        let f0 = counts[0] as f64 / draws as f64;
        assert!(
            (f0 - p0).abs() < 0.01,
            "rank-1 frequency {f0} vs expected {p0}"
        );
        let p1 = 0.5f64.powf(ZIPF_THETA) * p0;
        let f1 = counts[1] as f64 / draws as f64;
        assert!(
            (f1 - p1).abs() < 0.01,
            "rank-2 frequency {f1} vs expected {p1}"
        );
        // Monotone-ish decay: the head outweighs the tail by far.
        let head: u64 = counts[..10].iter().sum();
        let tail: u64 = counts[990..].iter().sum();
        assert!(head > 20 * tail, "head {head} tail {tail}");
        // The tail is reached at all (the generator covers the whole range).
        assert!(counts[500..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn tiny_key_spaces_stay_in_bounds() {
        let mut rng = SmallRng::seed_from_u64(1);
        for n in [1u64, 2, 3] {
            let z = Zipfian::new(n, ZIPF_THETA);
            for _ in 0..10_000 {
                assert!(z.sample(&mut rng) < n);
            }
        }
    }

    #[test]
    fn key_dists_stay_in_bounds_and_latest_tracks_writes() {
        let mut rng = SmallRng::seed_from_u64(3);
        let zipf = std::rc::Rc::new(Zipfian::new(100, ZIPF_THETA));
        let mut dists = [
            KeyDist::Uniform { n: 100 },
            KeyDist::Zipfian { zipf: zipf.clone() },
            KeyDist::Latest { zipf, latest: 0 },
        ];
        for d in &mut dists {
            for _ in 0..5_000 {
                assert!(d.next_read(&mut rng) < 100);
                assert!(d.next_write(&mut rng) < 100);
            }
        }
        let mut latest = dists[2].clone();
        let w = latest.next_write(&mut rng);
        let mut hits = 0;
        for _ in 0..1000 {
            if latest.next_read(&mut rng) == w {
                hits += 1;
            }
        }
        // The just-written key is rank 0: it is read far more often than 1/100 of the time.
        assert!(hits > 100, "latest key read {hits} times out of 1000");
    }
}
