//! A seeded, deterministic, single-threaded executor with virtual time: a task slab, a ready
//! queue drained in seeded-random order, and a timer map. Time only advances when no task is
//! ready, straight to the next timer, so nothing ever really sleeps.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::runtime::clock::{Clock, LocalTask, Spawner};

/// Offset of the simulated wall clock (keeps `unix_ms` plausible).
const UNIX_EPOCH_OFFSET_MS: u64 = 1_700_000_000_000;

pub struct Sim {
    now: Cell<u64>,
    rng: RefCell<StdRng>,
    tasks: RefCell<Vec<Option<LocalTask>>>,
    /// One waker per task, so `Waker::will_wake` lets sleepers skip re-registering.
    wakers: RefCell<Vec<Waker>>,
    live_tasks: Cell<usize>,
    ready: Arc<Mutex<ReadyQueue>>,
    timers: RefCell<BTreeMap<(u64, u64), Waker>>,
    timer_seq: Cell<u64>,
    polls: Cell<u64>,
}

/// Woken tasks, each at most once.
#[derive(Default)]
struct ReadyQueue {
    queue: VecDeque<usize>,
    queued: BTreeSet<usize>,
}

impl ReadyQueue {
    fn push(&mut self, id: usize) {
        if self.queued.insert(id) {
            self.queue.push_back(id);
        }
    }
}

struct TaskWaker {
    id: usize,
    ready: Arc<Mutex<ReadyQueue>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(mut q) = self.ready.lock() {
            q.push(self.id);
        }
    }
}

/// Why a run stopped before its condition held.
#[derive(Debug, PartialEq, Eq)]
pub enum Stall {
    /// Nothing ready and no timer pending: some future waits for an event that cannot come.
    Deadlock { now_ms: u64, live_tasks: usize },
    /// Virtual time passed the limit.
    TimeLimit { now_ms: u64 },
    /// Too many polls (a livelock).
    PollLimit,
}

impl Sim {
    pub fn new(seed: u64) -> Rc<Sim> {
        Rc::new(Sim {
            now: Cell::new(0),
            rng: RefCell::new(StdRng::seed_from_u64(seed)),
            tasks: RefCell::new(Vec::new()),
            wakers: RefCell::new(Vec::new()),
            live_tasks: Cell::new(0),
            ready: Arc::new(Mutex::new(ReadyQueue::default())),
            timers: RefCell::new(BTreeMap::new()),
            timer_seq: Cell::new(0),
            polls: Cell::new(0),
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.now.get()
    }

    /// A uniformly random value in `range` from the run's seeded generator.
    pub fn gen_range<T, R>(&self, range: R) -> T
    where
        T: rand::distributions::uniform::SampleUniform,
        R: rand::distributions::uniform::SampleRange<T>,
    {
        self.rng.borrow_mut().gen_range(range)
    }

    pub fn chance(&self, p: f64) -> bool {
        self.rng.borrow_mut().gen_bool(p.clamp(0.0, 1.0))
    }

    pub fn spawn(&self, fut: impl Future<Output = ()> + 'static) {
        self.spawn_boxed(Box::pin(fut));
    }

    fn spawn_boxed(&self, fut: LocalTask) {
        let id = {
            let mut tasks = self.tasks.borrow_mut();
            tasks.push(Some(fut));
            tasks.len() - 1
        };
        self.wakers
            .borrow_mut()
            .push(Waker::from(Arc::new(TaskWaker {
                id,
                ready: Arc::clone(&self.ready),
            })));
        self.live_tasks.set(self.live_tasks.get() + 1);
        self.push_ready(id);
    }

    fn push_ready(&self, id: usize) {
        if let Ok(mut q) = self.ready.lock() {
            q.push(id);
        }
    }

    fn pop_ready(&self) -> Option<usize> {
        let mut q = self.ready.lock().ok()?;
        if q.queue.is_empty() {
            return None;
        }
        // Seeded-random choice among ready tasks explores more interleavings than FIFO.
        let i = self.rng.borrow_mut().gen_range(0..q.queue.len());
        let id = q.queue.swap_remove_back(i)?;
        q.queued.remove(&id);
        Some(id)
    }

    pub fn live_tasks(&self) -> usize {
        self.live_tasks.get()
    }

    /// Run until `done()` holds (checked whenever no task is ready), every task has finished,
    /// or a limit is hit.
    pub fn run_until(
        &self,
        mut done: impl FnMut() -> bool,
        time_limit_ms: u64,
    ) -> Result<(), Stall> {
        const POLL_LIMIT: u64 = 50_000_000;
        loop {
            while let Some(id) = self.pop_ready() {
                self.poll_task(id);
                if self.polls.get() > POLL_LIMIT {
                    return Err(Stall::PollLimit);
                }
            }
            if done() {
                return Ok(());
            }
            let next = self.timers.borrow().keys().next().copied();
            match next {
                Some((at, _)) => {
                    if at > time_limit_ms {
                        return Err(Stall::TimeLimit {
                            now_ms: self.now.get(),
                        });
                    }
                    self.now.set(self.now.get().max(at));
                    self.fire_due_timers();
                }
                None if self.live_tasks.get() == 0 => return Ok(()),
                None => {
                    return Err(Stall::Deadlock {
                        now_ms: self.now.get(),
                        live_tasks: self.live_tasks.get(),
                    })
                }
            }
        }
    }

    fn fire_due_timers(&self) {
        let now = self.now.get();
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.first_key_value() {
                    Some((&(at, _), _)) if at <= now => timers.pop_first().map(|(_, w)| w),
                    _ => None,
                }
            };
            match due {
                Some(w) => w.wake(),
                None => return,
            }
        }
    }

