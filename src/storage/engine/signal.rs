//! `Signal`: a single-threaded "something changed" broadcast for tasks of one executor.
//! Create the waiter *before* checking the condition (`let w = s.wait(); if ready {..}
//! w.await`), so a notify between the check and the await is never lost.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub(crate) struct Signal {
    epoch: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    pub(crate) fn notify(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        let ws = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in ws {
            w.wake();
        }
    }

    pub(crate) fn wait(&self) -> SignalWait<'_> {
        SignalWait {
            sig: self,
            epoch: self.epoch.get(),
        }
    }
}

pub(crate) struct SignalWait<'a> {
    sig: &'a Signal,
    epoch: u64,
}

impl Future for SignalWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.sig.epoch.get() != self.epoch {
            return Poll::Ready(());
        }
        let mut ws = self.sig.waiters.borrow_mut();
        if !ws.iter().any(|w| w.will_wake(cx.waker())) {
            ws.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
