//! Latency-by-percentile plot as a hand-written SVG: x is the log-scale "percentile"
//! axis `1/(1-p)` (0%, 90%, 99%, ... 99.999%), y is latency, one line per series (op type and
//! run), with a legend. Owns only drawing; series come from JSON reports or a live run.

use crate::report::RunReport;
use std::fmt::Write as _;

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// `(percentile, microseconds)`, percentile in `[0, 100)`.
    pub points: Vec<(f64, f64)>,
}

/// One series per op type of every report, labelled "<run label> <op>".
pub fn series_of(reports: &[RunReport]) -> Vec<Series> {
    let mut out = Vec::new();
    for r in reports {
        for op in &r.ops {
            out.push(Series {
                label: format!("{} {}", r.label, op.op),
                points: op.curve.clone(),
            });
        }
    }
    out
}

const W: f64 = 960.0;
const H: f64 = 560.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Decades on the x axis: 0% .. 99.999%.
const DECADES: f64 = 5.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" axis top (1, 2 or 5 times a power of ten) at or above `v`.
pub fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// x position of a percentile (log scale of 1/(1-p)).
pub fn x_of(percentile: f64) -> f64 {
    let q = (percentile / 100.0).clamp(0.0, 1.0 - 10f64.powf(-DECADES));
    let d = (1.0 / (1.0 - q)).log10().clamp(0.0, DECADES);
    LEFT + d / DECADES * (W - LEFT - RIGHT)
}

/// Latency (us) to the SVG y coordinate.
type YMap = Box<dyn Fn(f64) -> f64>;

/// How the latency axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum YScale {
    /// Log when the curves span more than two orders of magnitude, else linear.
    Auto,
    Linear,
    Log,
}

/// "10 us", "1 ms", "100 ms", "1 s" for decade ticks.
pub fn fmt_duration_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", fmt_num(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", fmt_num(us / 1e3))
    } else {
        format!("{} us", fmt_num(us))
    }
}

