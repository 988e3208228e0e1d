//! The async transport of `lro`: [`HyperClient`] implements `lro_core`'s [`AsyncHttpClient`]
//! over hyper 1, hyper-util's pooled client and tokio, with HTTPS through rustls; [`TokioTimer`]
//! is the [`AsyncTimer`] that goes with it.
//!
//! One `HyperClient` (cheap to clone) is meant to be shared by every poller of a program: they
//! share its keep-alive connection pool. Each request has a timeout, connecting has its own, and
//! a response body larger than the cap (16 MiB by default) is an error — the rest of it is never
//! buffered.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use lro_core::{AsyncLroPoller, InitialResponse, deserialize};
//! use lro_strategies::LroBasePolling;
//!
//! let client = Arc::new(lro_hyper::HyperClient::new()?);
//! let request = http::Request::put("https://example.com/widgets/1").body(Bytes::from_static(b"{}"))?;
//! let initial = InitialResponse::send_async(&*client, request).await?;
//! let method = LroBasePolling::builder().build();
//! let widget: serde_json::Value = AsyncLroPoller::new(client,lro_hyper::TokioTimer, initial, deserialize::json(), method)?.await?;
//! # let _ = widget; Ok(()) }
//! ```
//!
//! What this crate is *not*: a general HTTP client. It sends what the pollers ask and reads
//! whole (bounded) bodies; retries of individual requests, authentication and logging belong in
//! the client you wrap or in your own [`AsyncHttpClient`].

/// The workspace README's examples (both transports, against the mock service), compiled and
/// run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

mod deadline;
mod host_limit;

use std::fmt;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;
use lro_core::deadline::deadline_after;
use lro_core::{
    AsyncHttpClient, AsyncLroPoller, AsyncPollingMethod, AsyncTimer, BoxFuture, LroError,
    Timestamp, TransportError, TransportErrorKind,
};

/// Default cap on a response body: 16 MiB, as every transport of the workspace.
pub use lro_core::DEFAULT_MAX_BODY;
/// Default timeout of a whole request (headers and body): 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout to establish a connection (TCP and TLS): 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An [`AsyncHttpClient`] over hyper-util's pooled client on tokio (its timer is
/// [`TokioTimer`], passed to the pollers separately).
///
/// Clones share the connection pool. Build one with [`HyperClient::new`] (HTTP/1.1 and HTTP/2,
/// HTTPS with the default roots) or [`HyperClient::builder`]; wrap a hyper-util client of your
/// own with [`HyperClient::from_client`]. Used outside a tokio runtime, requests fail with a
/// [`TransportErrorKind::Unusable`] error (never retried) instead of panicking.
#[derive(Clone)]
pub struct HyperClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Box<dyn Exchange>,
    /// The time a request may take (`None`: no timeout).
    request_timeout: Option<Duration>,
    max_body: usize,
    host_limit: Option<Arc<host_limit::HostLimit>>,
}

/// One request through a hyper-util client, whatever its connector (kept out of the public
/// type so that `HyperClient` names no hyper-util type).
trait Exchange: Send + Sync {
    /// hyper-util's response future (one concrete type whatever the connector: no box of ours
    /// around it).
    fn request(&self, request: Request<Full<Bytes>>) -> hyper_util::client::legacy::ResponseFuture;
}

impl<C> Exchange for Client<C, Full<Bytes>>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    fn request(&self, request: Request<Full<Bytes>>) -> hyper_util::client::legacy::ResponseFuture {
        Client::request(self, request)
    }
}

/// `http://` through a plain connector, `https://` through TLS: a plain connection then pays
/// nothing for the TLS one could have been (each read and write of a TLS-capable stream first
/// asks which kind it is).
struct ByScheme {
    plain: Client<HttpConnector, Full<Bytes>>,
    tls: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Exchange for ByScheme {
    fn request(&self, request: Request<Full<Bytes>>) -> hyper_util::client::legacy::ResponseFuture {
        if request.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
            self.plain.request(request)
        } else {
            self.tls.request(request)
        }
    }
}

impl fmt::Debug for HyperClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperClient")
            .field("request_timeout", &self.inner.request_timeout)
            .field("max_body", &self.inner.max_body)
            .finish_non_exhaustive()
    }
}

impl HyperClient {
    /// A client with the defaults (see [`HyperClientBuilder`]).
    pub fn new() -> Result<Self, BuildError> {
        Self::builder().build()
    }

    /// A builder in the style of hyper-util and reqwest.
    pub fn builder() -> HyperClientBuilder {
        HyperClientBuilder {
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_body: DEFAULT_MAX_BODY,
            http2_only: false,
            pool_idle_timeout: Some(Duration::from_secs(90)),
            pool_max_idle_per_host: 32,
            max_connections_per_host: None,
            default_roots: true,
            extra_roots: Vec::new(),
        }
    }

