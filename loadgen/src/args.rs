//! Command-line arguments, their validation into a [`RunConfig`], and the two commands (run a
//! load, merge JSON results into a plot). Holds no load logic.

use crate::conn::Mix;
use crate::dist::DistKind;
use crate::driver::{ConnParams, Protocol};
use crate::plot;
use crate::report::{self, RunReport};
use crate::runner::{self, RunConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tern_client::Topology;
use thiserror::Error;

/// Bundled load generator for tern and Redis.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Merge JSON results (from --json) into one latency-by-percentile SVG.
    Plot(PlotArgs),
    /// Merge JSON results into one Markdown table (one row per op type and run).
    Table(TableArgs),
}

#[derive(Debug, Args)]
pub struct TableArgs {
    /// Output Markdown file (stdout if absent).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// JSON result files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Output SVG file.
    #[arg(long)]
    pub out: PathBuf,
    /// Plot title.
    #[arg(long, default_value = "latency by percentile")]
    pub title: String,
    /// Latency axis: auto (log when runs differ by orders of magnitude), linear or log.
    #[arg(long, value_enum, default_value = "auto")]
    pub y_scale: plot::YScale,
    /// JSON result files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// YCSB core workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// 50% reads, 50% updates.
    A,
    /// 95% reads, 5% updates.
    B,
    /// Reads only.
    C,
    /// Updates only.
    WriteOnly,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Wire protocol of the target.
    #[arg(long, value_enum, default_value = "tern")]
    pub protocol: Protocol,
    /// Server address (default 127.0.0.1:7700 for tern, 127.0.0.1:6379 for resp); a comma list
    /// spreads the connections over several entry points (connection i uses entry i % count).
    #[arg(long)]
    pub addr: Option<String>,
    /// tern cluster: the servers' --nodes list (id@ip:port/shards[#zone],...). Connections then
    /// send each request to its key's owning shard (token-aware) unless --no-token-aware, which
    /// uses the nodes' client ports as entry points instead. Replaces --addr.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Option<Vec<String>>,
    /// The servers' --replication (with --nodes) [default: min(3, nodes)].
    #[arg(long)]
    pub replication: Option<usize>,
    /// The servers' --vnodes (with --nodes) [default: 256].
    #[arg(long)]
    pub vnodes: Option<u32>,
    /// With --nodes: send every request to a node's client port, not to its key's shard.
    #[arg(long)]
    pub no_token_aware: bool,
    /// CPUs to run on, one pinned executor each: "0" or "0,1".
    #[arg(long, default_value = "0", value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Connections in total, spread over the cores.
    #[arg(long, default_value_t = 50)]
    pub connections: u64,
    /// Requests in flight per connection (1 = no pipelining).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Open loop at this many ops/s in total (latency from each request's intended start).
    /// Without it: closed loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// YCSB workload (sets the read ratio).
    #[arg(long, value_enum)]
    pub workload: Option<Workload>,
    /// Fraction of reads in [0, 1] (overrides --workload).
    #[arg(long)]
    pub read_ratio: Option<f64>,
    /// Fraction of deletes in [0, 1 - read ratio]; the rest are puts.
    #[arg(long, default_value_t = 0.0)]
    pub delete_ratio: f64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Key distribution (zipfian: YCSB scrambled zipfian, theta 0.99).
    #[arg(long, value_enum, default_value = "uniform")]
    pub dist: DistKind,
    /// Value size in bytes: "100" or a range "100..1000" (uniform).
    #[arg(long, default_value = "100")]
    pub value_size: String,
    /// Read quorum (tern only): a number, one, quorum or all.
    #[arg(long)]
    pub r: Option<String>,
    /// Write quorum (tern only): a number, one, quorum or all.
    #[arg(long)]
    pub w: Option<String>,
    /// Strict quorum, no stand-in replicas (tern only).
    #[arg(long)]
    pub strict: bool,
    /// First write every key once (not measured in the run's figures).
    #[arg(long)]
    pub load: bool,
    /// Added to every key index: keys are key:<offset + i> (disjoint key sets per run).
    #[arg(long, default_value_t = 0)]
    pub key_offset: u64,
    /// Only run the load phase (implies --load).
    #[arg(long)]
    pub load_only: bool,
    /// Pipelining depth of the load phase.
    #[arg(long, default_value_t = 16)]
    pub load_pipeline: usize,
    /// Measured requests in total (the run also stops at --duration).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Measured seconds (default 10 without --requests; 600 at most with --requests alone).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// A request with no progress on its connection for this long fails as "timeout".
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Check every read against the last value this run wrote to the key.
    #[arg(long)]
    pub verify: bool,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write one HdrHistogram .hgrm percentile file per op type into this directory.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Draw latency by percentile into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Name of this run in reports and plots (default "<protocol>@<addr>").
    #[arg(long)]
    pub label: Option<String>,
    /// Seed of the key/op generators.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sample this server process's CPU time (/proc/PID/stat) over the measured phase.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Microseconds an idle executor spins before it sleeps: lower open-loop send lag (late
    /// timer wake-ups) for more generator CPU. 0 = never spin.
    #[arg(long, default_value_t = 0)]
    pub spin_us: u64,
    /// No per-second progress lines.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Error)]
pub enum ArgError {
    #[error("--value-size {0:?}: expected N or MIN..MAX bytes")]
    ValueSize(String),
    #[error("--addr {0:?}: {1}")]
    Addr(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Run(#[from] runner::RunError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
}

/// Longest a run bounded only by --requests may take.
const MAX_RUN: Duration = Duration::from_secs(600);
/// Keys are formatted with 12 digits.
const MAX_KEYS: u64 = 1_000_000_000_000;
const MAX_VALUE: usize = 16 * 1024 * 1024;

/// Parses "100" or "100..1000".
pub fn parse_value_size(s: &str) -> Result<(usize, usize), ArgError> {
    let bad = || ArgError::ValueSize(s.to_owned());
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let a: usize = a.parse().map_err(|_| bad())?;
    let b: usize = b.parse().map_err(|_| bad())?;
    if a > b || b > MAX_VALUE {
        return Err(bad());
    }
    Ok((a, b))
}

fn invalid(msg: impl Into<String>) -> ArgError {
    ArgError::Invalid(msg.into())
}

fn resolve(addr: &str) -> Result<SocketAddr, ArgError> {
    let a = addr
        .to_socket_addrs()
        .map_err(|e| ArgError::Addr(addr.to_owned(), e.to_string()))?
        .next()
        .ok_or_else(|| ArgError::Addr(addr.to_owned(), "resolves to nothing".into()))?;
    Ok(a)
}

fn quorum(name: &str, v: Option<&str>) -> Result<tern_client::Quorum, ArgError> {
    match v {
        None => Ok(tern_client::Quorum::Default),
        Some(s) => s.parse().map_err(|e| invalid(format!("{name}: {e}"))),
    }
}

fn secs(name: &str, v: f64) -> Result<Duration, ArgError> {
    Duration::try_from_secs_f64(v).map_err(|_| invalid(format!("{name} {v}: not a valid duration")))
}

impl RunArgs {
    /// Validates the arguments into a run configuration.
    pub fn config(&self) -> Result<RunConfig, ArgError> {
        let (addrs, topology) = self.targets()?;
        let addr = addrs[0];
        let (value_min, value_max) = parse_value_size(&self.value_size)?;
        let read_ratio = match (self.read_ratio, self.workload) {
            (Some(r), _) => r,
            (None, Some(Workload::A)) => 0.5,
            (None, Some(Workload::B)) => 0.95,
            (None, Some(Workload::C)) => 1.0,
            (None, Some(Workload::WriteOnly)) => 0.0,
            (None, None) => 0.5,
        };
        if !(0.0..=1.0).contains(&read_ratio) {
            return Err(invalid("--read-ratio must be within [0, 1]"));
        }
        if !(0.0..=1.0 - read_ratio).contains(&self.delete_ratio) {
            return Err(invalid("--delete-ratio must be within [0, 1 - read ratio]"));
        }
        if self.cores.is_empty() {
            return Err(invalid("--cores needs at least one CPU"));
        }
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(c) = self.cores.iter().find(|&&c| c >= ncpu) {
            return Err(invalid(format!(
                "--cores: CPU {c} does not exist (0..{ncpu})"
            )));
        }
        if self.connections == 0 || self.connections > 100_000 {
            return Err(invalid("--connections must be within 1..=100000"));
        }
        if self.pipeline == 0
            || self.pipeline > 4096
            || self.load_pipeline == 0
            || self.load_pipeline > 4096
        {
            return Err(invalid(
                "--pipeline and --load-pipeline must be within 1..=4096",
            ));
        }
        if self.keys == 0 || self.keys.saturating_add(self.key_offset) >= MAX_KEYS {
            return Err(invalid(format!(
                "--keys + --key-offset must stay below {MAX_KEYS}"
            )));
        }
        if let Some(r) = self.rate {
            if !(r > 0.0 && r.is_finite()) {
                return Err(invalid("--rate must be a positive number of ops/s"));
            }
        }
        if self.verify {
            if self.keys < self.connections {
                return Err(invalid(
                    "--verify needs --keys >= --connections (each connection owns its keys)",
                ));
            }
            if value_min < crate::conn::STAMP_LEN {
                return Err(invalid("--verify needs values of at least 8 bytes"));
            }
        }
        if self.protocol == Protocol::Resp && (self.r.is_some() || self.w.is_some() || self.strict)
        {
            return Err(invalid(
                "--r, --w and --strict apply to --protocol tern only",
            ));
        }
        let duration = match (self.duration, self.requests) {
            (Some(d), _) => secs("--duration", d)?,
            (None, Some(_)) => MAX_RUN,
            (None, None) => Duration::from_secs(10),
        };
        if duration > MAX_RUN * 6 {
            return Err(invalid("--duration is limited to one hour"));
        }
        if self.requests == Some(0) {
            return Err(invalid("--requests must be at least 1"));
        }
        if self.timeout_ms == 0 {
            return Err(invalid("--timeout-ms must be positive"));
        }
        Ok(RunConfig {
            protocol: self.protocol,
            params: ConnParams {
                addr,
                depth: self.pipeline,
                timeout: Duration::from_millis(self.timeout_ms),
                connect_timeout: Duration::from_millis(self.timeout_ms.min(10_000)),
            },
            cores: self.cores.clone(),
            connections: self.connections,
            rate: self.rate,
            mix: Mix {
                read_ratio,
                delete_ratio: self.delete_ratio,
            },
            keys: self.keys,
            dist: self.dist,
            value_min,
            value_max,
            load: self.load || self.load_only,
            load_only: self.load_only,
            server_pid: self.server_pid,
            key_offset: self.key_offset,
            spin: (self.spin_us > 0).then(|| Duration::from_micros(self.spin_us.min(10_000))),
            tern_opts: tern_client::OpOptions {
                r: quorum("--r", self.r.as_deref())?,
                w: quorum("--w", self.w.as_deref())?,
                strict: self.strict,
                timeout_ms: 0,
            },
            addrs,
            topology,
            load_depth: self.load_pipeline,
            requests: self.requests,
            duration,
            warmup: secs("--warmup", self.warmup)?,
            verify: self.verify,
            seed: self.seed,
            quiet: self.quiet,
        })
    }

    /// The entry points (at least one) and, when token-aware, the cluster topology.
    fn targets(&self) -> Result<(Vec<SocketAddr>, Option<Topology>), ArgError> {
        if let Some(nodes) = &self.nodes {
            if self.protocol != Protocol::Tern {
                return Err(invalid("--nodes applies to --protocol tern only"));
            }
            if self.addr.is_some() {
                return Err(invalid("give either --nodes or --addr, not both"));
            }
            let topo = Topology::from_node_list(nodes, self.replication, self.vnodes)
                .map_err(|e| invalid(format!("--nodes: {e}")))?;
            let addrs = topo.nodes().iter().map(|n| n.client_addr()).collect();
            return Ok((addrs, (!self.no_token_aware).then_some(topo)));
        }
        if self.replication.is_some() || self.vnodes.is_some() || self.no_token_aware {
            return Err(invalid(
                "--replication, --vnodes and --no-token-aware need --nodes",
            ));
        }
        let addr = self.addr.clone().unwrap_or_else(|| match self.protocol {
            Protocol::Tern => "127.0.0.1:7700".into(),
            Protocol::Resp => "127.0.0.1:6379".into(),
        });
        let addrs = addr
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(|a| resolve(a.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(ArgError::Addr(addr, "no address given".into()));
        }
        Ok((addrs, None))
    }

    fn settings(&self, cfg: &RunConfig) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_owned(), v);
        };
        put("protocol", format!("{:?}", cfg.protocol).to_lowercase());
        put(
            "addr",
            cfg.addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        put("token_aware", cfg.topology.is_some().to_string());
        put("cores", format!("{:?}", cfg.cores));
        put("connections", cfg.connections.to_string());
        put("pipeline", cfg.params.depth.to_string());
        put(
            "mode",
            cfg.rate
                .map_or("closed".into(), |r| format!("open {r} ops/s")),
        );
        put("read_ratio", cfg.mix.read_ratio.to_string());
        put("delete_ratio", cfg.mix.delete_ratio.to_string());
        put("keys", cfg.keys.to_string());
        put("key_offset", cfg.key_offset.to_string());
        put("dist", format!("{:?}", cfg.dist).to_lowercase());
        put("value_size", self.value_size.clone());
        put(
            "requests",
            cfg.requests.map_or("-".into(), |r| r.to_string()),
        );
        put("duration_s", cfg.duration.as_secs_f64().to_string());
        put("warmup_s", cfg.warmup.as_secs_f64().to_string());
        put("load", cfg.load.to_string());
        put("verify", cfg.verify.to_string());
        put("spin_us", self.spin_us.to_string());
        m
    }
}

/// `loadgen [run options]`.
pub fn run_load(a: &RunArgs) -> Result<ExitCode, ArgError> {
    let cfg = a.config()?;
    let label = a.label.clone().unwrap_or_else(|| {
        format!(
            "{}@{}",
            format!("{:?}", cfg.protocol).to_lowercase(),
            cfg.params.addr
        )
    });
    let result = runner::run(&cfg)?;
    let rep = RunReport::build(label, a.settings(&cfg), &result);
    // The report is this tool's output: stdout by design.
    #[allow(clippy::print_stdout)]
    {
        print!("{}", rep.text());
    }
    if let Some(p) = &a.json {
        rep.write_json(p)?;
    }
    if let Some(d) = &a.hgrm {
        report::write_hgrm(d, &result)?;
    }
    if let Some(p) = &a.plot {
        let series = plot::series_of(std::slice::from_ref(&rep));
        let svg = plot::render(&rep.label, &series, plot::YScale::Auto);
        std::fs::write(p, svg).map_err(|source| report::ReportError::Write {
            path: p.clone(),
            source,
        })?;
    }
    let mismatches: u64 = rep.ops.iter().map(|o| o.verify_mismatches).sum();
    let nothing_done = rep.total_requests == 0 && !cfg.load_only;
    if nothing_done || mismatches > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `loadgen table [--out FILE.md] a.json b.json ...`
pub fn run_table(t: &TableArgs) -> Result<ExitCode, ArgError> {
    let reports = t
        .inputs
        .iter()
        .map(|f| RunReport::read_json(f))
        .collect::<Result<Vec<_>, _>>()?;
    let md = report::markdown_table(&reports);
    match &t.out {
        Some(p) => std::fs::write(p, md).map_err(|source| report::ReportError::Write {
            path: p.clone(),
            source,
        })?,
        #[allow(clippy::print_stdout)]
        None => print!("{md}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `loadgen plot --out FILE.svg a.json b.json ...`
pub fn run_plot(p: &PlotArgs) -> Result<ExitCode, ArgError> {
    let reports = p
        .inputs
        .iter()
        .map(|f| RunReport::read_json(f))
        .collect::<Result<Vec<_>, _>>()?;
    let svg = plot::render(&p.title, &plot::series_of(&reports), p.y_scale);
    std::fs::write(&p.out, svg).map_err(|source| report::ReportError::Write {
        path: p.out.clone(),
        source,
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn value_sizes() {
        assert_eq!(parse_value_size("100").unwrap(), (100, 100));
        assert_eq!(parse_value_size("100..1000").unwrap(), (100, 1000));
        assert!(parse_value_size("1000..100").is_err());
        assert!(parse_value_size("x").is_err());
        assert!(parse_value_size("1..").is_err());
    }

    #[test]
    fn workloads_set_read_ratio_and_bad_flags_are_refused() {
        let cli =
            Cli::try_parse_from(["loadgen", "--protocol", "resp", "--workload", "b"]).unwrap();
        let cfg = cli.run.config().unwrap();
        assert_eq!(cfg.mix.read_ratio, 0.95);
        assert_eq!(cfg.params.addr.port(), 6379);
        let cli = Cli::try_parse_from(["loadgen", "--protocol", "resp", "--w", "2"]).unwrap();
        assert!(cli.run.config().is_err());
        let cli = Cli::try_parse_from(["loadgen", "--read-ratio", "0.7", "--delete-ratio", "0.5"])
            .unwrap();
        assert!(cli.run.config().is_err());
        let cli = Cli::try_parse_from(["loadgen", "--verify", "--keys", "10"]).unwrap();
        assert!(cli.run.config().is_err());
        let cli =
            Cli::try_parse_from(["loadgen", "--r", "quorum", "--w", "2", "--strict"]).unwrap();
        let cfg = cli.run.config().unwrap();
        assert_eq!(cfg.tern_opts.r, tern_client::Quorum::Majority);
        assert_eq!(cfg.tern_opts.w, tern_client::Quorum::N(2));
        assert!(cfg.tern_opts.strict);
        let cli = Cli::try_parse_from(["loadgen", "--r", "0"]).unwrap();
        assert!(cli.run.config().is_err());
        let cli = Cli::try_parse_from(["loadgen", "plot", "--out", "x.svg", "a.json"]).unwrap();
        assert!(matches!(cli.cmd, Some(Cmd::Plot(_))));
    }

    #[test]
    fn entry_points_and_token_aware_targets() {
        let cli =
            Cli::try_parse_from(["loadgen", "--addr", "127.0.0.1:7700,127.0.0.2:7700"]).unwrap();
        let cfg = cli.run.config().unwrap();
        assert_eq!(cfg.addrs.len(), 2);
        assert!(cfg.topology.is_none());
        let nodes = "1@127.0.0.1:7700/2,2@127.0.0.2:7700/2,3@127.0.0.3:7700/2";
        let cli = Cli::try_parse_from(["loadgen", "--nodes", nodes]).unwrap();
        let cfg = cli.run.config().unwrap();
        assert_eq!(cfg.addrs.len(), 3);
        let topo = cfg.topology.unwrap();
        assert_eq!(topo.replication(), 3);
        assert_eq!(topo.all_shards().count(), 6);
        let cli = Cli::try_parse_from(["loadgen", "--nodes", nodes, "--no-token-aware"]).unwrap();
        let cfg = cli.run.config().unwrap();
        assert!(cfg.topology.is_none());
        assert_eq!(cfg.addrs[2].to_string(), "127.0.0.3:7700");
        // Refused: shard counts missing, both --addr and --nodes, --no-token-aware alone, resp.
        for bad in [
            vec!["loadgen", "--nodes", "1@127.0.0.1:7700"],
            vec!["loadgen", "--nodes", nodes, "--addr", "127.0.0.1:7700"],
            vec!["loadgen", "--no-token-aware"],
            vec!["loadgen", "--protocol", "resp", "--nodes", nodes],
        ] {
            let cli = Cli::try_parse_from(bad.clone()).unwrap();
            assert!(cli.run.config().is_err(), "{bad:?}");
        }
    }
}