/// Renders the SVG document.
pub fn render(title: &str, series: &[Series], scale: YScale) -> String {
    let ymax_us = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(p, _)| *p < 100.0)
        .map(|(_, v)| *v)
        .fold(0.0, f64::max);
    let ymin_us = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(p, v)| *p < 100.0 && *v > 0.0)
        .map(|(_, v)| *v)
        .fold(f64::INFINITY, f64::min);
    let log = match scale {
        YScale::Log => ymin_us.is_finite(),
        YScale::Linear => false,
        // Runs that differ by orders of magnitude flatten each other on a linear axis.
        YScale::Auto => ymin_us.is_finite() && ymax_us / ymin_us > 100.0,
    };
    let (y_of, ticks, axis): (YMap, Vec<(f64, String)>, String) = if log {
        let lo = ymin_us.log10().floor();
        let hi = ymax_us.log10().ceil().max(lo + 1.0);
        let y_of = move |us: f64| {
            let d = (us.max(10f64.powf(lo)).log10() - lo) / (hi - lo);
            H - BOTTOM - d * (H - TOP - BOTTOM)
        };
        let ticks = (lo as i32..=hi as i32)
            .map(|e| {
                let v = 10f64.powi(e);
                (v, fmt_duration_us(v))
            })
            .collect();
        (Box::new(y_of), ticks, "latency (log scale)".to_owned())
    } else {
        let (unit, div) = if ymax_us >= 10_000.0 {
            ("ms", 1000.0)
        } else {
            ("us", 1.0)
        };
        let top = nice_ceil(ymax_us / div * 1.05);
        let y_of = move |us: f64| H - BOTTOM - (us / div / top) * (H - TOP - BOTTOM);
        let ticks = (0..=5)
            .map(|i| {
                let v = top * f64::from(i) / 5.0;
                (v * div, fmt_num(v))
            })
            .collect();
        (Box::new(y_of), ticks, format!("latency ({unit})"))
    };
    let total_h = H + 20.0 + 18.0 * series.len().div_ceil(2) as f64;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" viewBox="0 0 {W} {total_h}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="17">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Horizontal grid and y labels.
    for (v, label) in &ticks {
        let y = y_of(*v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            W - RIGHT,
            LEFT - 8.0,
            y + 4.0,
        );
    }
    // Vertical grid and percentile labels.
    for (d, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let p = 100.0 * (1.0 - 10f64.powi(-(d as i32)));
        let x = x_of(p);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0
        );
    }
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        (W + LEFT - RIGHT) / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        o,
        r#"<text x="20" y="{}" text-anchor="middle" transform="rotate(-90 20 {})">{axis}</text>"#,
        (H - BOTTOM + TOP) / 2.0,
        (H - BOTTOM + TOP) / 2.0
    );
    // Legend below the plot, two columns, so it never hides a curve.
    let mut legend = String::new();
    let col_w = (W - LEFT - RIGHT) / 2.0;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|(p, _)| *p < 100.0)
            .map(|(p, v)| format!("{:.1},{:.1}", x_of(*p), y_of(*v)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let lx = LEFT + col_w * (i % 2) as f64;
        let ly = H + 10.0 + 18.0 * (i / 2) as f64;
        let _ = writeln!(
            legend,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 25.0,
            lx + 31.0,
            ly + 4.0,
            esc(&s.label)
        );
    }
    o.push_str(&legend);
    o.push_str("</svg>\n");
    o
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_tops() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(1.0), 1.0);
        assert_eq!(nice_ceil(1.2), 2.0);
        assert_eq!(nice_ceil(430.0), 500.0);
        assert_eq!(nice_ceil(2235.0), 2500.0);
        assert_eq!(nice_ceil(501.0), 1000.0);
    }

    #[test]
    fn percentiles_map_to_decades() {
        let span = W - LEFT - RIGHT;
        assert!((x_of(0.0) - LEFT).abs() < 1e-9);
        assert!((x_of(90.0) - (LEFT + span / 5.0)).abs() < 1e-6);
        assert!((x_of(99.9) - (LEFT + 3.0 * span / 5.0)).abs() < 1e-6);
        assert!((x_of(99.999) - (LEFT + span)).abs() < 1e-6);
        assert!(x_of(100.0) <= LEFT + span);
    }

    #[test]
    fn svg_has_one_line_and_legend_entry_per_series() {
        let s = vec![
            Series {
                label: "redis <get>".into(),
                points: vec![(0.0, 10.0), (90.0, 20.0), (99.0, 50.0), (100.0, 900.0)],
            },
            Series {
                label: "tern put".into(),
                points: vec![(0.0, 15.0), (99.9, 80.0)],
            },
        ];
        let svg = render("t", &s, YScale::Auto);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("redis &lt;get&gt;"));
        assert!(svg.contains("99.999%"));
        // The 100% (max) point is left out of the curve, so 900 us does not set the scale.
        assert!(svg.contains("latency (us)"));
        assert!(svg.contains(">100<"), "y axis top should be 100 us");
    }

    #[test]
    fn curves_orders_of_magnitude_apart_get_a_log_axis() {
        let s = vec![
            Series {
                label: "fast".into(),
                points: vec![(0.0, 40.0), (99.0, 120.0)],
            },
            Series {
                label: "slow".into(),
                points: vec![(0.0, 400_000.0), (99.0, 2_100_000.0)],
            },
        ];
        let svg = render("t", &s, YScale::Auto);
        assert!(svg.contains("latency (log scale)"));
        for label in ["10 us", "100 us", "1 ms", "1 s", "10 s"] {
            assert!(svg.contains(&format!(">{label}<")), "missing tick {label}");
        }
        let lin = render("t", &s, YScale::Linear);
        assert!(lin.contains("latency (ms)"));
        assert_eq!(fmt_duration_us(2500.0), "2.5 ms");
    }
}
