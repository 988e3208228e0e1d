//! Request timeouts without a timer per request.
//!
//! `tokio::time::timeout` around every request registers a timer in tokio's wheel and removes
//! it again, about a thousand instructions a poll, for a timer that almost never fires. Here a
//! request that is still waiting after its first poll takes a slot in its client's
//! [`Deadlines`], and one watcher task per client sleeps until the earliest deadline: requests
//! that finish in time only take and give back their slot. As every request of a client has
//! the same limit, the watcher wakes about once per limit while requests keep finishing in
//! time (it then sleeps until the oldest one's deadline), and ends once no request waits.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The deadlines of one client's requests in flight.
pub(crate) struct Deadlines {
    limit: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Whether a watcher task is running, and which one (its generation).
    watching: bool,
    generation: u64,
}

struct Entry {
    deadline: Instant,
    waker: Waker,
    expired: bool,
}

impl Deadlines {
    pub(crate) fn new(limit: Duration) -> Arc<Self> {
        Arc::new(Deadlines { limit, state: Mutex::default() })
    }

    /// The time a request may take.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks and wakes the requests whose deadline has passed; the earliest deadline still to
    /// come, or `None` when no request waits (the watcher then ends).
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut wake = Vec::new();
        let mut next: Option<Instant> = None;
        let mut state = self.lock();
        for entry in state.slots.iter_mut().flatten().filter(|e| !e.expired) {
            if entry.deadline <= now {
                entry.expired = true;
                wake.push(entry.waker.clone());
            } else {
                next = Some(next.map_or(entry.deadline, |n| n.min(entry.deadline)));
            }
        }
        if next.is_none() {
            state.watching = false;
        }
        drop(state);
        for waker in wake {
            waker.wake();
        }
        next
    }
}

/// A request's slot among its client's deadlines, taken at its first wait (given back when
/// dropped).
pub(crate) struct Ticket<'d> {
    deadlines: &'d Arc<Deadlines>,
    slot: Option<usize>,
}

impl<'d> Ticket<'d> {
    pub(crate) fn new(deadlines: &'d Arc<Deadlines>) -> Self {
        Ticket { deadlines, slot: None }
    }

    /// The time the request may take.
    pub(crate) fn limit(&self) -> Duration {
        self.deadlines.limit
    }

    /// Called when the request waits: takes a slot on the first call, else updates the waker;
    /// whether the deadline passed.
    pub(crate) fn expired(&mut self, waker: &Waker) -> bool {
        let mut state = self.deadlines.lock();
        let deadline = match self.slot.and_then(|slot| state.slots.get_mut(slot)?.as_mut()) {
            Some(entry) if entry.expired => return true,
            Some(entry) => {
                if !entry.waker.will_wake(waker) {
                    entry.waker.clone_from(waker);
                }
                entry.deadline
            }
            None => {
                let deadline = far_enough(Instant::now(), self.deadlines.limit);
                let entry = Entry { deadline, waker: waker.clone(), expired: false };
                let slot = match state.free.pop() {
                    Some(slot) => slot,
                    None => {
                        state.slots.push(None);
                        state.slots.len() - 1
                    }
                };
                if let Some(free) = state.slots.get_mut(slot) {
                    *free = Some(entry);
                }
                self.slot = Some(slot);
                deadline
            }
        };
        if !state.watching {
            // Made here, not in the task: a runtime without time panics here, where the
            // client's guard turns it into an error.
            let sleep = Box::pin(tokio::time::sleep_until(deadline));
            state.watching = true;
            state.generation = state.generation.wrapping_add(1);
            // The guard exists before the task: a task dropped unpolled (its runtime shutting
            // down) still says it stopped.
            let stopped =
                Stopped { deadlines: Arc::downgrade(self.deadlines), generation: state.generation };
            drop(state);
            tokio::spawn(watch(stopped, sleep));
        }
        false
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut state = self.deadlines.lock();
            if let Some(entry) = state.slots.get_mut(slot) {
                *entry = None;
                state.free.push(slot);
            }
        }
    }
}

/// The watcher: sleeps until the earliest deadline, expires what is due, and so on while
/// requests wait.
async fn watch(stopped: Stopped, mut sleep: std::pin::Pin<Box<Sleep>>) {
    loop {
        sleep.as_mut().await;
        let Some(client) = stopped.deadlines.upgrade() else { return };
        match client.expire(Instant::now()) {
            Some(next) => sleep.as_mut().reset(next),
            None => return,
        }
    }
}

