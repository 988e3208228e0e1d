//! The status-monitor service of the CPU and memory benchmarks (issue #10), run as a process of
//! its own (`lro-bench serve`) so that its CPU is never counted with a client's.
//!
//! - `PUT /start?polls=N[&retry_after_ms=MS][&pad=B]` → `202` with `Operation-Location:
//!   /status/{id}`: the operation answers `Running` to its first `N - 1` polls and `Succeeded`
//!   to the `N`th. With `retry_after_ms`, each `Running` answer carries `retry-after-ms: MS`; with
//!   `pad`, every answer carries an `x-padding` header of `B` bytes (a service with large
//!   headers).
//! - `GET /start?...` → `200` and the resource (the final GET of a PUT).
//! - `GET /count` → how many requests the service has answered (that one excluded).
//!
//! The server prints `http://ADDR` on its first line of output, then serves until its standard
//! input closes (the parent process ended).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The service's state: operations' remaining polls, and a request count.
#[derive(Debug, Default)]
struct Monitor {
    next_id: AtomicU64,
    requests: AtomicU64,
    /// Per operation: polls left before `Succeeded`, its `retry-after-ms`, its padding.
    operations: Mutex<HashMap<u64, Operation>>,
}

#[derive(Debug, Clone, Copy)]
struct Operation {
    left: u64,
    retry_after: Option<u64>,
    pad: usize,
}

/// `lro-bench serve`: serves on loopback until standard input closes.
pub(crate) fn serve() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "http://{addr}")?;
        out.flush()?;
    }
    let monitor = Arc::new(Monitor::default());
    runtime.block_on(async {
        tokio::spawn(accept(listener, monitor));
        // Serve while the parent lives: its end closes our standard input.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().lock().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        })
        .await;
    });
    Ok(())
}

async fn accept(listener: TcpListener, monitor: Arc<Monitor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let _ = stream.set_nodelay(true);
        let monitor = Arc::clone(&monitor);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = monitor.answer(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The value of `name` in a query string such as `polls=3&pad=10`.
fn param(query: &str, name: &str) -> Option<u64> {
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

impl Monitor {
    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if path == "/count" {
            return reply(StatusCode::OK, self.requests.load(Ordering::SeqCst).to_string(), 0);
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        let query = request.uri().query().unwrap_or("");
        let pad = usize::try_from(param(query, "pad").unwrap_or(0)).unwrap_or(0);
        match (request.method(), path) {
            (&Method::PUT, "/start") => {
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                let operation = Operation {
                    left: param(query, "polls").unwrap_or(1).max(1),
                    retry_after: param(query, "retry_after_ms"),
                    pad,
                };
                self.lock().insert(id, operation);
                let mut response = reply(StatusCode::ACCEPTED, "{}".to_owned(), pad);
                let host = request.headers().get(http::header::HOST).cloned();
                let location = host.and_then(|h| {
                    HeaderValue::from_str(&format!("http://{}/status/{id}", h.to_str().ok()?)).ok()
                });
                if let Some(location) = location {
                    response.headers_mut().insert("operation-location", location);
                }
                response
            }
            (&Method::GET, "/start") => {
                reply(StatusCode::OK, r#"{"id":"widget","properties":{"size":3}}"#.to_owned(), pad)
            }
            (&Method::GET, status) => {
                let id = status.strip_prefix("/status/").and_then(|id| id.parse::<u64>().ok());
                let mut operations = self.lock();
                let Some(operation) = id.and_then(|id| operations.get_mut(&id)) else {
                    return reply(StatusCode::NOT_FOUND, "{}".to_owned(), 0);
                };
                operation.left = operation.left.saturating_sub(1);
                let Operation { left, retry_after, pad } = *operation;
                drop(operations);
                if left == 0 {
                    return reply(StatusCode::OK, r#"{"status":"Succeeded"}"#.to_owned(), pad);
                }
                let mut response = reply(StatusCode::OK, r#"{"status":"Running"}"#.to_owned(), pad);
                if let Some(ms) = retry_after {
                    response.headers_mut().insert("retry-after-ms", ms.into());
                }
                response
            }
            _ => reply(StatusCode::NOT_FOUND, "{}".to_owned(), 0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Operation>> {
        self.operations.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn reply(status: StatusCode, body: String, pad: usize) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if pad > 0 {
        if let Ok(padding) = HeaderValue::from_str(&"p".repeat(pad)) {
            headers.insert("x-padding", padding);
        }
    }
    response
}

/// A running `lro-bench serve` process; killed when dropped.
#[derive(Debug)]
pub(crate) struct MonitorProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl MonitorProcess {
    /// Starts the service as a child process, pinned to `cpu` where the machine allows.
    pub(crate) fn start(cpu: Option<usize>) -> std::io::Result<MonitorProcess> {
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command.arg("serve");
        if let Some(cpu) = cpu {
            command.args(["--cpu", &cpu.to_string()]);
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut line)?;
        }
        let url = line.trim().to_owned();
        if !url.starts_with("http://") {
            let _ = child.kill();
            return Err(std::io::Error::other("the benchmark server did not start"));
        }
        Ok(MonitorProcess { child, url })
    }
}

/// Requests the service at `url` has answered so far (a blocking GET over a plain socket: no
/// client library, so that it costs the measured clients nothing).
pub(crate) fn requests(url: &str) -> std::io::Result<u64> {
    use std::io::Read;
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(stream, "GET /count HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    text.rsplit("\r\n\r\n")
        .next()
        .and_then(|body| body.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad /count answer: {text:?}")))
}

impl Drop for MonitorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
