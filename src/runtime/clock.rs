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
    /// Complete once `now_ms() >= at_ms` (at once if it already is). Deadlines are absolute
    /// `now_ms` values, so an implementation can skip re-reading the clock to convert them.
    async fn sleep_until(&self, at_ms: u64) {
        let now = self.now_ms();
        if at_ms > now {
            self.sleep(Duration::from_millis(at_ms - now)).await;
        }
    }
}

/// A detached, single-threaded background task (read repair, put fan-out past the quorum).
pub type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// Runs background work of the coordinator on the current shard's executor.
pub trait Spawner: 'static {
    /// Start `task` and let it run to completion on its own; every task the coordinator spawns
    /// is bounded in time by its own deadline.
    fn spawn(&self, task: LocalTask);
}

// The glommio implementations live in `runtime::clock_glommio` (used by every shard).