/// Says the watcher stopped, however it ends (its runtime may shut down under it), and wakes
/// the requests still waiting: the first of them to be polled, on its own runtime, starts
/// another watcher.
struct Stopped {
    deadlines: Weak<Deadlines>,
    generation: u64,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let Some(client) = self.deadlines.upgrade() else { return };
        let mut state = client.lock();
        if state.generation != self.generation || !state.watching {
            return;
        }
        state.watching = false;
        let waiting: Vec<Waker> =
            state.slots.iter().flatten().filter(|e| !e.expired).map(|e| e.waker.clone()).collect();
        drop(state);
        for waker in waiting {
            waker.wake();
        }
    }
}

/// `now + limit`, or about thirty years on if that overflows tokio's clock.
fn far_enough(now: Instant, limit: Duration) -> Instant {
    now.checked_add(limit).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;

    /// `work` for at most the limit; `None` if the limit ran out first (as the client does).
    async fn within<F: Future>(deadlines: &Arc<Deadlines>, work: F) -> Option<F::Output> {
        let mut work = pin!(work);
        let mut ticket = Ticket::new(deadlines);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            if ticket.expired(cx.waker()) { Poll::Ready(None) } else { Poll::Pending }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_finishes_in_time_gives_its_slot_back() {
        let deadlines = Deadlines::new(Duration::from_secs(30));
        for _ in 0..3 {
            let out = within(&deadlines, tokio::time::sleep(Duration::from_secs(1))).await;
            assert!(out.is_some());
        }
        let state = deadlines.lock();
        assert!(state.slots.iter().all(Option::is_none));
        assert_eq!(state.slots.len(), 1, "one slot, reused");
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_limit_ends_at_the_limit() {
        let deadlines = Deadlines::new(Duration::from_secs(30));
        let started = Instant::now();
        let out = within(&deadlines, std::future::pending::<()>()).await;
        assert!(out.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_gets_its_whole_limit_however_late_it_starts() {
        let deadlines = Deadlines::new(Duration::from_secs(30));
        // A first request starts the watcher, whose first wake-up is its deadline.
        assert!(within(&deadlines, tokio::time::sleep(Duration::from_secs(1))).await.is_some());
        tokio::time::sleep(Duration::from_secs(20)).await;
        // This one starts at 21 s: the watcher, woken at 31 s, must not cut it before 51 s.
        let started = Instant::now();
        let out = within(&deadlines, tokio::time::sleep(Duration::from_secs(29))).await;
        assert!(out.is_some(), "cut short after {:?}", started.elapsed());
        let out = within(&deadlines, std::future::pending::<()>()).await;
        assert!(out.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_at_once_each_keep_their_own_deadline() {
        let deadlines = Deadlines::new(Duration::from_secs(10));
        let slow = within(&deadlines, std::future::pending::<()>());
        let quick = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            within(&deadlines, tokio::time::sleep(Duration::from_secs(8))).await
        };
        let (slow, quick) = tokio::join!(slow, quick);
        assert!(slow.is_none());
        assert!(quick.is_some(), "its 10 s run from 5 s");
    }

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    }

    #[test]
    fn a_watcher_dropped_before_it_ever_ran_leaves_room_for_another() {
        let deadlines = Deadlines::new(Duration::from_secs(30));
        let first = paused_runtime();
        first.block_on(async {
            // Registers (spawning the watcher) and returns before the watcher is ever polled.
            let waiting = within(&deadlines, std::future::pending::<()>());
            let mut waiting = std::pin::pin!(waiting);
            let noop = Waker::noop();
            assert!(waiting.as_mut().poll(&mut std::task::Context::from_waker(noop)).is_pending());
        });
        drop(first);
        assert!(!deadlines.lock().watching, "the unpolled watcher said it stopped");
    }

    #[test]
    fn a_runtime_that_shuts_down_under_the_watcher_leaves_room_for_another() {
        let deadlines = Deadlines::new(Duration::from_secs(30));
        let first = paused_runtime();
        first.block_on(async {
            let waiting = within(&deadlines, std::future::pending::<()>());
            let _ = tokio::time::timeout(Duration::from_millis(10), waiting).await;
        });
        drop(first);
        assert!(!deadlines.lock().watching, "the watcher went with its runtime");
        let second = paused_runtime();
        let out = second.block_on(within(&deadlines, std::future::pending::<()>()));
        assert!(out.is_none(), "a new watcher ended the request");
    }
}
