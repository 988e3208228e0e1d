//! [`LroError`]: everything that can go wrong while driving an operation.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;

use crate::status::Status;
use crate::token::{ContinuationToken, TokenError};
use crate::transport::{BoxError, TransportError};

/// At most this much of a response body is kept inside an error.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why a long-running operation could not be driven to a successful end.
///
/// Match on the variant to react; every variant that can happen after the operation started
/// carries a [`continuation_token`](LroError::continuation_token) to resume it later.
///
/// `Display` prints one level ("unexpected HTTP status", "request failed", …); the details are
/// the variant's payload, reachable through [`source()`](std::error::Error::source), and its
/// own causes after it (a transport's error, a JSON error). Print the whole chain on one line
/// with [`chain`](LroError::chain), or hand the error to any error reporter.
///
/// ```
/// use lro_core::LroError;
///
/// fn explain(err: &LroError) -> String {
///     match err {
///         LroError::OperationFailed(e) => format!("the service says: {}", e.message()),
///         LroError::Timeout(t) if !t.is_final() => match err.continuation_token() {
///             Some(token) => format!("still running; resume with {token}"),
///             None => "still running".to_owned(),
///         },
///         other => other.chain().to_string(),
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LroError {
    /// The service answered with an HTTP status that this step does not accept
    /// (azure-core's `BadStatus`).
    #[error("unexpected HTTP status")]
    BadStatus(#[source] Box<HttpResponseError>),
    /// A response lacked what polling needs: a body, a status, a polling link
    /// (azure-core's `BadResponse`).
    #[error("unusable response")]
    BadResponse(#[source] Box<HttpResponseError>),
    /// The operation ended failed or canceled on the service side
    /// (azure-core's `OperationFailed`). The service's error body is in the payload.
    #[error("operation {}", outcome_word(.0))]
    OperationFailed(#[source] Box<HttpResponseError>),
    /// A body could not be decoded (invalid JSON, or the deserialization callback failed).
    #[error("cannot decode a response")]
    Decode(#[source] Box<DecodeError>),
    /// A deadline ran out before the operation finished; the operation may still be running.
    #[error("timed out")]
    Timeout(#[source] Box<TimeoutError>),
    /// A request could not be completed (connection, TLS, timeout, body too large, ...).
    #[error("request failed")]
    Transport(#[source] Box<TransportFailure>),
    /// A continuation token could not be read.
    #[error("invalid continuation token")]
    InvalidContinuationToken(#[source] Box<TokenError>),
    /// A configured policy refused to go on (untrusted origin, too many polls, ...).
    #[error("refused by policy")]
    Policy(#[source] Box<PolicyError>),
    /// Polling stopped before the end: the poller was dropped or the polling method panicked.
    #[error("polling stopped")]
    Stopped(#[source] Box<StoppedError>),
}

fn outcome_word(error: &HttpResponseError) -> &'static str {
    match error.operation_status() {
        Some(status) if status.kind() == crate::StatusKind::Canceled => "canceled",
        _ => "failed",
    }
}

impl From<TokenError> for LroError {
    fn from(error: TokenError) -> Self {
        LroError::InvalidContinuationToken(Box::new(error))
    }
}

/// An error and its causes on one line: `error: cause: cause of the cause`.
///
/// ```
/// use lro_core::{LroError, TransportError, TransportErrorKind};
///
/// let error = LroError::transport(TransportError::new(TransportErrorKind::Connect, "refused"));
/// assert_eq!(error.to_string(), "request failed");
/// assert_eq!(error.chain().to_string(), "request failed: connection failed: refused");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(&'a (dyn StdError + 'static));

impl<'a> ErrorChain<'a> {
    /// The chain of `error`.
    pub fn new(error: &'a (dyn StdError + 'static)) -> Self {
        ErrorChain(error)
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        // Bounded: a cyclic chain (a bug elsewhere) must not hang the caller.
        for _ in 0..32 {
            let Some(error) = cause else { break };
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl LroError {
    /// The token to resume the operation from, when the error happened after it started.
    pub fn continuation_token(&self) -> Option<&ContinuationToken> {
        match self {
            LroError::BadStatus(e) | LroError::BadResponse(e) | LroError::OperationFailed(e) => {
                e.continuation_token.as_ref()
            }
            LroError::Decode(e) => e.continuation_token.as_ref(),
            LroError::Timeout(e) => e.continuation_token.as_ref(),
            LroError::Transport(e) => e.continuation_token.as_ref(),
            LroError::Policy(e) => e.continuation_token.as_ref(),
            LroError::Stopped(e) => e.continuation_token.as_ref(),
            LroError::InvalidContinuationToken(_) => None,
        }
    }

    /// Attaches `token` unless the error already carries one (errors that cannot be resumed,
    /// such as an invalid token, ignore it).
    #[must_use]
    pub fn with_continuation_token(mut self, token: ContinuationToken) -> Self {
        if let Some(slot @ None) = self.token_slot_mut() {
            *slot = Some(token);
        }
        self
    }

    /// As [`with_continuation_token`](Self::with_continuation_token), the token made by `token`
    /// only if the error has none yet (a token that cannot be made is left out).
    pub(crate) fn with_token_from(
        self,
        token: impl FnOnce() -> Result<ContinuationToken, LroError>,
    ) -> Self {
        if self.continuation_token().is_some() {
            return self;
        }
        match token() {
            Ok(token) => self.with_continuation_token(token),
            Err(_) => self,
        }
    }

    /// Records that the request behind this error was sent `attempts` times (the first try and
    /// its retries). Only errors about one request (HTTP status, response, transport) keep it.
    #[must_use]
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        match &mut self {
            LroError::BadStatus(e) | LroError::BadResponse(e) | LroError::OperationFailed(e) => {
                e.attempts = attempts;
            }
            LroError::Transport(e) => e.attempts = attempts,
            _ => {}
        }
        self
    }

    /// How many times the request behind this error was sent, for errors about one request.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            LroError::BadStatus(e) | LroError::BadResponse(e) | LroError::OperationFailed(e) => {
                Some(e.attempts)
            }
            LroError::Transport(e) => Some(e.attempts),
            _ => None,
        }
    }

    /// This error and all its causes, displayed on one line (`request failed: connection
    /// failed: …`).
    pub fn chain(&self) -> ErrorChain<'_> {
        ErrorChain(self)
    }

    /// The HTTP response details, for the variants that have them.
    pub fn response(&self) -> Option<&HttpResponseError> {
        match self {
            LroError::BadStatus(e) | LroError::BadResponse(e) | LroError::OperationFailed(e) => {
                Some(e)
            }
            _ => None,
        }
    }

    /// A short, stable, snake_case name of the variant (`"operation_failed"`, `"timeout"`, ...),
    /// for logs and machine-readable output.
    pub fn kind_name(&self) -> &'static str {
        match self {
            LroError::BadStatus(_) => "bad_status",
            LroError::BadResponse(_) => "bad_response",
            LroError::OperationFailed(_) => "operation_failed",
            LroError::Decode(_) => "decode",
            LroError::Timeout(_) => "timeout",
            LroError::Transport(_) => "transport",
            LroError::InvalidContinuationToken(_) => "invalid_token",
            LroError::Policy(_) => "policy",
            LroError::Stopped(_) => "stopped",
        }
    }

    /// A [`BadStatus`](LroError::BadStatus) error for `response`.
    pub fn bad_status(response: &Response<Bytes>, method: &http::Method) -> Self {
        let mut error = HttpResponseError::new(response, String::new());
        error.message = format!(
            "invalid return status {} for '{method}' operation",
            response.status().as_u16()
        );
        if let Some(service) = error.service_error() {
            error.message = format!("{}: {service}", error.message);
        }
        LroError::BadStatus(Box::new(error))
    }

    /// A [`BadResponse`](LroError::BadResponse) error for `response`.
    pub fn bad_response(response: &Response<Bytes>, message: impl Into<String>) -> Self {
        LroError::BadResponse(Box::new(HttpResponseError::new(response, message)))
    }

    /// An [`OperationFailed`](LroError::OperationFailed) error: `response` carried the terminal
    /// failed or canceled `status`.
    pub fn operation_failed(response: &Response<Bytes>, status: Status) -> Self {
        let mut error = HttpResponseError::new(response, String::new());
        error.message = match error.service_error() {
            Some(service) => format!("the service reported status '{status}': {service}"),
            None => format!("the service reported status '{status}'"),
        };
        error.operation_status = Some(status);
        LroError::OperationFailed(Box::new(error))
    }

    /// A [`Decode`](LroError::Decode) error.
    pub fn decode(message: impl Into<String>, source: Option<BoxError>) -> Self {
        LroError::Decode(Box::new(DecodeError {
            message: message.into(),
            source: source.map(Arc::from),
            continuation_token: None,
        }))
    }

    /// A [`Timeout`](LroError::Timeout) error of a wait that ran out: polling is paused (or
    /// goes on in the background), and waiting again continues.
    pub fn timeout(message: impl Into<String>, elapsed: Option<Duration>, polls: u32) -> Self {
        LroError::Timeout(Box::new(TimeoutError {
            message: message.into(),
            elapsed,
            polls,
            is_final: false,
            continuation_token: None,
        }))
    }

    /// A [`Timeout`](LroError::Timeout) error of a limit reached (`max_polls`, `max_elapsed`):
    /// polling stopped for good; only resuming from the token polls again.
    pub fn gave_up(message: impl Into<String>, elapsed: Option<Duration>, polls: u32) -> Self {
        LroError::Timeout(Box::new(TimeoutError {
            message: message.into(),
            elapsed,
            polls,
            is_final: true,
            continuation_token: None,
        }))
    }

    /// A [`Transport`](LroError::Transport) error.
    pub fn transport(error: TransportError) -> Self {
        LroError::Transport(Box::new(TransportFailure {
            error,
            attempts: 1,
            continuation_token: None,
        }))
    }

    /// An [`InvalidContinuationToken`](LroError::InvalidContinuationToken) error.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        LroError::from(TokenError::new(message))
    }

    /// A [`Policy`](LroError::Policy) error.
    pub fn policy(message: impl Into<String>) -> Self {
        LroError::Policy(Box::new(PolicyError {
            message: message.into(),
            origin: None,
            continuation_token: None,
        }))
    }

    /// A [`Policy`](LroError::Policy) error that refused to send a request to `origin`
    /// (`scheme://host[:port]`): [`PolicyError::origin`] names it, so that a tool can say which
    /// origin to trust.
    pub fn refused_origin(message: impl Into<String>, origin: impl Into<String>) -> Self {
        LroError::Policy(Box::new(PolicyError {
            message: message.into(),
            origin: Some(origin.into()),
            continuation_token: None,
        }))
    }

    /// A [`Stopped`](LroError::Stopped) error.
    pub fn stopped(message: impl Into<String>) -> Self {
        LroError::Stopped(Box::new(StoppedError {
            message: message.into(),
            continuation_token: None,
        }))
    }

    fn token_slot_mut(&mut self) -> Option<&mut Option<ContinuationToken>> {
        Some(match self {
            LroError::BadStatus(e) | LroError::BadResponse(e) | LroError::OperationFailed(e) => {
                &mut e.continuation_token
            }
            LroError::Decode(e) => &mut e.continuation_token,
            LroError::Timeout(e) => &mut e.continuation_token,
            LroError::Transport(e) => &mut e.continuation_token,
            LroError::Policy(e) => &mut e.continuation_token,
            LroError::Stopped(e) => &mut e.continuation_token,
            LroError::InvalidContinuationToken(_) => return None,
        })
    }
}

/// An HTTP response that ended polling, as kept inside an [`LroError`]: status code, headers,
/// the first [`MAX_ERROR_BODY`] bytes of the body, and a message (azure-core's
/// `HttpResponseError`).
#[derive(Clone)]
pub struct HttpResponseError {
    status_code: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    message: String,
    operation_status: Option<Status>,
    attempts: u32,
    continuation_token: Option<ContinuationToken>,
}

impl HttpResponseError {
    /// Keeps `response`'s details with `message`. The body is cut to [`MAX_ERROR_BODY`] bytes
    /// and copied, as the headers are (a transport's may be slices of its read buffer).
    pub fn new(response: &Response<Bytes>, message: impl Into<String>) -> Self {
        let body = response.body();
        HttpResponseError {
            status_code: response.status(),
            headers: crate::owned::headers(response.headers()),
            body: Bytes::copy_from_slice(body.get(..MAX_ERROR_BODY).unwrap_or(body)),
            message: message.into(),
            operation_status: None,
            attempts: 1,
            continuation_token: None,
        }
    }

    /// How many times the request was sent (1 unless transient failures were retried).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The HTTP status code of the response.
    pub fn status_code(&self) -> StatusCode {
        self.status_code
    }

    /// The standard reason phrase of the status code, if it has one.
    pub fn reason(&self) -> Option<&'static str> {
        self.status_code.canonical_reason()
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The response body (at most [`MAX_ERROR_BODY`] bytes of it).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// What went wrong, in one sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For [`LroError::OperationFailed`]: the terminal status the service reported.
    pub fn operation_status(&self) -> Option<&Status> {
        self.operation_status.as_ref()
    }

    /// The service's own error, when the body is an OData-style error
    /// (`{"error": {"code": ..., "message": ...}}` or a top-level `code`/`message`).
    pub fn service_error(&self) -> Option<ServiceError> {
        ServiceError::parse(&self.body)
    }

    /// The token to resume the operation from.
    pub fn continuation_token(&self) -> Option<&ContinuationToken> {
        self.continuation_token.as_ref()
    }
}

impl fmt::Display for HttpResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}", self.message, self.status_code.as_u16())?;
        if let Some(reason) = self.reason() {
            write!(f, " {reason}")?;
        }
        f.write_str(")")?;
        write_attempts(f, self.attempts)
    }
}

