//! Whole-request timeouts, kept here rather than by ureq, and handed to the socket in steps of
//! [`STEP`].
//!
//! The client sets its request's deadline for the thread that sends ([`Deadline`]), and every
//! step of the request checks the time left: the lookup (in the resolver), the connection
//! ([`Bounded`]), each read and write ([`Coarse`]). ureq's own whole-request timeout would do
//! the same, at several times the cost: it works out every configured timeout of the request
//! at each read and write, about a thousand instructions a poll.
//!
//! ureq enforces a timeout by setting the socket's read and write timeouts to the time left,
//! and sets them again whenever that value changes: with an exact deadline it changes on every
//! request, two `setsockopt` calls per poll. Rounded up to a step, the time left at the start
//! of every request is the same value, and the socket keeps it: a deadline may be honoured up
//! to one step late, never early.
//!
//! Like the resolver, this uses ureq's transport interface, which is outside its semver
//! promise (`ureq::unversioned`; the workspace pins ureq to the 3.5 line).

use std::cell::Cell;
use std::time::{Duration, Instant};

use ureq::unversioned::transport::time::Duration as Remaining;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

thread_local! {
    /// The deadline of the request this thread is sending through a client of ours.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// This thread's request deadline, for as long as the value lives (the one before it comes
/// back when it is dropped).
pub(crate) struct Deadline {
    previous: Option<Instant>,
}

impl Deadline {
    /// A deadline `limit` from now (`None`: no deadline).
    pub(crate) fn start(limit: Option<Duration>) -> Self {
        // A limit beyond the clock's range is no deadline at all.
        let deadline = limit.and_then(|limit| Instant::now().checked_add(limit));
        Deadline { previous: DEADLINE.replace(deadline) }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        DEADLINE.set(self.previous);
    }
}

/// `timeout` (ureq's, for this step) bounded by the time left of this thread's request.
pub(crate) fn bounded(mut timeout: NextTimeout) -> NextTimeout {
    if let Some(deadline) = DEADLINE.get() {
        let left = Remaining::Exact(deadline.saturating_duration_since(Instant::now()));
        if left < timeout.after {
            timeout.after = left;
            timeout.reason = ureq::Timeout::Global;
        }
    }
    timeout
}

/// A connector whose connections are made within the time left of the request.
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
        if timeout == details.timeout {
            return self.0.connect(details, chained);
        }
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
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
            register_shutdown: details.register_shutdown.clone(),
        };
        self.0.connect(&details, chained)
    }
}

/// How finely the time left of a request is passed on.
pub(crate) const STEP: Duration = Duration::from_millis(100);

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
        Ok(chained.map(Coarse))
    }
}

/// A transport whose reads and writes end by the request's deadline, their time left rounded
/// up to [`STEP`].
#[derive(Debug)]
pub(crate) struct Coarse(Box<dyn Transport>);

impl Transport for Coarse {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.0.transmit_output(amount, coarse(bounded(timeout)))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.0.await_input(coarse(bounded(timeout)))
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
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
            let _outer = Deadline::start(Some(Duration::from_secs(30)));
            let left = bounded(none).after;
            assert!(left > Remaining::Exact(Duration::from_secs(29)), "{left:?}");
            assert!(left <= Remaining::Exact(Duration::from_secs(30)), "{left:?}");
            let sooner = NextTimeout { after: Remaining::Exact(Duration::from_secs(1)), ..none };
            assert_eq!(bounded(sooner), sooner, "ureq's own sooner timeout stands");
            {
                let _passed = Deadline::start(Some(Duration::ZERO));
                let timeout = bounded(sooner);
                assert!(timeout.after.is_zero());
                assert_eq!(timeout.reason, ureq::Timeout::Global);
            }
            assert!(!bounded(none).after.is_zero(), "the outer deadline is back");
        }
        assert_eq!(bounded(none), none);
        let _endless = Deadline::start(Some(Duration::MAX));
        assert_eq!(bounded(none), none, "a deadline beyond the clock is none");
    }

    #[test]
    fn a_passed_deadline_stays_passed_and_nothing_overflows() {
        assert_eq!(round_up(Duration::ZERO), Duration::ZERO);
        assert_eq!(round_up(Duration::MAX), Duration::MAX);
        let never = NextTimeout { after: Remaining::NotHappening, ..NextTimeout::default() };
        assert!(coarse(never).after.is_not_happening());
    }
}
