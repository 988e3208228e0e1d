//! The initial exchange of an operation: the request that started it and the service's answer.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};

use crate::error::LroError;
use crate::options::{DEFAULT_MAX_DELAY, DEFAULT_MIN_DELAY};
use crate::redact::{HeaderNames, PairNames, ShownUri};
use crate::retry::RetryPolicy;
use crate::transport::{AsyncHttpClient, AsyncTimer, HttpClient, Interrupt, Timer, TransportError};

/// What polling needs to know of the request that started an operation: method, URL, headers.
///
/// The body is not kept (polls never resend it). Its `Debug` output shows the URL without its
/// query and the header names without their values.
#[derive(Clone)]
pub struct RequestHead {
    method: Method,
    uri: Uri,
    /// `None` when there are none (what an engine keeps, usually): an empty map takes 96 bytes.
    headers: Option<Box<HeaderMap>>,
}

/// The headers of a head that has none.
fn no_headers() -> &'static HeaderMap {
    static EMPTY: OnceLock<HeaderMap> = OnceLock::new();
    EMPTY.get_or_init(HeaderMap::new)
}

impl RequestHead {
    /// A request head from its parts. Values that are [credentials](crate::is_credential) are
    /// marked sensitive, so that no `Debug` output (of the head, an engine, a poller) shows them.
    pub fn new(method: Method, uri: Uri, mut headers: HeaderMap) -> Self {
        for (name, value) in &mut headers {
            crate::options::hide_if_credential(name, value);
        }
        let headers = (!headers.is_empty()).then(|| Box::new(headers));
        RequestHead { method, uri, headers }
    }

    /// The head of `request` (its body is not copied).
    pub fn of<B>(request: &Request<B>) -> Self {
        RequestHead::new(request.method().clone(), request.uri().clone(), request.headers().clone())
    }

    /// The HTTP method (`PUT`, `POST`, ...).
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The absolute URL ("original URI").
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        match &self.headers {
            Some(headers) => headers,
            None => no_headers(),
        }
    }

    /// A request with this head and `body`.
    fn request(&self, body: Bytes) -> Request<Bytes> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        if let Some(headers) = &self.headers {
            *request.headers_mut() = HeaderMap::clone(headers);
        }
        request
    }
}

/// The retry decisions for one initial request (sans-IO: the senders above wait and send).
struct Attempts<'p> {
    policy: &'p RetryPolicy,
    repeatable: bool,
    retries: u32,
    rng: fastrand::Rng,
}

enum Judged {
    Done(Result<Response<Bytes>, LroError>),
    Retry(std::time::Duration),
}

impl<'p> Attempts<'p> {
    fn new(policy: &'p RetryPolicy, head: &RequestHead) -> Self {
        let repeatable = policy.retries_initial(head.method(), head.headers());
        Attempts { policy, repeatable, retries: 0, rng: policy.rng() }
    }

    fn judge(
        &mut self,
        outcome: Result<Response<Bytes>, TransportError>,
        now: std::time::SystemTime,
    ) -> Judged {
        let (transient, hint) = match &outcome {
            Ok(response) => {
                let status = response.status();
                let hint = RetryPolicy::honours_retry_after(status)
                    .then(|| crate::delay::retry_after(response.headers(), now))
                    .flatten();
                (RetryPolicy::is_transient_status(status), hint)
            }
            Err(error) => (RetryPolicy::is_transient_error(error), None),
        };
        if transient && self.repeatable {
            let limits = (DEFAULT_MIN_DELAY, DEFAULT_MAX_DELAY);
            if let Some(wait) = self.policy.next_wait(self.retries, hint, limits, &mut self.rng) {
                self.retries = self.retries.saturating_add(1);
                return Judged::Retry(wait);
            }
        }
        let attempts = self.retries.saturating_add(1);
        Judged::Done(outcome.map_err(|e| LroError::transport(e).with_attempts(attempts)))
    }
}

/// The request that started an operation and the service's first response: what a polling
/// method is initialized with (azure-core's initial `PipelineResponse`).
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use lro_core::InitialResponse;
///
/// let request = Request::put("https://example.com/widgets/1").body(Bytes::new())?;
/// let response = Response::builder().status(201).body(Bytes::new())?;
/// let initial = InitialResponse::from_exchange(&request, response);
/// assert_eq!(initial.request().method(), "PUT");
/// # Ok::<(), http::Error>(())
/// ```
///
/// Its `Debug` output shows URLs without their queries (which may hold a signature) and
/// headers by name only.
#[derive(Clone)]
pub struct InitialResponse {
    request: RequestHead,
    response: FirstResponse,
}

