//! Test doubles for code that uses pollers (feature `test-util`): a scripted in-memory
//! transport, a manual clock, and a minimal strategy.
//!
//! Nothing here touches the network or sleeps for real: [`ScriptedTransport`] answers from a
//! script and its clock jumps forward whenever a poller waits, recording each wait.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use lro_core::test_util::{ScriptedTransport, json_response, WithHeader, OperationLocationStrategy};
//! use lro_core::{deserialize, InitialResponse, LroPoller, StrategyPolling};
//!
//! // A transport that answers from a script and keeps virtual time.
//! let transport = Arc::new(ScriptedTransport::new());
//! transport.push_get("http://svc/op", json_response(200, r#"{"status":"Running"}"#));
//! transport.push_get("http://svc/op", json_response(200, r#"{"status":"Succeeded"}"#));
//!
//! let initial = InitialResponse::new(
//!     ScriptedTransport::request_head("POST", "http://svc/jobs"),
//!     json_response(202, "").with_header("operation-location", "http://svc/op"),
//! );
//! let method = StrategyPolling::new(OperationLocationStrategy::default());
//! let poller = LroPoller::new(transport.clone(),transport.clone(), initial, deserialize::json::<serde_json::Value>(), method)?;
//! assert_eq!(poller.result(None)?["status"], "Succeeded");
//! assert_eq!(transport.sleeps(), [Duration::from_secs(30)]); // waited in virtual time
//! # Ok::<(), lro_core::LroError>(())
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};

use crate::error::LroError;
use crate::initial::{InitialResponse, RequestHead};
use crate::strategy::Strategy;
use crate::transport::{
    AsyncHttpClient, AsyncTimer, BoxFuture, HttpClient, Interrupt, Timer, Timestamp, TransportError,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A clock that only moves when told to, or when something sleeps on it.
///
/// Sleeping (blocking or async) returns at once, moves the clock forward by the duration and
/// records it, so tests run at full speed and can assert every wait.
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<Mutex<ClockState>>,
}

#[derive(Debug)]
struct ClockState {
    now: Timestamp,
    sleeps: Vec<Duration>,
}

impl ManualClock {
    /// A clock reading the current real time, frozen until moved.
    pub fn new() -> Self {
        ManualClock {
            state: Arc::new(Mutex::new(ClockState {
                now: crate::transport::system_now(),
                sleeps: Vec::new(),
            })),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut state = lock(&self.state);
        state.now = state.now.advanced(by);
    }

    /// Every wait so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        lock(&self.state).sleeps.clone()
    }

