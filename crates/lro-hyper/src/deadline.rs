//! Request timeouts without a timer in the runtime: a request still waiting after its first
//! poll takes a slot in the process's [`DeadlineWatch`] (its thread wakes the request when its
//! time is up) and gives it back when it ends.
//!
//! `tokio::time::timeout` around every request registers a timer in tokio's wheel and removes
//! it again, about a thousand instructions a request; and while any timer is pending in a
//! runtime, each of its waits for IO arms a kernel timer too. Deadlines kept this way are in
//! real time whatever the runtime's clock (a paused test clock does not end requests that real
//! IO is still answering), and on any executor: a runtime built without time keeps them too.

use std::task::Waker;
use std::time::{Duration, Instant};

use lro_core::deadline::{DeadlineWatch, Slot, deadline_after};

/// The deadlines of the process's requests in flight.
static WATCH: DeadlineWatch<Waker> = DeadlineWatch::new("lro-hyper-deadlines");

/// A request's slot among the deadlines, taken at its first wait (given back when dropped).
pub(crate) struct Ticket {
    watch: &'static DeadlineWatch<Waker>,
    limit: Duration,
    slot: Option<Slot>,
    /// The watch's expirations when the slot was last checked, and the waker it holds (its
    /// data and vtable addresses): while neither changes, a poll needs no lock.
    seen: (u64, usize, usize),
}

impl Ticket {
    /// The ticket of a request that may take `limit`.
    pub(crate) fn new(limit: Duration) -> Self {
        Self::watched_by(&WATCH, limit)
    }

    fn watched_by(watch: &'static DeadlineWatch<Waker>, limit: Duration) -> Self {
        Ticket { watch, limit, slot: None, seen: (0, 0, 0) }
    }

    /// The time the request may take.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Called when the request waits: takes a slot on the first call, else updates the waker;
    /// whether the deadline passed. An error if the watching thread cannot be started.
    pub(crate) fn expired(&mut self, waker: &Waker) -> std::io::Result<bool> {
        // Read before the slot is taken or checked: an expiry after it changes the count.
        let expirations = self.watch.expirations();
        let seen =
            (expirations, waker.data() as usize, std::ptr::from_ref(waker.vtable()) as usize);
        match self.slot {
            Some(_) if seen == self.seen => Ok(false),
            Some(slot) => {
                self.seen = seen;
                Ok(self.watch.check(slot, |kept| {
                    if !kept.will_wake(waker) {
                        kept.clone_from(waker);
                    }
                }))
            }
            None => {
                let deadline = deadline_after(Instant::now(), self.limit);
                self.slot = Some(self.watch.insert(deadline, waker.clone())?);
                self.seen = seen;
                Ok(false)
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.watch.remove(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;

    /// A watch of the test's own (tests run at once; each leaks one idle thread).
    fn own_watch() -> &'static DeadlineWatch<Waker> {
        Box::leak(Box::new(DeadlineWatch::new("lro-hyper-test-deadlines")))
    }

    /// `work` for at most `limit`; `None` if the limit ran out first (as the client does).
    async fn within<F: Future>(
        watch: &'static DeadlineWatch<Waker>,
        limit: Duration,
        work: F,
    ) -> Option<F::Output> {
        let mut work = pin!(work);
        let mut ticket = Ticket::watched_by(watch, limit);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if ticket.expired(cx.waker()).unwrap() { Poll::Ready(None) } else { Poll::Pending }
        })
        .await
    }

    // Real time, as the deadlines keep it: limits of a few tenths of a second.
    const LIMIT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn work_past_the_limit_is_woken_at_the_limit_and_not_before() {
        let started = Instant::now();
        let out = within(own_watch(), LIMIT, std::future::pending::<()>()).await;
        assert!(out.is_none());
        let took = started.elapsed();
        assert!(took >= LIMIT, "ended early, after {took:?}");
        assert!(took < LIMIT * 10, "ended late, after {took:?}");
    }

    #[tokio::test]
    async fn work_that_finishes_in_time_is_not_cut_short() {
        let watch = own_watch();
        for _ in 0..3 {
            // Ten milliseconds of work in five seconds: in time even on a loaded machine.
            let limit = Duration::from_secs(5);
            let out = within(watch, limit, tokio::time::sleep(Duration::from_millis(10))).await;
            assert!(out.is_some());
        }
    }

    /// A waker that counts its wake-ups.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn the_waker_of_the_latest_poll_is_the_one_woken() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (first, second) =
            (Arc::new(Counted(AtomicUsize::new(0))), Arc::new(Counted(AtomicUsize::new(0))));
        // A second: both polls below come before it, even on a loaded machine.
        let mut ticket = Ticket::watched_by(own_watch(), Duration::from_secs(1));
        assert!(!ticket.expired(&Waker::from(first.clone())).unwrap());
        // Polled again by another task (a select, a join): the new waker replaces the old one,
        // though nothing else changed.
        assert!(!ticket.expired(&Waker::from(second.clone())).unwrap());
        let started = Instant::now();
        while second.0.load(Ordering::SeqCst) == 0 && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(second.0.load(Ordering::SeqCst), 1, "the latest waker was woken");
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "the replaced one was not");
        assert!(ticket.expired(&Waker::from(second)).unwrap());
    }

    #[test]
    fn deadlines_hold_on_a_runtime_without_time() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let out = runtime.block_on(within(own_watch(), LIMIT, std::future::pending::<()>()));
        assert!(out.is_none());
    }
}
