//! [`ScriptedServer`]: replays a fixed, ordered list of expected requests over real loopback
//! HTTP, each with a canned answer or a connection reset.
//!
//! Each request is compared with the next unused [`Step`]: same method, same path (and the
//! same query, if the step names one). A match consumes the step and gets its answer. Anything
//! else gets `599` with a text body naming what was expected, is recorded as a [`Mismatch`],
//! and leaves the step in place. `{base}` in a step's header values and body is replaced by the
//! server's base URL, so a scripted `Operation-Location` points back at the server.
//!
//! ```
//! use lro_mock::scripted::{ScriptedServer, Step};
//! use std::io::{Read, Write};
//!
//! let server = ScriptedServer::start_blocking(vec![
//!     Step::new("POST", "http://host/jobs")
//!         .status(202)
//!         .header("Operation-Location", "{base}/op"),
//!     Step::get("/op").json(r#"{"status": "Succeeded"}"#),
//! ])?;
//!
//! let mut stream = std::net::TcpStream::connect(server.addr())?;
//! stream.write_all(b"POST /jobs HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
//! let mut response = String::new();
//! stream.read_to_string(&mut response)?;
//! assert!(response.contains(&format!("operation-location: {}/op", server.base_url())));
//!
//! assert_eq!(server.requests()[0].method, "POST");
//! assert_eq!(server.remaining().len(), 1);
//! assert!(server.mismatches().is_empty());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::body::MockBody;
use crate::serve::{BodyError, Conn, Handled, Handler, Running, bind, read_body};

/// Request bodies are read up to this size; larger ones are a mismatch answered with 413.
const MAX_BODY: usize = 1024 * 1024;
/// At most this many received requests, and this many mismatches, are kept (newest).
const MAX_RECORDS: usize = 10_000;
/// Status of the answer to a request that matches no step.
const MISMATCH_STATUS: u16 = 599;
/// Header values replaced by this in [`ReceivedRequest::headers`].
const REDACTED: &str = "<redacted>";

/// One expected request and its canned answer. Built with [`Step::new`] (or [`Step::get`]) and
/// the methods that follow; by default the answer is `200` with no headers and no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    method: String,
    path: String,
    answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Respond { status: u16, headers: Vec<(String, String)>, body: Bytes },
    Reset,
}

impl Step {
    /// Expects `method` on `target`: a path with an optional query (`/op?x=1`), or an absolute
    /// URL whose scheme and host are ignored (`http://host/op`); a leading `{base}` is ignored
    /// too. Without a query in `target`, the request's query is not compared.
    pub fn new(method: &str, target: &str) -> Self {
        let answer = Answer::Respond { status: 200, headers: Vec::new(), body: Bytes::new() };
        Self { method: method.to_ascii_uppercase(), path: host_less(target), answer }
    }

    /// Expects a `GET` on `target` (see [`Step::new`]).
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// Answers with this status (checked when the server starts: 100 to 999).
    pub fn status(mut self, status: u16) -> Self {
        if let Answer::Respond { status: current, .. } = &mut self.answer {
            *current = status;
        } else {
            self.answer = Answer::Respond { status, headers: Vec::new(), body: Bytes::new() };
        }
        self
    }

    /// Adds an answer header (may repeat; `{base}` is replaced by the server's base URL).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Answer::Respond { headers, .. } = &mut self.answer {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Sets the answer body (`{base}` is replaced, if the body is UTF-8).
    pub fn body(mut self, bytes: impl Into<Bytes>) -> Self {
        if let Answer::Respond { body, .. } = &mut self.answer {
            *body = bytes.into();
        }
        self
    }

    /// Sets the answer body and `Content-Type: application/json`. The text is sent as given
    /// (it need not be valid JSON, to script malformed bodies).
    pub fn json(self, text: &str) -> Self {
        self.header("content-type", "application/json").body(text.to_owned())
    }

    /// Answers by closing the connection without a response (TCP reset).
    pub fn reset(mut self) -> Self {
        self.answer = Answer::Reset;
        self
    }

    /// The expected method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The expected path (with the query, if one was given).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the answer is a connection reset.
    pub fn is_reset(&self) -> bool {
        self.answer == Answer::Reset
    }

