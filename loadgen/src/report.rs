//! The end-of-run report: the same data as text (stdout), JSON (`--json`) and `.hgrm` files
//! (`--hgrm DIR`). JSON results are also the input of `loadgen plot`.
//!
//! Owns formatting and file output only; figures come from the merged [`RunResult`].

use crate::runner::RunResult;
use crate::stats::{curve, percentiles, OpKind, OpStats, Percentiles};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a loadgen JSON result: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("encode JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One op type's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpReport {
    pub op: String,
    pub count: u64,
    pub ok: u64,
    pub misses: u64,
    pub errors: BTreeMap<String, u64>,
    pub ops_per_sec: f64,
    pub latency: Percentiles,
    /// `(percentile, microseconds)` points for plotting.
    pub curve: Vec<(f64, f64)>,
    pub verify_mismatches: u64,
    pub mismatched_keys: Vec<String>,
    /// Reads answered with several concurrent versions (tern).
    #[serde(default)]
    pub sibling_reads: u64,
}

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub label: String,
    /// The command-line settings, as text, for reproduction.
    pub settings: BTreeMap<String, String>,
    pub measured_secs: f64,
    pub total_requests: u64,
    pub total_errors: u64,
    pub ops_per_sec: f64,
    pub ops: Vec<OpReport>,
    pub load: Option<OpReport>,
    pub load_secs: Option<f64>,
    pub connect_errors: BTreeMap<String, u64>,
    /// Generator CPU (user + system, all cores) per measured request, microseconds.
    pub cpu_us_per_request: f64,
    pub cpu_user_secs: f64,
    pub cpu_sys_secs: f64,
    /// CPU of `--server-pid` over the measured phase, per measured request, microseconds.
    #[serde(default)]
    pub server_cpu_us_per_request: Option<f64>,
    /// Open loop: how late requests left after their intended start (generator-side lag,
    /// included in the latencies above).
    #[serde(default)]
    pub send_lag: Option<Percentiles>,
}

fn op_report(name: &str, s: &OpStats, secs: f64) -> OpReport {
    let count = s.hist.len();
    OpReport {
        op: name.to_owned(),
        count,
        ok: s.ok,
        misses: s.misses,
        errors: s.errors.clone(),
        // Throughput counts answered requests only; failures are in `errors`.
        ops_per_sec: if secs > 0.0 { s.ok as f64 / secs } else { 0.0 },
        latency: percentiles(&s.hist),
        curve: curve(&s.hist),
        verify_mismatches: s.mismatches,
        mismatched_keys: s.mismatch_keys.clone(),
        sibling_reads: s.sibling_reads,
    }
}

impl RunReport {
    pub fn build(label: String, settings: BTreeMap<String, String>, r: &RunResult) -> RunReport {
        let secs = r.measured.as_secs_f64();
        let ops: Vec<OpReport> = OpKind::ALL
            .iter()
            .filter(|k| !r.ops[k.index()].hist.is_empty())
            .map(|k| op_report(k.name(), &r.ops[k.index()], secs))
            .collect();
        let total: u64 = ops.iter().map(|o| o.count).sum();
        let ok: u64 = ops.iter().map(|o| o.ok).sum();
        let errors: u64 = r.ops.iter().map(OpStats::error_count).sum();
        let cpu = (r.cpu_user + r.cpu_sys).as_secs_f64();
        RunReport {
            label,
            settings,
            measured_secs: secs,
            total_requests: total,
            total_errors: errors,
            ops_per_sec: if secs > 0.0 { ok as f64 / secs } else { 0.0 },
            ops,
            load: r
                .load
                .as_ref()
                .map(|(s, d)| op_report("load-put", s, d.as_secs_f64())),
            load_secs: r.load.as_ref().map(|(_, d)| d.as_secs_f64()),
            connect_errors: r.connect_errors.clone(),
            cpu_us_per_request: if total > 0 {
                cpu * 1e6 / total as f64
            } else {
                0.0
            },
            cpu_user_secs: r.cpu_user.as_secs_f64(),
            cpu_sys_secs: r.cpu_sys.as_secs_f64(),
            server_cpu_us_per_request: r
                .server_cpu
                .filter(|_| total > 0)
                .map(|c| c.as_secs_f64() * 1e6 / total as f64),
            send_lag: (!r.send_lag.is_empty()).then(|| percentiles(&r.send_lag)),
        }
    }

