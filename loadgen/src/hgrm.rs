//! HdrHistogram percentile-distribution files (`.hgrm`), the text format of Java's
//! `AbstractHistogram.outputPercentileDistribution`, which HdrHistogram's plotter and wrk2 use.
//!
//! Owns only formatting. Values are written in MICROSECONDS (the histograms hold nanoseconds,
//! scaled by 1000) with 3 decimals, 5 percentile ticks per half distance, as the Java default.

use hdrhistogram::Histogram;
use std::io::{self, Write};

/// Percentile ticks per half distance (Java's default).
const TICKS_PER_HALF: u32 = 5;
/// Histogram units (ns) per output unit (us).
const SCALE: f64 = 1000.0;

/// Sub-buckets per bucket for a histogram of `sigfig` significant digits, as HdrHistogram
/// computes it (the crate does not expose it).
fn sub_buckets(sigfig: u8) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(sigfig));
    largest.next_power_of_two()
}

/// Writes `h` as an `.hgrm` percentile distribution.
pub fn write<W: Write>(h: &Histogram<u64>, mut w: W) -> io::Result<()> {
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    w,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(w, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    writeln!(
        w,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    )?;
    writeln!(
        w,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::stats::{new_hist, record_ns};

    /// Parses the rows of an `.hgrm` file the way the HdrHistogram plotter does:
    /// whitespace-separated columns after a header line, `#[` footer lines.
    fn parse(text: &str) -> (Vec<(f64, f64, u64)>, Vec<String>) {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let mut rows = Vec::new();
        let mut footer = Vec::new();
        for l in lines {
            if l.starts_with("#[") {
                footer.push(l.to_owned());
                continue;
            }
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert!(cols.len() == 4 || cols.len() == 3, "{l}");
            let row: (f64, f64, u64) = (
                cols[0].parse().unwrap(),
                cols[1].parse().unwrap(),
                cols[2].parse().unwrap(),
            );
            if cols.len() == 4 {
                let inv: f64 = cols[3].parse().unwrap();
                let want = 1.0 / (1.0 - row.1);
                assert!((inv - want).abs() <= want * 0.01 + 0.01, "{l}");
            }
            rows.push(row);
        }
        (rows, footer)
    }

    #[test]
    fn output_parses_and_is_consistent() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            record_ns(&mut h, v * 1000); // 1 us .. 10 ms
        }
        let mut out = Vec::new();
        write(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (rows, footer) = parse(&text);
        assert!(rows.len() > 50);
        for w in rows.windows(2) {
            assert!(
                w[1].0 >= w[0].0 && w[1].1 >= w[0].1 && w[1].2 >= w[0].2,
                "{w:?}"
            );
        }
        let last = rows.last().unwrap();
        assert_eq!(last.1, 1.0);
        assert_eq!(last.2, 10_000);
        assert!((last.0 - 10_000.0).abs() < 10.0, "max in us: {}", last.0);
        let median = rows.iter().find(|r| r.1 >= 0.5).unwrap();
        assert!((median.0 - 5000.0).abs() < 10.0, "{median:?}");
        assert_eq!(footer.len(), 3);
        assert!(
            footer[1].contains("Total count    =        10000"),
            "{}",
            footer[1]
        );
        assert!(
            footer[2].ends_with("SubBuckets     =         2048]"),
            "{}",
            footer[2]
        );
    }

    #[test]
    fn empty_histogram_still_has_header_and_footer() {
        let mut out = Vec::new();
        write(&new_hist(), &mut out).unwrap();
        let (rows, footer) = parse(&String::from_utf8(out).unwrap());
        assert!(rows.is_empty());
        assert_eq!(footer.len(), 3);
    }
}