    /// Wraps a hyper-util client you built, with the default request timeout and body cap.
    pub fn from_client<C>(client: Client<C, Full<Bytes>>) -> Self
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        Self::from_client_with(client, Some(DEFAULT_REQUEST_TIMEOUT), DEFAULT_MAX_BODY)
    }

    /// Wraps a hyper-util client you built, with this request timeout and body cap.
    pub fn from_client_with<C>(
        client: Client<C, Full<Bytes>>,
        request_timeout: Option<Duration>,
        max_body: usize,
    ) -> Self
    where
        C: Connect + Clone + Send + Sync + 'static,
    {
        Self::over(Box::new(client), request_timeout, max_body)
    }

    fn over(client: Box<dyn Exchange>, request_timeout: Option<Duration>, max_body: usize) -> Self {
        HyperClient {
            inner: Arc::new(Inner { client, request_timeout, max_body, host_limit: None }),
        }
    }

    /// The exchange of one request: hyper-util's response future is made at once (it starts
    /// nothing until polled), so that the future kept for the whole exchange holds that future
    /// rather than the request (a box of the future then fits the allocator's small sizes).
    fn exchange(
        &self,
        request: Request<Bytes>,
    ) -> impl Future<Output = Result<Response<Bytes>, TransportError>> + Send + '_ {
        let (parts, body) = request.into_parts();
        let responded = self.inner.client.request(Request::from_parts(parts, Full::new(body)));
        async move {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(no_runtime());
            }
            // One hand-written future for the exchange, its deadline and the panic guard,
            // rather than a future wrapped in two more: each layer moves the whole state once
            // more.
            let mut exchange = std::pin::pin!(self.receive(responded));
            let mut deadline = self.inner.request_timeout.map(deadline::Ticket::new);
            std::future::poll_fn(|cx| {
                // A runtime built without IO or time makes hyper and tokio panic: a typed error
                // instead (and the exchange is never polled again).
                let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // The deadline first: the clock starts with the send.
                    if let Some(ticket) = deadline.as_mut() {
                        let error = match ticket.expired(cx.waker()) {
                            Ok(false) => None,
                            Ok(true) => Some(TransportError::new(
                                TransportErrorKind::Timeout,
                                format!("no complete response within {:?}", ticket.limit()),
                            )),
                            Err(e) => Some(TransportError::new(
                                TransportErrorKind::Other,
                                format!("cannot start the thread that keeps request timeouts: {e}"),
                            )),
                        };
                        if let Some(error) = error {
                            return Poll::Ready(Err(error));
                        }
                    }
                    exchange.as_mut().poll(cx)
                }));
                polled.unwrap_or_else(|_| Poll::Ready(Err(no_runtime())))
            })
            .await
        }
    }

    /// The response and its whole (bounded) body.
    async fn receive(
        &self,
        responded: hyper_util::client::legacy::ResponseFuture,
    ) -> Result<Response<Bytes>, TransportError> {
        let response = responded.await.map_err(|e| {
            if answered_in_plain_text(&e) {
                return TransportError::not_tls(e);
            }
            let kind = if e.is_connect() {
                TransportErrorKind::Connect
            } else {
                TransportErrorKind::Other
            };
            TransportError::new(kind, e)
        })?;
        // Header values (and a body of one chunk) stay slices of the connection's buffer: what
        // lro-core keeps, it copies.
        let (parts, body) = response.into_parts();
        let collected = lro_core::collect_body(body, self.inner.max_body, TransportError::other);
        Ok(Response::from_parts(parts, collected.await?))
    }
}

/// The error of a request made outside a tokio runtime.
fn no_runtime() -> TransportError {
    TransportError::new(
        TransportErrorKind::Unusable,
        "lro-hyper needs a tokio runtime with IO and time enabled (`enable_all()`), and there is \
         none on this thread: drive the poller inside one, or use lro-blocking",
    )
}

// Written out rather than through `async_trait`: its future would keep the request for the
// whole exchange, which makes the box of every request too big for the allocator's fast path.
impl AsyncHttpClient for HyperClient {
    fn send<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> BoxFuture<'async_trait, Result<Response<Bytes>, TransportError>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        match &self.inner.host_limit {
            // Its turn among the host's requests first: the timeout counts from the send.
            Some(limit) => Box::pin(async move {
                let _permit = limit.acquire(request.uri()).await;
                self.exchange(request).await
            }),
            None => Box::pin(self.exchange(request)),
        }
    }
}

