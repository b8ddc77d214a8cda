//! The `Clock` and `Spawner` traits: time and background tasks as the replication logic sees
//! them, so a deterministic simulation can supply virtual time and its own executor. The real
//! implementations (glommio timers, `glommio::spawn_local`) live with the server wiring.
//!
//! Contract: single-threaded (one per shard, futures need not be `Send`); `now_ms` never goes
//! backwards; `sleep` completes no earlier than `now_ms() + d` and does not block the thread.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Time as the coordinator sees it.
#[allow(async_fn_in_trait)]
pub trait Clock: 'static {
    /// Monotonic milliseconds from an arbitrary origin: deadlines are measured with this.
    fn now_ms(&self) -> u64;
    /// Wall-clock milliseconds since the Unix epoch: stamped on writes to age tombstones.
    fn unix_ms(&self) -> u64;
    /// Complete after `d` has passed on this clock.
    async fn sleep(&self, d: Duration);
}

/// A detached, single-threaded background task (read repair, put fan-out past the quorum).
pub type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// Runs background work of the coordinator on the current shard's executor.
pub trait Spawner: 'static {
    /// Start `task` and let it run to completion on its own; every task the coordinator spawns
    /// is bounded in time by its own deadline.
    fn spawn(&self, task: LocalTask);
}

/// The real [`Clock`] and [`Spawner`] of one glommio executor (one per shard).
#[derive(Debug, Clone, Copy)]
pub struct GlommioRuntime {
    origin: std::time::Instant,
}

impl GlommioRuntime {
    pub fn new() -> Self {
        GlommioRuntime {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for GlommioRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for GlommioRuntime {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn unix_ms(&self) -> u64 {
        // A clock before 1970 is a misconfigured host; 0 only makes tombstones look old.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    async fn sleep(&self, d: Duration) {
        glommio::timer::sleep(d).await
    }
}

impl Spawner for GlommioRuntime {
    /// Must be called from inside a glommio executor (every shard's code is).
    fn spawn(&self, task: LocalTask) {
        glommio::spawn_local(task).detach();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn glommio_runtime_sleeps_and_spawns() {
        let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
        ex.run(async {
            let rt = GlommioRuntime::new();
            let t0 = rt.now_ms();
            rt.sleep(Duration::from_millis(20)).await;
            assert!(rt.now_ms() >= t0 + 20);
            assert!(rt.unix_ms() > 1_600_000_000_000);
            let done = Rc::new(Cell::new(false));
            let d = Rc::clone(&done);
            rt.spawn(Box::pin(async move { d.set(true) }));
            // Wait for the detached task, bounded by a deadline.
            let deadline = rt.now_ms() + 5_000;
            while !done.get() && rt.now_ms() < deadline {
                glommio::yield_if_needed().await;
                rt.sleep(Duration::from_millis(1)).await;
            }
            assert!(done.get());
        });
    }
}
