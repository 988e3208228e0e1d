//! Request deadlines watched by one thread, for transports: [`DeadlineWatch`].
//!
//! A timer per request costs a transport on every request, and a timer left pending costs the
//! whole program: while one is pending in a tokio runtime, each of its waits for IO arms a
//! kernel timer, and a socket with a receive timeout arms one at each blocking read (some 3% of
//! a zero-wait poll's CPU each, on the benchmark's VM). A `DeadlineWatch` keeps the deadlines
//! of requests in flight in one table: a request takes a slot when it starts to wait and gives
//! it back when it ends, and one thread sleeps until the earliest deadline, then acts on the
//! requests whose time is up ([`Expire`]). The thread is told of a request only when its
//! deadline comes before the thread's next wake-up (the first request after an idle spell, or
//! one with a shorter limit): while requests keep finishing in time it wakes about once per
//! limit. Deadlines are in real time ([`Instant`]), whatever clock a poller is given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

/// What is done to a request whose deadline passed.
pub trait Expire: Send + 'static {
    /// Called by the watching thread, under the table's lock, once the deadline has passed: it
    /// must not block nor call the watch. A waker returned is woken after the lock is
    /// released (a waker may run its task at once, which may call the watch).
    fn expire(&self) -> Option<Waker>;
}

impl Expire for Waker {
    fn expire(&self) -> Option<Waker> {
        Some(self.clone())
    }
}

/// The deadlines of requests in flight and the thread that watches them, meant to be a `static`
/// of the transport.
///
/// ```
/// use std::task::Waker;
/// use std::time::{Duration, Instant};
/// use lro_core::deadline::{DeadlineWatch, deadline_after};
///
/// static WATCH: DeadlineWatch<Waker> = DeadlineWatch::new("my-transport-deadlines");
///
/// // A request that waits for the first time: its task is woken once 30 s have passed.
/// let deadline = deadline_after(Instant::now(), Duration::from_secs(30));
/// let slot = WATCH.insert(deadline, Waker::noop().clone())?;
/// // Polled again: has its time run out? (else keep the newest waker)
/// assert!(!WATCH.check(slot, |kept| kept.clone_from(Waker::noop())));
/// // Answered in time: the slot goes back, and nothing was done to the request.
/// assert!(!WATCH.remove(slot));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct DeadlineWatch<A> {
    name: &'static str,
    table: Mutex<Table<A>>,
    sooner: Condvar,
    /// How many requests have expired so far.
    expired: AtomicU64,
}

struct Table<A> {
    slots: Vec<Option<Entry<A>>>,
    free: Vec<usize>,
    /// When the watching thread wakes next (`None`: when it is told to).
    next_wake: Option<Instant>,
    /// Whether the watching thread was started.
    started: bool,
}

struct Entry<A> {
    deadline: Instant,
    action: A,
    expired: bool,
}

/// A request's place in a [`DeadlineWatch`], from [`DeadlineWatch::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

impl<A> std::fmt::Debug for DeadlineWatch<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineWatch").field("name", &self.name).finish_non_exhaustive()
    }
}

impl<A: Expire> DeadlineWatch<A> {
    /// An empty watch whose thread, started with the first request, is called `name`.
    #[must_use]
    pub const fn new(name: &'static str) -> Self {
        DeadlineWatch {
            name,
            table: Mutex::new(Table {
                slots: Vec::new(),
                free: Vec::new(),
                next_wake: None,
                started: false,
            }),
            sooner: Condvar::new(),
            expired: AtomicU64::new(0),
        }
    }

