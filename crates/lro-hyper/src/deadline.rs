//! Request timeouts without a timer in the runtime.
//!
//! `tokio::time::timeout` around every request registers a timer in tokio's wheel and removes
//! it again, about a thousand instructions a request; and while any timer is pending in a
//! runtime, each of its waits for IO arms a kernel timer too (some 3% of a zero-wait poll's CPU
//! on the benchmark's VM). Here a request that is still waiting after its first poll takes a
//! slot in one table for the whole process, and one thread sleeps until the earliest deadline:
//! requests that finish in time only take and give back their slot. The thread is told of a
//! request only when its deadline comes before the thread's next wake-up (the first request
//! after an idle spell, or one with a shorter limit): while requests keep finishing in time it
//! wakes about once per limit.
//!
//! Deadlines are kept in real time whatever the runtime's clock (a paused test clock does not
//! end requests that real IO is still answering), and on any executor: a runtime built without
//! time keeps them too.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

/// The table of the process's requests in flight, and the thread that watches it.
static WATCH: Watch = Watch::new();

/// Deadlines of requests in flight, and the means to tell their watching thread of a sooner
/// one.
pub(crate) struct Watch {
    table: Mutex<Table>,
    sooner: Condvar,
}

struct Table {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// When the watching thread wakes next (`None`: when it is told to).
    next_wake: Option<Instant>,
    /// Whether the watching thread was started.
    started: bool,
}

struct Entry {
    deadline: Instant,
    waker: Waker,
    expired: bool,
}