fn write_attempts(f: &mut fmt::Formatter<'_>, attempts: u32) -> fmt::Result {
    if attempts > 1 { write!(f, ", after {attempts} attempts") } else { Ok(()) }
}

impl StdError for HttpResponseError {}

impl fmt::Debug for HttpResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponseError")
            .field("status_code", &self.status_code)
            .field("message", &self.message)
            .field("operation_status", &self.operation_status)
            .field("body_len", &self.body.len())
            .field("has_continuation_token", &self.continuation_token.is_some())
            .finish()
    }
}

/// An error as a service describes it in an OData-style body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceError {
    /// The service's error code (`"Conflict"`, `"InternalError"`, ...).
    pub code: Option<String>,
    /// The service's message.
    pub message: Option<String>,
}

impl ServiceError {
    fn parse(body: &[u8]) -> Option<ServiceError> {
        #[derive(Deserialize)]
        struct Inner {
            code: Option<String>,
            message: Option<String>,
        }
        #[derive(Deserialize)]
        struct Outer {
            error: Option<Inner>,
            code: Option<String>,
            message: Option<String>,
        }
        let outer: Outer = serde_json::from_slice(body).ok()?;
        let (code, message) = match outer.error {
            Some(inner) => (inner.code, inner.message),
            None => (outer.code, outer.message),
        };
        (code.is_some() || message.is_some()).then_some(ServiceError { code, message })
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, "({code}) {message}"),
            (Some(code), None) => write!(f, "({code})"),
            (None, Some(message)) => f.write_str(message),
            (None, None) => Ok(()),
        }
    }
}

