//! Commit-log group commit on a real file (GlommioDisk, O_DIRECT + fdatasync) under a temp dir
//! on a real disk (`/work/targets/...` or `$TERN_BENCH_DIR`; check `df` that it is not tmpfs).
//!
//! Each operation is one durable append (`append` + `wait_durable`) of a 100-byte payload,
//! issued by 1, 16 or 128 concurrent writer tasks on one glommio executor. Besides criterion's
//! figures, a summary phase prints ops/s and the p99 latency per writer count (hdrhistogram) and
//! the ratio 128-writer rate / 1-writer rate, measured in the same run.

#![allow(clippy::expect_used, clippy::unwrap_used)] // bench harness: a failure should abort loudly

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder};
use hdrhistogram::Histogram;
use tern::runtime::disk_glommio::GlommioDisk;
use tern::storage::commitlog::{CommitLog, LogConfig};

const PAYLOAD: [u8; 100] = [0x5a; 100];

fn bench_dir(tag: &str) -> PathBuf {
    let base = std::env::var_os("TERN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!("tern-bench-commitlog-{}-{tag}", std::process::id()))
}

/// Run `total` durable appends split over `writers` tasks; returns elapsed time and latencies.
async fn run_ops(
    log: &Rc<CommitLog<GlommioDisk>>,
    writers: u64,
    total: u64,
    hist: &Rc<RefCell<Histogram<u64>>>,
) -> Duration {
    let per = total.div_ceil(writers).max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let log = log.clone();
        let hist = hist.clone();
        tasks.push(glommio::spawn_local(async move {
            for _ in 0..per {
                let t = Instant::now();
                let lsn = log.append(&PAYLOAD).await.expect("append");
                log.wait_durable(lsn).await.expect("durable");
                let _ = hist.borrow_mut().record(t.elapsed().as_micros() as u64);
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    let el = start.elapsed();
    // Keep the log from growing: everything is durable, recycle old segments.
    let upto = log.durable_lsn();
    log.retire_upto(upto).await.expect("retire");
    el
}

async fn open_log(tag: &str) -> Rc<CommitLog<GlommioDisk>> {
    let cfg = LogConfig {
        segment_bytes: 16 << 20,
        ..LogConfig::new(bench_dir(tag))
    };
    let (log, _) = CommitLog::open(Rc::new(GlommioDisk::new()), cfg, |_, _| Ok(()))
        .await
        .expect("open log");
    Rc::new(log)
}

fn summary(ex: &LocalExecutor) {
    let mut rates = Vec::new();
    for writers in [1u64, 16, 128] {
        let (ops, rate, p99, syncs) = ex.run(async move {
            let log = open_log(&format!("sum{writers}")).await;
            let hist = Rc::new(RefCell::new(Histogram::<u64>::new(3).expect("hist")));
            // Warm up (segment creation, first sync) then measure for ~2 s, bounded by count.
            run_ops(&log, writers, writers * 5, &hist).await;
            hist.borrow_mut().reset();
            let s0 = log.stats().syncs;
            let mut ops = 0u64;
            let mut el = Duration::ZERO;
            while el < Duration::from_secs(2) && ops < 2_000_000 {
                let batch = writers * 50;
                el += run_ops(&log, writers, batch, &hist).await;
                ops += batch.div_ceil(writers) * writers;
            }
            let syncs = log.stats().syncs - s0;
            let p99 = hist.borrow().value_at_quantile(0.99);
            log.close().await.expect("close");
            (ops, ops as f64 / el.as_secs_f64(), p99, syncs)
        });
        eprintln!(
            "commitlog summary: writers={writers:>3} ops={ops:>7} ops/s={rate:>9.0} p99={p99}us \
             ops/fdatasync={:.1}",
            ops as f64 / syncs.max(1) as f64
        );
        rates.push(rate);
    }
    eprintln!(
        "commitlog summary: ratio rate(128)/rate(1) = {:.1}x",
        rates[2] / rates[0]
    );
    let _ = std::fs::remove_dir_all(bench_dir("sum1"));
    let _ = std::fs::remove_dir_all(bench_dir("sum16"));
    let _ = std::fs::remove_dir_all(bench_dir("sum128"));
}

fn bench(c: &mut Criterion) {
    let ex = LocalExecutorBuilder::default().make().expect("executor");
    summary(&ex);
    let mut g = c.benchmark_group("commitlog_durable_append");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    for writers in [1u64, 16, 128] {
        let log = ex.run(open_log(&format!("crit{writers}")));
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("writers_{writers}"), |b| {
            b.iter_custom(|iters| {
                let log = log.clone();
                ex.run(async move {
                    let hist = Rc::new(RefCell::new(Histogram::<u64>::new(3).expect("hist")));
                    let total = iters.max(writers);
                    let el = run_ops(&log, writers, total, &hist).await;
                    // iter_custom wants the time for `iters` operations.
                    el.mul_f64(iters as f64 / (total.div_ceil(writers) * writers) as f64)
                })
            })
        });
        ex.run(async move { log.close().await.expect("close") });
        let _ = std::fs::remove_dir_all(bench_dir(&format!("crit{writers}")));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
