//! How long to wait between polls: the server's `Retry-After` hint and the [`DelayPolicy`].

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

/// azure-core's default interval between polls when the service gives no hint: 30 seconds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// What a [`DelayPolicy`] is told before each wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DelayContext {
    /// How many poll responses have been received so far (1 before the second poll).
    pub polls: u32,
    /// Time since polling started.
    pub elapsed: Duration,
    /// The delay the service asked for in the latest response, if any (see [`retry_after`]).
    pub retry_after: Option<Duration>,
}

impl DelayContext {
    /// A context (for tests of custom policies).
    pub fn new(polls: u32, elapsed: Duration, retry_after: Option<Duration>) -> Self {
        DelayContext { polls, elapsed, retry_after }
    }
}

/// Decides the wait before the next poll. Pure: no clock, no sleeping, no I/O.
///
/// The engine caps whatever the policy returns at its configured maximum delay.
///
/// ```
/// use std::time::Duration;
/// use lro_core::{DelayContext, DelayPolicy};
///
/// /// Doubles the wait after every poll, starting at one second; ignores the server.
/// #[derive(Debug)]
/// struct Doubling;
/// impl DelayPolicy for Doubling {
///     fn next_delay(&mut self, ctx: &DelayContext) -> Duration {
///         Duration::from_secs(1).saturating_mul(1u32 << ctx.polls.saturating_sub(1).min(16))
///     }
/// }
///
/// assert_eq!(Doubling.next_delay(&DelayContext::new(3, Duration::ZERO, None)), Duration::from_secs(4));
/// ```
pub trait DelayPolicy: Send + Sync + fmt::Debug {
    /// The wait before the next poll.
    fn next_delay(&mut self, ctx: &DelayContext) -> Duration;
}

impl<P: DelayPolicy + ?Sized> DelayPolicy for Box<P> {
    fn next_delay(&mut self, ctx: &DelayContext) -> Duration {
        (**self).next_delay(ctx)
    }
}

/// azure-core's policy: the service's hint when it gives a non-zero one, else a fixed interval.
///
/// Like azure-core, a hint of zero (or a date in the past) means "use the interval", not
/// "poll again at once".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedInterval {
    interval: Duration,
}

impl FixedInterval {
    /// A policy that waits `interval` unless the service asks for another (non-zero) delay.
    pub fn new(interval: Duration) -> Self {
        FixedInterval { interval }
    }

    /// The interval used when the service gives no hint.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl Default for FixedInterval {
    fn default() -> Self {
        FixedInterval::new(DEFAULT_INTERVAL)
    }
}

impl DelayPolicy for FixedInterval {
    fn next_delay(&mut self, ctx: &DelayContext) -> Duration {
        match ctx.retry_after {
            Some(hint) if !hint.is_zero() => hint,
            _ => self.interval,
        }
    }
}

/// The delay a response asks for, read as azure-core reads it.
///
/// Headers, first present and non-empty wins: `Retry-After` (seconds, fractions allowed, or an
/// HTTP date, measured from `now`), then `retry-after-ms`, then `x-ms-retry-after-ms`
/// (milliseconds). Negative values and past dates give zero; values too large for a
/// [`Duration`] saturate. A value that is neither a number nor an HTTP date is ignored (azure-core
/// raises an error there; garbage from a server should not end an operation).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use lro_core::delay::retry_after;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after-ms", "1500".parse()?);
/// assert_eq!(retry_after(&headers, SystemTime::UNIX_EPOCH), Some(Duration::from_millis(1500)));
/// headers.insert("Retry-After", "2".parse()?);
/// assert_eq!(retry_after(&headers, SystemTime::UNIX_EPOCH), Some(Duration::from_secs(2)));
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    // One pass over the headers (a poll's response has few) rather than three lookups; the
    // first value of each name counts, as `HeaderMap::get` gives it.
    let mut found: [Option<&HeaderValue>; 3] = [None; 3];
    for (name, value) in headers {
        let slot = if *name == http::header::RETRY_AFTER {
            0
        } else if *name == RETRY_AFTER_MS {
            1
        } else if *name == X_MS_RETRY_AFTER_MS {
            2
        } else {
            continue;
        };
        found[slot].get_or_insert(value);
    }
    let [seconds, millis, ms_millis] = found.map(|value| value.and_then(non_empty));
    if let Some(value) = seconds {
        return parse_seconds(value, 1.0).or_else(|| parse_date(value, now));
    }
    millis.or(ms_millis).and_then(|value| parse_seconds(value, 1000.0))
}

