//! What an operation tells the outside world while the engine drives it: spans and events
//! (feature `tracing`) and counters and a histogram (feature `metrics`). Without either feature
//! every call here compiles to nothing and the engine carries no extra byte.
//!
//! The engine calls these hooks at its decision points, so every driver (blocking, async,
//! fleet) reports the same things. Field names follow OpenTelemetry's HTTP semantic conventions
//! where one exists (`http.request.method`, `http.response.status_code`, `server.address`,
//! `server.port`, `url.full`, `error.type`); the others are prefixed `lro.`.
//!
//! Redaction: a URL is reported as `scheme://host[:port]/path`, never its query (SAS
//! signatures, codes) nor user information; header values, request and response bodies and
//! continuation tokens are never reported.

// Each feature uses part of what is here; without both, some of it is unused by design.
#![cfg_attr(not(all(feature = "tracing", feature = "metrics")), allow(dead_code, unused_variables))]

use std::fmt;
use std::time::Duration;

use http::{Method, StatusCode, Uri};

use crate::error::LroError;
use crate::status::{Status, StatusKind};
use crate::transport::TransportError;

/// Why the engine waits before its next request: shown by progress displays ("next poll in
/// 30 s, Retry-After") and recorded on poll spans.
///
/// ```
/// use lro_core::WaitReason;
///
/// assert_eq!(WaitReason::RetryAfter.to_string(), "Retry-After");
/// assert_eq!(WaitReason::Backoff.as_str(), "backoff");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitReason {
    /// The service asked for this wait on a running poll (`Retry-After`, `retry-after-ms`).
    RetryAfter,
    /// The polling interval of the delay policy.
    Interval,
    /// A failed request is retried after an exponential backoff.
    Backoff,
    /// A throttled request (429 or 503) is retried after the wait the service asked for.
    Throttled,
}

impl WaitReason {
    /// A stable snake_case name, for logs, labels and machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::RetryAfter => "retry_after",
            WaitReason::Interval => "interval",
            WaitReason::Backoff => "backoff",
            WaitReason::Throttled => "throttled",
        }
    }
}

impl fmt::Display for WaitReason {
    /// Words for people: `Retry-After`, `interval`, `backoff`, `throttled`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitReason::RetryAfter => "Retry-After",
            other => other.as_str(),
        })
    }
}

/// How an operation ended, as one word: `succeeded`, `failed`, `canceled` (the service said so),
/// or the error's [`kind_name`](LroError::kind_name) (`timeout`, `transport`, `policy`, ...).
pub(crate) fn outcome_word(outcome: Result<(), &LroError>) -> &'static str {
    match outcome {
        Ok(()) => "succeeded",
        Err(LroError::OperationFailed(failure)) => match failure.operation_status() {
            Some(status) if status.kind() == StatusKind::Canceled => "canceled",
            _ => "failed",
        },
        Err(error) => error.kind_name(),
    }
}

/// `scheme://host[:port]/path` of `uri`: no query, no fragment, no user information.
pub(crate) fn redacted(uri: &Uri) -> String {
    let mut shown = String::new();
    // Writing to a `String` cannot fail.
    let _ = crate::redact::write_origin_and_path(&mut shown, uri);
    shown
}

/// The spans of one operation, and the counters it moves. A zero-sized value without the
/// `tracing` feature; with it, one pointer (no allocation unless a subscriber wants the span).
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    #[cfg(feature = "tracing")]
    spans: Option<Box<spans::Spans>>,
}

/// What [`Telemetry::operation`] reports of a new operation.
pub(crate) struct Started<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) poll_uri: Option<&'a Uri>,
    pub(crate) strategy: &'static str,
    pub(crate) resumed: bool,
    pub(crate) status: &'a Status,
}

/// What [`Telemetry::finished`] reports of an operation that ended.
pub(crate) struct Finished<'a> {
    pub(crate) outcome: Result<(), &'a LroError>,
    pub(crate) status: &'a Status,
    pub(crate) polls: u32,
    pub(crate) elapsed: Option<Duration>,
    pub(crate) strategy: &'static str,
}

impl Telemetry {
    /// An operation started (or resumed): opens its span, counts it.
    pub(crate) fn operation(started: &Started<'_>) -> Self {
        #[cfg(feature = "metrics")]
        metrics::counter!("lro_operations_started_total", "strategy" => started.strategy)
            .increment(1);
        Telemetry {
            #[cfg(feature = "tracing")]
            spans: spans::Spans::open(started),
        }
    }