    fn sleep_now(&self, duration: Duration) {
        let mut state = lock(&self.state);
        state.now = state.now.advanced(duration);
        state.sleeps.push(duration);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Timer for ManualClock {
    fn now(&self) -> Timestamp {
        lock(&self.state).now
    }

    fn sleep(&self, duration: Duration, _interrupt: &Interrupt) {
        self.sleep_now(duration);
    }
}

impl AsyncTimer for ManualClock {
    fn now(&self) -> Timestamp {
        lock(&self.state).now
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.sleep_now(duration);
        Box::pin(std::future::ready(()))
    }
}

/// A latch that holds scripted replies back until [`open`](Gate::open)ed.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    inner: Arc<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    open: Mutex<bool>,
    opened: Condvar,
    wakers: Mutex<Vec<Waker>>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the gate: every held reply is delivered.
    pub fn open(&self) {
        *lock(&self.inner.open) = true;
        self.inner.opened.notify_all();
        for waker in lock(&self.inner.wakers).drain(..) {
            waker.wake();
        }
    }

    fn is_open(&self) -> bool {
        *lock(&self.inner.open)
    }

    fn wait_blocking(&self) {
        let guard = lock(&self.inner.open);
        let _open = self
            .inner
            .opened
            .wait_while(guard, |open| !*open)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

impl Future for Gate {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_open() {
            return Poll::Ready(());
        }
        lock(&self.inner.wakers).push(cx.waker().clone());
        if self.is_open() { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// A request as the scripted transport saw it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SeenRequest {
    /// Method.
    pub method: Method,
    /// URL.
    pub uri: Uri,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

#[derive(Debug)]
struct Step {
    method: Method,
    uri: String,
    reply: Result<Response<Bytes>, TransportError>,
    gate: Option<Gate>,
}

/// An in-memory transport that answers from a script and keeps virtual time.
///
/// Each request must match the next scripted step (method and URL); anything else fails with a
/// transport error that names what was expected. Implements the blocking and async client and
/// timer traits, so it plugs into both pollers.
///
/// ```
/// use lro_core::test_util::{ScriptedTransport, json_response};
/// use lro_core::HttpClient;
///
/// let transport = ScriptedTransport::new();
/// transport.push_get("http://svc/op", json_response(200, r#"{"status":"Running"}"#));
/// let response = transport.send(http::Request::get("http://svc/op").body(Default::default()).unwrap());
/// assert_eq!(response.unwrap().status(), 200);
/// assert_eq!(transport.remaining(), 0);
/// ```
#[derive(Debug, Default)]
pub struct ScriptedTransport {
    clock: ManualClock,
    script: Mutex<VecDeque<Step>>,
    seen: Mutex<Vec<SeenRequest>>,
}

impl ScriptedTransport {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expects `method uri` next and answers `response`.
    pub fn push(&self, method: &str, uri: &str, response: Response<Bytes>) -> &Self {
        self.push_step(method, uri, Ok(response), None)
    }

    /// Expects `GET uri` next and answers `response`.
    pub fn push_get(&self, uri: &str, response: Response<Bytes>) -> &Self {
        self.push("GET", uri, response)
    }

    /// Expects `GET uri` next and fails it with `error`.
    pub fn push_error(&self, uri: &str, error: TransportError) -> &Self {
        self.push_step("GET", uri, Err(error), None)
    }

    /// Expects `method uri` next and fails it with `error`.
    pub fn push_failure(&self, method: &str, uri: &str, error: TransportError) -> &Self {
        self.push_step(method, uri, Err(error), None)
    }

    /// Expects `GET uri` next and answers `response` only once the returned gate is opened.
    pub fn push_held(&self, uri: &str, response: Response<Bytes>) -> Gate {
        let gate = Gate::new();
        self.push_step("GET", uri, Ok(response), Some(gate.clone()));
        gate
    }

    fn push_step(
        &self,
        method: &str,
        uri: &str,
        reply: Result<Response<Bytes>, TransportError>,
        gate: Option<Gate>,
    ) -> &Self {
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        lock(&self.script).push_back(Step { method, uri: uri.to_owned(), reply, gate });
        self
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.seen).clone()
    }

    /// The URLs requested so far, in order.
    pub fn urls(&self) -> Vec<String> {
        lock(&self.seen).iter().map(|r| r.uri.to_string()).collect()
    }

    /// How many scripted steps are left.
    pub fn remaining(&self) -> usize {
        lock(&self.script).len()
    }

    /// The waits requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.clock.sleeps()
    }

    /// The transport's clock.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// A request head for an initial request (panics on an invalid method or URL: test input).
    #[allow(clippy::expect_used)]
    pub fn request_head(method: &str, uri: &str) -> RequestHead {
        let method = Method::from_bytes(method.as_bytes()).expect("valid test method");
        let uri = uri.parse().expect("valid test URL");
        RequestHead::new(method, uri, HeaderMap::new())
    }

    fn take(
        &self,
        request: &Request<Bytes>,
    ) -> (Result<Response<Bytes>, TransportError>, Option<Gate>) {
        lock(&self.seen).push(SeenRequest {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            body: request.body().clone(),
        });
        let mut script = lock(&self.script);
        let wanted = request.uri().to_string();
        match script.front() {
            Some(step) if step.method == request.method() && step.uri == wanted => {
                match script.pop_front() {
                    Some(step) => (step.reply, step.gate),
                    None => (Err(TransportError::other("script ended")), None),
                }
            }
            Some(step) => (
                Err(TransportError::other(format!(
                    "unexpected request {} {wanted}; the script expected {} {}",
                    request.method(),
                    step.method,
                    step.uri
                ))),
                None,
            ),
            None => (
                Err(TransportError::other(format!(
                    "unexpected request {} {wanted}; the script is finished",
                    request.method()
                ))),
                None,
            ),
        }
    }
}

impl HttpClient for ScriptedTransport {
    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let (reply, gate) = self.take(&request);
        if let Some(gate) = gate {
            gate.wait_blocking();
        }
        reply
    }
}

#[async_trait::async_trait]
impl AsyncHttpClient for ScriptedTransport {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let (reply, gate) = self.take(&request);
        if let Some(gate) = gate {
            gate.await;
        }
        reply
    }
}

impl Timer for ScriptedTransport {
    fn now(&self) -> Timestamp {
        Timer::now(&self.clock)
    }