/// A body that could not be decoded.
#[derive(Debug, Clone)]
pub struct DecodeError {
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync>>,
    continuation_token: Option<ContinuationToken>,
}

impl DecodeError {
    /// What could not be decoded.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message) // the cause comes through `source()`
    }
}

impl StdError for DecodeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// A deadline ran out; the operation itself may still be running on the service.
#[derive(Debug, Clone)]
pub struct TimeoutError {
    message: String,
    elapsed: Option<Duration>,
    polls: u32,
    is_final: bool,
    continuation_token: Option<ContinuationToken>,
}

impl TimeoutError {
    /// Whether polling stopped for good: a `max_polls` or `max_elapsed` limit was reached, and
    /// only resuming from the continuation token polls again. `false` when a wait ran out
    /// (`result(Some(timeout))`): polling is paused, or goes on in the background, and waiting
    /// again continues.
    pub fn is_final(&self) -> bool {
        self.is_final
    }

    /// What happened, in one sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How long polling had been going on, when known.
    pub fn elapsed(&self) -> Option<Duration> {
        self.elapsed
    }

    /// How many poll requests had been answered.
    pub fn polls(&self) -> u32 {
        self.polls
    }
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for TimeoutError {}

/// A request that failed in the transport, with no HTTP response.
#[derive(Debug, Clone)]
pub struct TransportFailure {
    error: TransportError,
    attempts: u32,
    continuation_token: Option<ContinuationToken>,
}

impl TransportFailure {
    /// The transport's error (of the last attempt).
    pub fn error(&self) -> &TransportError {
        &self.error
    }

