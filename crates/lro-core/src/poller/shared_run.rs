//! [`SharedRun`]: the one run of a polling method that every waiter of an
//! [`AsyncLroPoller`](super::AsyncLroPoller) awaits.
//!
//! Whichever waiter is polled drives the run; all get its outcome. While one waiter is alone,
//! the run is polled with that waiter's own waker: nothing is allocated and nothing stands
//! between the transport's wake-up and the task. From the moment a second waiter comes, the run
//! is polled with a [`Notifier`] that wakes every waiter, so that a waiter that is kept but no
//! longer polled (a progress stream left aside) never holds the others up.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use crate::error::LroError;
use crate::transport::BoxFuture;

/// The run of a polling method, as the poller stores it.
pub(crate) type Run = BoxFuture<'static, Result<(), LroError>>;

/// One run, shared by its waiters (see the module's documentation).
#[derive(Default)]
pub(crate) struct SharedRun {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    stage: Stage,
    /// Another waiter came while the run was being polled: it must be woken once that poll
    /// ends pending, whatever waker the run was polled with.
    contended: bool,
    /// The waiter that polled the run while it was the only one, and its waker.
    alone: Option<(WaiterId, Waker)>,
    /// Set once a second waiter came: the run is then polled with its waker.
    notifier: Option<Arc<Notifier>>,
    /// The last waiter id handed out (ids start at 1).
    last_id: u64,
}

#[derive(Default)]
enum Stage {
    /// Nobody awaited the poller yet.
    #[default]
    NotStarted,
    /// Started, and not being polled at this moment.
    Idle(Run),
    /// A waiter is polling the run (outside the lock).
    Polled,
    /// The run ended: every waiter gets this.
    Ended(Result<(), LroError>),
}

/// A waiter's identity within its run (0: not yet polled).
pub(crate) type WaiterId = u64;

impl SharedRun {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls the run for the waiter `id` (assigned on its first call), starting the run with
    /// `start` if nobody did yet.
    pub(crate) fn poll(
        &self,
        id: &mut WaiterId,
        cx: &mut Context<'_>,
        start: impl FnOnce() -> Run,
    ) -> Poll<Result<(), LroError>> {
        let mut state = self.lock();
        if *id == 0 {
            state.last_id += 1;
            *id = state.last_id;
        }
        let notifier = state.waker_for(*id, cx.waker());
        let mut run = match std::mem::replace(&mut state.stage, Stage::Polled) {
            Stage::Ended(outcome) => {
                state.stage = Stage::Ended(outcome.clone());
                return Poll::Ready(outcome);
            }
            Stage::Polled => {
                // Another waiter is polling the run; it wakes this one when its poll ends.
                state.stage = Stage::Polled;
                state.contended = true;
                return Poll::Pending;
            }
            Stage::NotStarted => start(),
            Stage::Idle(run) => run,
        };
        state.contended = false;
        drop(state);
        // If the run panics, the other waiters must not wait for it forever: it ends for them
        // as on the blocking poller, and the panic goes on in the waiter that polled.
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &notifier {
            Some(waker) => run.as_mut().poll(&mut Context::from_waker(waker)),
            None => run.as_mut().poll(cx),
        }));
        let polled = match polled {
            Ok(polled) => polled,
            Err(panic) => self.panicked(panic),
        };
        let mut state = self.lock();
        let wake = match polled {
            Poll::Ready(outcome) => return self.ended(state, outcome),
            Poll::Pending => {
                state.stage = Stage::Idle(run);
                // Another waiter came while this one polled: the run's wake-ups may reach
                // neither it nor (with this waiter's own waker) anyone but this task, which
                // may never be polled again. Wake them all, so that one polls the run again.
                let contended = std::mem::take(&mut state.contended);
                contended.then(|| state.notifier.clone()).flatten()
            }
        };
        drop(state);
        if let Some(others) = wake {
            others.wake_by_ref();
        }
        Poll::Pending
    }

    /// The run panicked: it ends for the other waiters, and the panic goes on in this one.
    #[cold]
    #[inline(never)]
    fn panicked(&self, panic: Box<dyn std::any::Any + Send>) -> ! {
        let mut state = self.lock();
        state.stage = Stage::Ended(Err(super::panicked(&*panic)));
        let others = state.notifier.clone();
        drop(state);
        if let Some(others) = others {
            others.wake_by_ref();
        }
        std::panic::resume_unwind(panic);
    }

    /// The run ended with `outcome`: kept for every waiter, and the others woken.
    #[inline(never)]
    fn ended(
        &self,
        mut state: MutexGuard<'_, State>,
        outcome: Result<(), LroError>,
    ) -> Poll<Result<(), LroError>> {
        state.stage = Stage::Ended(outcome.clone());
        let others = state.notifier.clone();
        drop(state);
        if let Some(others) = others {
            others.wake_by_ref();
        }
        Poll::Ready(outcome)
    }

    /// The run, for the one waiter that can be left (a poller consumed by `.await`): taken out,
    /// or started with `start` if nobody did yet; `Err` with its outcome if it has ended.
    pub(crate) fn take(&self, start: impl FnOnce() -> Run) -> Result<Run, Result<(), LroError>> {
        let mut state = self.lock();
        let stage = std::mem::replace(&mut state.stage, Stage::Polled);
        if let Stage::Ended(outcome) = &stage {
            state.stage = Stage::Ended(outcome.clone());
        }
        drop(state);
        match stage {
            Stage::Ended(outcome) => Err(outcome),
            Stage::Idle(run) => Ok(run),
            // Nobody polls the run while the poller is owned: `Polled` is only ever seen
            // during a waiter's poll. A new run continues where the last one stopped.
            Stage::NotStarted | Stage::Polled => Ok(start()),
        }
    }

    /// The waiter `id` is gone (dropped): it no longer needs waking.
    pub(crate) fn leave(&self, id: WaiterId) {
        if id == 0 {
            return;
        }
        let mut state = self.lock();
        // Dropped outside the locks: dropping a waker may run code of its executor.
        let mut gone = Vec::new();
        if state.alone.as_ref().is_some_and(|(alone, _)| *alone == id) {
            gone.extend(state.alone.take().map(|(_, waker)| waker));
        }
        let notifier = state.notifier.clone();
        drop(state);
        if let Some(notifier) = notifier {
            let mut wakers = notifier.lock();
            if let Some(at) = wakers.iter().position(|(waiter, _)| *waiter == id) {
                gone.push(wakers.swap_remove(at).1);
            }
        }
        drop(gone);
    }
}

