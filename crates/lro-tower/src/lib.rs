//! A transport for `lro` over any [tower](https://docs.rs/tower) HTTP client stack:
//! [`TowerClient`] turns a [`Service`]`<http::Request<Bytes>, Response = http::Response<B>>`
//! into an [`AsyncHttpClient`], so the pollers send through the layers you already have
//! (authentication, tracing, metrics, timeouts, rate limits, ...).
//!
//! For each request the service is cloned and the clone is driven the tower way: `poll_ready`
//! until it is ready, then `call`. The response body (any [`http_body::Body`]) is collected
//! under a cap (16 MiB by default, [`TowerClient::max_body_size`]); a larger body is
//! [`TransportErrorKind::BodyTooLarge`] and the rest of it is never read.
//!
//! ```
//! # async fn example(url: String) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client;
//! use lro_core::{AsyncLroPoller, InitialResponse, deserialize};
//! use lro_strategies::LroBasePolling;
//! use lro_tower::TowerClient;
//! use tower::ServiceBuilder;
//!
//! // A tower stack: hyper-util's pooled client (its request body is `Full<Bytes>`), a timeout,
//! // and a header added to every request.
//! let hyper = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let stack = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))
//!     .map_request(|mut request: http::Request<Bytes>| {
//!         request.headers_mut().insert("x-ms-useragent", http::HeaderValue::from_static("my-app"));
//!         request.map(Full::new)
//!     })
//!     .service(hyper);
//! let client = Arc::new(TowerClient::new(stack).max_body_size(4 * 1024 * 1024));
//!
//! let request = http::Request::post(&url).body(Bytes::from_static(b"{}"))?;
//! let initial = InitialResponse::send_async(&*client, request).await?;
//! let method = LroBasePolling::builder().interval(Duration::from_millis(50)).build();
//! let job: serde_json::Value =
//!     AsyncLroPoller::new(client, lro_hyper::TokioTimer, initial, deserialize::json(), method)?.await?;
//! assert_eq!(job["status"], "Succeeded");
//! # Ok(()) }
//! # let mock = lro_mock::MockServer::start_blocking(lro_mock::MockConfig::builder().build())?;
//! # let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! # runtime.block_on(example(mock.url("/jobs")))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The poller needs a timer beside the client: with tokio, `lro_hyper::TokioTimer`, or an
//! [`AsyncTimer`](lro_core::AsyncTimer) of your own over your runtime's sleep.
//!
//! # Redirects
//!
//! The adapter follows no redirect: a `3xx` goes back to the engine as a response, and the
//! strategy judges it (a poll answered `307` is a `BadStatus`). A layer in *your* stack can
//! change that: tower-http's `FollowRedirect` re-sends the request to wherever the `Location`
//! points, with its headers, and its default policy removes only `Authorization`, `Cookie` and
//! `Proxy-Authorization` on the way to another origin: a credential such as an `api-key` header
//! travels there — the origin check of the engine only sees the URL it asked for. Do not put a
//! redirect-following layer in a polling stack; if you must, give it a policy that refuses
//! other origins (tower-http's `policy::SameOrigin`) or strips every header on them
//! (`policy::FilterCredentials::new().remove_all()`).
//!
//! An auth layer (or any layer that adds a credential) is invisible to the engine, which sees
//! only the headers of its own requests: declare it with
//! [`PollOptionsBuilder::client_sends_credentials`](lro_core::PollOptionsBuilder::client_sends_credentials),
//! so that resuming from a token checks the origin the token names before anything is sent.
//!
//! # Retries: the engine's or tower's, not both
//!
//! The engine already retries polls and final GETs that fail for a transient reason (connection
//! errors, timeouts, 408, 429, 5xx) under its [`RetryPolicy`](lro_core::RetryPolicy), and it
//! knows things a layer does not: the operation's deadline and its retry budget, `Retry-After`
//! on 429 and 503, and that an initial POST must not be sent twice. Prefer it, and leave retry layers
//! out of a polling stack. If your stack retries anyway (tower's `Retry`, a client library's own
//! policy), turn the engine's off with `RetryPolicy::none()`: stacked, the two multiply (3
//! retries in each are up to 16 sends of one poll), and the engine's deadline cannot see the
//! layer's waits.
//!
//! # Errors
//!
//! A service error becomes a [`TransportError`]: a `TransportError` (from an inner lro
//! transport) keeps its kind; tower's `Elapsed` (from its `Timeout` layer; with the default
//! `timeout` feature) and an [`std::io::Error`] of kind `TimedOut` anywhere in the error's
//! source chain are [`Timeout`](TransportErrorKind::Timeout); an `io::Error` of kind
//! `ConnectionRefused`, `AddrNotAvailable`, `HostUnreachable` or `NetworkUnreachable` (what
//! hyper-util's connector reports) is [`Connect`](TransportErrorKind::Connect); anything else
//! (TLS and DNS failures too, unless their chain holds such an `io::Error`), and a failure while
//! reading the body, is [`Other`](TransportErrorKind::Other). The original
//! error is the [`source`](std::error::Error::source) of the `TransportError`.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use lro_core::{AsyncHttpClient, BoxError, TransportError, TransportErrorKind};
use tower_service::Service;

/// Default cap on a response body: 16 MiB, as every transport of the workspace.
pub use lro_core::DEFAULT_MAX_BODY;

