//! One glommio executor per shard, each on its own thread, optionally pinned to a CPU
//! (shard i -> the i-th online CPU, wrapping when there are more shards than CPUs).
//! Owns thread start-up and join; knows nothing of what the shards run.

use std::future::Future;
use std::time::Duration;

use glommio::{CpuSet, LocalExecutorBuilder, Placement};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cannot start the executor of shard {shard}: {message}")]
    Start { shard: u16, message: String },
    #[error("shard {shard} panicked; see the log above")]
    Panicked { shard: u16 },
    #[error("shard mesh: {0}")]
    Mesh(String),
}

/// How to start the shard executors.
#[derive(Clone, Debug)]
pub struct ExecutorSpec {
    pub shards: u16,
    /// Pin each shard to one CPU (thread-per-core); off when several nodes share a host in tests.
    pub pin: bool,
    /// Thread name prefix, e.g. `tern-shard`.
    pub name: String,
    /// Busy-poll for new work this long before parking an idle executor. glommio honours it
    /// only for pinned executors; zero parks at once (shared hosts must not spin).
    pub idle_poll: Duration,
}

/// Runs `f(shard)` on one executor per shard and waits for all of them; returns their results in
/// shard order. A panicking shard is reported as an error (after the others are joined).
pub fn run_shards<T, F, Fut>(spec: &ExecutorSpec, f: F) -> Result<Vec<T>, RuntimeError>
where
    T: Send + 'static,
    F: Fn(u16) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    let cpus: Vec<usize> = match CpuSet::online() {
        Ok(set) => {
            let mut v: Vec<usize> = set.into_iter().map(|l| l.cpu).collect();
            v.sort_unstable();
            v
        }
        Err(_) => Vec::new(),
    };
    let mut handles = Vec::with_capacity(usize::from(spec.shards));
    for shard in 0..spec.shards {
        let placement = if spec.pin && !cpus.is_empty() {
            Placement::Fixed(cpus[usize::from(shard) % cpus.len()])
        } else {
            Placement::Unbound
        };
        let f = f.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("{}-{shard}", spec.name))
            .spin_before_park(spec.idle_poll)
            .spawn(move || f(shard))
            .map_err(|e| RuntimeError::Start {
                shard,
                message: e.to_string(),
            })?;
        handles.push((shard, handle));
    }
    let mut out = Vec::with_capacity(handles.len());
    let mut failed = None;
    for (shard, h) in handles {
        match h.join() {
            Ok(v) => out.push(v),
            Err(_) => {
                failed.get_or_insert(RuntimeError::Panicked { shard });
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Raise RLIMIT_MEMLOCK to its hard limit so io_uring can register buffers; failure is fine
/// (glommio falls back), so it is only logged.
pub fn raise_memlock_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct we own.
    let ok = unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) == 0 && {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) == 0
        }
    };
    if !ok {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; continuing with the current limit");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_shard_once_in_order() {
        let spec = ExecutorSpec {
            shards: 3,
            pin: false,
            name: "test-shard".into(),
            idle_poll: Duration::ZERO,
        };
        let out = run_shards(&spec, |shard| async move { u32::from(shard) * 10 }).unwrap();
        assert_eq!(out, vec![0, 10, 20]);
    }

    #[test]
    fn a_panicking_shard_is_an_error() {
        let spec = ExecutorSpec {
            shards: 2,
            pin: false,
            name: "test-panic".into(),
            idle_poll: Duration::ZERO,
        };
        let err = run_shards(&spec, |shard| async move {
            assert!(shard != 1, "deliberate test panic");
        })
        .unwrap_err();
        assert!(matches!(err, RuntimeError::Panicked { shard: 1 }));
    }
}
