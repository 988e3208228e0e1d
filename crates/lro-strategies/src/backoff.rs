//! [`ExponentialBackoff`]: a delay policy that waits longer after each poll.

use std::fmt;
use std::time::Duration;

use lro_core::{DelayContext, DelayPolicy};

/// How much randomness to add to each computed wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// None (the default: polls are not a retry storm, and Google's LRO clients agree).
    #[default]
    None,
    /// A uniformly random wait between zero and the computed one.
    Full,
    /// Half the computed wait, plus a random part of the other half.
    Equal,
}

type Random = Box<dyn FnMut() -> f64 + Send + Sync>;

/// Waits `initial_delay`, then `multiplier` times longer after every poll, up to `max_delay`,
/// optionally with [`Jitter`]. By default a non-zero `Retry-After` from the service is used
/// instead of the computed wait.
///
/// Use it with any algorithm through the builders' `delay`; poll-count and elapsed-time limits
/// are the engine's (`max_polls`, `max_elapsed`), so they apply to every policy.
///
/// ```
/// use std::time::Duration;
/// use lro_core::{DelayContext, DelayPolicy};
/// use lro_strategies::{ExponentialBackoff, Jitter};
///
/// let mut backoff = ExponentialBackoff::builder()
///     .initial_delay(Duration::from_secs(1))
///     .multiplier(2.0)
///     .max_delay(Duration::from_secs(5))
///     .build();
/// let waits: Vec<u64> = (1..=5)
///     .map(|polls| backoff.next_delay(&DelayContext::new(polls, Duration::ZERO, None)).as_secs())
///     .collect();
/// assert_eq!(waits, [1, 2, 4, 5, 5]);
/// ```
pub struct ExponentialBackoff {
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: Jitter,
    honour_retry_after: bool,
    random: Random,
}

impl ExponentialBackoff {
    /// A builder with the defaults: 1 s, ×2, at most 60 s, no jitter, Retry-After honoured.
    pub fn builder() -> ExponentialBackoffBuilder {
        ExponentialBackoffBuilder {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(60),
            jitter: Jitter::None,
            honour_retry_after: true,
            random: None,
        }
    }

    fn computed(&self, polls: u32) -> Duration {
        let exponent = i32::try_from(polls.saturating_sub(1)).unwrap_or(i32::MAX).min(1024);
        let seconds = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        match Duration::try_from_secs_f64(seconds) {
            Ok(wait) => wait.min(self.max),
            Err(_) => self.max, // overflow or NaN
        }
    }
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl DelayPolicy for ExponentialBackoff {
    fn next_delay(&mut self, ctx: &DelayContext) -> Duration {
        if self.honour_retry_after {
            if let Some(hint) = ctx.retry_after.filter(|h| !h.is_zero()) {
                return hint;
            }
        }
        let wait = self.computed(ctx.polls);
        let r = (self.random)();
        let r = if r.is_finite() { r.clamp(0.0, 1.0) } else { 0.0 };
        match self.jitter {
            Jitter::None => wait,
            Jitter::Full => wait.mul_f64(r),
            Jitter::Equal => (wait / 2).saturating_add((wait / 2).mul_f64(r)),
        }
    }
}

impl fmt::Debug for ExponentialBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExponentialBackoff")
            .field("initial", &self.initial)
            .field("multiplier", &self.multiplier)
            .field("max", &self.max)
            .field("jitter", &self.jitter)
            .field("honour_retry_after", &self.honour_retry_after)
            .finish_non_exhaustive()
    }
}

/// Builder of [`ExponentialBackoff`].
#[must_use]
pub struct ExponentialBackoffBuilder {
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: Jitter,
    honour_retry_after: bool,
    random: Option<Random>,
}

