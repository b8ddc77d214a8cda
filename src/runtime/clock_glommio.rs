//! The real [`Clock`] and [`Spawner`]: a deadline sweeper over one glommio timer, and
//! `spawn_local` on the current shard.
//!
//! Why a sweeper: the coordinator arms a deadline per request (every durable write waits for its
//! fsync under one), and a glommio `Timer` per request costs a reactor BTreeMap insert and
//! remove plus two clock reads (~5% of a shard's CPU on writes). Here a sleep is a slot in a
//! deadline-ordered queue; one sweeper task per clock sleeps on a single glommio timer until the
//! earliest due deadline, wakes every sleep due by then, and re-arms. Requests share a timeout,
//! so deadlines arrive in order: registering is an append, and the timer is re-armed about once
//! per timeout under steady load rather than once per request.
//!
//! Invariants: a sleep completes only once `now_ms() >= due` (the timer is armed for a duration
//! measured from a truncated `now_ms`, so it never fires early); a dropped sleep frees its slot
//! at once and leaves a stale queue entry that is discarded when it reaches the front or falls
//! due, so the queue holds at most the sleeps registered within the longest pending deadline;
//! the sweeper task ends when it wakes and finds no sleep pending (the next registration starts
//! a new one), so an idle or dropped clock leaves no task behind past its last armed deadline.
//! Single-threaded: one clock per shard.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::timer::Timer;

use super::clock::{Clock, LocalTask, Spawner};

/// Monotonic time from the moment the clock was made; wall time from the system clock.
#[derive(Debug, Clone)]
pub struct GlommioClock {
    origin: Instant,
    wheel: Rc<RefCell<Wheel>>,
}

impl GlommioClock {
    pub fn new() -> Self {
        GlommioClock {
            origin: Instant::now(),
            wheel: Rc::new(RefCell::new(Wheel::default())),
        }
    }

    /// Sleeps registered and not yet completed or dropped (for tests and diagnostics).
    pub fn pending_sleeps(&self) -> usize {
        let w = self.wheel.borrow();
        w.slots.len() - w.free.len()
    }

    /// Whether a sweeper task is running (it ends when no sleep is pending).
    pub fn sweeper_running(&self) -> bool {
        self.wheel.borrow().running
    }

    fn sleep_until_ms(&self, due: u64) -> Sleep {
        Sleep {
            wheel: Rc::clone(&self.wheel),
            origin: self.origin,
            due,
            slot: None,
        }
    }
}

impl Default for GlommioClock {
    fn default() -> Self {
        Self::new()
    }
}

