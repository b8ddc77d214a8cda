//! Latency and outcome bookkeeping: per-op-type HdrHistograms (nanoseconds, 3 significant
//! digits), error counts by kind, read misses and verification mismatches.
//!
//! Each core records into its own [`OpStats`] without any sharing; cores are merged once at the
//! end (and per-second interval histograms are merged by the progress printer). Invariants: a
//! histogram holds every request that was SENT and then completed, failed or timed out in the
//! measured window (errors included, so failures cannot shorten the tail); values are clamped
//! into `[1 ns, HIST_MAX_NS]` so recording never fails. Owns no I/O and no clocks.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// Highest trackable latency: one hour. Anything slower is clamped (and still counted).
pub const HIST_MAX_NS: u64 = 3_600_000_000_000;
/// Keys of mismatched reads kept for the report.
pub const MAX_MISMATCH_KEYS: usize = 10;

/// The operations the tool issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Get,
    Put,
    Delete,
}

impl OpKind {
    pub const ALL: [OpKind; 3] = [OpKind::Get, OpKind::Put, OpKind::Delete];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Put => "put",
            OpKind::Delete => "delete",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A fresh latency histogram in nanoseconds.
pub fn new_hist() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5),
    // so creation cannot fail; fall back to an auto-resizing histogram rather than panic anyway.
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).unwrap_or_else(|_| {
        let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable!("sigfig 3 is valid"));
        h.auto(true);
        h
    })
}

/// Records one latency, clamped to the histogram's range.
#[inline]
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.clamp(1, HIST_MAX_NS));
}

/// Everything recorded for one op type.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub hist: Histogram<u64>,
    /// Requests answered without error (reads: hits and misses).
    pub ok: u64,
    /// Reads answered "not found".
    pub misses: u64,
    /// Failed requests by kind ("timeout", "io", "server: ERR ...").
    pub errors: BTreeMap<String, u64>,
    /// Reads whose value differed from the last acknowledged write (`--verify`).
    pub mismatches: u64,
    pub mismatch_keys: Vec<String>,
    /// Reads answered with more than one concurrent version.
    pub sibling_reads: u64,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            hist: new_hist(),
            ok: 0,
            misses: 0,
            errors: BTreeMap::new(),
            mismatches: 0,
            sibling_reads: 0,
            mismatch_keys: Vec::new(),
        }
    }
}

impl OpStats {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Counts one error of `kind`; allocates only the first time a kind is seen.
    pub fn add_error(&mut self, kind: &str) {
        if let Some(c) = self.errors.get_mut(kind) {
            *c += 1;
        } else {
            self.errors.insert(kind.to_owned(), 1);
        }
    }

    pub fn add_mismatch(&mut self, key: &str) {
        self.mismatches += 1;
        if self.mismatch_keys.len() < MAX_MISMATCH_KEYS {
            self.mismatch_keys.push(key.to_owned());
        }
    }

    pub fn merge(&mut self, other: &OpStats) {
        // Both histograms share the same bounds, so `add` cannot fail; a failure would mean a
        // bug in `new_hist`, and dropping the other core's data silently would hide it.
        if let Err(e) = self.hist.add(&other.hist) {
            self.add_error(&format!("histogram merge failed: {e:?}"));
        }
        self.ok += other.ok;
        self.misses += other.misses;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
        self.mismatches += other.mismatches;
        self.sibling_reads += other.sibling_reads;
        for k in &other.mismatch_keys {
            if self.mismatch_keys.len() < MAX_MISMATCH_KEYS {
                self.mismatch_keys.push(k.clone());
            }
        }
    }
}

/// The headline percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Computes the headline percentiles. Each is the highest value equivalent (within 3
/// significant digits) to the recorded value at that quantile, as HdrHistogram reports them.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let q = |x: f64| us(h.value_at_quantile(x));
    Percentiles {
        count: h.len(),
        mean_us: h.mean() / 1000.0,
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        p9999_us: q(0.9999),
        max_us: us(h.max()),
    }
}

/// Latency by percentile for plotting: points at `1/(1-p) = 10^(k/10)` for `k = 0..=50`
/// (0% .. 99.999%) plus the maximum at 100%. Each point is `(percentile, microseconds)`.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(52);
    if h.is_empty() {
        return out;
    }
    for k in 0..=50 {
        let x = 10f64.powf(f64::from(k) / 10.0);
        let q = 1.0 - 1.0 / x;
        out.push((q * 100.0, us(h.value_at_quantile(q))));
    }
    out.push((100.0, us(h.max())));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= b.abs() * rel
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_hist();
        // 1..=10_000 us, one each.
        for v in 1..=10_000u64 {
            record_ns(&mut h, v * 1000);
        }
        let p = percentiles(&h);
        assert_eq!(p.count, 10_000);
        assert!(close(p.p50_us, 5000.0, 0.002), "{p:?}");
        assert!(close(p.p90_us, 9000.0, 0.002), "{p:?}");
        assert!(close(p.p99_us, 9900.0, 0.002), "{p:?}");
        assert!(close(p.p999_us, 9990.0, 0.002), "{p:?}");
        assert!(close(p.max_us, 10_000.0, 0.002), "{p:?}");
        assert!(close(p.mean_us, 5000.5, 0.002), "{p:?}");
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut h = new_hist();
        record_ns(&mut h, 0);
        record_ns(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= HIST_MAX_NS);
    }

    #[test]
    fn merge_adds_counts_and_errors() {
        let mut a = OpStats::default();
        let mut b = OpStats::default();
        record_ns(&mut a.hist, 1000);
        record_ns(&mut b.hist, 3000);
        a.ok = 1;
        b.ok = 1;
        a.add_error("timeout");
        b.add_error("timeout");
        b.add_error("io");
        for i in 0..MAX_MISMATCH_KEYS + 3 {
            b.add_mismatch(&format!("k{i}"));
        }
        a.merge(&b);
        assert_eq!(a.hist.len(), 2);
        assert_eq!(a.ok, 2);
        assert_eq!(a.errors["timeout"], 2);
        assert_eq!(a.errors["io"], 1);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.mismatches, MAX_MISMATCH_KEYS as u64 + 3);
        assert_eq!(a.mismatch_keys.len(), MAX_MISMATCH_KEYS);
    }

    #[test]
    fn curve_is_monotone_and_ends_at_max() {
        let mut h = new_hist();
        for v in 1..=100_000u64 {
            record_ns(&mut h, v * 10);
        }
        let c = curve(&h);
        assert_eq!(c.len(), 52);
        assert_eq!(c[0].0, 0.0);
        assert!(close(c[50].0, 99.999, 1e-9));
        for w in c.windows(2) {
            assert!(w[1].0 > w[0].0 && w[1].1 >= w[0].1, "{w:?}");
        }
        assert!(close(c[51].1, 1000.0, 0.002));
    }
}
