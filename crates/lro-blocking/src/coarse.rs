//! Whole-request timeouts handed to the socket in steps of [`STEP`].
//!
//! ureq enforces a request's deadline by setting the socket's read and write timeouts to the
//! time left, and sets them again whenever that value changes: with an exact deadline it
//! changes on every request, two `setsockopt` calls per poll. Rounded up to a step, the time
//! left at the start of every request is the same value, and the socket keeps it: a deadline
//! may be honoured up to one step late, never early.
//!
//! Like the resolver, this uses ureq's transport interface, which is outside its semver
//! promise (`ureq::unversioned`; the workspace pins ureq to the 3.5 line).

use std::time::Duration;

use ureq::unversioned::transport::time::Duration as Remaining;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

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

/// A transport whose timeouts are rounded up to [`STEP`].
#[derive(Debug)]
pub(crate) struct Coarse(Box<dyn Transport>);

impl Transport for Coarse {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.0.transmit_output(amount, coarse(timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.0.await_input(coarse(timeout))
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
    fn a_passed_deadline_stays_passed_and_nothing_overflows() {
        assert_eq!(round_up(Duration::ZERO), Duration::ZERO);
        assert_eq!(round_up(Duration::MAX), Duration::MAX);
        let never = NextTimeout { after: Remaining::NotHappening, ..NextTimeout::default() };
        assert!(coarse(never).after.is_not_happening());
    }
}
