//! The Azure-like service behind [`MockServer`](crate::MockServer): its shared [`State`], the
//! hyper handler, the request log, and the two request pipelines (polls and initial requests)
//! that put fault injection around the [route handlers](crate::routes).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::StatusCode;
use http::request::Parts;
use hyper::body::Incoming;
use serde_json::Value;

use crate::config::MockConfig;
use crate::control::Control;
use crate::faults::Fault;
use crate::faults::apply::{Drawn, Next, corrupt, draw, inject};
use crate::log::{LogEntry, RequestLog};
use crate::reply::{H_CLIENT_REQUEST_ID, Reply};
use crate::serve::{BodyError, Conn, Handled, Handler, ResetConnection, read_body};
use crate::store::Store;

/// Locks `mutex`, ignoring poisoning (every critical section leaves the data consistent).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A reply, with the operation it concerns (for the log), if any.
pub(crate) type Answer = (Reply, Option<String>);

/// What the request log needs to know besides the request and the response.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    /// The operation the request concerns, if any.
    pub(crate) operation_id: Option<String>,
    /// The faults injected into the response.
    pub(crate) faults: Vec<Fault>,
}

/// The service state shared by all connections of one server.
#[derive(Debug)]
pub(crate) struct State {
    /// The configuration.
    pub(crate) config: MockConfig,
    /// The origin of the polling URLs, e.g. `http://127.0.0.1:49152`.
    pub(crate) base: String,
    /// Where `cross-origin` faults point polling URLs.
    other_origin: String,
    /// The operations and resources.
    pub(crate) store: Mutex<Store>,
    /// The generator of the server-wide fault spec.
    rng: Mutex<fastrand::Rng>,
    /// The request log and counters.
    pub(crate) log: RequestLog,
}

/// The hyper handler serving `state`.
pub(crate) fn handler(state: Arc<State>) -> Handler {
    Arc::new(move |request, conn| {
        let state = state.clone();
        Box::pin(async move { State::handle(state, request, conn).await })
    })
}

impl State {
    /// A service answering on `addr`, with nothing stored yet.
    pub(crate) fn new(config: MockConfig, addr: SocketAddr) -> Self {
        let rng = config.faults.rng();
        Self {
            base: format!("http://{addr}"),
            other_origin: format!("http://127.0.0.2:{}", addr.port()),
            log: RequestLog::new(config.log_capacity),
            store: Mutex::new(Store::default()),
            rng: Mutex::new(rng),
            config,
        }
    }

    /// The origin of the polling URLs.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Tells the `on_request` hook, then logs `entry`.
    fn record(&self, entry: LogEntry) {
        if let Some(hook) = &self.config.on_request {
            (hook.0)(&entry);
        }
        self.log.record(entry);
    }

    /// Answers one request and records it in the log.
    async fn handle(self: Arc<Self>, request: hyper::Request<Incoming>, conn: Conn) -> Handled {
        let (parts, body) = request.into_parts();
        if parts.method == http::Method::GET && parts.uri.path() == "/events" {
            let mut entry = LogEntry::new(&parts);
            entry.status = Some(200);
            self.record(entry);
            return Ok(crate::events::stream(Arc::clone(&self)));
        }
        let mut entry = LogEntry::new(&parts);
        let mut ctx = Ctx::default();
        let result = self.dispatch(&parts, body, &conn, &mut ctx).await;
        entry.operation_id = ctx.operation_id;
        entry.faults = ctx.faults;
        entry.status = result.as_ref().ok().map(|reply| reply.status.as_u16());
        self.record(entry);
        let reply = result?;
        Ok(reply.into_response(parts.headers.get(H_CLIENT_REQUEST_ID)))
    }

    /// A poll: draw faults (against the operation's own spec if it has one), then answer.
    pub(crate) async fn poll(
        &self,
        operation: Option<&str>,
        conn: &Conn,
        ctx: &mut Ctx,
        answer: impl FnOnce(&Self) -> Answer,
    ) -> Result<Reply, ResetConnection> {
        let drawn = self.draw_for_poll(operation);
        ctx.operation_id = operation.map(str::to_owned);
        if let Next::Replace(reply) = inject(&drawn, conn, &mut ctx.faults).await? {
            // Replaced answers never reach the operation, so it does not advance.
            return Ok(reply);
        }
        let (reply, operation_id) = answer(self);
        ctx.operation_id = operation_id;
        Ok(self.corrupt(reply, &drawn, ctx))
    }

    /// An initial request: read the control headers and the body, draw faults (only if the
    /// spec covers initial requests), then create the operation.
    pub(crate) async fn create(
        &self,
        parts: &Parts,
        body: Incoming,
        conn: &Conn,
        ctx: &mut Ctx,
        start: impl FnOnce(&Self, Control, Value) -> Result<Answer, Reply>,
    ) -> Result<Reply, ResetConnection> {
        let mut control = match Control::parse(&parts.headers, &self.config) {
            Ok(control) => control,
            Err(reply) => return Ok(reply),
        };
        let input = match read_body(body, self.config.max_request_body).await {
            Ok(bytes) if bytes.is_empty() => Value::Null,
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(error) => {
                    return Ok(Reply::error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestContent",
                        format!("the request body is not JSON: {error}"),
                    ));
                }
            },
            Err(BodyError::TooLarge) => {
                return Ok(Reply::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestTooLarge",
                    format!("request bodies are limited to {} bytes", self.config.max_request_body),
                ));
            }
            Err(BodyError::TimedOut) => {
                return Ok(Reply::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeout",
                    "body too slow",
                ));
            }
            Err(BodyError::Broken) => return Err(conn.reset()),
        };
        // The operation's own spec (if any) draws from its own generator, which the operation
        // then keeps for its polls.
        let drawn = match &mut control.faults {
            Some((spec, rng)) if spec.applies_to_initial() => draw(spec, rng),
            Some(_) => Drawn::default(),
            None if self.config.faults.applies_to_initial() => self.draw_server(),
            None => Drawn::default(),
        };
        if let Next::Replace(reply) = inject(&drawn, conn, &mut ctx.faults).await? {
            return Ok(reply);
        }
        let (reply, operation_id) = match start(self, control, input) {
            Ok(created) => created,
            Err(reply) => return Ok(reply),
        };
        ctx.operation_id = operation_id;
        Ok(self.corrupt(reply, &drawn, ctx))
    }

    /// Draws from the server-wide spec.
    fn draw_server(&self) -> Drawn {
        if self.config.faults.is_empty() {
            return Drawn::default();
        }
        draw(&self.config.faults, &mut lock(&self.rng))
    }

    /// Draws for a poll of `operation`: from its own spec if it has one, else server-wide.
    fn draw_for_poll(&self, operation: Option<&str>) -> Drawn {
        if let Some(id) = operation {
            let mut store = lock(&self.store);
            if let Some((spec, rng)) =
                store.operations.get_mut(id).and_then(|op| op.faults.as_mut())
            {
                return draw(spec, rng);
            }
        }
        self.draw_server()
    }

    /// Corrupts a normal reply with the drawn fault, if it is one that does.
    fn corrupt(&self, reply: Reply, drawn: &Drawn, ctx: &mut Ctx) -> Reply {
        let operation_id = ctx.operation_id.as_deref();
        corrupt(reply, drawn, &self.base, &self.other_origin, operation_id, &mut ctx.faults)
    }
}