    fn poll_task(&self, id: usize) {
        // Take the future out so it may spawn (borrowing the slab) while being polled.
        let fut = self.tasks.borrow_mut().get_mut(id).and_then(Option::take);
        let Some(mut fut) = fut else { return };
        self.polls.set(self.polls.get() + 1);
        let Some(waker) = self.wakers.borrow().get(id).cloned() else {
            return;
        };
        let mut cx = Context::from_waker(&waker);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(()) => self.live_tasks.set(self.live_tasks.get() - 1),
            Poll::Pending => {
                if let Some(slot) = self.tasks.borrow_mut().get_mut(id) {
                    *slot = Some(fut);
                }
            }
        }
    }

    fn register_timer(&self, at: u64, waker: Waker) {
        let seq = self.timer_seq.get();
        self.timer_seq.set(seq + 1);
        self.timers.borrow_mut().insert((at, seq), waker);
    }

    /// A future completing at virtual time `now + d`.
    pub fn sleep(self: &Rc<Self>, d: Duration) -> SimSleep {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        SimSleep {
            sim: Rc::clone(self),
            at: self.now.get().saturating_add(ms),
            registered: None,
        }
    }
}

pub struct SimSleep {
    sim: Rc<Sim>,
    at: u64,
    registered: Option<Waker>,
}

impl Future for SimSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.sim.now.get() >= self.at {
            return Poll::Ready(());
        }
        // Re-register only for a different waker: polling a sleeper again (fan-outs poll every
        // pending call on each wake) must not multiply timers.
        if !self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.sim.register_timer(self.at, cx.waker().clone());
            self.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// [`Clock`] and [`Spawner`] of the simulation.
#[derive(Clone)]
pub struct SimRuntime(pub Rc<Sim>);

impl Clock for SimRuntime {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn unix_ms(&self) -> u64 {
        UNIX_EPOCH_OFFSET_MS + self.0.now_ms()
    }
    async fn sleep(&self, d: Duration) {
        self.0.sleep(d).await
    }
}

impl Spawner for SimRuntime {
    fn spawn(&self, task: LocalTask) {
        self.0.spawn_boxed(task);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_orders_sleepers_and_never_waits() {
        let sim = Sim::new(1);
        let log = Rc::new(RefCell::new(Vec::new()));
        for (name, ms) in [("c", 30u64), ("a", 10), ("b", 20)] {
            let (s, log) = (Rc::clone(&sim), Rc::clone(&log));
            sim.spawn(async move {
                s.sleep(Duration::from_millis(ms)).await;
                log.borrow_mut().push((name, s.now_ms()));
            });
        }
        sim.run_until(|| false, 1_000).unwrap();
        assert_eq!(*log.borrow(), vec![("a", 10), ("b", 20), ("c", 30)]);
        assert_eq!(sim.live_tasks(), 0);
    }

    #[test]
    fn detects_deadlock() {
        let sim = Sim::new(1);
        sim.spawn(std::future::pending());
        assert!(matches!(
            sim.run_until(|| false, 1_000),
            Err(Stall::Deadlock { .. })
        ));
    }
}