impl Watch {
    const fn new() -> Self {
        Watch {
            table: Mutex::new(Table {
                slots: Vec::new(),
                free: Vec::new(),
                next_wake: None,
                started: false,
            }),
            sooner: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The watching thread: wakes the requests whose deadline has passed, then sleeps until the
    /// earliest deadline to come, or until told of a sooner one.
    fn watch(&'static self) {
        let mut table = self.lock();
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            let mut next: Option<Instant> = None;
            for entry in table.slots.iter_mut().flatten().filter(|e| !e.expired) {
                if entry.deadline <= now {
                    entry.expired = true;
                    due.push(entry.waker.clone());
                } else {
                    next = Some(next.map_or(entry.deadline, |n| n.min(entry.deadline)));
                }
            }
            table.next_wake = next;
            if !due.is_empty() {
                // Outside the lock: a waker may run its task at once, which takes the lock.
                drop(table);
                due.into_iter().for_each(Waker::wake);
                table = self.lock();
                continue;
            }
            table = match next {
                None => self.sooner.wait(table).unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let left = at.saturating_duration_since(now);
                    self.sooner.wait_timeout(table, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }
}

/// A request's slot among the deadlines, taken at its first wait (given back when dropped).
pub(crate) struct Ticket {
    watch: &'static Watch,
    limit: Duration,
    slot: Option<usize>,
}

impl Ticket {
    /// The ticket of a request that may take `limit`.
    pub(crate) fn new(limit: Duration) -> Self {
        Self::watched_by(&WATCH, limit)
    }

    fn watched_by(watch: &'static Watch, limit: Duration) -> Self {
        Ticket { watch, limit, slot: None }
    }

    /// The time the request may take.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Called when the request waits: takes a slot on the first call, else updates the waker;
    /// whether the deadline passed. An error if the watching thread cannot be started.
    pub(crate) fn expired(&mut self, waker: &Waker) -> std::io::Result<bool> {
        let mut table = self.watch.lock();
        if let Some(entry) = self.slot.and_then(|slot| table.slots.get_mut(slot)?.as_mut()) {
            if !entry.expired && !entry.waker.will_wake(waker) {
                entry.waker.clone_from(waker);
            }
            return Ok(entry.expired);
        }
        let deadline = far_enough(Instant::now(), self.limit);
        if table.next_wake.is_none_or(|at| deadline < at) {
            if !table.started {
                let watch = self.watch;
                std::thread::Builder::new()
                    .name("lro-hyper-deadlines".into())
                    .stack_size(64 * 1024)
                    .spawn(move || watch.watch())?;
                table.started = true;
            }
            table.next_wake = Some(deadline);
            self.watch.sooner.notify_one();
        }
        let entry = Entry { deadline, waker: waker.clone(), expired: false };
        let slot = match table.free.pop() {
            Some(slot) => slot,
            None => {
                table.slots.push(None);
                table.slots.len() - 1
            }
        };
        if let Some(free) = table.slots.get_mut(slot) {
            *free = Some(entry);
        }
        self.slot = Some(slot);
        Ok(false)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut table = self.watch.lock();
            if let Some(entry) = table.slots.get_mut(slot) {
                *entry = None;
                table.free.push(slot);
            }
        }
    }
}

/// `now + limit`, or about thirty years on if that overflows the clock.
fn far_enough(now: Instant, limit: Duration) -> Instant {
    now.checked_add(limit)
        .or_else(|| now.checked_add(Duration::from_secs(86_400 * 365 * 30)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;

    /// A table and thread of the test's own (tests run at once; each leaks one idle thread).
    fn own_watch() -> &'static Watch {
        Box::leak(Box::new(Watch::new()))
    }

    /// `work` for at most `limit`; `None` if the limit ran out first (as the client does).
    async fn within<F: Future>(
        watch: &'static Watch,
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
    async fn work_that_finishes_in_time_gives_its_slot_back() {
        let watch = own_watch();
        for _ in 0..3 {
            let out = within(watch, LIMIT, tokio::time::sleep(Duration::from_millis(10))).await;
            assert!(out.is_some());
        }
        let table = watch.lock();
        assert!(table.slots.iter().all(Option::is_none));
        assert_eq!(table.slots.len(), 1, "one slot, reused");
    }

    #[tokio::test]
    async fn work_past_the_limit_ends_at_the_limit_and_not_before() {
        let watch = own_watch();
        let started = Instant::now();
        let out = within(watch, LIMIT, std::future::pending::<()>()).await;
        assert!(out.is_none());
        let took = started.elapsed();
        assert!(took >= LIMIT, "ended early, after {took:?}");
        assert!(took < LIMIT * 4, "ended late, after {took:?}");
    }

    #[tokio::test]
    async fn each_request_gets_its_whole_limit_however_late_it_starts() {
        let watch = own_watch();
        // A first request starts the thread, whose first wake-up is that request's deadline.
        assert!(
            within(watch, LIMIT, tokio::time::sleep(Duration::from_millis(10))).await.is_some()
        );
        tokio::time::sleep(LIMIT / 2).await;
        // This one starts after half a limit: the thread, woken at the first deadline, must
        // not cut it short.
        let out = within(watch, LIMIT, tokio::time::sleep(LIMIT * 2 / 3)).await;
        assert!(out.is_some(), "cut short");
        assert!(within(watch, LIMIT, std::future::pending::<()>()).await.is_none());
    }

    #[tokio::test]
    async fn a_shorter_limit_wakes_the_thread_sooner() {
        let watch = own_watch();
        let long = within(watch, Duration::from_secs(60), std::future::pending::<()>());
        let short = async {
            tokio::task::yield_now().await; // after the long one has made the thread sleep
            let started = Instant::now();
            let out = within(watch, LIMIT, std::future::pending::<()>()).await;
            (out, started.elapsed())
        };
        let (out, took) = tokio::select! {
            biased;
            _ = long => unreachable!("a minute has not passed"),
            ended = short => ended,
        };
        assert!(out.is_none());
        assert!(took < LIMIT * 4, "the thread slept on until the long deadline: {took:?}");
    }

    #[test]
    fn deadlines_hold_on_a_runtime_without_time() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let out = runtime.block_on(within(own_watch(), LIMIT, std::future::pending::<()>()));
        assert!(out.is_none());
    }

    #[test]
    fn a_limit_beyond_the_clock_is_far_away_and_never_overflows() {
        let now = Instant::now();
        assert!(far_enough(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
        assert_eq!(far_enough(now, LIMIT), now + LIMIT);
    }
}