/// The service's first response: whole, or only what a continuation token keeps of it (what an
/// engine holds for the hours an operation runs).
#[derive(Clone)]
enum FirstResponse {
    Whole(Box<Response<Bytes>>),
    Parts(TokenParts),
}

/// What a continuation token keeps of a response, made whole again only if somebody asks.
#[derive(Clone)]
struct TokenParts {
    status: StatusCode,
    version: Version,
    headers: Box<[(HeaderName, HeaderValue)]>,
    body: Bytes,
    /// The parts as a whole response, made on first use.
    whole: OnceLock<Box<Response<Bytes>>>,
}

impl FirstResponse {
    fn whole(response: Response<Bytes>) -> Self {
        FirstResponse::Whole(Box::new(response))
    }

    /// The whole response (parts are made whole, and kept so).
    fn get(&self) -> &Response<Bytes> {
        match self {
            FirstResponse::Whole(whole) => whole,
            FirstResponse::Parts(parts) => parts.whole.get_or_init(|| Box::new(parts.response())),
        }
    }

    /// The whole response, if it is one or its parts were made whole already.
    #[cfg(test)]
    fn made(&self) -> Option<&Response<Bytes>> {
        match self {
            FirstResponse::Whole(whole) => Some(whole),
            FirstResponse::Parts(parts) => parts.whole.get().map(|whole| &**whole),
        }
    }
}

impl TokenParts {
    /// The token's parts of `response`.
    fn of(response: &Response<Bytes>) -> Self {
        TokenParts {
            status: response.status(),
            version: response.version(),
            headers: kept(response.headers(), &crate::token::TOKEN_RESPONSE_HEADERS).collect(),
            // Copied, as the headers are: a transport's body may be a slice of its read buffer,
            // which this would keep whole for as long as the operation runs.
            body: Bytes::copy_from_slice(response.body()),
            whole: OnceLock::new(),
        }
    }

    /// The parts as a response.
    fn response(&self) -> Response<Bytes> {
        let mut response = Response::new(self.body.clone());
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        let headers = response.headers_mut();
        // Room for every value at once when a map can take it (see `owned::headers`).
        let _ = headers.try_reserve(self.headers.len());
        for (name, value) in &*self.headers {
            headers.append(name.clone(), value.clone());
        }
        response
    }
}

impl fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method)
            .field("uri", &ShownUri(&self.uri))
            .field("headers", &HeaderNames(self.headers()))
            .finish()
    }
}

impl fmt::Debug for InitialResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = f.debug_struct("InitialResponse");
        shown.field("request", &self.request);
        match &self.response {
            FirstResponse::Whole(whole) => shown
                .field("status", &whole.status())
                .field("headers", &HeaderNames(whole.headers()))
                .field("body_len", &whole.body().len()),
            FirstResponse::Parts(parts) => shown
                .field("status", &parts.status)
                .field("headers", &PairNames(&parts.headers))
                .field("body_len", &parts.body.len()),
        };
        shown.finish()
    }
}

impl InitialResponse {
    /// Pairs a request head with its response.
    pub fn new(request: RequestHead, response: Response<Bytes>) -> Self {
        InitialResponse { request, response: FirstResponse::whole(response) }
    }

    /// Pairs `request` (its head only) with `response`.
    pub fn from_exchange<B>(request: &Request<B>, response: Response<Bytes>) -> Self {
        Self::new(RequestHead::of(request), response)
    }

    /// Sends `request` through a blocking client and pairs it with the response. No retry: the
    /// initial request is the caller's, and may not be safe to send twice (see
    /// [`send_with_retry`](Self::send_with_retry)).
    pub fn send(client: &dyn HttpClient, request: Request<Bytes>) -> Result<Self, LroError> {
        let head = RequestHead::of(&request);
        let response = client.send(request).map_err(LroError::transport)?;
        Ok(Self::new(head, response))
    }

    /// Sends `request` through an async client and pairs it with the response. No retry (see
    /// [`send_async_with_retry`](Self::send_async_with_retry)).
    pub async fn send_async(
        client: &dyn AsyncHttpClient,
        request: Request<Bytes>,
    ) -> Result<Self, LroError> {
        let head = RequestHead::of(&request);
        let response = client.send(request).await.map_err(LroError::transport)?;
        Ok(Self::new(head, response))
    }

