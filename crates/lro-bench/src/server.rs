//! The loopback service of the benchmarks, on a thread and runtime of its own: `GET /op/{n}`
//! answers `Running` with `retry-after-ms` the first time and `Succeeded` the second, and the
//! server counts what it saw (requests, open connections, how late each second poll came).
//!
//! Operation `n` asks for a wait between `wait` and twice `wait`, spread evenly over the
//! operations: the first polls go out at the budget's pace, and the second ones then come due
//! at about half of it, under budget, where their lateness is the scheduler's own (at the
//! budget's pace, polls queue behind the token bucket by design).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the server saw.
#[derive(Debug)]
pub(crate) struct Counters {
    base: Instant,
    wait: Duration,
    /// Requests answered.
    pub(crate) requests: AtomicU64,
    open: AtomicUsize,
    /// The most connections open at once.
    pub(crate) peak_open: AtomicUsize,
    /// When the first poll of each operation was answered (ns after `base`, plus one; 0: not
    /// yet).
    first_answer: Vec<AtomicU64>,
    /// How late each second poll arrived after the wait the first answer asked for.
    pub(crate) lateness: Mutex<Vec<Duration>>,
}

impl Counters {
    /// The wait operation `n` asks for: `wait` plus a share of `wait` that a multiplicative
    /// hash of `n` spreads evenly (whole milliseconds, as `retry-after-ms` says it).
    fn wait_of(&self, n: usize) -> Duration {
        let spread = u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let hashed = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let extra = hashed % spread;
        Duration::from_millis(spread.saturating_add(extra))
    }
}

/// A running server.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) counters: Arc<Counters>,
}

/// Starts the server for operations `0..operations`, each asking for `wait` between its polls.
pub(crate) fn start(operations: usize, wait: Duration) -> std::io::Result<Server> {
    let counters = Arc::new(Counters {
        base: Instant::now(),
        wait,
        requests: AtomicU64::new(0),
        open: AtomicUsize::new(0),
        peak_open: AtomicUsize::new(0),
        first_answer: (0..operations).map(|_| AtomicU64::new(0)).collect(),
        lateness: Mutex::new(Vec::with_capacity(operations)),
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let shared = Arc::clone(&counters);
    std::thread::Builder::new().name("bench-server".into()).spawn(move || {
        runtime.block_on(accept(listener, shared));
    })?;
    Ok(Server { addr, counters })
}

async fn accept(listener: TcpListener, counters: Arc<Counters>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let _ = stream.set_nodelay(true);
        let open = counters.open.fetch_add(1, Ordering::SeqCst) + 1;
        counters.peak_open.fetch_max(open, Ordering::SeqCst);
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let per_request = Arc::clone(&counters);
            let service = service_fn(move |request: Request<Incoming>| {
                let response = answer(&per_request, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            counters.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn answer(counters: &Counters, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let n = request.uri().path().strip_prefix("/op/").and_then(|n| n.parse::<usize>().ok());
    let Some(first) = n.and_then(|n| counters.first_answer.get(n)) else {
        return respond(StatusCode::NOT_FOUND, "{}", None);
    };
    let now = u64::try_from(counters.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    match first.load(Ordering::SeqCst) {
        0 => {
            first.store(now.saturating_add(1), Ordering::SeqCst);
            let wait = counters.wait_of(n.unwrap_or(0)).as_millis().to_string();
            respond(StatusCode::OK, r#"{"status":"Running"}"#, Some(wait))
        }
        answered => {
            let wait = counters.wait_of(n.unwrap_or(0));
            let due = answered.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(0));
            let late = Duration::from_nanos(now.saturating_sub(due));
            counters.lateness.lock().unwrap_or_else(PoisonError::into_inner).push(late);
            respond(StatusCode::OK, r#"{"status":"Succeeded"}"#, None)
        }
    }
}

fn respond(
    status: StatusCode,
    body: &'static str,
    wait_ms: Option<String>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    if let Some(value) = wait_ms.and_then(|ms| http::HeaderValue::from_str(&ms).ok()) {
        headers.insert("retry-after-ms", value);
    }
    response
}