    fn matches(&self, method: &str, path: &str, path_and_query: &str) -> bool {
        let target = if self.path.contains('?') { path_and_query } else { path };
        self.method.eq_ignore_ascii_case(method) && self.path == target
    }

    fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Strips a scheme and authority, or a `{base}` placeholder, from `target`.
fn host_less(target: &str) -> String {
    let rest = if let Some(rest) = target.strip_prefix("{base}") {
        rest
    } else if let Some((_, after_scheme)) = target.split_once("://") {
        after_scheme.find(['/', '?']).map_or("", |start| &after_scheme[start..])
    } else {
        target
    };
    if rest.starts_with('/') { rest.to_owned() } else { format!("/{rest}") }
}

/// A request the scripted server received. The values of `Authorization`,
/// `Proxy-Authorization` and `Cookie` are replaced by `<redacted>` (their presence is kept).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReceivedRequest {
    /// The method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The HTTP version.
    pub version: Version,
    /// The headers (credentials redacted).
    pub headers: HeaderMap,
    /// The body (empty if it was over 1 MiB).
    pub body: Bytes,
}

/// A request that did not match the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mismatch {
    /// The index (0-based) of the step that was expected; equal to the number of steps when
    /// none was left.
    pub step: usize,
    /// The expected request, e.g. `GET /op`, or `None` when no step was left.
    pub expected: Option<String>,
    /// The received request, e.g. `GET /other?x=1`.
    pub received: String,
}

#[derive(Debug)]
struct Script {
    steps: VecDeque<Step>,
    used: usize,
    total: usize,
    received: VecDeque<ReceivedRequest>,
    mismatches: VecDeque<Mismatch>,
}