/// tokio's clock and sleep as an [`AsyncTimer`]. Its clock follows `tokio::time::pause`, so
/// tests of pollers run in virtual time. A sleep made outside a tokio runtime does not panic:
/// it waits on a thread of its own instead.
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::exhaustive_structs)] // a unit value, used as `TokioTimer`
pub struct TokioTimer;

impl AsyncTimer for TokioTimer {
    fn now(&self) -> Timestamp {
        Timestamp::new(tokio::time::Instant::now().into_std(), SystemTime::now())
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        // Decided here rather than inside one future holding either kind of sleep: the box of
        // a waiting poller then holds tokio's sleep alone.
        if tokio::runtime::Handle::try_current().is_err() {
            return Box::pin(thread_sleep(duration));
        }
        // tokio's timer cannot represent every Duration: sleep until the far future instead.
        let now = tokio::time::Instant::now().into_std();
        let deadline = tokio::time::Instant::from_std(deadline_after(now, duration));
        // A runtime without time enabled panics here: fall back to a thread instead.
        match std::panic::catch_unwind(|| tokio::time::sleep_until(deadline)) {
            Ok(sleep) => Box::pin(sleep),
            Err(_) => Box::pin(thread_sleep(duration)),
        }
    }
}

/// A sleep for executors other than tokio's: a thread waits, then wakes the task (tokio's
/// channels work on any executor). The thread sleeps its whole duration even if the future is
/// dropped. If no thread can be started the sleep never ends (rather than return at once and
/// let polling spin).
async fn thread_sleep(duration: Duration) {
    let (done, wait) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().name("lro-sleep".into()).spawn(move || {
        std::thread::sleep(duration);
        let _ = done.send(());
    });
    match spawned {
        Ok(_) => {
            let _ = wait.await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// tokio's blocking threads, for [`OffThread`](lro_core::OffThread): a blocking polling method
/// under the async poller.
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::exhaustive_structs)] // a unit value, used as `TokioBlocking`
pub struct TokioBlocking;

impl lro_core::BlockingThreads for TokioBlocking {
    fn run(
        &self,
        job: Box<dyn FnOnce() -> Result<(), LroError> + Send>,
    ) -> BoxFuture<'static, Result<(), LroError>> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Box::pin(std::future::ready(Err(LroError::transport(no_runtime()))));
        };
        let task = handle.spawn_blocking(job);
        Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                Err(LroError::stopped(format!("the blocking polling thread failed: {e}")))
            })
        })
    }

    fn block_on(
        &self,
        request: BoxFuture<'_, Result<Response<Bytes>, TransportError>>,
    ) -> Result<Response<Bytes>, TransportError> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Err(no_runtime());
        };
        // On a runtime's own thread (say, a method that sends from `initialize`), tokio refuses
        // to block: a typed error, not its panic.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.block_on(request)))
            .unwrap_or_else(|_| {
                Err(TransportError::new(
                    TransportErrorKind::Unusable,
                    "a blocking polling method sent a request from the async task itself (only \
                     its run loop, on a blocking thread, may send)",
                ))
            })
    }
}

/// A blocking polling method (a [`PollingMethod`](lro_core::PollingMethod)) for the async
/// poller: its loop runs on tokio's blocking threads, its requests go through the async client.
///
/// ```no_run
/// # async fn example<M: lro_core::PollingMethod<serde_json::Value> + 'static>(method: M, initial: lro_core::InitialResponse) -> Result<(), lro_core::LroError> {
/// use std::sync::Arc;
/// use lro_core::{AsyncLroPoller, deserialize};
/// use lro_hyper::{HyperClient, TokioTimer};
///
/// let client = Arc::new(HyperClient::new().expect("a client"));
/// let value = AsyncLroPoller::new(client, TokioTimer, initial, deserialize::json(), lro_hyper::off_thread(method))?.await?;
/// # let _ = value; Ok(()) }
/// ```
pub fn off_thread<M>(method: M) -> lro_core::OffThread<M, TokioBlocking> {
    lro_core::OffThread::new(method, TokioBlocking)
}

/// Runs a poller to its end as a spawned tokio task.
///
/// Dropping the handle does not stop the task; abort it (`JoinHandle::abort`) to stop polling.
pub fn spawn<T, M>(poller: AsyncLroPoller<T, M>) -> tokio::task::JoinHandle<Result<T, LroError>>
where
    T: Send + 'static,
    M: AsyncPollingMethod<T> + 'static,
{
    tokio::spawn(std::future::IntoFuture::into_future(poller))
}

