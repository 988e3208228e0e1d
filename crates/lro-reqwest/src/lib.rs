//! A transport for `lro` over [reqwest](https://docs.rs/reqwest) 0.12: [`ReqwestClient`]
//! implements `lro_core`'s [`AsyncHttpClient`], for programs that already talk through reqwest
//! (its TLS setup, proxies, DNS resolver, connection pool) and want the pollers to as well.
//!
//! ```
//! # async fn example(url: String) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use lro_core::{AsyncLroPoller, InitialResponse, deserialize};
//! use lro_reqwest::ReqwestClient;
//! use lro_strategies::ArmPolling;
//!
//! // Your own reqwest settings; lro-reqwest adds the one it insists on: no redirects.
//! let builder = reqwest::Client::builder()
//!     .user_agent("my-app/1.0")
//!     .connect_timeout(Duration::from_secs(10))
//!     .timeout(Duration::from_secs(30));
//! let client = Arc::new(ReqwestClient::from_builder(builder)?);
//!
//! let request = http::Request::put(&url)
//!     .header("content-type", "application/json")
//!     .body(Bytes::from_static(b"{}"))?;
//! let initial = InitialResponse::send_async(&*client, request).await?;
//! let method = ArmPolling::builder().interval(Duration::from_millis(50)).build();
//! let widget: serde_json::Value =
//!     AsyncLroPoller::new(client, lro_hyper::TokioTimer, initial, deserialize::json(), method)?.await?;
//! assert_eq!(widget["properties"]["provisioningState"], "Succeeded");
//! # Ok(()) }
//! # let mock = lro_mock::MockServer::start_blocking(lro_mock::MockConfig::builder().build())?;
//! # let url = mock.url("/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/w1");
//! # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! # runtime.block_on(example(url))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The poller needs a timer beside the client: `lro_hyper::TokioTimer`, or an
//! [`AsyncTimer`](lro_core::AsyncTimer) of your own over `tokio::time::sleep` (reqwest runs
//! on tokio). Requests made outside a tokio runtime, or on one without IO and time enabled,
//! fail with [`TransportErrorKind::Unusable`] (never retried) instead of panicking.
//!
//! # Features: yours
//!
//! This crate depends on reqwest with `default-features = false`: no TLS, no HTTP/2, no proxy
//! settings of Windows or macOS (the `HTTP_PROXY`-style environment variables are read as by any
//! reqwest client; `no_proxy()` on your builder turns them off). Cargo unifies features, so whatever your own `reqwest = { version = "0.12",
//! features = [...] }` turns on (`rustls-tls` or `native-tls`, `http2`, `gzip`, ...) is what
//! the client built here has: choose the TLS stack there. Without any TLS feature, requests to
//! `https://` URLs fail with a transport error.
//!
//! # Redirects: never followed
//!
//! reqwest follows up to ten redirects by default, and when one leads to another host it
//! removes only `Authorization`, cookies and proxy credentials: a poll redirected elsewhere
//! would carry an `api-key` header there. So [`ReqwestClient`] builds the
//! `reqwest::Client` itself, with [`redirect::Policy::none()`](reqwest::redirect::Policy::none),
//! from the default builder ([`ReqwestClient::new`]) or from yours
//! ([`ReqwestClient::from_builder`], which overrides whatever redirect policy the builder had).
//! There is deliberately no constructor taking a ready-made `reqwest::Client`: a built client's
//! redirect policy cannot be read or changed, so it could not be checked. A `3xx` comes back to
//! the engine as a response, and the strategy judges it (a poll answered `307` is a
//! `BadStatus`).
//!
//! # Credentials the client adds itself
//!
//! The engine sees only the headers of its own requests. A `reqwest::Client` built with
//! `default_headers` holding a credential sends it on every poll: declare it with
//! [`PollOptionsBuilder::client_sends_credentials`](lro_core::PollOptionsBuilder::client_sends_credentials),
//! so that resuming from a token checks the origin the token names before anything is sent.
//!
//! # Errors
//!
//! A reqwest error that [`is_connect`](reqwest::Error::is_connect) is
//! [`Connect`](TransportErrorKind::Connect), one that [`is_timeout`](reqwest::Error::is_timeout)
//! (the builder's `timeout` covers the body too) is [`Timeout`](TransportErrorKind::Timeout),
//! any other (reset connections, protocol errors, bodies cut short) is
//! [`Other`](TransportErrorKind::Other); the reqwest error is the
//! [`source`](std::error::Error::source). A body over the cap (16 MiB by default,
//! [`ReqwestClient::max_body_size`]) is [`BodyTooLarge`](TransportErrorKind::BodyTooLarge),
//! refused from its `Content-Length` when it has one, otherwise as soon as the chunks read pass
//! the cap: at most the cap plus one chunk is ever buffered.
//!
//! # Retries
//!
//! Retries belong to the engine ([`RetryPolicy`](lro_core::RetryPolicy)), which knows the
//! operation's deadline and `Retry-After`. By default reqwest re-sends only requests the server
//! refused before processing them (an HTTP/2 `REFUSED_STREAM`), which is safe beside the
//! engine's policy. A policy you give your builder (`ClientBuilder::retry`) retries on its own
//! terms: then turn the engine's off with `RetryPolicy::none()`, or the two multiply.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use lro_core::{AsyncHttpClient, TransportError, TransportErrorKind};