    /// A request is about to go out: opens its poll span (closing any earlier one).
    pub(crate) fn sending(&mut self, uri: &Uri, poll: u32, attempt: u32, final_get: bool) {
        #[cfg(feature = "tracing")]
        if let Some(spans) = &mut self.spans {
            spans.sending(uri, poll, attempt, final_get);
        }
    }

    /// The request of the open poll span was answered with `status`.
    pub(crate) fn answered(&mut self, code: StatusCode, strategy: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!("lro_polls_total", "strategy" => strategy).increment(1);
        #[cfg(feature = "tracing")]
        if let Some(spans) = &self.spans {
            spans.answered(code);
        }
    }

    /// The request of the open poll span failed in the transport.
    pub(crate) fn transport_failed(&mut self, error: &TransportError) {
        #[cfg(feature = "tracing")]
        if let Some(spans) = &self.spans {
            spans.transport_failed(error);
        }
    }

    /// The request will be sent again after `delay`.
    pub(crate) fn retrying(
        &mut self,
        reason: WaitReason,
        delay: Duration,
        attempt: u32,
        strategy: &'static str,
    ) {
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("lro_retries_total", "strategy" => strategy, "reason" => reason.as_str())
                .increment(1);
            if reason == WaitReason::Throttled {
                metrics::counter!("lro_throttled_waits_total", "source" => "operation")
                    .increment(1);
            }
        }
        #[cfg(feature = "tracing")]
        if let Some(spans) = &self.spans {
            spans.retrying(reason, delay, attempt);
        }
    }

    /// A request was answered or failed, and the engine has decided: records the status, the
    /// next wait and its reason on the poll span, and closes it.
    pub(crate) fn settled(
        &mut self,
        status: &Status,
        percent: Option<u8>,
        next: Option<(Duration, WaitReason)>,
    ) {
        #[cfg(feature = "tracing")]
        if let Some(spans) = &mut self.spans {
            spans.settled(status, percent, next);
        }
    }

    /// The operation ended: an event on its span, and the outcome counted and timed.
    pub(crate) fn finished(&mut self, finished: &Finished<'_>) {
        #[cfg(feature = "metrics")]
        {
            let outcome = outcome_word(finished.outcome);
            let labels = [("strategy", finished.strategy), ("outcome", outcome)];
            metrics::counter!("lro_operations_finished_total", &labels).increment(1);
            if let Some(elapsed) = finished.elapsed {
                metrics::histogram!("lro_operation_duration_seconds", &labels)
                    .record(elapsed.as_secs_f64());
            }
        }
        #[cfg(feature = "tracing")]
        match &mut self.spans {
            Some(spans) => spans.finished(finished),
            // No subscriber wanted the operation span: the outcome may still be wanted (a
            // refusal is a warning), as an event of whatever span is current.
            None => spans::finished_event(None, finished),
        }
    }
}

/// A fleet paused every poll to `origin` for `pause` after a throttling answer.
pub(crate) fn origin_paused(origin: &dyn fmt::Display, pause: Duration) {
    #[cfg(feature = "metrics")]
    metrics::counter!("lro_throttled_waits_total", "source" => "fleet").increment(1);
    #[cfg(feature = "tracing")]
    tracing::info!(
        lro.origin = %origin,
        lro.delay_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
        lro.delay_reason = WaitReason::Throttled.as_str(),
        "origin throttled: its polls wait",
    );
}

#[cfg(feature = "tracing")]
mod spans {
    use std::time::Duration;

    use http::{StatusCode, Uri};
    use tracing::field::Empty;
    use tracing::{Level, Span};