    /// Human-readable summary.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "== {} ==", self.label);
        if let (Some(l), Some(secs)) = (&self.load, self.load_secs) {
            let _ = writeln!(
                o,
                "load: {} puts in {:.2} s ({:.0} ops/s), {} errors",
                l.count,
                secs,
                l.count as f64 / secs.max(1e-9),
                l.errors.values().sum::<u64>()
            );
        }
        let _ = writeln!(
            o,
            "run: {} requests in {:.2} s = {:.0} ops/s, {} errors",
            self.total_requests, self.measured_secs, self.ops_per_sec, self.total_errors
        );
        let _ = writeln!(
            o,
            "{:<7}{:>10}{:>11}{:>8}{:>8}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}   (latency in us)",
            "op",
            "count",
            "ops/s",
            "errors",
            "misses",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "p99.99",
            "max"
        );
        for r in self.ops.iter().chain(self.load.iter()) {
            let l = &r.latency;
            let _ = writeln!(
                o,
                "{:<7}{:>10}{:>11.0}{:>8}{:>8}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}",
                r.op,
                r.count,
                r.ops_per_sec,
                r.errors.values().sum::<u64>(),
                r.misses,
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p999_us,
                l.p9999_us,
                l.max_us
            );
        }
        for r in self.ops.iter().chain(self.load.iter()) {
            for (k, v) in &r.errors {
                let _ = writeln!(o, "  {} error x{v}: {k}", r.op);
            }
            if r.sibling_reads > 0 {
                let _ = writeln!(o, "  {} reads with siblings: {}", r.op, r.sibling_reads);
            }
            if r.verify_mismatches > 0 {
                let _ = writeln!(
                    o,
                    "  {} VERIFY MISMATCHES: {} (keys: {})",
                    r.op,
                    r.verify_mismatches,
                    r.mismatched_keys.join(", ")
                );
            }
        }
        for (k, v) in &self.connect_errors {
            let _ = writeln!(o, "  connections that never came up x{v}: {k}");
        }
        let _ = writeln!(
            o,
            "loadgen CPU: {:.2} us/request (user {:.2} s + sys {:.2} s)",
            self.cpu_us_per_request, self.cpu_user_secs, self.cpu_sys_secs
        );
        if let Some(l) = &self.send_lag {
            let _ = writeln!(
                o,
                "open-loop send lag (us, part of the latencies): p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                l.p50_us, l.p99_us, l.p999_us, l.max_us
            );
        }
        if let Some(c) = self.server_cpu_us_per_request {
            let _ = writeln!(o, "server CPU: {c:.2} us/request");
        }
        o
    }

    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).map_err(|source| ReportError::Write {
            path: path.to_owned(),
            source,
        })
    }

    pub fn read_json(path: &Path) -> Result<RunReport, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

/// Writes `<dir>/<op>.hgrm` for every op type with data (and `load-put.hgrm`).
pub fn write_hgrm(dir: &Path, r: &RunResult) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    let mut all: Vec<(&str, &OpStats)> = OpKind::ALL
        .iter()
        .map(|k| (k.name(), &r.ops[k.index()]))
        .collect();
    if let Some((l, _)) = &r.load {
        all.push(("load-put", l));
    }
    for (name, s) in all {
        if s.hist.is_empty() {
            continue;
        }
        let path = dir.join(format!("{name}.hgrm"));
        let mut buf = Vec::new();
        crate::hgrm::write(&s.hist, &mut buf)
            .and_then(|()| std::fs::write(&path, buf))
            .map_err(|source| ReportError::Write {
                path: path.clone(),
                source,
            })?;
        written.push(path);
    }
    Ok(written)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// A Markdown table with one row per op type of every report, in the given order.
pub fn markdown_table(reports: &[RunReport]) -> String {
    let mut o = String::new();
    o.push_str(
        "| run | op | mode | ops/s | p50 us | p90 us | p99 us | p99.9 us | max us | errors | server CPU us/req | loadgen CPU us/req |\n",
    );
    o.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in reports {
        let mode = r.settings.get("mode").map_or("-", String::as_str);
        for op in &r.ops {
            let l = &op.latency;
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} |",
                r.label.replace('|', "/"),
                op.op,
                mode,
                op.ops_per_sec,
                l.p50_us,
                l.p90_us,
                l.p99_us,
                l.p999_us,
                l.max_us,
                op.errors.values().sum::<u64>(),
                fmt_opt(r.server_cpu_us_per_request),
                r.cpu_us_per_request
            );
        }
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::runner::RunResult;
    use crate::stats::record_ns;
    use std::time::Duration;

    fn result() -> RunResult {
        let mut ops: [OpStats; 3] = Default::default();
        for v in 1..=1000u64 {
            record_ns(&mut ops[0].hist, v * 1000);
            ops[0].ok += 1;
        }
        ops[0].add_error("timeout");
        RunResult {
            ops,
            load: None,
            measured: Duration::from_secs(2),
            cpu_user: Duration::from_millis(3),
            cpu_sys: Duration::from_millis(1),
            connect_errors: BTreeMap::new(),
            server_cpu: Some(Duration::from_millis(10)),
            send_lag: crate::stats::new_hist(),
        }
    }

    #[test]
    fn json_roundtrip_and_table() {
        let rep = RunReport::build("redis|x".into(), BTreeMap::new(), &result());
        assert_eq!(rep.total_requests, 1000);
        // 1000 answered + 1 failed request over 2 s: throughput counts the answered ones.
        assert!((rep.ops_per_sec - 500.0).abs() < 1e-9);
        assert!((rep.cpu_us_per_request - 4.0).abs() < 1e-9);
        assert!((rep.server_cpu_us_per_request.unwrap() - 10.0).abs() < 1e-9);
        let dir = std::env::temp_dir().join(format!("loadgen-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.json");
        rep.write_json(&p).unwrap();
        let back = RunReport::read_json(&p).unwrap();
        assert_eq!(back.ops[0].latency, rep.ops[0].latency);
        assert_eq!(back.ops[0].errors["timeout"], 1);
        let t = markdown_table(&[back]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("| redis/x | get |"), "{}", lines[2]);
        assert!(lines[2].contains("| 10.0 | 4.0 |"), "{}", lines[2]);
        assert!(rep.text().contains("get error x1: timeout"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unreadable_json_is_a_clear_error() {
        let e = RunReport::read_json(std::path::Path::new("/nonexistent/x.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.json"));
    }
}