/// Default cap on a response body: 16 MiB, as every transport of the workspace.
pub use lro_core::DEFAULT_MAX_BODY;
/// Timeout of a whole request (headers and body) set by [`ReqwestClient::new`]: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout to establish a connection set by [`ReqwestClient::new`]: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An [`AsyncHttpClient`] over a `reqwest::Client` that never follows redirects.
///
/// Clones share reqwest's connection pool: build one and share it between every poller. See
/// the [crate documentation](crate) for redirects, features and errors.
#[derive(Clone)]
pub struct ReqwestClient {
    client: reqwest::Client,
    max_body: usize,
}

impl fmt::Debug for ReqwestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestClient")
            .field("max_body_size", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl ReqwestClient {
    /// A client from reqwest's default builder, with lro's timeouts
    /// ([`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_REQUEST_TIMEOUT`]; reqwest's own default is no
    /// timeout), no redirects, and the default body cap. Fails as reqwest's `build` does (a TLS
    /// backend that cannot start).
    pub fn new() -> Result<Self, reqwest::Error> {
        Self::from_builder(
            reqwest::Client::builder()
                .connect_timeout(DEFAULT_CONNECT_TIMEOUT)
                .timeout(DEFAULT_REQUEST_TIMEOUT),
        )
    }

    /// A client from your builder (TLS roots, proxies, timeouts, user agent, pool settings,
    /// ...), with its redirect policy replaced by `Policy::none()`, and the default body cap.
    /// The builder's timeouts are kept as they are: reqwest's default is none, so set
    /// `timeout` on it.
    pub fn from_builder(builder: reqwest::ClientBuilder) -> Result<Self, reqwest::Error> {
        let client = builder.redirect(reqwest::redirect::Policy::none()).build()?;
        Ok(ReqwestClient { client, max_body: DEFAULT_MAX_BODY })
    }

    /// Largest response body accepted, in bytes (default 16 MiB).
    #[must_use]
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let request = reqwest::Request::try_from(request).map_err(transport_error)?;
        let response = self.client.execute(request).await.map_err(transport_error)?;
        // reqwest's response as an `http::Response` over its body (an `http_body::Body`).
        let (parts, body) = Response::from(response).into_parts();
        let collected = lro_core::collect_body(body, self.max_body, transport_error);
        Ok(Response::from_parts(parts, collected.await?))
    }
}

#[async_trait::async_trait]
impl AsyncHttpClient for ReqwestClient {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(no_runtime());
        }
        // A runtime built without IO or time makes reqwest (tokio) panic: a typed error instead.
        let attempt = std::panic::AssertUnwindSafe(self.exchange(request));
        futures_util::FutureExt::catch_unwind(attempt).await.unwrap_or_else(|_| Err(no_runtime()))
    }
}

/// A reqwest error as a [`TransportError`] of the closest kind.
fn transport_error(error: reqwest::Error) -> TransportError {
    let kind = if error.is_connect() {
        TransportErrorKind::Connect
    } else if error.is_timeout() {
        TransportErrorKind::Timeout
    } else {
        TransportErrorKind::Other
    };
    // reqwest's message ends with the whole URL, query (a SAS signature) included: errors
    // travel into logs and spans, so the URL stays out.
    TransportError::new(kind, error.without_url())
}

/// The error of a request made outside a usable tokio runtime.
fn no_runtime() -> TransportError {
    TransportError::new(
        TransportErrorKind::Unusable,
        "lro-reqwest needs a tokio runtime with IO and time enabled (`enable_all()`), and there \
         is none on this thread: drive the poller inside one",
    )
}
