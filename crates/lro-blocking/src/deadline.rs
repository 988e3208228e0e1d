//! Whole-request timeouts, kept by the client rather than by ureq or by the socket.
//!
//! The client sets its request's deadline for the thread that sends ([`Deadline`]). The lookup
//! (in the resolver) and the connection ([`Bounded`]) get the time left as their timeout.
//! Reads and writes get none: at the request's first read or write its socket takes a slot in
//! the process's [`DeadlineWatch`], whose thread shuts the socket down if the deadline passes —
//! which ends any read or write under way, and the client answers `Timeout` (whatever the
//! shut-down socket seemed to say: a body delimited by the connection's close would otherwise
//! look whole). A request that ends in time gives its slot back.
//!
//! Why not ureq's own timeout: it works out every configured timeout of the request at each
//! read and write (about a thousand instructions a request), and hands the time left to the
//! socket, whose receive timeout arms a kernel timer at each blocking read (some 3% of a
//! zero-wait poll's CPU on the benchmark's VM).
//!
//! A transport that did not come with a socket to shut (none of ureq's connectors is like that
//! today) gets the time left as its timeout instead, rounded up to [`STEP`] so that the socket
//! keeps one value rather than being set again for every request: such a deadline may be kept
//! up to one step late, never early.
//!
//! This uses ureq's transport interface, which is outside its semver promise
//! (`ureq::unversioned`; the workspace pins ureq to the 3.5 line).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use lro_core::deadline::{DeadlineWatch, Expire, Slot, deadline_after};
use ureq::unversioned::transport::time::Duration as Remaining;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, NextTimeout, ShutdownHandle, Transport,
};

/// How finely the time left of a request is passed on to a transport without a socket to shut.
pub(crate) const STEP: Duration = Duration::from_millis(100);

/// The sockets of the process's requests in flight.
static WATCH: DeadlineWatch<Shut> = DeadlineWatch::new("lro-blocking-deadlines");

/// A socket to shut down when its request's time is up.
struct Shut(Weak<dyn ShutdownHandle>);

impl Expire for Shut {
    fn expire(&self) -> Option<std::task::Waker> {
        if let Some(socket) = self.0.upgrade() {
            socket.shutdown();
        }
        None
    }
}

/// The request this thread is sending through a client of ours.
struct Request {
    deadline: Instant,
    /// Its socket's slot in the watch, and which connection that socket is.
    watched: Option<(Slot, u64)>,
}

thread_local! {
    /// The request this thread is sending (`None`: none, or one without a deadline).
    static REQUEST: RefCell<Option<Request>> = const { RefCell::new(None) };
    /// The socket of the connection just made on this thread (from [`Bounded`] to
    /// [`CoarseTimeouts`]).
    static CONNECTED: RefCell<Option<Weak<dyn ShutdownHandle>>> = const { RefCell::new(None) };
}

/// This thread's request deadline, for as long as the value lives.
pub(crate) struct Deadline {
    set: bool,
}

impl Deadline {
    /// A deadline `limit` from now (`None`: no deadline).
    pub(crate) fn start(limit: Option<Duration>) -> Self {
        let Some(limit) = limit else { return Deadline { set: false } };
        let deadline = deadline_after(Instant::now(), limit);
        REQUEST.set(Some(Request { deadline, watched: None }));
        Deadline { set: true }
    }

    /// Ends the request's watch: whether its deadline ended it.
    pub(crate) fn expired(mut self) -> bool {
        self.end()
    }

    /// Gives the request's slot back (once); whether its deadline had passed.
    fn end(&mut self) -> bool {
        if !std::mem::take(&mut self.set) {
            return false;
        }
        match REQUEST.take() {
            Some(Request { watched: Some((slot, _)), .. }) => WATCH.remove(slot),
            _ => false,
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.end();
    }
}

/// `timeout` (ureq's, for this step) bounded by the time left of this thread's request.
pub(crate) fn bounded(mut timeout: NextTimeout) -> NextTimeout {
    let deadline = REQUEST.with_borrow(|request| request.as_ref().map(|r| r.deadline));
    if let Some(deadline) = deadline {
        let left = Remaining::Exact(deadline.saturating_duration_since(Instant::now()));
        if left < timeout.after {
            timeout.after = left;
            timeout.reason = ureq::Timeout::Global;
        }
    }
    timeout
}

/// Watches the socket of connection `id` for this thread's request, from its first read or
/// write; the time left then (zero: the deadline has passed).
fn watch(id: u64, socket: &Weak<dyn ShutdownHandle>) -> Result<(), ureq::Error> {
    REQUEST.with_borrow_mut(|request| {
        let Some(request) = request.as_mut() else { return Ok(()) };
        match request.watched {
            Some((_, watched)) if watched == id => Ok(()),
            Some((slot, _)) => {
                // Another connection for the same request: the slot follows it.
                if WATCH.check(slot, |shut| *shut = Shut(socket.clone())) {
                    return Err(ureq::Error::Timeout(ureq::Timeout::Global));
                }
                request.watched = Some((slot, id));
                Ok(())
            }
            None => {
                if Instant::now() >= request.deadline {
                    return Err(ureq::Error::Timeout(ureq::Timeout::Global));
                }
                let slot = WATCH.insert(request.deadline, Shut(socket.clone()))?;
                request.watched = Some((slot, id));
                Ok(())
            }
        }
    })
}

/// A connector whose connections are made within the time left of the request, and whose
/// sockets are noted for [`CoarseTimeouts`].
#[derive(Debug)]
pub(crate) struct Bounded<C>(pub(crate) C);

impl<In: Transport, C: Connector<In>> Connector<In> for Bounded<C> {
    type Out = C::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<C::Out>, ureq::Error> {
        let timeout = bounded(details.timeout);
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        let register = details.register_shutdown.clone();
        let details = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: Arc::new(move |socket: Weak<dyn ShutdownHandle>| {
                CONNECTED.set(Some(socket.clone()));
                register(socket)
            }),
        };
        CONNECTED.set(None);
        self.0.connect(&details, chained)
    }
}