// Names made once, not parsed from text on every poll.
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");

fn non_empty(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    (!value.is_empty()).then_some(value)
}

fn parse_seconds(value: &str, divisor: f64) -> Option<Duration> {
    let number: f64 = value.parse().ok()?;
    let seconds = number / divisor;
    if seconds.is_nan() || seconds <= 0.0 {
        return Some(Duration::ZERO);
    }
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

fn parse_date(value: &str, now: SystemTime) -> Option<Duration> {
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(pairs: &[(&'static str, &'static str)]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().expect("valid header value"));
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        retry_after(&headers, now)
    }

    #[test]
    fn retry_after_reads_seconds_fractions_and_dates() {
        assert_eq!(hint(&[("retry-after", "10")]), Some(Duration::from_secs(10)));
        assert_eq!(hint(&[("retry-after", "1.5")]), Some(Duration::from_millis(1500)));
        assert_eq!(
            hint(&[("retry-after", "Sun, 06 Nov 1994 09:49:37 GMT")]),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn retry_after_wins_over_the_millisecond_headers_in_azure_order() {
        let all = [("retry-after", "3"), ("retry-after-ms", "250"), ("x-ms-retry-after-ms", "7")];
        assert_eq!(hint(&all), Some(Duration::from_secs(3)));
        assert_eq!(hint(&all[1..]), Some(Duration::from_millis(250)));
        assert_eq!(hint(&all[2..]), Some(Duration::from_millis(7)));
        assert_eq!(
            hint(&[("retry-after", ""), ("retry-after-ms", "250")]),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn the_first_value_of_a_repeated_hint_counts() {
        let twice = [("retry-after-ms", "100"), ("x-other", "1"), ("retry-after-ms", "900")];
        assert_eq!(hint(&twice), Some(Duration::from_millis(100)));
        let empty_first = [("retry-after", ""), ("retry-after", "5"), ("x-ms-retry-after-ms", "7")];
        assert_eq!(hint(&empty_first), Some(Duration::from_millis(7)), "as HeaderMap::get reads");
    }

    #[test]
    fn hostile_retry_after_values_never_panic_or_go_negative() {
        assert_eq!(hint(&[("retry-after", "-5")]), Some(Duration::ZERO));
        assert_eq!(hint(&[("retry-after", "NaN")]), Some(Duration::ZERO));
        assert_eq!(hint(&[("retry-after", "inf")]), Some(Duration::MAX));
        assert_eq!(hint(&[("retry-after", "1e300")]), Some(Duration::MAX));
        assert_eq!(hint(&[("retry-after", "Sat, 05 Nov 1994 08:49:37 GMT")]), Some(Duration::ZERO));
        assert_eq!(hint(&[("retry-after", "soon")]), None);
        assert_eq!(hint(&[]), None);
    }

    #[test]
    fn fixed_interval_uses_non_zero_hints_only() {
        let mut policy = FixedInterval::new(Duration::from_secs(30));
        let ctx = |hint| DelayContext::new(1, Duration::ZERO, hint);
        assert_eq!(policy.next_delay(&ctx(None)), Duration::from_secs(30));
        assert_eq!(policy.next_delay(&ctx(Some(Duration::ZERO))), Duration::from_secs(30));
        assert_eq!(policy.next_delay(&ctx(Some(Duration::from_secs(2)))), Duration::from_secs(2));
    }
}
