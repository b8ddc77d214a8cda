//! The real [`Clock`] and [`Spawner`]: glommio timers and `spawn_local` on the current shard.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::clock::{Clock, LocalTask, Spawner};

/// Monotonic time from the moment the clock was made; wall time from the system clock.
#[derive(Debug, Clone, Copy)]
pub struct GlommioClock {
    origin: Instant,
}

impl GlommioClock {
    pub fn new() -> Self {
        GlommioClock {
            origin: Instant::now(),
        }
    }
}

impl Default for GlommioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for GlommioClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            // A clock before 1970 is a misconfigured host; age tombstones from 0 rather than fail.
            .unwrap_or(0)
    }

    async fn sleep(&self, d: Duration) {
        glommio::timer::sleep(d).await;
    }
}

/// Spawns on the current glommio executor (must be called from inside one).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlommioSpawner;

impl Spawner for GlommioSpawner {
    fn spawn(&self, task: LocalTask) {
        glommio::spawn_local(task).detach();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sleep_advances_now_and_spawned_tasks_run() {
        glommio::LocalExecutor::default().run(async {
            let c = GlommioClock::new();
            let t0 = c.now_ms();
            c.sleep(Duration::from_millis(20)).await;
            assert!(c.now_ms() >= t0 + 20);
            assert!(c.unix_ms() > 1_600_000_000_000);
            let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
            GlommioSpawner.spawn(Box::pin(async move {
                tx.send(7u8).await.unwrap();
            }));
            assert_eq!(rx.recv().await, Some(7));
        });
    }
}