/// Wraps every connection of the chain before it in a [`Coarse`] transport.
#[derive(Debug, Default)]
pub(crate) struct CoarseTimeouts;

impl Connector<Box<dyn Transport>> for CoarseTimeouts {
    type Out = Coarse;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Coarse>, ureq::Error> {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let socket = CONNECTED.take();
        Ok(chained.map(|inner| Coarse { inner, socket, id: IDS.fetch_add(1, Ordering::Relaxed) }))
    }
}

/// A transport whose reads and writes end by the request's deadline: its socket is shut down
/// then, or (without a socket to shut) its timeouts are the time left, rounded up to [`STEP`].
#[derive(Debug)]
pub(crate) struct Coarse {
    inner: Box<dyn Transport>,
    socket: Option<Weak<dyn ShutdownHandle>>,
    id: u64,
}

impl Coarse {
    /// The timeout of this read or write.
    fn timeout(&self, timeout: NextTimeout) -> Result<NextTimeout, ureq::Error> {
        match &self.socket {
            Some(socket) => watch(self.id, socket).map(|()| timeout),
            None => Ok(coarse(bounded(timeout))),
        }
    }
}

impl Transport for Coarse {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = self.timeout(timeout)?;
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = self.timeout(timeout)?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// `timeout` with its time left rounded up to a whole number of steps (zero stays zero: a
/// deadline that has passed has passed).
fn coarse(mut timeout: NextTimeout) -> NextTimeout {
    if let Remaining::Exact(left) = timeout.after {
        timeout.after = Remaining::Exact(round_up(left));
    }
    timeout
}

fn round_up(left: Duration) -> Duration {
    let step = STEP.as_nanos();
    let steps = left.as_nanos().div_ceil(step);
    u64::try_from(steps.saturating_mul(step)).map(Duration::from_nanos).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_rounds_up_to_the_step_so_that_requests_see_one_value() {
        let full = Duration::from_secs(30);
        // Two requests a few microseconds into their 30 s: the socket gets 30 s both times.
        assert_eq!(round_up(full - Duration::from_micros(17)), full);
        assert_eq!(round_up(full - Duration::from_micros(42)), full);
        assert_eq!(round_up(Duration::from_millis(1)), STEP);
        assert_eq!(round_up(STEP), STEP, "never late by a whole step");
    }

    #[test]
    fn each_step_gets_the_time_left_of_the_threads_request_and_no_more() {
        let none = NextTimeout { after: Remaining::NotHappening, ..NextTimeout::default() };
        assert_eq!(bounded(none), none, "no request of ours: ureq's timeout as it is");
        {
            let _request = Deadline::start(Some(Duration::from_secs(30)));
            let left = bounded(none).after;
            assert!(left > Remaining::Exact(Duration::from_secs(29)), "{left:?}");
            assert!(left <= Remaining::Exact(Duration::from_secs(30)), "{left:?}");
            let sooner = NextTimeout { after: Remaining::Exact(Duration::from_secs(1)), ..none };
            assert_eq!(bounded(sooner), sooner, "ureq's own sooner timeout stands");
        }
        assert_eq!(bounded(none), none, "the request's deadline ended with it");
        {
            let _passed = Deadline::start(Some(Duration::ZERO));
            let timeout = bounded(none);
            assert!(timeout.after.is_zero());
            assert_eq!(timeout.reason, ureq::Timeout::Global);
        }
        let _endless = Deadline::start(None);
        assert_eq!(bounded(none), none, "no deadline asked: none kept");
    }

    #[test]
    fn a_passed_deadline_stays_passed_and_nothing_overflows() {
        assert_eq!(round_up(Duration::ZERO), Duration::ZERO);
        assert_eq!(round_up(Duration::MAX), Duration::MAX);
        let never = NextTimeout { after: Remaining::NotHappening, ..NextTimeout::default() };
        assert!(coarse(never).after.is_not_happening());
    }
}