    use super::{Finished, Started, WaitReason, outcome_word, redacted};
    use crate::error::LroError;
    use crate::status::Status;
    use crate::transport::TransportError;

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// The event that says how an operation ended: a child of `parent`, or of the current span.
    pub(super) fn finished_event(parent: Option<&Span>, finished: &Finished<'_>) {
        let outcome = outcome_word(finished.outcome);
        let elapsed_ms = finished.elapsed.map(millis);
        let polls = finished.polls;
        // One macro call per level and parent: tracing's levels and parents are static.
        macro_rules! emit {
            ($level:expr, $message:literal $(, $field:ident = $value:expr)*) => {
                match parent {
                    Some(span) => tracing::event!(parent: span, $level, lro.outcome = outcome,
                        lro.polls = polls, lro.elapsed_ms = elapsed_ms,
                        $(error.$field = $value,)* $message),
                    None => tracing::event!($level, lro.outcome = outcome, lro.polls = polls,
                        lro.elapsed_ms = elapsed_ms, $(error.$field = $value,)* $message),
                }
            };
        }
        match finished.outcome {
            Ok(()) => emit!(Level::INFO, "operation finished"),
            // The error chain names origins (never a path or query), statuses, counts and the
            // service's error code and message: never a header value, a link's query or a token.
            Err(error @ LroError::Policy(_)) => emit!(
                Level::WARN,
                "operation refused by policy",
                r#type = error.kind_name(),
                message = tracing::field::display(error.chain())
            ),
            Err(error) => emit!(
                Level::INFO,
                "operation ended with an error",
                r#type = error.kind_name(),
                message = tracing::field::display(error.chain())
            ),
        }
    }

    #[derive(Debug)]
    pub(super) struct Spans {
        operation: Span,
        poll: Option<Span>,
    }

    impl Spans {
        /// `None` when no subscriber wants operation spans: nothing is kept then.
        pub(super) fn open(started: &Started<'_>) -> Option<Box<Self>> {
            let uri = started.uri;
            let operation = tracing::info_span!(
                "lro.operation",
                http.request.method = %started.method,
                server.address = uri.host().unwrap_or(""),
                server.port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                    Some("http") => 80,
                    _ => 443,
                }),
                url.full = %redacted(uri),
                lro.operation_url = started.poll_uri.map(redacted),
                lro.strategy = started.strategy,
                lro.resumed = started.resumed,
                lro.status = Empty,
                lro.polls = Empty,
                lro.outcome = Empty,
            );
            if operation.is_disabled() {
                return None;
            }
            tracing::debug!(
                parent: &operation,
                lro.status = started.status.as_str(),
                "operation {}",
                if started.resumed { "resumed" } else { "started" }
            );
            Some(Box::new(Spans { operation, poll: None }))
        }

        pub(super) fn sending(&mut self, uri: &Uri, poll: u32, attempt: u32, final_get: bool) {
            let span = tracing::debug_span!(
                parent: &self.operation,
                "lro.poll",
                http.request.method = "GET",
                url.full = %redacted(uri),
                lro.poll = poll,
                lro.attempt = attempt,
                lro.final_get = final_get,
                http.response.status_code = Empty,
                error.type = Empty,
                lro.status = Empty,
                lro.percent_complete = Empty,
                lro.delay_ms = Empty,
                lro.delay_reason = Empty,
            );
            self.poll = Some(span);
        }

        pub(super) fn answered(&self, code: StatusCode) {
            if let Some(poll) = &self.poll {
                poll.record("http.response.status_code", code.as_u16());
            }
        }

        pub(super) fn transport_failed(&self, error: &TransportError) {
            if let Some(poll) = &self.poll {
                poll.record("error.type", tracing::field::debug(error.kind()));
            }
        }

        pub(super) fn retrying(&self, reason: WaitReason, delay: Duration, attempt: u32) {
            // A child of the operation span, not of the poll's: the poll span is DEBUG, and a
            // subscriber at INFO (`lro -v`) must still see which operation retries.
            tracing::info!(
                parent: &self.operation,
                lro.attempt = attempt,
                lro.delay_ms = millis(delay),
                lro.delay_reason = reason.as_str(),
                "request failed; retrying",
            );
        }

        pub(super) fn settled(
            &mut self,
            status: &Status,
            percent: Option<u8>,
            next: Option<(Duration, WaitReason)>,
        ) {
            self.operation.record("lro.status", status.as_str());
            let Some(poll) = self.poll.take() else { return };
            poll.record("lro.status", status.as_str());
            if let Some(percent) = percent {
                poll.record("lro.percent_complete", percent);
            }
            if let Some((delay, reason)) = next {
                poll.record("lro.delay_ms", millis(delay));
                poll.record("lro.delay_reason", reason.as_str());
            }
            tracing::debug!(parent: &poll, "poll answered");
        }

        pub(super) fn finished(&mut self, finished: &Finished<'_>) {
            self.poll = None;
            let span = &self.operation;
            span.record("lro.status", finished.status.as_str());
            span.record("lro.polls", finished.polls);
            span.record("lro.outcome", outcome_word(finished.outcome));
            finished_event(Some(span), finished);
        }
    }
}
