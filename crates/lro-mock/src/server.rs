//! [`MockServer`]: starting, inspecting and stopping the mock service.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::MockConfig;
use crate::log::{Counters, LogEntry};
use crate::serve::{Running, bind};
use crate::service::{State, handler};

/// The embedded Azure-like LRO service, listening on `127.0.0.1`.
///
/// Start it on the caller's tokio runtime with [`MockServer::start`], or on a runtime of its
/// own with [`MockServer::start_blocking`]. It speaks HTTP/1.1 and HTTP/2 (prior knowledge) on
/// the same port. The routes, control headers and fault injection are described in the
/// [crate documentation](crate).
///
/// Dropping the server shuts it down gracefully: the listener closes (the port is free again),
/// in-flight responses get a short grace period (2 s), then every task ends. A server from
/// [`start_blocking`](MockServer::start_blocking) has stopped when the drop returns; one from
/// [`start`](MockServer::start) stops in the background on its runtime, so await
/// [`shutdown`](MockServer::shutdown) to know when.
///
/// # Example
///
/// ```
/// use std::io::{Read, Write};
/// use lro_mock::{MockConfig, MockServer};
///
/// let server = MockServer::start_blocking(MockConfig::builder().progress_after_polls(1).build())?;
///
/// // Start a data-plane job over plain HTTP/1.1.
/// let mut stream = std::net::TcpStream::connect(server.addr())?;
/// stream.write_all(b"POST /jobs HTTP/1.1\r\nhost: mock\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
/// let mut response = String::new();
/// stream.read_to_string(&mut response)?;
///
/// assert!(response.starts_with("HTTP/1.1 202"));
/// let monitor = format!("operation-location: {}/jobs/operations/", server.base_url());
/// assert!(response.contains(&monitor));
/// assert_eq!(server.counters().method("POST"), 1);
/// assert_eq!(server.log()[0].status, Some(202));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct MockServer {
    state: Arc<State>,
    running: Running,
}

impl MockServer {
    /// Starts the service on the caller's tokio runtime (any flavour; the `time` and `io`
    /// drivers must be enabled). Fails if the port cannot be bound or no runtime is running.
    pub async fn start(config: MockConfig) -> io::Result<Self> {
        let listener = bind(config.port)?;
        let state = Arc::new(State::new(config, listener.local_addr()?));
        let running = Running::spawn(listener, handler(state.clone()))?;
        Ok(Self { state, running })
    }

    /// Starts the service on a multi-thread tokio runtime of its own (two workers), on a
    /// background thread: for blocking code, command-line tools and tests without a runtime.
    /// It may also be called from inside a runtime.
    pub fn start_blocking(config: MockConfig) -> io::Result<Self> {
        let listener = bind(config.port)?;
        let state = Arc::new(State::new(config, listener.local_addr()?));
        let running = Running::spawn_thread(listener, handler(state.clone()), "lro-mock")?;
        Ok(Self { state, running })
    }

    /// The origin to send requests to, e.g. `http://127.0.0.1:49152` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.state.base().to_owned()
    }

    /// `base_url()` followed by `path`, e.g. `server.url("/jobs")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.state.base())
    }

    /// The socket address the service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// A copy of the request log, oldest first (at most the configured capacity; older
    /// entries were dropped).
    pub fn log(&self) -> Vec<LogEntry> {
        self.state.log.entries()
    }

    /// A copy of the request counters.
    pub fn counters(&self) -> Counters {
        self.state.log.counters()
    }

    /// Shuts down gracefully and returns once the listener is closed and every connection has
    /// ended (in-flight responses get 2 s, then connections are cut).
    pub async fn shutdown(self) {
        self.running.stop().await;
    }
}