/// An [`AsyncHttpClient`] over a tower [`Service`].
///
/// The service takes `http::Request<Bytes>` and answers `http::Response<B>` for any body `B`;
/// a service over another request body (hyper-util's client wants `Full<Bytes>`) goes behind a
/// `map_request` (see the [crate example](crate)). Its error, and its body's, must convert into
/// a boxed error, as tower's layers require anyway.
///
/// Each request clones the service (cheap for tower services: they share their state through
/// `Arc`s) and drives the clone through `poll_ready` and `call`, so services that need
/// readiness (`Buffer`, `ConcurrencyLimit`, `RateLimit`) work as they do anywhere else. The
/// service need not be `Sync` (a `BoxCloneService` is not): it is kept behind a mutex that is
/// held only while cloning.
///
/// The adapter adds nothing to the stack: no timeout (add tower's `Timeout` layer, or your
/// client's), no retries and no redirects (see the [crate documentation](crate)).
pub struct TowerClient<S> {
    service: Mutex<S>,
    max_body: usize,
}

impl<S> TowerClient<S> {
    /// Wraps `service`, with the default body cap ([`DEFAULT_MAX_BODY`]).
    pub fn new(service: S) -> Self {
        TowerClient { service: Mutex::new(service), max_body: DEFAULT_MAX_BODY }
    }

    /// Largest response body accepted, in bytes (default 16 MiB). A larger body is a
    /// [`TransportErrorKind::BodyTooLarge`] error: refused from its declared size when the body
    /// knows it (`Content-Length`), otherwise as soon as the bytes read pass the cap.
    #[must_use]
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.service.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: Clone> Clone for TowerClient<S> {
    fn clone(&self) -> Self {
        TowerClient { service: Mutex::new(self.service()), max_body: self.max_body }
    }
}

impl<S> fmt::Debug for TowerClient<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerClient").field("max_body_size", &self.max_body).finish_non_exhaustive()
    }
}

impl<S: Clone> TowerClient<S> {
    /// A clone of the service, for one request (the lock is never held across an await).
    fn service(&self) -> S {
        self.service.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait::async_trait]
impl<S, B> AsyncHttpClient for TowerClient<S>
where
    S: Service<Request<Bytes>, Response = Response<B>> + Clone + Send,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let mut service = self.service();
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(|e| service_error(e.into()))?;
        let response = service.call(request).await.map_err(|e| service_error(e.into()))?;
        drop(service);
        let (parts, body) = response.into_parts();
        let body = lro_core::collect_body(body, self.max_body, |e| TransportError::other(e.into()));
        Ok(Response::from_parts(parts, body.await?))
    }
}

/// A service's error as a [`TransportError`] of the closest kind (see the crate docs).
fn service_error(error: BoxError) -> TransportError {
    match error.downcast::<TransportError>() {
        Ok(transport) => *transport,
        Err(error) => TransportError::new(kind_of(&*error), error),
    }
}

/// The kind told by the first error of the source chain that has one
/// ([`lro_core::causes`]: through the error inside an `io::Error` too).
fn kind_of(error: &(dyn StdError + 'static)) -> TransportErrorKind {
    for error in lro_core::causes(error) {
        if let Some(transport) = error.downcast_ref::<TransportError>() {
            return transport.kind();
        }
        #[cfg(feature = "timeout")]
        if error.is::<tower::timeout::error::Elapsed>() {
            return TransportErrorKind::Timeout;
        }
        if let Some(io) = error.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return TransportErrorKind::Timeout,
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable => return TransportErrorKind::Connect,
                _ => {}
            }
        }
    }
    TransportErrorKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("tcp connect error")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_refused_connection_deep_in_the_source_chain_is_a_connect_error() {
        let error = service_error(Box::new(Wrapper(io::ErrorKind::ConnectionRefused.into())));
        assert_eq!(error.kind(), TransportErrorKind::Connect);
        assert_eq!(error.source().map(ToString::to_string).as_deref(), Some("tcp connect error"));
    }

    #[test]
    fn an_io_timeout_in_the_chain_is_a_timeout() {
        let error = service_error(Box::new(Wrapper(io::ErrorKind::TimedOut.into())));
        assert_eq!(error.kind(), TransportErrorKind::Timeout);
    }

    #[test]
    fn a_transport_error_keeps_its_kind_even_when_wrapped() {
        let inner = TransportError::new(TransportErrorKind::BodyTooLarge, "big");
        assert_eq!(service_error(Box::new(inner.clone())).kind(), TransportErrorKind::BodyTooLarge);
        #[derive(Debug)]
        struct Outer(TransportError);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("layer failed")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(service_error(Box::new(Outer(inner))).kind(), TransportErrorKind::BodyTooLarge);
    }

    #[test]
    fn an_unknown_error_is_other() {
        assert_eq!(service_error("boom".into()).kind(), TransportErrorKind::Other);
        let reset = service_error(Box::new(io::Error::from(io::ErrorKind::ConnectionReset)));
        assert_eq!(reset.kind(), TransportErrorKind::Other);
    }

    #[cfg(feature = "timeout")]
    #[test]
    fn towers_elapsed_is_a_timeout() {
        let error = service_error(Box::new(tower::timeout::error::Elapsed::new()));
        assert_eq!(error.kind(), TransportErrorKind::Timeout);
    }

    #[cfg(feature = "timeout")]
    #[test]
    fn an_error_wrapped_in_an_io_error_is_found() {
        let wrapped = io::Error::other(tower::timeout::error::Elapsed::new());
        assert_eq!(service_error(Box::new(Wrapper(wrapped))).kind(), TransportErrorKind::Timeout);
        let inner = TransportError::new(TransportErrorKind::Connect, "refused");
        let wrapped = io::Error::other(inner);
        assert_eq!(service_error(Box::new(wrapped)).kind(), TransportErrorKind::Connect);
    }
}