impl ExponentialBackoffBuilder {
    /// The first wait (default 1 s).
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// The growth factor (default 2). Values below 1, NaN or infinite are read as 1.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier =
            if multiplier.is_finite() && multiplier >= 1.0 { multiplier } else { 1.0 };
        self
    }

    /// The longest computed wait (default 60 s). A `Retry-After` may still ask for more, up to
    /// the engine's cap. A maximum below [`initial_delay`](Self::initial_delay) caps the
    /// initial delay too: the maximum always wins.
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Randomness added to each wait (default none).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Whether a non-zero `Retry-After` replaces the computed wait (default: yes).
    pub fn honour_retry_after(mut self, honour: bool) -> Self {
        self.honour_retry_after = honour;
        self
    }

    /// The source of random numbers in `[0, 1)` for jitter (default: a `fastrand` generator);
    /// tests inject a fixed sequence.
    pub fn random_source(mut self, random: impl FnMut() -> f64 + Send + Sync + 'static) -> Self {
        self.random = Some(Box::new(random));
        self
    }

    /// The policy.
    pub fn build(self) -> ExponentialBackoff {
        let random = self.random.unwrap_or_else(|| {
            let mut rng = fastrand::Rng::new();
            Box::new(move || rng.f64())
        });
        ExponentialBackoff {
            initial: self.initial.min(self.max),
            multiplier: self.multiplier,
            max: self.max,
            jitter: self.jitter,
            honour_retry_after: self.honour_retry_after,
            random,
        }
    }
}

impl fmt::Debug for ExponentialBackoffBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExponentialBackoffBuilder").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(polls: u32, hint: Option<Duration>) -> DelayContext {
        DelayContext::new(polls, Duration::ZERO, hint)
    }

    #[test]
    fn waits_grow_by_the_multiplier_up_to_the_cap() {
        let mut b = ExponentialBackoff::builder()
            .initial_delay(Duration::from_millis(500))
            .multiplier(3.0)
            .max_delay(Duration::from_secs(10))
            .build();
        let waits: Vec<u128> = (1..=5).map(|n| b.next_delay(&ctx(n, None)).as_millis()).collect();
        assert_eq!(waits, [500, 1500, 4500, 10_000, 10_000]);
    }

    #[test]
    fn a_maximum_below_the_initial_delay_caps_it_too() {
        let mut b = ExponentialBackoff::builder()
            .initial_delay(Duration::from_secs(30))
            .max_delay(Duration::from_secs(5))
            .build();
        assert_eq!(b.next_delay(&ctx(1, None)), Duration::from_secs(5));
        assert_eq!(b.next_delay(&ctx(4, None)), Duration::from_secs(5));
    }

    #[test]
    fn huge_poll_counts_and_multipliers_saturate_at_the_cap() {
        let mut b = ExponentialBackoff::builder().multiplier(1e300).build();
        assert_eq!(b.next_delay(&ctx(u32::MAX, None)), Duration::from_secs(60));
        let mut silly = ExponentialBackoff::builder().multiplier(f64::NAN).build();
        assert_eq!(silly.next_delay(&ctx(10, None)), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_wins_unless_disabled() {
        let hint = Some(Duration::from_secs(42));
        assert_eq!(
            ExponentialBackoff::default().next_delay(&ctx(1, hint)),
            Duration::from_secs(42)
        );
        assert_eq!(
            ExponentialBackoff::default().next_delay(&ctx(1, Some(Duration::ZERO))),
            Duration::from_secs(1),
            "a zero hint means no hint"
        );
        let mut deaf = ExponentialBackoff::builder().honour_retry_after(false).build();
        assert_eq!(deaf.next_delay(&ctx(1, hint)), Duration::from_secs(1));
    }

    #[test]
    fn jitter_uses_the_injected_random_source() {
        let fixed = |r: f64| move || r;
        let base = || ExponentialBackoff::builder().initial_delay(Duration::from_secs(8));
        let mut full = base().jitter(Jitter::Full).random_source(fixed(0.25)).build();
        assert_eq!(full.next_delay(&ctx(1, None)), Duration::from_secs(2));
        let mut equal = base().jitter(Jitter::Equal).random_source(fixed(0.5)).build();
        assert_eq!(equal.next_delay(&ctx(1, None)), Duration::from_secs(6));
        let mut broken = base().jitter(Jitter::Full).random_source(fixed(f64::NAN)).build();
        assert_eq!(broken.next_delay(&ctx(1, None)), Duration::ZERO);
    }
}