    fn sleep(&self, duration: Duration, interrupt: &Interrupt) {
        Timer::sleep(&self.clock, duration, interrupt);
    }
}

impl AsyncTimer for ScriptedTransport {
    fn now(&self) -> Timestamp {
        AsyncTimer::now(&self.clock)
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        AsyncTimer::sleep(&self.clock, duration)
    }
}

/// A response with `status` and a JSON `body` (empty for none).
pub fn json_response(status: u16, body: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::copy_from_slice(body.as_bytes()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_empty() {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

/// Adds headers to a test response in a chain.
pub trait WithHeader {
    /// This response with one more header (panics on an invalid name or value: test input).
    #[must_use]
    fn with_header(self, name: &str, value: &str) -> Self;
}

impl WithHeader for Response<Bytes> {
    #[allow(clippy::expect_used)]
    fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid test header name");
        let value = HeaderValue::from_str(value).expect("valid test header value");
        self.headers_mut().append(name, value);
        self
    }
}

/// A deliberately minimal strategy for tests of pollers and drivers: polls the
/// `Operation-Location` URL and reads the body's `status`; no final GET, no relative URLs.
/// Real services want the strategies of the `lro-strategies` crate.
#[derive(Debug, Default, Clone)]
pub struct OperationLocationStrategy {
    url: Option<Uri>,
}

impl OperationLocationStrategy {
    fn status_of(response: &Response<Bytes>) -> Result<std::sync::Arc<str>, LroError> {
        #[derive(serde::Deserialize)]
        struct Body {
            status: Option<String>,
        }
        let body: Body = serde_json::from_slice(response.body())
            .map_err(|e| LroError::decode("the status body is not JSON", Some(e.into())))?;
        body.status
            .map(Into::into)
            .ok_or_else(|| LroError::bad_response(response, "no status found in body"))
    }
}

impl Strategy for OperationLocationStrategy {
    fn start(&mut self, initial: &InitialResponse) -> Result<std::sync::Arc<str>, LroError> {
        let response = initial.response();
        let url = response
            .headers()
            .get("operation-location")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Uri>().ok());
        if url.is_none() {
            return Err(LroError::bad_response(response, "no Operation-Location header"));
        }
        self.url = url;
        Ok(Self::status_of(response).unwrap_or_else(|_| "InProgress".into()))
    }

    fn poll_uri(&self) -> Option<Uri> {
        self.url.clone()
    }

    fn polls_uri(&self, uri: &Uri) -> bool {
        self.url.as_ref() == Some(uri)
    }

    fn read_poll(&mut self, response: &Response<Bytes>) -> Result<std::sync::Arc<str>, LroError> {
        if !response.status().is_success() {
            return Err(LroError::bad_status(response, &Method::GET));
        }
        Self::status_of(response)
    }
}

/// A minimal executor that is not tokio: polls `future` on this thread, parking until woken.
/// For tests of what a transport does outside a tokio runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