fn elapsed_ms(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Whole milliseconds of `d`, rounded up (a sleep never completes early).
fn ceil_ms(d: Duration) -> u64 {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if d.subsec_nanos() % 1_000_000 != 0 {
        ms.saturating_add(1)
    } else {
        ms
    }
}

impl Clock for GlommioClock {
    fn now_ms(&self) -> u64 {
        elapsed_ms(self.origin)
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            // A clock before 1970 is a misconfigured host; age tombstones from 0 rather than fail.
            .unwrap_or(0)
    }

    async fn sleep(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let due = self.now_ms().saturating_add(ceil_ms(d));
        self.sleep_until_ms(due).await;
    }

    async fn sleep_until(&self, at_ms: u64) {
        // No clock read here: the sweeper compares `at_ms` with the clock when it runs, and the
        // caller measured `at_ms` from `now_ms` moments ago.
        self.sleep_until_ms(at_ms).await;
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// Bumped when the slot is freed, so a stale queue entry never matches a reused slot.
    gen: u32,
    fired: bool,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct Wheel {
    /// `(due_ms, slot, gen)`, ordered by `due_ms` (non-decreasing); entries whose generation no
    /// longer matches their slot were dropped and are skipped.
    queue: VecDeque<(u64, u32, u32)>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The sweeper's waker, to re-arm when a sleep due before `armed_for` registers.
    sweeper: Option<Waker>,
    /// Due time the sweeper's timer is armed for (`None` while it is not sleeping on one).
    armed_for: Option<u64>,
    running: bool,
}

impl Wheel {
    fn live(&self, slot: u32, gen: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.gen == gen && !s.fired)
    }

    /// Drops stale entries at the front (their sleeps were dropped or completed).
    fn trim_front(&mut self) {
        while let Some(&(_, slot, gen)) = self.queue.front() {
            if self.live(slot, gen) {
                break;
            }
            self.queue.pop_front();
        }
    }

    /// Registers a sleep due at `due`; returns its slot and generation.
    fn register(&mut self, due: u64, waker: &Waker) -> (u32, u32) {
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let gen = {
            let s = &mut self.slots[slot as usize];
            s.fired = false;
            s.waker = Some(waker.clone());
            s.gen
        };
        self.trim_front();
        // Usually the latest deadline: an append. A shorter timeout walks back to its place.
        let mut at = self.queue.len();
        while at > 0 && self.queue[at - 1].0 > due {
            at -= 1;
        }
        self.queue.insert(at, (due, slot, gen));
        (slot, gen)
    }

    fn release(&mut self, slot: u32, gen: u32) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if s.gen != gen {
            return;
        }
        s.gen = s.gen.wrapping_add(1);
        s.fired = false;
        s.waker = None;
        self.free.push(slot);
        self.trim_front();
    }

    /// Fires every sleep due at `now` and discards stale entries; returns the next due time.
    fn fire_due(&mut self, now: u64) -> Option<u64> {
        while let Some(&(due, slot, gen)) = self.queue.front() {
            if self.live(slot, gen) {
                if due > now {
                    return Some(due);
                }
                let s = &mut self.slots[slot as usize];
                s.fired = true;
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
            self.queue.pop_front();
        }
        None
    }
}

/// One registered sleep (see the module doc).
struct Sleep {
    wheel: Rc<RefCell<Wheel>>,
    origin: Instant,
    due: u64,
    slot: Option<(u32, u32)>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut w = this.wheel.borrow_mut();
        match this.slot {
            Some((slot, gen)) => {
                let s = &mut w.slots[slot as usize];
                debug_assert_eq!(s.gen, gen, "a registered sleep owns its slot");
                if s.fired {
                    drop(w);
                    if let Some((slot, gen)) = this.slot.take() {
                        this.wheel.borrow_mut().release(slot, gen);
                    }
                    return Poll::Ready(());
                }
                if !s.waker.as_ref().is_some_and(|k| k.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            None => {
                let reg = w.register(this.due, cx.waker());
                this.slot = Some(reg);
                if !w.running {
                    w.running = true;
                    drop(w);
                    glommio::spawn_local(sweep(Rc::clone(&this.wheel), this.origin)).detach();
                } else if w.armed_for.is_none_or(|at| this.due < at) {
                    // The sweeper sleeps past this deadline (or is about to look): re-arm.
                    if let Some(k) = w.sweeper.take() {
                        k.wake();
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((slot, gen)) = self.slot.take() {
            if let Ok(mut w) = self.wheel.try_borrow_mut() {
                w.release(slot, gen);
            }
        }
    }
}

/// Sleeps until the earliest pending deadline, fires every sleep due, repeats; ends when it
/// finds none pending.
async fn sweep(wheel: Rc<RefCell<Wheel>>, origin: Instant) {
    let mut timer: Option<(u64, Timer)> = None;
    std::future::poll_fn(|cx| loop {
        let mut w = wheel.borrow_mut();
        let now = elapsed_ms(origin);
        let Some(next) = w.fire_due(now) else {
            w.running = false;
            w.armed_for = None;
            w.sweeper = None;
            return Poll::Ready(());
        };
        // A timer armed for an earlier deadline (whose sleep was dropped since) fires early and
        // the loop re-arms; one armed too late is replaced.
        if timer.as_ref().is_none_or(|(at, _)| *at > next) {
            timer = Some((next, Timer::new(Duration::from_millis(next - now))));
        }
        let at = timer.as_ref().map_or(next, |(at, _)| *at);
        w.armed_for = Some(at);
        if !w.sweeper.as_ref().is_some_and(|k| k.will_wake(cx.waker())) {
            w.sweeper = Some(cx.waker().clone());
        }
        drop(w);
        if let Some((_, t)) = timer.as_mut() {
            if Pin::new(t).poll(cx).is_ready() {
                timer = None;
                continue;
            }
        }
        return Poll::Pending;
    })
    .await;
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

    /// Waits (bounded) until `cond` holds, yielding to the executor in between.
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            futures_lite::future::yield_now().await;
        }
    }

    #[test]
    fn sleeps_of_mixed_durations_complete_in_order_never_early() {
        glommio::LocalExecutor::default().run(async {
            let c = Rc::new(GlommioClock::new());
            let done = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            // Registered longest first, so every shorter one must re-arm the sweeper.
            for ms in [60u64, 40, 5, 25, 1, 0] {
                let (c, done) = (c.clone(), done.clone());
                tasks.push(glommio::spawn_local(async move {
                    let t0 = c.now_ms();
                    c.sleep(Duration::from_millis(ms)).await;
                    assert!(c.now_ms() >= t0 + ms, "{ms} ms sleep woke early");
                    done.borrow_mut().push(ms);
                }));
            }
            for t in tasks {
                t.await;
            }
            assert_eq!(*done.borrow(), vec![0, 1, 5, 25, 40, 60]);
            assert_eq!(c.pending_sleeps(), 0);
            eventually("the sweeper to end", || !c.sweeper_running()).await;
            // A later sleep starts a new sweeper.
            let t0 = c.now_ms();
            c.sleep_until(t0 + 3).await;
            assert!(c.now_ms() >= t0 + 3);
        });
    }

    #[test]
    fn a_dropped_sleep_frees_its_slot_and_does_not_delay_others() {
        glommio::LocalExecutor::default().run(async {
            let c = GlommioClock::new();
            let long = {
                let mut f = Box::pin(c.sleep(Duration::from_secs(30)));
                assert!(futures_lite::future::poll_once(f.as_mut()).await.is_none());
                f
            };
            assert_eq!(c.pending_sleeps(), 1);
            let started = Instant::now();
            c.sleep(Duration::from_millis(10)).await;
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "short sleep waited for long"
            );
            drop(long);
            assert_eq!(c.pending_sleeps(), 0);
            assert!(
                c.wheel.borrow().queue.is_empty(),
                "stale entry left at the front"
            );
            // Slots are reused after the drop.
            let slots = c.wheel.borrow().slots.len();
            for _ in 0..100 {
                let mut f = Box::pin(c.sleep(Duration::from_secs(30)));
                assert!(futures_lite::future::poll_once(f.as_mut()).await.is_none());
            }
            assert_eq!(c.pending_sleeps(), 0);
            assert_eq!(c.wheel.borrow().slots.len(), slots);
        });
    }
}