    /// How many requests have expired so far. A request whose last [`check`](Self::check)
    /// (or [`insert`](Self::insert)) saw the same count has not expired since: it may skip the
    /// check, and its lock (its action, if it changes, must still be given by a check).
    pub fn expirations(&self) -> u64 {
        self.expired.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Table<A>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watches a request that may run until `deadline`; `action` is done to it then, unless
    /// its slot was [removed](Self::remove) first. An error if the watching thread cannot be
    /// started.
    pub fn insert(&'static self, deadline: Instant, action: A) -> std::io::Result<Slot> {
        let mut table = self.lock();
        if table.next_wake.is_none_or(|at| deadline < at) {
            if !table.started {
                std::thread::Builder::new()
                    .name(self.name.into())
                    .stack_size(64 * 1024)
                    .spawn(move || self.watch())?;
                table.started = true;
            }
            table.next_wake = Some(deadline);
            self.sooner.notify_one();
        }
        let entry = Entry { deadline, action, expired: false };
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
        Ok(Slot(slot))
    }

    /// Whether the request's deadline passed (its action was done); else `update` may change
    /// its action.
    pub fn check(&self, slot: Slot, update: impl FnOnce(&mut A)) -> bool {
        let mut table = self.lock();
        match table.slots.get_mut(slot.0).and_then(Option::as_mut) {
            Some(entry) if !entry.expired => {
                update(&mut entry.action);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Gives the request's slot back; whether its deadline had passed (its action was done).
    pub fn remove(&self, slot: Slot) -> bool {
        let mut table = self.lock();
        let expired = match table.slots.get_mut(slot.0) {
            Some(entry @ Some(_)) => entry.take().is_some_and(|e| e.expired),
            _ => return false,
        };
        table.free.push(slot.0);
        expired
    }

    /// The watching thread: acts on the requests whose deadline has passed, then sleeps until
    /// the earliest deadline to come, or until told of a sooner one.
    fn watch(&'static self) {
        let mut table = self.lock();
        loop {
            // Real time: deadlines of requests on the network, not a poller's (injected) time.
            #[allow(clippy::disallowed_methods)]
            let now = Instant::now();
            let mut wake = Vec::new();
            let mut next: Option<Instant> = None;
            for entry in table.slots.iter_mut().flatten().filter(|e| !e.expired) {
                if entry.deadline <= now {
                    entry.expired = true;
                    self.expired.fetch_add(1, Ordering::Release);
                    wake.extend(entry.action.expire());
                } else {
                    next = Some(next.map_or(entry.deadline, |n| n.min(entry.deadline)));
                }
            }
            table.next_wake = next;
            if !wake.is_empty() {
                drop(table);
                wake.into_iter().for_each(Waker::wake);
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

/// `now + limit`, saturating at the far future (about a century ahead, never "now") when that
/// overflows the clock: the one rule for every deadline and due time of the workspace.
#[must_use]
pub fn deadline_after(now: Instant, limit: Duration) -> Instant {
    now.checked_add(limit).or_else(|| now.checked_add(crate::transport::FAR_FUTURE)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    // The watch keeps real time, and so do its tests: deadlines of a tenth of a second to a
    // second, and an expiry judged by when it came, never by a sleep shorter than a deadline.
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;
    use std::sync::{Arc, Mutex};

    /// When each expiration of a [`Count`] came (shared with the test).
    #[derive(Clone, Default)]
    struct Fired(Arc<Mutex<Vec<Instant>>>);

    impl Fired {
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }

        fn first(&self) -> Option<Instant> {
            self.0.lock().unwrap().first().copied()
        }
    }

    /// Records its expirations, with the time of each.
    struct Count(Fired);

    impl Expire for Count {
        fn expire(&self) -> Option<Waker> {
            self.0.0.lock().unwrap().push(Instant::now());
            None
        }
    }

    /// A watch of the test's own (tests run at once; each leaks one idle thread).
    fn own_watch() -> &'static DeadlineWatch<Count> {
        Box::leak(Box::new(DeadlineWatch::new("lro-test-deadlines")))
    }

    fn soon(millis: u64) -> Instant {
        Instant::now() + Duration::from_millis(millis)
    }

    /// Waits (real time: the watch keeps real time) until `done`, at most ten seconds.
    fn until(done: impl Fn() -> bool) {
        let started = Instant::now();
        while !done() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_request_removed_in_time_is_never_expired_and_its_slot_is_reused() {
        let watch = own_watch();
        let fired = Fired::default();
        // A second for each insert, check and remove: time enough on a loaded machine.
        let deadline = soon(1_000);
        for _ in 0..3 {
            let slot = watch.insert(deadline, Count(fired.clone())).unwrap();
            assert!(!watch.check(slot, |_| {}));
            assert!(!watch.remove(slot));
        }
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(fired.count(), 0);
        let table = watch.lock();
        assert_eq!(table.slots.len(), 1, "one slot, reused");
    }

    #[test]
    fn a_request_past_its_deadline_is_expired_once_and_says_so() {
        let watch = own_watch();
        let fired = Fired::default();
        let deadline = soon(100);
        let slot = watch.insert(deadline, Count(fired.clone())).unwrap();
        until(|| fired.count() > 0);
        assert!(fired.first().is_some_and(|at| at >= deadline), "expired early");
        assert!(watch.check(slot, |_| unreachable!("expired")));
        assert!(watch.remove(slot));
        assert_eq!(fired.count(), 1);
    }

    #[test]
    fn a_sooner_deadline_wakes_the_sleeping_thread() {
        let watch = own_watch();
        let (late, early) = (Fired::default(), Fired::default());
        let _late = watch.insert(soon(60_000), Count(late.clone())).unwrap();
        std::thread::sleep(Duration::from_millis(50)); // the thread sleeps for a minute now
        let started = Instant::now();
        let _early = watch.insert(soon(100), Count(early.clone())).unwrap();
        until(|| early.count() > 0);
        assert!(started.elapsed() < Duration::from_secs(5), "slept on: {:?}", started.elapsed());
        assert_eq!(late.count(), 0);
    }

    #[test]
    fn a_late_request_gets_its_whole_time_from_a_thread_woken_for_an_earlier_one() {
        let watch = own_watch();
        let (first, second) = (Fired::default(), Fired::default());
        let slot = watch.insert(soon(1_000), Count(first.clone())).unwrap();
        assert!(!watch.remove(slot)); // the thread still wakes at one second
        let deadline = soon(1_300);
        let slot = watch.insert(deadline, Count(second.clone())).unwrap();
        until(|| second.count() > 0);
        assert!(second.first().is_some_and(|at| at >= deadline), "cut short");
        assert!(watch.remove(slot));
        assert_eq!(first.count(), 0);
    }

    #[test]
    fn a_limit_beyond_the_clock_is_far_away_and_never_overflows() {
        let now = Instant::now();
        assert!(deadline_after(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
        assert_eq!(deadline_after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
    }
}
