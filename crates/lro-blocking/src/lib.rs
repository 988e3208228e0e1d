//! The blocking transport of `lro`: [`BlockingClient`] implements `lro_core`'s [`HttpClient`]
//! over [ureq](https://docs.rs/ureq) 3, with HTTPS through rustls (ring); [`SystemTimer`] is the
//! timer that goes with it.
//!
//! ureq speaks the `http` crate's types natively and blocks the calling thread without an async
//! runtime hidden inside, which is what a blocking poller needs. It speaks HTTP/1.1 only: a
//! server offering HTTP/2 through TLS is talked to in HTTP/1.1.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use lro_core::{InitialResponse, LroPoller, deserialize};
//! use lro_strategies::LroBasePolling;
//!
//! let client = Arc::new(lro_blocking::BlockingClient::new()?);
//! let request = http::Request::delete("https://example.com/widgets/1").body(Bytes::new())?;
//! let initial = InitialResponse::send(&*client, request)?;
//! let poller = LroPoller::new(client,lro_core::SystemTimer, initial, deserialize::none(), LroBasePolling::builder().build())?;
//! poller.result(None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod deadline;
mod resolver;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use lro_core::{HttpClient, TransportError, TransportErrorKind};

/// The timer to use with [`BlockingClient`]: the system clock, with waits that a dropped poller
/// interrupts at once.
pub use lro_core::SystemTimer;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// Default cap on a response body: 16 MiB, as every transport of the workspace.
pub use lro_core::DEFAULT_MAX_BODY;
/// Default timeout of a whole request (connect, send, headers and body): 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout to establish a connection: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An [`HttpClient`] over a ureq [`Agent`](ureq::Agent) (keep-alive pool, rustls).
///
/// Clones share the agent and its connection pool. Pollers take their time separately: use
/// [`SystemTimer`].
#[derive(Clone)]
pub struct BlockingClient {
    agent: ureq::Agent,
    max_body: usize,
    /// The time a request may take, kept by the client's own transport (`None` for an agent
    /// from `from_agent`, whose configuration keeps its timeouts).
    request_timeout: Option<Duration>,
    /// Whether the agent's own configuration may follow redirects or turn statuses into
    /// errors, so that every request must say otherwise.
    override_config: bool,
}

impl fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingClient").field("max_body", &self.max_body).finish_non_exhaustive()
    }
}

impl BlockingClient {
    /// A client with the defaults (see [`BlockingClientBuilder`]).
    pub fn new() -> Result<Self, BuildError> {
        Self::builder().build()
    }

    /// A builder.
    pub fn builder() -> BlockingClientBuilder {
        BlockingClientBuilder {
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_body: DEFAULT_MAX_BODY,
            default_roots: true,
            extra_roots: Vec::new(),
        }
    }

    /// Wraps an agent you configured yourself. Whatever its configuration, every request is
    /// sent with error statuses returned as responses and no redirect followed: the pollers
    /// judge statuses and links themselves, and a followed redirect would carry the request's
    /// headers (api keys included) to whatever host the service names.
    pub fn from_agent(agent: ureq::Agent, max_body: usize) -> Self {
        let config = agent.config();
        let override_config = config.max_redirects() != 0 || config.http_status_as_error();
        BlockingClient { agent, max_body, request_timeout: None, override_config }
    }

    /// Sends `request` as it is, or with redirects and status errors turned off when the
    /// agent's configuration does not already say so (an agent from `from_agent`).
    fn run(
        &self,
        request: Request<impl ureq::AsSendBody>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        if !self.override_config {
            return self.agent.run(request);
        }
        let request = self
            .agent
            .configure_request(request)
            .max_redirects(0)
            .http_status_as_error(false)
            .build();
        self.agent.run(request)
    }

    /// The request sent, and its response read whole (under the cap).
    fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let (parts, body) = request.into_parts();
        // A GET or HEAD without a body goes without one, as hyper sends it (no
        // `content-length: 0`: polls are all GETs); other methods say their length, even zero.
        let bodiless = body.is_empty() && matches!(parts.method, Method::GET | Method::HEAD);
        let response = if bodiless {
            self.run(Request::from_parts(parts, ()))
        } else {
            self.run(Request::from_parts(parts, body.as_ref()))
        };
        let response = response.map_err(transport_error)?;
        let (parts, body) = response.into_parts();
        let limit = u64::try_from(self.max_body).unwrap_or(u64::MAX);
        let bytes = body.into_with_config().limit(limit).read_to_vec().map_err(transport_error)?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}

