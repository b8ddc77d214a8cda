//! Crash test on the real thing: a child process (this test binary re-executed with
//! `TERN_CRASH_CHILD=<dir>`) writes through the `Engine` on `GlommioDisk` (O_DIRECT, io_uring)
//! with 8 concurrent writers and prints `ACK <key> <value>` after each acknowledged write. The
//! parent reads those lines, SIGKILLs the child at a random moment (libc::kill by PID), recovers
//! the engine in-process and checks that every key holds its latest acknowledged value or a
//! newer one (values are `<cycle>.<n>`, increasing per key), and that nothing unparseable is
//! served. Small memtables and segments make flushes, compactions and segment recycling happen
//! under the kills.
//!
//! 20 kill cycles by default; `TERN_CRASH_CYCLES=1000 cargo test --release --test storage_crash`
//! runs 1,000.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use tern::runtime::disk_glommio::GlommioDisk;
use tern::storage::compaction::CompactionPolicy;
use tern::storage::engine::{Engine, EngineConfig, NewRecord};

const WRITERS: u32 = 8;
const KEYS_PER_WRITER: u32 = 16;

fn cfg(dir: &Path) -> EngineConfig {
    EngineConfig {
        memtable_bytes: 32 << 10,
        segment_bytes: 128 << 10,
        max_value_bytes: 4096,
        compaction: CompactionPolicy {
            base_tier_bytes: 64 << 10,
            min_threshold: 3,
            max_tables: 8,
            ..CompactionPolicy::default()
        },
        ..EngineConfig::new(dir)
    }
}

fn key(w: u32, k: u32) -> String {
    format!("w{w}-k{k}")
}

/// `<cycle>.<n>` followed by padding; returns (cycle, n).
fn parse(v: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let s = s.split('|').next()?;
    let (c, n) = s.split_once('.')?;
    Some((c.parse().ok()?, n.parse().ok()?))
}

/// Child mode: write until killed.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os("TERN_CRASH_CHILD") else {
        return; // Not a child: nothing to do.
    };
    let cycle: u64 = std::env::var("TERN_CRASH_CYCLE").unwrap().parse().unwrap();
    let dir = PathBuf::from(dir);
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let e = Rc::new(Engine::open(GlommioDisk::new(), cfg(&dir)).await.unwrap());
            let mut tasks = Vec::new();
            for w in 0..WRITERS {
                let e = e.clone();
                tasks.push(glommio::spawn_local(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(cycle * 100 + u64::from(w));
                    // Bounded: the parent kills us long before this ends.
                    for n in 0..1_000_000u64 {
                        let k = key(w, rng.gen_range(0..KEYS_PER_WRITER));
                        let pad = rng.gen_range(0..1500);
                        let v = format!("{cycle}.{n}|{}", "x".repeat(pad));
                        let payload = Bytes::from(v);
                        e.update(k.as_bytes(), |_| {
                            Ok::<_, Infallible>(Some(NewRecord {
                                payload,
                                tombstone_at_ms: None,
                            }))
                        })
                        .await
                        .unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {k} {cycle}.{n}").unwrap();
                        out.flush().unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Open the engine in-process and check every acknowledged write.
fn verify(dir: &Path, acked: &HashMap<String, (u64, u64)>, cycle: u64) {
    let dir = dir.to_path_buf();
    let acked = acked.clone();
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let e = Engine::open(GlommioDisk::new(), cfg(&dir))
                .await
                .unwrap_or_else(|err| panic!("cycle {cycle}: recovery failed: {err}"));
            for w in 0..WRITERS {
                for k in 0..KEYS_PER_WRITER {
                    let k = key(w, k);
                    let got = e.get(k.as_bytes()).await.unwrap();
                    let got = got.map(|s| {
                        parse(&s.payload).unwrap_or_else(|| {
                            panic!(
                                "cycle {cycle}: {k} holds garbage {:?}",
                                &s.payload[..s.payload.len().min(40)]
                            )
                        })
                    });
                    if let Some(want) = acked.get(&k) {
                        let got = got.unwrap_or_else(|| {
                            panic!("cycle {cycle}: acknowledged {k}={want:?} lost")
                        });
                        assert!(
                            got >= *want,
                            "cycle {cycle}: {k} is {got:?}, acknowledged {want:?}"
                        );
                    }
                }
            }
            e.close().await.unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    if std::env::var_os("TERN_CRASH_CHILD").is_some() {
        return;
    }
    let cycles: u64 = std::env::var("TERN_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("tern-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC4A5);
    let mut acked: HashMap<String, (u64, u64)> = HashMap::new();
    let mut total_acks = 0u64;
    for cycle in 1..=cycles {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("TERN_CRASH_CHILD", &dir)
            .env("TERN_CRASH_CYCLE", cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as libc::pid_t;
        let stdout = child.stdout.take().unwrap();
        // Kill after a random number of acknowledgements (sometimes before the first one),
        // or after a deadline if the child is slow.
        let kill_after = if rng.gen_bool(0.1) {
            0
        } else {
            rng.gen_range(1..3000)
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut seen = 0u64;
        while seen < kill_after && Instant::now() < deadline {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break, // child died by itself: verification will tell
                Ok(_) => {}
                Err(e) => panic!("reading child output: {e}"),
            }
            let Some(rest) = line.trim_end().strip_prefix("ACK ") else {
                continue;
            };
            let (k, v) = rest.split_once(' ').unwrap();
            let v = parse(v.as_bytes()).unwrap();
            let cur = acked.entry(k.to_string()).or_insert(v);
            if v > *cur {
                *cur = v;
            }
            seen += 1;
        }
        // SAFETY: plain syscall on the PID of our own child, which we have not reaped yet.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill failed");
        // Lines the child wrote before dying were acknowledged too: drain them.
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
        for l in rest.lines() {
            if let Some(r) = l.strip_prefix("ACK ") {
                if let Some((k, v)) = r.split_once(' ') {
                    if let Some(v) = parse(v.as_bytes()) {
                        let cur = acked.entry(k.to_string()).or_insert(v);
                        if v > *cur {
                            *cur = v;
                        }
                        seen += 1;
                    }
                }
            }
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "child exited cleanly before being killed"
        );
        total_acks += seen;
        verify(&dir, &acked, cycle);
    }
    eprintln!("crash test: {cycles} SIGKILL cycles, {total_acks} acknowledged writes verified");
    assert!(
        total_acks > cycles * 100,
        "children acknowledged too little to test anything"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
