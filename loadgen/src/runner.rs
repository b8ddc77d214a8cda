//! Orchestration: one pinned glommio executor per requested core, connections spread over them,
//! the optional load phase, the measured phase, per-second progress and the final merge.
//!
//! Shared-nothing: each core owns its connections and stats; cores only meet at two barriers
//! (all connected; load done) and through a bounded channel of per-second progress snapshots to
//! the main thread, which prints them. Results are moved out of each executor when it ends and
//! merged once. Invariants: every phase ends by its deadline plus the request timeout; every
//! core passes the same barriers in the same order, whatever fails, so none can wait forever.

use crate::conn::{ConnState, CoreStats, Limits, Mix, Pacing, Phase, ValueGen};
use crate::dist::{DistKind, KeyDist, Zipfian, ZIPF_THETA};
use crate::driver::{Conn, ConnParams, Protocol};
use crate::schedule::OpenSchedule;
use crate::stats::{new_hist, OpStats};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Longest the load phase may take.
pub const LOAD_MAX: Duration = Duration::from_secs(600);
/// Progress snapshots buffered per core before the printer drops some.
const TICK_QUEUE: usize = 64;

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub protocol: Protocol,
    pub params: ConnParams,
    pub cores: Vec<usize>,
    pub connections: u64,
    pub rate: Option<f64>,
    pub mix: Mix,
    pub keys: u64,
    pub dist: DistKind,
    pub value_min: usize,
    pub value_max: usize,
    pub load: bool,
    pub load_depth: usize,
    pub requests: Option<u64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub verify: bool,
    pub seed: u64,
    pub quiet: bool,
    /// Stop after the load phase.
    pub load_only: bool,
    /// A server process whose CPU time is sampled over the measured phase.
    pub server_pid: Option<u32>,
    /// Added to every key index (disjoint key ranges per run).
    pub key_offset: u64,
    /// Busy-wait this long before an idle executor sleeps (less wake-up lag, more CPU).
    pub spin: Option<Duration>,
    /// R, W and strict for tern requests.
    pub tern_opts: tern_client::OpOptions,
    /// Entry points: connection `g` goes to `addrs[g % len]` (`params.addr` is the first).
    pub addrs: Vec<std::net::SocketAddr>,
    /// tern only: route each request to its key's owning shard (token-aware client).
    pub topology: Option<tern_client::Topology>,
}

/// What one core hands back.
#[derive(Debug)]
pub struct CoreResult {
    pub ops: [OpStats; 3],
    pub load: OpStats,
    pub load_elapsed: Duration,
    pub warmup_end: Instant,
    /// When this core's connections were all done.
    pub ended: Instant,
    pub last_completion: Option<Instant>,
    pub cpu_user: Duration,
    pub cpu_sys: Duration,
    pub connect_errors: BTreeMap<String, u64>,
    pub server_cpu: Option<Duration>,
    pub send_lag: Histogram<u64>,
}

/// All cores merged.
#[derive(Debug)]
pub struct RunResult {
    pub ops: [OpStats; 3],
    pub load: Option<(OpStats, Duration)>,
    /// From the end of warm-up to the last measured completion.
    pub measured: Duration,
    /// Generator CPU over the measured phase (all cores).
    pub cpu_user: Duration,
    pub cpu_sys: Duration,
    pub connect_errors: BTreeMap<String, u64>,
    /// CPU time (user + system) of `--server-pid` over the measured phase.
    pub server_cpu: Option<Duration>,
    /// Open loop: lag of each send behind its intended start.
    pub send_lag: Histogram<u64>,
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot start an executor on CPU {cpu}: {reason}")]
    Executor { cpu: usize, reason: String },
    #[error("the executor on CPU {cpu} failed: {reason}")]
    Join { cpu: usize, reason: String },
}

/// A per-second progress snapshot of one core.
struct Tick {
    phase: Phase,
    sec: u64,
    ops: u64,
    errors: u64,
    hist: Histogram<u64>,
}

fn rusage_thread() -> (Duration, Duration) {
    rusage(libc::RUSAGE_THREAD)
}

/// User and system CPU time of `who` (RUSAGE_SELF or RUSAGE_THREAD).
pub fn rusage(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: getrusage only writes into the zeroed struct we own; on failure it is left zeroed.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// User + system CPU time of process `pid` from `/proc/PID/stat`, None if unreadable.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: fields are counted after its ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is f[0]: utime (14) and stime (15) are f[11] and f[12].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let tck = u64::try_from(tck).ok().filter(|&t| t > 0)?;
    Some(Duration::from_nanos(
        (utime + stime).saturating_mul(1_000_000_000 / tck),
    ))
}

