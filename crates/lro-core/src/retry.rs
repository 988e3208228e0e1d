//! [`RetryPolicy`]: which failed requests are tried again, how often and after how long.
//!
//! The policy is pure: it classifies outcomes and computes backoffs. The [`Engine`](crate::Engine)
//! applies it to polls and final GETs; [`InitialResponse::send_with_retry`] and
//! [`InitialResponse::send_async_with_retry`] apply it to the initial request when asked.
//!
//! [`InitialResponse::send_with_retry`]: crate::InitialResponse::send_with_retry
//! [`InitialResponse::send_async_with_retry`]: crate::InitialResponse::send_async_with_retry

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};

use crate::transport::{TransportError, TransportErrorKind};

/// azure-core's default number of retries of one request: 3.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// azure-core's default backoff factor: the first retry waits up to 0.8 s.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(800);
/// azure-core's default longest backoff: 120 s.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(120);

/// When a request that failed for a transient reason is sent again.
///
/// Transient: a connection error, a timeout or a reset (any [`TransportError`] except
/// [`BodyTooLarge`](TransportErrorKind::BodyTooLarge) and
/// [`Unusable`](TransportErrorKind::Unusable)), and the HTTP statuses 408, 429, 500,
/// 502, 503 and 504. Each retry waits an exponential backoff with full jitter (a uniformly random
/// wait between zero and `initial_backoff × 2^(retry − 1)`, at most `max_backoff`); a 429 or 503
/// that carries `Retry-After` waits what the service asks instead (capped by the engine's
/// `max_delay`, and never less than its `min_delay`). Terminal statuses (`Failed`, `Canceled`)
/// are answers, not faults: they are never retried.
///
/// ```
/// use std::time::Duration;
/// use lro_core::{PollOptions, RetryPolicy};
///
/// let retry = RetryPolicy::builder().max_retries(5).initial_backoff(Duration::from_millis(200)).build();
/// let options = PollOptions::builder().retry(retry).build();
/// # let _ = options;
/// // Or no retries at all, as azure-core's polling methods alone behave:
/// let _ = PollOptions::builder().retry(RetryPolicy::none()).build();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    any_initial_method: bool,
    seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: DEFAULT_MAX_RETRIES,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            any_initial_method: false,
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// A builder starting from azure-core's defaults (3 retries, 0.8 s, at most 120 s).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder { policy: RetryPolicy::default() }
    }

    /// No retries: the first failure ends the operation.
    pub fn none() -> Self {
        RetryPolicy { max_retries: 0, ..RetryPolicy::default() }
    }

    /// How many times one request may be sent again.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Whether a response with this status is a transient fault worth another attempt.
    pub fn is_transient_status(status: StatusCode) -> bool {
        matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
    }

    /// Whether this transport failure is transient (all but an oversized body and an unusable
    /// transport).
    pub fn is_transient_error(error: &TransportError) -> bool {
        !matches!(error.kind(), TransportErrorKind::BodyTooLarge | TransportErrorKind::Unusable)
    }

    /// Whether the server's `Retry-After` is honoured for this status (429 and 503).
    pub fn honours_retry_after(status: StatusCode) -> bool {
        matches!(status.as_u16(), 429 | 503)
    }

    /// The wait before retry number `retries_so_far + 1`, or `None` once the budget is spent.
    ///
    /// `hint` is the service's `Retry-After` when it is to be honoured: it is raised to
    /// `min_delay` (so a tiny or zero hint cannot make a hot loop) and, like the backoff, capped
    /// at `max_delay`.
    pub(crate) fn next_wait(
        &self,
        retries_so_far: u32,
        hint: Option<Duration>,
        (min_delay, max_delay): (Duration, Duration),
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        if retries_so_far >= self.max_retries {
            return None;
        }
        let wait = match hint {
            Some(hint) => hint.max(min_delay),
            None => self.backoff(retries_so_far.saturating_add(1), rng),
        };
        Some(wait.min(max_delay))
    }

    /// Whether [`InitialResponse::send_with_retry`](crate::InitialResponse::send_with_retry)
    /// may retry `method` with these `headers`: by default only
    /// [idempotent or repeatable](RetryPolicy::initial_request_is_retryable) requests.
    pub fn retries_initial(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.any_initial_method || Self::initial_request_is_retryable(method, headers)
    }

    /// The backoff before retry number `retry` (1 for the first retry), with full jitter drawn
    /// from `rng`.
    pub(crate) fn backoff(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        let ceiling = self.initial_backoff.saturating_mul(1u32 << exponent).min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.u64(0..=nanos))
    }

    /// A random source for the jitter: seeded when the policy says so (for reproducible tests).
    pub(crate) fn rng(&self) -> fastrand::Rng {
        match self.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        }
    }

    /// Whether the initial request may be retried by default: idempotent methods (PUT, DELETE,
    /// GET, HEAD), or a request that carries `Repeatability-Request-ID` or `Operation-Id`.
    pub fn initial_request_is_retryable(method: &Method, headers: &HeaderMap) -> bool {
        matches!(*method, Method::PUT | Method::DELETE | Method::GET | Method::HEAD)
            || headers.contains_key("repeatability-request-id")
            || headers.contains_key("operation-id")
    }
}