    /// How many times the request was sent (1 unless transient failures were retried).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        write_attempts(f, self.attempts)
    }
}

impl StdError for TransportFailure {
    /// The transport's own error (what [`TransportError`] wraps): this level already said what
    /// kind of failure it was.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

/// A policy refused to go on.
#[derive(Debug, Clone)]
pub struct PolicyError {
    message: String,
    origin: Option<String>,
    continuation_token: Option<ContinuationToken>,
}

impl PolicyError {
    /// What was refused, and why.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The origin (`scheme://host[:port]`, never a path or query) a request was refused for,
    /// when that was the reason: the one to trust, if the user vouches for it.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for PolicyError {}

/// Polling stopped before the operation ended.
#[derive(Debug, Clone)]
pub struct StoppedError {
    message: String,
    continuation_token: Option<ContinuationToken>,
}

impl StoppedError {
    /// Why polling stopped.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoppedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for StoppedError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StatusVocabulary;

    fn response(status: u16, body: &'static str) -> Response<Bytes> {
        let mut r = Response::new(Bytes::from_static(body.as_bytes()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        r
    }

    #[test]
    fn an_error_keeps_a_copy_of_the_body_cut_to_its_limit() {
        let long: &'static str = Box::leak("x".repeat(MAX_ERROR_BODY + 10).into_boxed_str());
        let answer = response(500, long);
        let error = HttpResponseError::new(&answer, "boom");
        assert_eq!(error.body().len(), MAX_ERROR_BODY);
        assert_ne!(error.body().as_ptr(), answer.body().as_ptr(), "a slice would pin its buffer");
    }

    #[test]
    fn operation_failed_message_names_status_and_service_error() {
        let status = StatusVocabulary::azure().status("Failed");
        let body = r#"{"status":"Failed","error":{"code":"Boom","message":"it broke"}}"#;
        let err = LroError::operation_failed(&response(200, body), status);
        assert_eq!(err.to_string(), "operation failed", "one level");
        assert_eq!(
            err.chain().to_string(),
            "operation failed: the service reported status 'Failed': (Boom) it broke (HTTP 200 OK)"
        );
        let details = err.response().map(|r| r.operation_status().cloned());
        assert_eq!(details.flatten().map(|s| s.to_string()).as_deref(), Some("Failed"));
    }

    #[test]
    fn canceled_operations_say_canceled() {
        let status = StatusVocabulary::azure().status("canceled");
        let err = LroError::operation_failed(&response(200, "{}"), status);
        assert_eq!(err.to_string(), "operation canceled");
        assert!(err.chain().to_string().contains("status 'canceled'"), "{}", err.chain());
    }

    #[test]
    fn error_bodies_are_cut_to_the_limit() {
        let big = Bytes::from(vec![b'x'; MAX_ERROR_BODY * 2]);
        let mut r = Response::new(big);
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        let err = LroError::bad_status(&r, &http::Method::GET);
        assert_eq!(err.response().map(|e| e.body().len()), Some(MAX_ERROR_BODY));
        assert_eq!(
            err.chain().to_string(),
            "unexpected HTTP status: invalid return status 500 for 'GET' operation (HTTP 500 Internal Server Error)"
        );
    }

    #[test]
    fn the_first_token_attached_wins_and_invalid_token_errors_take_none() {
        let first = ContinuationToken::from_string("first".into());
        let second = ContinuationToken::from_string("second".into());
        let err = LroError::timeout("late", None, 3)
            .with_continuation_token(first.clone())
            .with_continuation_token(second.clone());
        assert_eq!(err.continuation_token(), Some(&first));
        let invalid = LroError::invalid_token("bad").with_continuation_token(second);
        assert!(invalid.continuation_token().is_none());
    }

    #[test]
    fn every_variant_prints_one_level_and_chains_its_causes() {
        let json = serde_json::from_str::<serde_json::Value>("{").err().map(BoxError::from);
        let transport = TransportError::new(crate::TransportErrorKind::Connect, "refused");
        let errors = [
            LroError::bad_status(&response(500, ""), &http::Method::GET),
            LroError::bad_response(&response(200, ""), "no status"),
            LroError::operation_failed(
                &response(200, ""),
                StatusVocabulary::azure().status("Failed"),
            ),
            LroError::decode("not JSON", json),
            LroError::timeout("late", None, 1),
            LroError::transport(transport),
            LroError::invalid_token("garbled"),
            LroError::policy("not on the allowed origins"),
            LroError::stopped("dropped"),
        ];
        for error in &errors {
            let top = error.to_string();
            let source = StdError::source(error).map(ToString::to_string);
            let source = source.unwrap_or_else(|| panic!("{top}: no source"));
            assert!(!top.contains(&source), "{top:?} repeats its source {source:?}");
            assert!(error.chain().to_string().starts_with(&format!("{top}: {source}")));
        }
        // Deeper causes: a decode error's JSON error, a transport's own error.
        assert!(errors[3].chain().to_string().contains("EOF"), "{}", errors[3].chain());
        assert_eq!(errors[5].chain().to_string(), "request failed: connection failed: refused");
    }

    #[test]
    fn timeouts_say_whether_polling_stopped_for_good() {
        let paused = LroError::timeout("wait ran out", None, 2);
        let final_ = LroError::gave_up("limit", None, 2);
        let is_final = |e: &LroError| matches!(e, LroError::Timeout(t) if t.is_final());
        assert!(!is_final(&paused));
        assert!(is_final(&final_));
    }

    #[test]
    fn service_error_reads_both_odata_shapes() {
        assert_eq!(
            ServiceError::parse(br#"{"code":"C","message":"M"}"#).map(|e| e.to_string()),
            Some("(C) M".to_owned())
        );
        assert_eq!(ServiceError::parse(br#"{"status":"Failed"}"#), None);
        assert_eq!(ServiceError::parse(b"not json"), None);
    }
}