/// Builder of [`HyperClient`].
#[must_use]
pub struct HyperClientBuilder {
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    max_body: usize,
    http2_only: bool,
    pool_idle_timeout: Option<Duration>,
    pool_max_idle_per_host: usize,
    max_connections_per_host: Option<usize>,
    default_roots: bool,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl fmt::Debug for HyperClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_body", &self.max_body)
            .field("http2_only", &self.http2_only)
            .field("max_connections_per_host", &self.max_connections_per_host)
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

impl HyperClientBuilder {
    /// Timeout to establish a connection, TLS included (default 10 s; `None`: no timeout).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout of a whole request, from sending to the last byte of the body (default 30 s).
    /// It is kept in real time without a timer in the runtime: one thread for the process
    /// (started with the first request that waits) wakes the requests whose time is up, on
    /// any executor.
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Largest response body accepted, in bytes (default 16 MiB).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Speak HTTP/2 only, also over plain HTTP (prior knowledge). By default HTTP/2 is used
    /// when the server offers it through TLS (ALPN), HTTP/1.1 otherwise.
    pub fn http2_only(mut self, only: bool) -> Self {
        self.http2_only = only;
        self
    }

    /// How long an idle pooled connection is kept (default 90 s). It is checked when a
    /// connection is taken from the pool, as hyper-util does without a timer: no task wakes to
    /// close idle connections (a timer pending in a runtime makes each of its waits for IO arm
    /// a kernel timer too); one the server closes ends at once.
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections are kept per host (default 32).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// At most this many requests in flight to one host (scheme, host and port) at once — with
    /// HTTP/1.1, at most this many connections to it; more requests wait their turn, before
    /// their request timeout starts. Default: no cap (hyper-util caps only idle connections).
    /// Many operations on one client (thousands of async pollers) need it so as not to run out
    /// of file descriptors; a `Fleet` caps its requests per origin itself.
    pub fn max_connections_per_host(mut self, max: Option<usize>) -> Self {
        self.max_connections_per_host = max;
        self
    }

    /// Trusts this certificate (DER) as a root, in addition to the default roots.
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(rustls::pki_types::CertificateDer::from(der.into()));
        self
    }

    /// Whether to trust the default roots of the enabled features (`webpki-roots`,
    /// `native-roots`); default yes. Turn it off to trust only added certificates.
    pub fn default_roots(mut self, enabled: bool) -> Self {
        self.default_roots = enabled;
        self
    }

    /// The client.
    pub fn build(self) -> Result<HyperClient, BuildError> {
        let mut roots = rustls::RootCertStore::empty();
        if self.default_roots {
            add_default_roots(&mut roots)?;
        }
        for cert in self.extra_roots {
            roots.add(cert).map_err(|e| BuildError(format!("invalid root certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(self.connect_timeout);
        http.set_nodelay(true);
        let plain = http.clone();
        http.enforce_http(false);
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
        let connector = if self.http2_only {
            connector.enable_http2().wrap_connector(http)
        } else {
            connector.enable_all_versions().wrap_connector(http)
        };
        let mut client = Client::builder(TokioExecutor::new());
        client
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host);
        client.http2_only(self.http2_only);
        let clients = ByScheme { plain: client.build(plain), tls: client.build(connector) };
        let mut built = HyperClient::over(Box::new(clients), self.request_timeout, self.max_body);
        if let (Some(max), Some(inner)) =
            (self.max_connections_per_host, Arc::get_mut(&mut built.inner))
        {
            inner.host_limit = Some(host_limit::HostLimit::new(max));
        }
        Ok(built)
    }
}

#[allow(unused_variables, clippy::unnecessary_wraps)]
fn add_default_roots(roots: &mut rustls::RootCertStore) -> Result<(), BuildError> {
    #[cfg(feature = "webpki-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    #[cfg(feature = "native-roots")]
    {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // Unparseable system certificates are skipped, as browsers do.
            let _ = roots.add(cert);
        }
    }
    Ok(())
}

/// The client could not be built (bad certificate, TLS configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build the HTTP client: {}", self.0)
    }
}

impl std::error::Error for BuildError {}

/// Whether a TLS handshake failed because the server answered in plain text (an `https://` URL
/// aimed at a plain-HTTP port).
fn answered_in_plain_text(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        lro_core::find_cause::<rustls::Error>(error),
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// glibc serves allocations up to 1,032 bytes from its per-thread cache; a larger box costs
    /// several times as much to allocate and free, on every request.
    #[test]
    fn the_box_of_a_request_fits_the_allocators_fast_sizes() {
        for client in [
            HyperClient::new().unwrap(),
            HyperClient::builder().max_connections_per_host(Some(4)).build().unwrap(),
        ] {
            let request = Request::get("http://127.0.0.1:1/").body(Bytes::new()).unwrap();
            let sent = client.send(request);
            assert!(
                std::mem::size_of_val(&*sent) <= 1024,
                "{} bytes",
                std::mem::size_of_val(&*sent)
            );
        }
    }
}