#[derive(Debug)]
struct ScriptState {
    base: String,
    script: Mutex<Script>,
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= MAX_RECORDS {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl ScriptState {
    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn handle(&self, request: hyper::Request<Incoming>, conn: Conn) -> Handled {
        let (parts, body) = request.into_parts();
        let body = read_body(body, MAX_BODY).await;
        let path = parts.uri.path().to_owned();
        let path_and_query =
            parts.uri.path_and_query().map_or(path.clone(), |pq| pq.as_str().to_owned());
        let method = parts.method.as_str().to_owned();
        let mut headers = parts.headers;
        for name in ["authorization", "proxy-authorization", "cookie"] {
            if headers.contains_key(name) {
                headers.insert(name, HeaderValue::from_static(REDACTED)); // replaces every value
            }
        }
        let received_text = format!("{method} {path_and_query}");
        let mut script = self.lock();
        push_bounded(
            &mut script.received,
            ReceivedRequest {
                method: method.clone(),
                path: path_and_query.clone(),
                version: parts.version,
                headers,
                body: body.as_ref().map_or_else(|_| Bytes::new(), Bytes::clone),
            },
        );
        let step = script.used;
        let total = script.total;
        let expected = script.steps.front().cloned();
        let matched =
            expected.as_ref().is_some_and(|next| next.matches(&method, &path, &path_and_query));
        if matched && body.is_ok() {
            script.steps.pop_front();
            script.used += 1;
            drop(script);
            return match expected.map(|next| next.answer) {
                Some(Answer::Respond { status, headers, body }) => {
                    Ok(self.respond(status, &headers, body))
                }
                Some(Answer::Reset) | None => Err(conn.reset()),
            };
        }
        let message = match (&expected, &body) {
            (_, Err(BodyError::TooLarge)) => format!("the request body is over {MAX_BODY} bytes"),
            (_, Err(_)) => "the request body could not be read".to_owned(),
            (Some(next), Ok(_)) => {
                format!("expected step {} of {total}: {}", step + 1, next.describe())
            }
            (None, Ok(_)) => format!("no step left (all {total} used)"),
        };
        push_bounded(
            &mut script.mismatches,
            Mismatch {
                step,
                expected: expected.as_ref().map(Step::describe),
                received: received_text.clone(),
            },
        );
        drop(script);
        let text =
            format!("lro-mock scripted server: unexpected request {received_text}: {message}\n");
        let mut response = Response::new(MockBody::new(text));
        *response.status_mut() =
            StatusCode::from_u16(MISMATCH_STATUS).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        Ok(response)
    }

    fn respond(
        &self,
        status: u16,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Response<MockBody> {
        let body = match std::str::from_utf8(&body) {
            Ok(text) if text.contains("{base}") => Bytes::from(text.replace("{base}", &self.base)),
            _ => body,
        };
        let mut response = Response::new(MockBody::new(body));
        // Validated when the server started.
        *response.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (name, value) in headers {
            let value = value.replace("{base}", &self.base);
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value))
            {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// Checks every step's status and headers, with `{base}` replaced.
fn validate(steps: &[Step], base: &str) -> io::Result<()> {
    for (index, step) in steps.iter().enumerate() {
        let invalid = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("step {} ({}): {what}", index + 1, step.describe()),
            )
        };
        if http::Method::from_bytes(step.method.as_bytes()).is_err() {
            return Err(invalid(format!("invalid method {:?}", step.method)));
        }
        let Answer::Respond { status, headers, .. } = &step.answer else { continue };
        if StatusCode::from_u16(*status).is_err() {
            return Err(invalid(format!("invalid status {status} (use 100 to 999)")));
        }
        for (name, value) in headers {
            if HeaderName::try_from(name.as_str()).is_err() {
                return Err(invalid(format!("invalid header name {name:?}")));
            }
            if HeaderValue::try_from(value.replace("{base}", base)).is_err() {
                return Err(invalid(format!("invalid value for header {name}")));
            }
        }
    }
    Ok(())
}

/// A server replaying [`Step`]s on `127.0.0.1` (ephemeral port), over HTTP/1.1 and HTTP/2
/// (prior knowledge). See the [module documentation](self) for an example.
///
/// Dropping it shuts it down like a [`MockServer`](crate::MockServer).
#[derive(Debug)]
pub struct ScriptedServer {
    state: Arc<ScriptState>,
    running: Running,
}

impl ScriptedServer {
    fn prepare(steps: Vec<Step>) -> io::Result<(std::net::TcpListener, Arc<ScriptState>, Handler)> {
        let listener = bind(0)?;
        let base = format!("http://{}", listener.local_addr()?);
        validate(&steps, &base)?;
        let script = Script {
            total: steps.len(),
            steps: steps.into(),
            used: 0,
            received: VecDeque::new(),
            mismatches: VecDeque::new(),
        };
        let state = Arc::new(ScriptState { base, script: Mutex::new(script) });
        let shared = state.clone();
        let handler: Handler = Arc::new(move |request, conn| {
            let state = shared.clone();
            Box::pin(async move { state.handle(request, conn).await })
        });
        Ok((listener, state, handler))
    }

    /// Starts on the caller's tokio runtime. Fails if a step has an invalid method, status or
    /// header (`InvalidInput`), or the server cannot start.
    pub async fn start(steps: Vec<Step>) -> io::Result<Self> {
        let (listener, state, handler) = Self::prepare(steps)?;
        let running = Running::spawn(listener, handler)?;
        Ok(Self { state, running })
    }

    /// Starts on a runtime of its own, on a background thread (see
    /// [`MockServer::start_blocking`](crate::MockServer::start_blocking)).
    pub fn start_blocking(steps: Vec<Step>) -> io::Result<Self> {
        let (listener, state, handler) = Self::prepare(steps)?;
        let running = Running::spawn_thread(listener, handler, "lro-mock-scripted")?;
        Ok(Self { state, running })
    }

    /// The origin, e.g. `http://127.0.0.1:49152` (what `{base}` is replaced by).
    pub fn base_url(&self) -> String {
        self.state.base.clone()
    }

    /// `base_url()` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.state.base)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    /// The requests received so far, in order (the newest 10 000).
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.state.lock().received.iter().cloned().collect()
    }

    /// The steps not used yet, in order.
    pub fn remaining(&self) -> Vec<Step> {
        self.state.lock().steps.iter().cloned().collect()
    }

    /// The requests that did not match the next step (the newest 10 000).
    pub fn mismatches(&self) -> Vec<Mismatch> {
        self.state.lock().mismatches.iter().cloned().collect()
    }

    /// True when every step was used and no request mismatched.
    pub fn is_complete(&self) -> bool {
        let script = self.state.lock();
        script.steps.is_empty() && script.mismatches.is_empty()
    }

    /// Shuts down gracefully and waits until it has stopped.
    pub async fn shutdown(self) {
        self.running.stop().await;
    }
}