impl HttpClient for BlockingClient {
    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        // Until the body is read: every step of the request is held to the deadline.
        let deadline = deadline::Deadline::start(self.request_timeout);
        let result = self.exchange(request);
        if deadline.expired() {
            // Whatever the shut-down socket seemed to say (a body delimited by the connection's
            // close would look whole).
            let limit = self.request_timeout.unwrap_or_default();
            let message = format!("no complete response within {limit:?}");
            return Err(TransportError::new(TransportErrorKind::Timeout, message));
        }
        result
    }
}

fn transport_error(error: ureq::Error) -> TransportError {
    // These two carry the whole URL, query (a SAS signature) and all: the message says what
    // went wrong without it.
    match error {
        ureq::Error::RequireHttpsOnly(_) => {
            let message = "the client sends to https:// URLs only, and this URL is not one";
            return TransportError::new(TransportErrorKind::Other, message);
        }
        ureq::Error::BadUri(_) => {
            let message = "the URL cannot be sent: it lacks a scheme or host, or its scheme is \
                           not http or https";
            return TransportError::new(TransportErrorKind::Other, message);
        }
        _ => {}
    }
    // ureq keeps the cause of an I/O error inside it, not as its `source()`.
    let tls = match &error {
        ureq::Error::Io(io) => lro_core::find_cause::<rustls::Error>(io),
        ureq::Error::Rustls(tls) => Some(tls),
        other => lro_core::find_cause::<rustls::Error>(other),
    };
    if matches!(
        tls,
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))
    ) {
        // An https:// URL aimed at a plain-HTTP port.
        return TransportError::not_tls(error);
    }
    let kind = match &error {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::BodyExceedsLimit(_) => TransportErrorKind::BodyTooLarge,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::Tls(_) => {
            TransportErrorKind::Connect
        }
        ureq::Error::Rustls(_) => TransportErrorKind::Connect,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            TransportErrorKind::Connect
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            TransportErrorKind::Timeout
        }
        // A failed TLS handshake (untrusted certificate, ...) arrives as an I/O error.
        ureq::Error::Io(_) if tls.is_some() => TransportErrorKind::Connect,
        _ => TransportErrorKind::Other,
    };
    TransportError::new(kind, error)
}

/// Builder of [`BlockingClient`].
#[must_use]
pub struct BlockingClientBuilder {
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    max_body: usize,
    default_roots: bool,
    extra_roots: Vec<Vec<u8>>,
}

impl fmt::Debug for BlockingClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingClientBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_body", &self.max_body)
            .field("extra_roots", &self.extra_roots.len())
            .finish_non_exhaustive()
    }
}

impl BlockingClientBuilder {
    /// Timeout to establish a connection (default 10 s; `None`: no timeout).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout of a whole request, from connecting to the last byte of the body (default 30 s).
    /// The lookup and the connection get the time left; then one thread for the process shuts
    /// the request's socket down if its time runs out (no timeout on the socket, which would
    /// arm a kernel timer at every blocking read).
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Largest response body accepted, in bytes (default 16 MiB).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Trusts this certificate (DER) as a root, in addition to the default roots.
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(der.into());
        self
    }

    /// Whether to trust the bundled Mozilla roots (webpki-root-certs); default yes.
    pub fn default_roots(mut self, enabled: bool) -> Self {
        self.default_roots = enabled;
        self
    }

    /// The client.
    pub fn build(self) -> Result<BlockingClient, BuildError> {
        let mut certs: Vec<Certificate<'static>> = Vec::new();
        if self.default_roots {
            certs.extend(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref())),
            );
        }
        for der in self.extra_roots {
            if der.is_empty() {
                return Err(BuildError("an added root certificate is empty".to_owned()));
            }
            certs.push(Certificate::from_der(&der).to_owned());
        }
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(certs)))
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Never follow redirects: a 3xx goes back to the engine as a response, which judges
            // it (ureq would otherwise re-send the poll, with the caller's api-key headers, to
            // whatever host the Location names).
            .max_redirects(0)
            .timeout_connect(self.connect_timeout)
            // The request timeout is kept by the client (see `deadline`), not by ureq.
            .tls_config(tls)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::Connector::chain(
                deadline::Bounded(ureq::unversioned::transport::DefaultConnector::default()),
                deadline::CoarseTimeouts,
            ),
            resolver::AddressesFirst::default(),
        );
        // Built without redirects or status errors: requests need not say so one by one.
        Ok(BlockingClient {
            agent,
            max_body: self.max_body,
            request_timeout: self.request_timeout,
            override_config: false,
        })
    }
}

/// The client could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build the HTTP client: {}", self.0)
    }
}

impl std::error::Error for BuildError {}