/// Builder of [`RetryPolicy`].
#[derive(Debug)]
#[must_use]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// How many times one request may be sent again (default 3; 0 turns retries off).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.policy.max_retries = retries;
        self
    }

    /// The ceiling of the first backoff; each retry doubles it (default 0.8 s).
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.policy.initial_backoff = backoff;
        self
    }

    /// The largest backoff (default 120 s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.policy.max_backoff = backoff;
        self
    }

    /// Lets [`InitialResponse::send_with_retry`](crate::InitialResponse::send_with_retry) retry
    /// an initial request whatever its method (default: only idempotent methods, or requests
    /// with `Repeatability-Request-ID` / `Operation-Id`). Only for services where sending the
    /// request twice is harmless.
    pub fn any_initial_method(mut self, any: bool) -> Self {
        self.policy.any_initial_method = any;
        self
    }

    /// Seeds the jitter, for reproducible tests (default: a random seed per operation).
    pub fn seed(mut self, seed: u64) -> Self {
        self.policy.seed = Some(seed);
        self
    }

    /// The policy.
    pub fn build(self) -> RetryPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses_are_azure_cores() {
        let transient: Vec<u16> = (100..600)
            .filter(|s| {
                RetryPolicy::is_transient_status(StatusCode::from_u16(*s).unwrap_or_default())
            })
            .collect();
        assert_eq!(transient, [408, 429, 500, 502, 503, 504]);
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling_that_saturates() {
        let policy = RetryPolicy::builder()
            .initial_backoff(Duration::from_secs(1))
            .max_backoff(Duration::from_secs(10))
            .seed(7)
            .build();
        let mut rng = policy.rng();
        for retry in 1..=40 {
            let ceiling =
                Duration::from_secs(1u64 << (retry - 1).min(10)).min(Duration::from_secs(10));
            for _ in 0..50 {
                assert!(policy.backoff(retry, &mut rng) <= ceiling, "retry {retry}");
            }
        }
        let huge = RetryPolicy::builder()
            .initial_backoff(Duration::MAX)
            .max_backoff(Duration::MAX)
            .build();
        let _ = huge.backoff(u32::MAX, &mut rng); // no overflow, no panic
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let policy = RetryPolicy::builder().seed(1).build();
        let mut rng = policy.rng();
        let waits: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| policy.backoff(3, &mut rng)).collect();
        assert!(waits.len() > 15, "full jitter gives distinct waits: {waits:?}");
    }

    #[test]
    fn only_idempotent_or_repeatable_initial_requests_retry_by_default() {
        let none = HeaderMap::new();
        assert!(RetryPolicy::initial_request_is_retryable(&Method::PUT, &none));
        assert!(RetryPolicy::initial_request_is_retryable(&Method::DELETE, &none));
        assert!(!RetryPolicy::initial_request_is_retryable(&Method::POST, &none));
        assert!(!RetryPolicy::initial_request_is_retryable(&Method::PATCH, &none));
        let mut repeatable = HeaderMap::new();
        repeatable.insert("repeatability-request-id", http::HeaderValue::from_static("id-1"));
        assert!(RetryPolicy::initial_request_is_retryable(&Method::POST, &repeatable));
        let mut op = HeaderMap::new();
        op.insert("operation-id", http::HeaderValue::from_static("op-1"));
        assert!(RetryPolicy::initial_request_is_retryable(&Method::POST, &op));
    }
}
