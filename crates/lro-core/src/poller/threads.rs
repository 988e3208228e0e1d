//! The threads that [`LroPoller`](crate::LroPoller)s poll on. A thread whose operation ended
//! waits a while for the next one instead of exiting, so that a program that runs one operation
//! after another does not start a thread for each. A new thread costs more than its start: it
//! begins cold in every cache and in the allocator. On the benchmark's VM the blocking poller's
//! CPU per zero-wait request, against a raw ureq loop, went from about 1.05 to 1.035 when its
//! operations of 500 polls stopped starting a thread each (`docs/performance.md`).
//!
//! An operation never waits for a thread: it takes an idle one or starts its own.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// One operation's polling, handed to a thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The process's polling threads: at most 16 wait idle, each for at most 10 s (as long as tokio
/// keeps an idle blocking thread).
pub(crate) static POLLING_THREADS: PollingThreads =
    PollingThreads::new(16, Duration::from_secs(10));

/// Threads that run jobs, and wait for more between them.
pub(crate) struct PollingThreads {
    queue: Mutex<Queue>,
    job_queued: Condvar,
    /// How many threads may wait idle at once; a thread that finds this many ends.
    max_idle: usize,
    /// How long an idle thread waits for a job before it ends.
    idle_for: Duration,
}

struct Queue {
    /// Jobs handed over, each to one of the idle threads.
    jobs: VecDeque<Job>,
    /// Idle threads with no job handed to them yet.
    idle: usize,
}

impl PollingThreads {
    const fn new(max_idle: usize, idle_for: Duration) -> Self {
        PollingThreads {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), idle: 0 }),
            job_queued: Condvar::new(),
            max_idle,
            idle_for,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `job` on an idle thread, or else on a new one (named `lro-poller`); an error if that
    /// thread cannot be started.
    pub(crate) fn run(&'static self, job: Job) -> std::io::Result<()> {
        let mut queue = self.lock();
        if queue.idle > 0 {
            queue.idle -= 1;
            queue.jobs.push_back(job);
            drop(queue);
            self.job_queued.notify_one();
            return Ok(());
        }
        drop(queue);
        std::thread::Builder::new().name("lro-poller".into()).spawn(move || self.work(job))?;
        Ok(())
    }

    /// A thread's life: `job`, then each job handed to it while it waits idle.
    fn work(&self, first: Job) {
        let mut job = first;
        loop {
            job();
            match self.next_job() {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// Waits idle for a job; `None` if none came in time, or if enough threads wait already.
    fn next_job(&self) -> Option<Job> {
        let mut queue = self.lock();
        if queue.idle >= self.max_idle {
            return None;
        }
        queue.idle += 1;
        let (mut queue, _) = self
            .job_queued
            .wait_timeout_while(queue, self.idle_for, |queue| queue.jobs.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        let job = queue.jobs.pop_front();
        if job.is_none() {
            // Timed out: this thread was still counted idle (whoever hands a job over takes
            // one thread off the count).
            queue.idle -= 1;
        }
        job
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.lock().idle
    }
}

#[cfg(test)]
mod tests {
    // The clock only bounds how long a broken test waits; no test measures time.
    #![allow(clippy::disallowed_methods)]
    use super::*;
    use std::sync::mpsc::{Sender, channel};
    use std::thread::ThreadId;
    use std::time::Instant;

    /// Threads of the test's own (tests run at once, and other tests' pollers use the process's).
    fn own_threads(max_idle: usize, idle_for: Duration) -> &'static PollingThreads {
        Box::leak(Box::new(PollingThreads::new(max_idle, idle_for)))
    }

    const PATIENCE: Duration = Duration::from_secs(30);

    /// A job that tells `ids` which thread ran it.
    fn report_thread(ids: &Sender<ThreadId>) -> Job {
        let ids = ids.clone();
        Box::new(move || {
            let _ = ids.send(std::thread::current().id());
        })
    }

    /// Waits (yielding, never sleeping) until `threads` has `idle` idle threads.
    fn wait_until_idle(threads: &PollingThreads, idle: usize) {
        let started = Instant::now();
        while threads.idle() != idle {
            assert!(started.elapsed() < PATIENCE, "{} idle threads, not {idle}", threads.idle());
            std::thread::yield_now();
        }
    }

    /// Tells `ended` when the thread running it ends (a thread-local's destructor).
    struct EndOfThread(Sender<()>);

    impl Drop for EndOfThread {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    thread_local! {
        static END: std::cell::RefCell<Option<EndOfThread>> = const { std::cell::RefCell::new(None) };
    }

    /// Runs a job on `threads` and waits for its thread to end (a thread-local's destructor
    /// tells); no thread is left idle then.
    fn assert_the_thread_ends(threads: &'static PollingThreads) {
        let (ended, end) = channel();
        threads
            .run(Box::new(move || END.with_borrow_mut(|end| *end = Some(EndOfThread(ended)))))
            .unwrap();
        end.recv_timeout(PATIENCE).expect("the thread ended");
        assert_eq!(threads.idle(), 0);
    }

    #[test]
    fn the_next_operation_runs_on_the_thread_the_last_one_left_idle() {
        let threads = own_threads(4, Duration::from_secs(3600));
        let (ids, ran_on) = channel();
        threads.run(report_thread(&ids)).unwrap();
        let first = ran_on.recv_timeout(PATIENCE).unwrap();
        wait_until_idle(threads, 1);
        threads.run(report_thread(&ids)).unwrap();
        assert_eq!(ran_on.recv_timeout(PATIENCE).unwrap(), first);
        wait_until_idle(threads, 1);
    }

    #[test]
    fn an_idle_thread_ends_when_its_idle_time_is_up() {
        assert_the_thread_ends(own_threads(4, Duration::ZERO));
    }

    #[test]
    fn a_thread_that_finds_enough_threads_idle_ends_at_once() {
        assert_the_thread_ends(own_threads(0, Duration::from_secs(3600)));
    }

    #[test]
    fn operations_never_wait_for_each_other_whatever_the_idle_threads() {
        let threads = own_threads(4, Duration::from_secs(3600));
        let (ids, ran_on) = channel();
        threads.run(report_thread(&ids)).unwrap();
        ran_on.recv_timeout(PATIENCE).unwrap();
        wait_until_idle(threads, 1);
        // Three jobs that each wait for all three to have started: one idle thread, two new.
        let (started, all_started) = channel();
        let (go_senders, go): (Vec<_>, Vec<_>) = (0..3).map(|_| channel::<()>()).unzip();
        for go in go {
            let started = started.clone();
            threads
                .run(Box::new(move || {
                    started.send(()).unwrap();
                    go.recv_timeout(PATIENCE).unwrap();
                }))
                .unwrap();
        }
        for _ in 0..3 {
            all_started.recv_timeout(PATIENCE).expect("every job started at once");
        }
        for go in go_senders {
            go.send(()).unwrap();
        }
        wait_until_idle(threads, 3);
    }
}