impl State {
    /// Registers the waiter `id` with `waker`; returns the waker to poll the run with when it
    /// is the notifier's (`None`: the waiter's own).
    fn waker_for(&mut self, id: WaiterId, waker: &Waker) -> Option<Waker> {
        if self.notifier.is_none() {
            match &mut self.alone {
                Some((alone, _)) if *alone != id => {
                    let notifier = Arc::new(Notifier::default());
                    if let Some((alone, its_waker)) = self.alone.take() {
                        notifier.register(alone, &its_waker);
                    }
                    self.notifier = Some(notifier);
                }
                Some((_, its_waker)) => {
                    if !its_waker.will_wake(waker) {
                        its_waker.clone_from(waker);
                    }
                    return None;
                }
                None => {
                    self.alone = Some((id, waker.clone()));
                    return None;
                }
            }
        }
        let notifier = self.notifier.as_ref()?;
        notifier.register(id, waker);
        Some(Waker::from(Arc::clone(notifier)))
    }
}

/// Wakes every waiter of a run that has several.
#[derive(Default)]
struct Notifier {
    wakers: Mutex<Vec<(WaiterId, Waker)>>,
}

impl Notifier {
    fn lock(&self) -> MutexGuard<'_, Vec<(WaiterId, Waker)>> {
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, id: WaiterId, waker: &Waker) {
        let mut wakers = self.lock();
        match wakers.iter_mut().find(|(waiter, _)| *waiter == id) {
            Some((_, known)) if known.will_wake(waker) => {}
            Some((_, known)) => known.clone_from(waker),
            None => wakers.push((id, waker.clone())),
        }
    }
}

impl Wake for Notifier {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Woken outside the lock: a waker may run its task's poll at once (some executors do).
        let wakers: Vec<Waker> = self.lock().iter().map(|(_, waker)| waker.clone()).collect();
        for waker in wakers {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (Arc::clone(&count), Waker::from(count))
    }

    /// A run that is pending until `open` is set, keeping the last waker it was polled with.
    fn gated(open: Arc<Mutex<bool>>, waker: Arc<Mutex<Option<Waker>>>) -> Run {
        Box::pin(std::future::poll_fn(move |cx| {
            *waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            if *open.lock().unwrap_or_else(PoisonError::into_inner) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }))
    }

