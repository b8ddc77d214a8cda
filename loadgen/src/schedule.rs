//! Open-loop arrival schedule: when each connection's i-th request is INTENDED to start.
//!
//! With a total rate `R` ops/s over `C` connections, connection `c` owns the global arrival
//! slots `c, c + C, c + 2C, ...`, slot `k` being due at `start + k / R`. Arrivals are thus evenly
//! spaced over all connections and a connection's own interval is `C / R`. Latency is measured
//! from the intended time, never from the actual send: when the server stalls, requests that
//! could not be sent on time carry that wait in their latency (no coordinated omission).
//! Invariants: times are computed from the slot number (no accumulated rounding drift) and are
//! monotone per connection. Owns no I/O.

use std::time::{Duration, Instant};

/// One connection's share of the open-loop schedule.
#[derive(Debug, Clone)]
pub struct OpenSchedule {
    start: Instant,
    rate: f64,
    conns: u64,
    conn: u64,
    next_index: u64,
}

impl OpenSchedule {
    /// `rate` is the total ops/s over all `conns` connections; `conn` is this connection's global
    /// index. `rate` must be positive and `conn < conns`.
    pub fn new(start: Instant, rate: f64, conns: u64, conn: u64) -> Self {
        debug_assert!(rate > 0.0 && conn < conns);
        OpenSchedule {
            start,
            rate,
            conns: conns.max(1),
            conn,
            next_index: 0,
        }
    }

    /// Offset from `start` of this connection's request number `i`.
    pub fn offset_of(&self, i: u64) -> Duration {
        let slot = self.conn + i * self.conns;
        Duration::from_secs_f64(slot as f64 / self.rate)
    }

    /// Intended start time of the next (not yet taken) request.
    pub fn peek(&self) -> Instant {
        self.start + self.offset_of(self.next_index)
    }

    /// Takes the next slot and returns its intended start time.
    pub fn take(&mut self) -> Instant {
        let t = self.peek();
        self.next_index += 1;
        t
    }

    /// How many requests this connection has taken.
    #[cfg(test)]
    pub fn taken(&self) -> u64 {
        self.next_index
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn slots_interleave_over_connections() {
        let t0 = Instant::now();
        // 1000 ops/s over 4 connections: one arrival every 1 ms, each conn every 4 ms.
        let mut all = Vec::new();
        for c in 0..4 {
            let mut s = OpenSchedule::new(t0, 1000.0, 4, c);
            for _ in 0..250 {
                all.push(s.take() - t0);
            }
        }
        all.sort();
        assert_eq!(all.len(), 1000);
        for (k, d) in all.iter().enumerate() {
            let want = Duration::from_millis(k as u64);
            let diff = d.abs_diff(want);
            assert!(
                diff < Duration::from_micros(1),
                "slot {k}: {d:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn per_connection_interval_and_no_drift() {
        let t0 = Instant::now();
        let mut s = OpenSchedule::new(t0, 20_000.0, 50, 7);
        let first = s.take() - t0;
        assert_eq!(first, Duration::from_secs_f64(7.0 / 20_000.0));
        for _ in 1..399_999 {
            s.take();
        }
        // Request 400_000 of conn 7 is slot 7 + 399_999 * 50: 999.99785 s after start.
        let last = s.take() - t0;
        let want = Duration::from_secs_f64((7.0 + 399_999.0 * 50.0) / 20_000.0);
        let diff = last.abs_diff(want);
        assert!(diff < Duration::from_micros(1));
        assert_eq!(s.taken(), 400_000);
    }

    #[test]
    fn peek_does_not_advance() {
        let t0 = Instant::now();
        let mut s = OpenSchedule::new(t0, 10.0, 1, 0);
        assert_eq!(s.peek(), s.peek());
        let a = s.take();
        assert!(s.peek() > a);
        assert_eq!(s.peek() - a, Duration::from_millis(100));
    }
}