    /// As [`send`](Self::send), retrying transient failures (connection errors, timeouts, 408,
    /// 429, 5xx) as `policy` says — but only when the request may be repeated: an idempotent
    /// method (PUT, DELETE, GET, HEAD), a `Repeatability-Request-ID` or `Operation-Id` header,
    /// or a policy built with [`any_initial_method`](crate::RetryPolicyBuilder::any_initial_method).
    /// Waits go through `timer`; the last answer (or transport error) is returned when the
    /// budget is spent. Request extensions are not carried over to retries.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use lro_core::test_util::{ScriptedTransport, json_response};
    /// use lro_core::{InitialResponse, RetryPolicy};
    ///
    /// let transport = ScriptedTransport::new();
    /// transport.push("PUT", "http://svc/w/1", json_response(503, ""));
    /// transport.push("PUT", "http://svc/w/1", json_response(201, r#"{"status":"Running"}"#));
    /// let request = http::Request::put("http://svc/w/1").body(Bytes::new())?;
    /// let initial = InitialResponse::send_with_retry(&transport, &transport, request, &RetryPolicy::default())?;
    /// assert_eq!(initial.response().status(), 201);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_with_retry(
        client: &dyn HttpClient,
        timer: &dyn Timer,
        request: Request<Bytes>,
        policy: &RetryPolicy,
    ) -> Result<Self, LroError> {
        let head = RequestHead::of(&request);
        let body = request.into_body();
        let mut attempts = Attempts::new(policy, &head);
        let interrupt = Interrupt::new();
        loop {
            let outcome = client.send(head.request(body.clone()));
            match attempts.judge(outcome, timer.now().wall) {
                Judged::Done(result) => return result.map(|r| Self::new(head, r)),
                Judged::Retry(wait) => timer.sleep(wait, &interrupt),
            }
        }
    }

    /// The async twin of [`send_with_retry`](Self::send_with_retry).
    pub async fn send_async_with_retry(
        client: &dyn AsyncHttpClient,
        timer: &dyn AsyncTimer,
        request: Request<Bytes>,
        policy: &RetryPolicy,
    ) -> Result<Self, LroError> {
        let head = RequestHead::of(&request);
        let body = request.into_body();
        let mut attempts = Attempts::new(policy, &head);
        loop {
            let outcome = client.send(head.request(body.clone())).await;
            match attempts.judge(outcome, timer.now().wall) {
                Judged::Done(result) => return result.map(|r| Self::new(head, r)),
                Judged::Retry(wait) => timer.sleep(wait).await,
            }
        }
    }

    /// The request that started the operation.
    pub fn request(&self) -> &RequestHead {
        &self.request
    }

    /// The service's first response (of one that [`token_parts`](Self::token_parts) made, those
    /// parts; asking for it makes them a whole `Response`, kept from then on).
    pub fn response(&self) -> &Response<Bytes> {
        self.response.get()
    }

    /// The response's status, without making kept parts whole.
    pub(crate) fn status(&self) -> StatusCode {
        match &self.response {
            FirstResponse::Whole(whole) => whole.status(),
            FirstResponse::Parts(parts) => parts.status,
        }
    }

    /// The response's first value of `name`, without making kept parts whole.
    pub(crate) fn header(&self, name: &str) -> Option<&HeaderValue> {
        match &self.response {
            FirstResponse::Whole(whole) => whole.headers().get(name),
            FirstResponse::Parts(parts) => {
                parts.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
            }
        }
    }

    /// The response's body, without making kept parts whole.
    pub(crate) fn body(&self) -> &Bytes {
        match &self.response {
            FirstResponse::Whole(whole) => whole.body(),
            FirstResponse::Parts(parts) => &parts.body,
        }
    }

    /// What a continuation token keeps of this exchange: the method and URL, the request's
    /// [`TOKEN_REQUEST_HEADERS`](crate::token::TOKEN_REQUEST_HEADERS), the status, the response's
    /// [`TOKEN_RESPONSE_HEADERS`](crate::token::TOKEN_RESPONSE_HEADERS) and the body. An engine
    /// keeps no more than this once its operation is under way: a large or secret header
    /// (`Authorization`, a service's 60 KB of diagnostics) is not held for the hours an
    /// operation may run.
    ///
    /// Kept compactly (a list of the kept headers rather than a header map): an engine holds it
    /// for as long as its operation runs.
    pub fn token_parts(&self) -> InitialResponse {
        let head = &self.request;
        let request = RequestHead::new(
            head.method.clone(),
            head.uri.clone(),
            kept(head.headers(), &crate::token::TOKEN_REQUEST_HEADERS).collect(),
        );
        let parts = match &self.response {
            FirstResponse::Whole(whole) => TokenParts::of(whole),
            // Parts already: kept as they are, not made whole on the way.
            FirstResponse::Parts(parts) => TokenParts { whole: OnceLock::new(), ..parts.clone() },
        };
        InitialResponse { request, response: FirstResponse::Parts(parts) }
    }
}