    #[test]
    fn a_lone_waiter_polls_the_run_with_its_own_waker() {
        let run = SharedRun::default();
        let (open, inner) = (Arc::new(Mutex::new(false)), Arc::new(Mutex::new(None)));
        let (count, waker) = counting();
        let mut id = 0;
        let mut cx = Context::from_waker(&waker);
        assert!(run.poll(&mut id, &mut cx, || gated(open.clone(), inner.clone())).is_pending());
        let held = inner.lock().unwrap().clone().expect("polled");
        assert!(held.will_wake(&waker), "no notifier between the run and the task");
        held.wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_second_waiter_makes_every_wake_up_reach_both() {
        let run = SharedRun::default();
        let (open, inner) = (Arc::new(Mutex::new(false)), Arc::new(Mutex::new(None)));
        let start = || gated(open.clone(), inner.clone());
        let ((first, first_waker), (second, second_waker)) = (counting(), counting());
        let (mut a, mut b) = (0, 0);
        assert!(run.poll(&mut a, &mut Context::from_waker(&first_waker), start).is_pending());
        assert!(run.poll(&mut b, &mut Context::from_waker(&second_waker), start).is_pending());
        // The first waiter is never polled again; the run's wake-up still reaches the second.
        inner.lock().unwrap().clone().expect("polled").wake();
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        *open.lock().unwrap() = true;
        let outcome = run.poll(&mut b, &mut Context::from_waker(&second_waker), start);
        assert!(matches!(outcome, Poll::Ready(Ok(()))));
        assert!(matches!(
            run.poll(&mut a, &mut Context::from_waker(&first_waker), start),
            Poll::Ready(Ok(()))
        ));
    }

    #[test]
    fn a_waiter_that_leaves_is_no_longer_woken() {
        let run = SharedRun::default();
        let (open, inner) = (Arc::new(Mutex::new(false)), Arc::new(Mutex::new(None)));
        let start = || gated(open.clone(), inner.clone());
        let ((first, first_waker), (second, second_waker)) = (counting(), counting());
        let (mut a, mut b) = (0, 0);
        assert!(run.poll(&mut a, &mut Context::from_waker(&first_waker), start).is_pending());
        assert!(run.poll(&mut b, &mut Context::from_waker(&second_waker), start).is_pending());
        run.leave(a);
        inner.lock().unwrap().clone().expect("polled").wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1, "the waiter that stayed is woken");
    }

    #[test]
    fn a_run_that_panics_ends_for_every_waiter() {
        let run = SharedRun::default();
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let (mut a, mut b) = (0, 0);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run.poll(&mut a, &mut cx, || Box::pin(std::future::poll_fn(|_| panic!("a bug"))))
        }));
        assert!(panicked.is_err());
        let outcome = run.poll(&mut b, &mut cx, || Box::pin(std::future::pending()));
        assert!(matches!(outcome, Poll::Ready(Err(LroError::Stopped(_)))), "{outcome:?}");
        // The same error as the blocking poller's, the panic's message in it.
        let Poll::Ready(Err(error)) = outcome else { unreachable!() };
        let chain = error.chain().to_string();
        assert!(chain.contains("the polling method panicked: a bug"), "{chain}");
    }

    #[test]
    fn a_waiter_that_comes_during_a_poll_is_woken_when_it_ends_pending() {
        let run = Arc::new(SharedRun::default());
        let ((_, first_waker), (_, second_waker), (third, third_waker)) =
            (counting(), counting(), counting());
        let (arrived_tx, arrived_rx) = std::sync::mpsc::channel::<()>();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(0_u32));
        let start = {
            let gate = Arc::clone(&gate);
            let go_rx = Arc::new(Mutex::new(go_rx));
            move || -> Run {
                Box::pin(std::future::poll_fn(move |_| {
                    // From the third poll on, each poll waits for the test.
                    let polls = {
                        let mut polls = gate.lock().unwrap();
                        *polls += 1;
                        *polls
                    };
                    if polls == 3 {
                        arrived_tx.send(()).unwrap();
                        go_rx.lock().unwrap().recv().unwrap();
                    }
                    Poll::Pending
                }))
            }
        };
        // Two waiters: the run is polled with the notifier from now on.
        let (mut a, mut b) = (0, 0);
        assert!(run.poll(&mut a, &mut Context::from_waker(&first_waker), start).is_pending());
        let never = || -> Run { unreachable!() };
        assert!(run.poll(&mut b, &mut Context::from_waker(&second_waker), never).is_pending());
        // The first waiter polls again on another thread; a third comes meanwhile.
        let polling = {
            let run = Arc::clone(&run);
            std::thread::spawn(move || {
                let mut cx = Context::from_waker(&first_waker);
                run.poll(&mut a, &mut cx, || -> Run { unreachable!() }).is_pending()
            })
        };
        arrived_rx.recv().unwrap();
        let mut c = 0;
        assert!(run.poll(&mut c, &mut Context::from_waker(&third_waker), never).is_pending());
        go_tx.send(()).unwrap();
        assert!(polling.join().unwrap());
        assert!(third.0.load(Ordering::SeqCst) >= 1, "the late waiter was woken");
    }

    #[test]
    fn the_run_starts_once() {
        let run = SharedRun::default();
        let started = AtomicUsize::new(0);
        let start = || -> Run {
            started.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::pending())
        };
        let (_, waker) = counting();
        for _ in 0..3 {
            let mut id = 0;
            assert!(run.poll(&mut id, &mut Context::from_waker(&waker), start).is_pending());
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }
}
