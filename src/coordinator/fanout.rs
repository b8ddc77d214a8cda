//! Concurrent calls to a handful of replicas under one deadline, yielding replies as they come.
//! Executor-agnostic (no spawning): the owner polls it, and may hand it to a background task to
//! collect late replies after a quorum was reached.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::protocol::{Replica, ReplicaRequest, ReplicaResponse, ReplicaTransport};
use crate::runtime::clock::Clock;
use crate::runtime::transport::TransportError;

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;
pub(crate) type CallResult = Result<ReplicaResponse, TransportError>;

pub(crate) enum Next {
    Reply(Replica, CallResult),
    /// The deadline passed; every call still pending is abandoned (and was dropped).
    Expired,
    /// Every call has answered.
    Done,
}

enum Slot {
    Running(LocalBoxFuture<CallResult>),
    Answered,
    /// Dropped at the deadline without an answer.
    Abandoned,
}

/// In-flight calls, polled together; at most one per replica of a preference list.
pub(crate) struct FanOut {
    pending: Vec<(Replica, Slot)>,
    deadline: LocalBoxFuture<()>,
    expired: bool,
}

impl FanOut {
    /// Start one call per `(replica, request)`, all bounded by `deadline_ms` on `clock`.
    pub(crate) fn start<T: ReplicaTransport, C: Clock>(
        transport: &Rc<T>,
        clock: &Rc<C>,
        deadline_ms: u64,
        calls: impl IntoIterator<Item = (Replica, ReplicaRequest)>,
    ) -> FanOut {
        let pending = calls
            .into_iter()
            .map(|(to, req)| {
                let t = Rc::clone(transport);
                let fut: LocalBoxFuture<CallResult> =
                    Box::pin(async move { t.call(to, req).await });
                (to, Slot::Running(fut))
            })
            .collect();
        let c = Rc::clone(clock);
        FanOut {
            pending,
            // Registered at its first poll, i.e. only when a call did not answer at once.
            deadline: Box::pin(async move { c.sleep_until(deadline_ms).await }),
            expired: false,
        }
    }

    /// Replicas that have not answered (still running, or abandoned at the deadline).
    pub(crate) fn unanswered(&self) -> impl Iterator<Item = Replica> + '_ {
        self.pending
            .iter()
            .filter(|(_, s)| !matches!(s, Slot::Answered))
            .map(|(r, _)| *r)
    }

    pub(crate) async fn next(&mut self) -> Next {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        if self.expired {
            return Poll::Ready(Next::Expired);
        }
        let mut any_pending = false;
        for (replica, slot) in &mut self.pending {
            if let Slot::Running(fut) = slot {
                any_pending = true;
                if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                    *slot = Slot::Answered;
                    return Poll::Ready(Next::Reply(*replica, out));
                }
            }
        }
        if !any_pending {
            return Poll::Ready(Next::Done);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            // Drop the calls now so their resources go, but remember who they were.
            for (_, slot) in &mut self.pending {
                if matches!(slot, Slot::Running(_)) {
                    *slot = Slot::Abandoned;
                }
            }
            return Poll::Ready(Next::Expired);
        }
        Poll::Pending
    }
}