/// Splits `total` connections over `cores`: (first global index, count) per core.
pub fn split_connections(total: u64, cores: usize) -> Vec<(u64, u64)> {
    let cores = cores.max(1) as u64;
    let mut out = Vec::new();
    let mut first = 0;
    for c in 0..cores {
        let n = total / cores + u64::from(c < total % cores);
        out.push((first, n));
        first += n;
    }
    out
}

/// Runs every connection of this core through the current phase concurrently.
async fn run_all(
    conns: Vec<(Conn, Rc<RefCell<ConnState>>)>,
    timeout: Duration,
) -> Vec<(Conn, Rc<RefCell<ConnState>>)> {
    let health = conns.iter().map(|(c, _)| c.health()).collect();
    let dog = glommio::spawn_local(crate::driver::watchdog(health, timeout));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(mut c, st)| {
            glommio::spawn_local(async move {
                c.run_phase(&st).await;
                (c, st)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    dog.cancel().await;
    out
}

/// Sends a progress snapshot every second until cancelled.
async fn ticker(stats: Rc<RefCell<CoreStats>>, tx: SyncSender<Tick>, phase: Phase, start: Instant) {
    let mut sec = 0u64;
    loop {
        sec += 1;
        crate::driver::sleep_until(start + Duration::from_secs(sec)).await;
        let mut s = stats.borrow_mut();
        let hist = std::mem::replace(&mut s.tick_hist, new_hist());
        let tick = Tick {
            phase,
            sec,
            ops: std::mem::take(&mut s.tick_ops),
            errors: std::mem::take(&mut s.tick_errors),
            hist,
        };
        drop(s);
        // A slow printer must not slow the generator: drop the snapshot instead.
        let _ = tx.try_send(tick);
    }
}

struct CoreArgs {
    cfg: RunConfig,
    first_conn: u64,
    n_conns: u64,
    zipf: Option<Zipfian>,
    tx: SyncSender<Tick>,
    barrier: Arc<Barrier>,
}

async fn core_main(a: CoreArgs) -> CoreResult {
    let cfg = &a.cfg;
    let stats = Rc::new(RefCell::new(CoreStats::default()));
    let zipf = a.zipf.map(Rc::new);
    let values = ValueGen::new(cfg.value_min, cfg.value_max);
    let now = Instant::now();
    let idle = Limits {
        warmup_end: now,
        deadline: now,
        quota: Some(0),
    };
    // Connect everything first so that connection setup is never measured.
    let mut connect_errors: BTreeMap<String, u64> = BTreeMap::new();
    let tern_setup = crate::driver::tern::TernSetup {
        opts: cfg.tern_opts,
        contexts: Rc::default(),
        max_in_flight: cfg.params.depth.max(cfg.load_depth),
        topology: cfg.topology.clone().map(Rc::new),
    };
    let mut pending = Vec::new();
    for i in 0..a.n_conns {
        let g = a.first_conn + i;
        let dist = match (cfg.dist, &zipf) {
            (DistKind::Zipfian, Some(z)) => KeyDist::Zipfian { zipf: z.clone() },
            (DistKind::Latest, Some(z)) => KeyDist::Latest {
                zipf: z.clone(),
                latest: g * cfg.keys / cfg.connections.max(1),
            },
            _ => KeyDist::Uniform { n: cfg.keys },
        };
        let st = ConnState::new(
            g,
            cfg.connections,
            cfg.keys,
            SmallRng::seed_from_u64(cfg.seed ^ (g.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
            dist,
            cfg.mix,
            values.clone(),
            stats.clone(),
            cfg.verify,
            idle,
        );
        let mut st = st;
        st.key_offset = cfg.key_offset;
        let mut params = cfg.params.clone();
        if !cfg.addrs.is_empty() {
            // `g % len` < len, so the index is in bounds.
            params.addr = cfg.addrs[(g % cfg.addrs.len() as u64) as usize];
        }
        let proto = cfg.protocol;
        let ts = tern_setup.clone();
        pending.push((
            glommio::spawn_local(async move { Conn::connect(proto, params, ts).await }),
            Rc::new(RefCell::new(st)),
        ));
    }
    let mut conns = Vec::new();
    for (task, st) in pending {
        match task.await {
            Ok(c) => conns.push((c, st)),
            Err(e) => *connect_errors.entry(e.to_string()).or_insert(0) += 1,
        }
    }
    a.barrier.wait();

    let mut load_elapsed = Duration::ZERO;
    if cfg.load {
        let start = Instant::now();
        let limits = Limits {
            warmup_end: start,
            deadline: start + LOAD_MAX,
            quota: None,
        };
        for (_, st) in &conns {
            st.borrow_mut()
                .start_phase(Phase::Load, Pacing::Closed, limits);
        }
        stats.borrow_mut().reset_tick();
        let tick = glommio::spawn_local(ticker(stats.clone(), a.tx.clone(), Phase::Load, start));
        // The load phase may pipeline deeper than the run to fill the key space quickly.
        let saved: Vec<usize> = conns
            .iter_mut()
            .map(|(c, _)| c.set_depth(cfg.load_depth))
            .collect();
        conns = run_all(conns, cfg.params.timeout).await;
        for ((c, _), d) in conns.iter_mut().zip(saved) {
            c.set_depth(d);
        }
        tick.cancel().await;
        load_elapsed = start.elapsed();
        a.barrier.wait();
    }

    if cfg.load_only {
        let st = std::mem::take(&mut *stats.borrow_mut());
        return CoreResult {
            ops: st.ops,
            load: st.load,
            load_elapsed,
            warmup_end: now,
            ended: now,
            last_completion: None,
            cpu_user: Duration::ZERO,
            cpu_sys: Duration::ZERO,
            connect_errors,
            server_cpu: None,
            send_lag: st.send_lag,
        };
    }
    // Sampled by one core only, outside the measured window's hot path.
    let server_pid = cfg.server_pid.filter(|_| a.first_conn == 0);
    let server0 = server_pid.and_then(proc_cpu);
    let start = Instant::now();
    let limits = Limits {
        warmup_end: start + cfg.warmup,
        deadline: start + cfg.warmup + cfg.duration,
        quota: None,
    };
    for (_, st) in &conns {
        let mut s = st.borrow_mut();
        let pacing = match cfg.rate {
            Some(rate) => Pacing::Open(OpenSchedule::new(start, rate, cfg.connections, s.conn)),
            None => Pacing::Closed,
        };
        let mut l = limits;
        if let Some(r) = cfg.requests {
            // Spread the quota: the first `r % conns` connections take one more.
            l.quota = Some(r / cfg.connections + u64::from(s.conn < r % cfg.connections));
        }
        s.start_phase(Phase::Run, pacing, l);
    }
    stats.borrow_mut().reset_tick();
    let tick = glommio::spawn_local(ticker(stats.clone(), a.tx.clone(), Phase::Run, start));
    let (u0, s0) = rusage_thread();
    let _conns = run_all(conns, cfg.params.timeout).await;
    let (u1, s1) = rusage_thread();
    let server1 = server_pid.and_then(proc_cpu);
    tick.cancel().await;
    drop(a.tx);
    let st = std::mem::take(&mut *stats.borrow_mut());
    CoreResult {
        ops: st.ops,
        load: st.load,
        load_elapsed,
        warmup_end: limits.warmup_end,
        ended: Instant::now(),
        last_completion: st.last_completion,
        cpu_user: u1.saturating_sub(u0),
        cpu_sys: s1.saturating_sub(s0),
        connect_errors,
        server_cpu: server0.zip(server1).map(|(a, b)| b.saturating_sub(a)),
        send_lag: st.send_lag,
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Prints per-second progress as snapshots from every core arrive; returns when all cores end.
fn print_progress(
    rx: std::sync::mpsc::Receiver<Tick>,
    cores: usize,
    quiet: bool,
    warmup: Duration,
) {
    // (phase, second) -> (cores reported, ops, errors, merged histogram)
    type Agg = (usize, u64, u64, Histogram<u64>);
    let mut pending: BTreeMap<(u8, u64), Agg> = BTreeMap::new();
    let emit = |phase: u8, sec: u64, ops: u64, errs: u64, h: &Histogram<u64>| {
        if quiet {
            return;
        }
        // A second that ended within the warm-up is not measured: say so.
        let name = match phase {
            0 => "load",
            _ if Duration::from_secs(sec) <= warmup => "warm",
            _ => "run ",
        };
        eprintln!(
            "[{name} {sec:4}s] {ops:8} ops/s  errors {errs:6}  p50 {:9.1} us  p99 {:9.1} us",
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
        );
    };
    while let Ok(t) = rx.recv() {
        let key = (u8::from(t.phase == Phase::Run), t.sec);
        let e = pending.entry(key).or_insert_with(|| (0, 0, 0, new_hist()));
        e.0 += 1;
        e.1 += t.ops;
        e.2 += t.errors;
        let _ = e.3.add(&t.hist);
        if e.0 == cores {
            if let Some((_, ops, errs, h)) = pending.remove(&key) {
                emit(key.0, key.1, ops, errs, &h);
            }
        }
    }
    for ((phase, sec), (_, ops, errs, h)) in pending {
        emit(phase, sec, ops, errs, &h);
    }
}

/// Runs the whole thing and merges the cores' results.
pub fn run(cfg: &RunConfig) -> Result<RunResult, RunError> {
    let split = split_connections(cfg.connections, cfg.cores.len());
    let zipf = match cfg.dist {
        DistKind::Uniform => None,
        DistKind::Zipfian | DistKind::Latest => Some(Zipfian::new(cfg.keys, ZIPF_THETA)),
    };
    let (tx, rx) = sync_channel::<Tick>(TICK_QUEUE * cfg.cores.len());
    let barrier = Arc::new(Barrier::new(cfg.cores.len()));
    let mut handles = Vec::new();
    for (&cpu, &(first_conn, n_conns)) in cfg.cores.iter().zip(&split) {
        let args = CoreArgs {
            cfg: cfg.clone(),
            first_conn,
            n_conns,
            zipf: zipf.clone(),
            tx: tx.clone(),
            barrier: barrier.clone(),
        };
        let mut b = LocalExecutorBuilder::new(Placement::Fixed(cpu)).name("loadgen");
        if let Some(spin) = cfg.spin {
            b = b.spin_before_park(spin);
        }
        let h = b
            .spawn(move || core_main(args))
            .map_err(|e| RunError::Executor {
                cpu,
                reason: e.to_string(),
            })?;
        handles.push((cpu, h));
    }
    drop(tx);
    print_progress(rx, cfg.cores.len(), cfg.quiet, cfg.warmup);
    let mut results = Vec::new();
    for (cpu, h) in handles {
        results.push(h.join().map_err(|e| RunError::Join {
            cpu,
            reason: e.to_string(),
        })?);
    }
    Ok(merge(results, cfg.load))
}

fn merge(results: Vec<CoreResult>, load: bool) -> RunResult {
    let mut ops: [OpStats; 3] = Default::default();
    let mut load_stats = OpStats::default();
    let mut load_elapsed = Duration::ZERO;
    let mut warmup_end: Option<Instant> = None;
    let mut end: Option<Instant> = None;
    let mut ended: Option<Instant> = None;
    let (mut cu, mut cs) = (Duration::ZERO, Duration::ZERO);
    let mut connect_errors = BTreeMap::new();
    let mut server_cpu = None;
    let mut send_lag = new_hist();
    for r in results {
        let _ = send_lag.add(&r.send_lag);
        server_cpu = server_cpu.or(r.server_cpu);
        for (a, b) in ops.iter_mut().zip(&r.ops) {
            a.merge(b);
        }
        load_stats.merge(&r.load);
        load_elapsed = load_elapsed.max(r.load_elapsed);
        warmup_end = Some(warmup_end.map_or(r.warmup_end, |w| w.min(r.warmup_end)));
        ended = Some(ended.map_or(r.ended, |d| d.max(r.ended)));
        if let Some(l) = r.last_completion {
            end = Some(end.map_or(l, |e| e.max(l)));
        }
        cu += r.cpu_user;
        cs += r.cpu_sys;
        for (k, v) in r.connect_errors {
            *connect_errors.entry(k).or_insert(0) += v;
        }
    }
    // Up to the last measured answer; a run with none (nothing connected) measured nothing.
    let measured = match (warmup_end, end.or(ended)) {
        (Some(w), Some(e)) => e.saturating_duration_since(w),
        _ => Duration::ZERO,
    };
    RunResult {
        ops,
        load: load.then_some((load_stats, load_elapsed)),
        measured,
        cpu_user: cu,
        cpu_sys: cs,
        connect_errors,
        server_cpu,
        send_lag,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_cpu_reads_our_own_process() {
        // Burn a little CPU so the figure cannot be zero, then read it back.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert_ne!(x, 1);
        let c = proc_cpu(std::process::id()).unwrap();
        assert!(c >= Duration::from_millis(10), "{c:?}");
        assert!(proc_cpu(u32::MAX).is_none());
    }

    #[test]
    fn connections_split_evenly_and_cover_all() {
        assert_eq!(split_connections(50, 1), vec![(0, 50)]);
        assert_eq!(split_connections(5, 2), vec![(0, 3), (3, 2)]);
        let s = split_connections(7, 3);
        assert_eq!(s.iter().map(|x| x.1).sum::<u64>(), 7);
        assert_eq!(s[2].0, s[1].0 + s[1].1);
    }
}