impl InitialResponse {
    /// The whole exchange, its response's header values in bytes of their own (what an engine
    /// keeps of an operation that ended in its initial response: the result).
    pub(crate) fn owned(self) -> InitialResponse {
        let whole = match self.response {
            FirstResponse::Whole(whole) => *whole,
            FirstResponse::Parts(mut parts) => match parts.whole.take() {
                Some(whole) => *whole,
                None => parts.response(),
            },
        };
        let response = FirstResponse::whole(crate::owned::response(whole));
        InitialResponse { request: self.request, response }
    }
}

/// The values of `names` in `headers`, in bytes of their own.
fn kept<'h>(
    headers: &'h HeaderMap,
    names: &'h [&str],
) -> impl Iterator<Item = (HeaderName, HeaderValue)> + 'h {
    names.iter().flat_map(move |name| {
        let values = headers.get_all(*name).iter();
        values.filter_map(move |value| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            Some((name, crate::owned::value(value)))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_requests_header_values_never_show_in_debug_output_only_their_names() {
        let request = Request::put("https://svc/w/1")
            .header("authorization", "Bearer s3cr3t-1")
            .header("x-tenant", "contoso")
            .body(Bytes::new())
            .expect("valid");
        let response = Response::new(Bytes::new());
        let initial = InitialResponse::from_exchange(&request, response);
        let shown = format!("{initial:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("contoso"), "{shown}");
        assert!(shown.contains("\"authorization\"") && shown.contains("\"x-tenant\""), "{shown}");
    }

    #[test]
    fn token_parts_with_more_values_than_a_map_reserves_at_once_are_made_whole_again() {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = http::StatusCode::ACCEPTED;
        for _ in 0..40_000 {
            response.headers_mut().append("location", HeaderValue::from_static("http://svc/op"));
        }
        let request = Request::put("http://svc/w/1").body(Bytes::new()).expect("valid");
        let initial = InitialResponse::from_exchange(&request, response).token_parts();
        assert_eq!(initial.response().headers().get_all("location").iter().count(), 40_000);
    }

    fn exchange() -> InitialResponse {
        let request = Request::put("https://svc/w/1")
            .header("authorization", "Bearer secret")
            .header("x-ms-client-request-id", "r-1")
            .body(Bytes::new())
            .expect("valid");
        let response = Response::builder()
            .status(202)
            .header("operation-location", "https://svc/op/1")
            .header("content-type", "application/json")
            .header("x-diagnostics", "d".repeat(1000))
            .body(Bytes::from_static(br#"{"status":"Running"}"#))
            .expect("valid");
        InitialResponse::from_exchange(&request, response)
    }

    #[test]
    fn token_parts_answer_for_the_token_without_being_made_whole() {
        let parts = exchange().token_parts();
        assert_eq!(parts.status(), StatusCode::ACCEPTED);
        assert_eq!(parts.header("operation-location").expect("kept"), "https://svc/op/1");
        assert!(parts.header("x-diagnostics").is_none());
        assert_eq!(parts.body(), &br#"{"status":"Running"}"#[..]);
        let state = crate::token::TokenState::new(&parts, None);
        assert_eq!(state.response.headers["content-type"], "application/json");
        assert!(parts.response.made().is_none(), "reading for a token keeps them parts");
        let again = parts.token_parts();
        assert!(parts.response.made().is_none() && again.response.made().is_none());
        assert_eq!(again.header("operation-location"), parts.header("operation-location"));
    }

    #[test]
    fn token_parts_keep_a_copy_of_the_body_not_a_slice_of_the_transports_buffer() {
        let whole = exchange();
        let parts = whole.token_parts();
        assert_eq!(parts.body(), whole.body());
        assert_ne!(parts.body().as_ptr(), whole.body().as_ptr(), "a copy of its own");
    }

    #[test]
    fn token_parts_made_whole_give_the_kept_response() {
        let parts = exchange().token_parts();
        let response = parts.response();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(response.headers().len(), 2);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.body(), &br#"{"status":"Running"}"#[..]);
        assert_eq!(parts.request().headers().len(), 1, "the client request id alone");
        assert!(parts.request().headers().get("authorization").is_none());
        // Owned again, whole: the same response.
        let owned = parts.clone().owned();
        assert_eq!(owned.response().headers(), response.headers());
    }

    #[test]
    fn a_request_head_without_headers_holds_no_map() {
        let head =
            RequestHead::new(Method::GET, Uri::from_static("https://svc/"), HeaderMap::new());
        assert!(head.headers.is_none());
        assert!(head.headers().is_empty());
        assert!(head.request(Bytes::new()).headers().is_empty());
    }
}
