//! The Azure-like service behind [`MockServer`](crate::MockServer): operations, resources,
//! routes, control headers and fault injection.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::body::MockBody;
use crate::config::{InitialHeaders, MockConfig, Outcome, Progression, RetryAfter};
use crate::faults::{Fault, FaultKind, FaultSpec};
use crate::log::{LogEntry, RequestLog};
use crate::serve::{BodyError, Conn, Handled, Handler, ResetConnection, read_body};

/// Request bodies the service keeps (resource properties, job inputs) add up to at most this
/// many bytes; the oldest resources, then operations, are forgotten beyond it.
const MAX_STORED_BYTES: usize = 64 << 20;

const H_AZURE_ASYNC: &str = "azure-asyncoperation";
const H_OPERATION_LOCATION: &str = "operation-location";
const H_LOCATION: &str = "location";
const H_CLIENT_REQUEST_ID: &str = "x-ms-client-request-id";
const POLLING_HEADERS: [&str; 3] = [H_AZURE_ASYNC, H_OPERATION_LOCATION, H_LOCATION];

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Replies

/// A response before serialization, so faults can still change it.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: ReplyBody,
    pad_to: Option<u64>,
}

#[derive(Debug)]
enum ReplyBody {
    Empty,
    Json(Value),
    Malformed,
}

impl Reply {
    fn new(status: StatusCode) -> Self {
        Self { status, headers: Vec::new(), body: ReplyBody::Empty, pad_to: None }
    }

    fn json(status: StatusCode, body: Value) -> Self {
        Self { body: ReplyBody::Json(body), ..Self::new(status) }
    }

    fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::json(status, json!({ "error": { "code": code, "message": message.into() } }))
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn retry_after(mut self, retry_after: RetryAfter) -> Self {
        if let Some((name, value)) = retry_after.header() {
            self.headers.push((name, value));
        }
        self
    }

    fn into_response(self, client_request_id: Option<&HeaderValue>) -> Response<MockBody> {
        let (content_type, head) = match self.body {
            ReplyBody::Empty => (None, Bytes::new()),
            ReplyBody::Json(value) => {
                (Some("application/json"), Bytes::from(value.to_string().into_bytes()))
            }
            ReplyBody::Malformed => {
                (Some("application/json"), Bytes::from_static(b"{\"status\": \"Runn"))
            }
        };
        let padding = self.pad_to.map_or(0, |size| size.saturating_sub(head.len() as u64));
        let mut response = Response::new(MockBody::padded(head, padding));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.append(name, value);
            }
        }
        if let Some(id) = client_request_id {
            headers.insert(H_CLIENT_REQUEST_ID, id.clone());
        }
        response
    }
}

// ---------------------------------------------------------------------------------------------
// Operations and resources

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Running,
    Done(Outcome),
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "NotStarted",
            Self::Running => "Running",
            Self::Done(outcome) => outcome.as_str(),
        }
    }
}

#[derive(Debug, Clone)]
enum OpKind {
    Put { resource: String, created: bool },
    Patch { resource: String },
    Delete { resource: String },
    Restart { resource_id: String, name: String },
    Job { input: Value },
}

impl OpKind {
    /// The resource whose provisioning state follows this operation.
    fn resource(&self) -> Option<&str> {
        match self {
            Self::Put { resource, .. } | Self::Patch { resource } | Self::Delete { resource } => {
                Some(resource)
            }
            Self::Restart { .. } | Self::Job { .. } => None,
        }
    }

    /// The provisioning state of the resource while this operation runs.
    fn in_progress_word(&self) -> &'static str {
        match self {
            Self::Put { created: true, .. } => "Creating",
            Self::Put { created: false, .. } | Self::Patch { .. } => "Updating",
            Self::Delete { .. } => "Deleting",
            Self::Restart { .. } | Self::Job { .. } => "Running",
        }
    }
}

#[derive(Debug)]
struct Operation {
    id: String,
    kind: OpKind,
    outcome: Outcome,
    progression: Progression,
    polls: u32,
    created: tokio::time::Instant,
    start_time: SystemTime,
    end_time: Option<SystemTime>,
    retry_after: RetryAfter,
    /// A spec from `x-mock-faults`, with its own generator.
    faults: Option<(FaultSpec, fastrand::Rng)>,
    /// No monitor header: GETs on the resource are the polls.
    resource_polled: bool,
    settled: bool,
    bytes: usize,
}

impl Operation {
    /// The phase now; counts a poll first when `poll` is set.
    fn observe(&mut self, poll: bool) -> Phase {
        if poll {
            self.polls = self.polls.saturating_add(1);
        }
        let done = match self.progression {
            Progression::Polls(polls) => self.polls > polls,
            Progression::Elapsed(elapsed) => self.created.elapsed() >= elapsed,
        };
        if done {
            self.end_time.get_or_insert_with(SystemTime::now);
            Phase::Done(self.outcome)
        } else if self.polls <= 1 {
            Phase::NotStarted
        } else {
            Phase::Running
        }
    }

    fn error(&self) -> Option<Value> {
        let (code, message) = match self.outcome {
            Outcome::Succeeded => return None,
            Outcome::Failed => {
                ("MockOperationFailed", "The operation failed (x-mock-outcome: Failed).")
            }
            Outcome::Canceled => {
                ("MockOperationCanceled", "The operation was canceled (x-mock-outcome: Canceled).")
            }
        };
        Some(json!({ "code": code, "message": message }))
    }

    /// The body of the status monitors.
    fn monitor_body(&self, phase: Phase, base: &str) -> Value {
        let mut body = Map::new();
        body.insert("id".into(), self.id.clone().into());
        body.insert("status".into(), phase.as_str().into());
        body.insert("startTime".into(), rfc3339(self.start_time).into());
        if let Phase::Done(outcome) = phase {
            if let Some(end) = self.end_time {
                body.insert("endTime".into(), rfc3339(end).into());
            }
            if let Some(error) = self.error() {
                body.insert("error".into(), error);
            }
            if outcome == Outcome::Succeeded && matches!(self.kind, OpKind::Job { .. }) {
                body.insert("resourceLocation".into(), format!("{base}/jobs/{}", self.id).into());
            }
        }
        Value::Object(body)
    }

    /// The job as `GET /jobs/{id}` shows it.
    fn job_body(&self, phase: Phase, input: &Value) -> Value {
        let mut body = json!({ "id": self.id, "status": phase.as_str(), "input": input });
        if phase == Phase::Done(Outcome::Succeeded) {
            body["result"] = json!({ "output": format!("job {} completed", self.id) });
        }
        if let (Phase::Done(_), Some(error)) = (phase, self.error()) {
            body["error"] = error;
        }
        body
    }
}

#[derive(Debug)]
struct Resource {
    id: String,
    name: String,
    properties: Map<String, Value>,
    /// The provisioning state once no operation is pending.
    state: String,
    pending: Option<String>,
    generation: u64,
    bytes: usize,
}

impl Resource {
    fn body(&self, provisioning_state: &str) -> Value {
        let mut properties = self.properties.clone();
        properties.insert("provisioningState".into(), provisioning_state.into());
        json!({
            "id": self.id,
            "name": self.name,
            "type": "Mock.Widgets/widgets",
            "properties": properties,
        })
    }
}

#[derive(Debug, Default)]
struct Store {
    next_id: u64,
    operations: HashMap<String, Operation>,
    operation_order: VecDeque<String>,
    resources: HashMap<String, Resource>,
    resource_order: VecDeque<(String, u64)>,
    next_generation: u64,
    stored_bytes: usize,
}

impl Store {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_id)
    }

    fn insert_operation(&mut self, operation: Operation, max: usize) {
        self.stored_bytes += operation.bytes;
        self.operation_order.push_back(operation.id.clone());
        self.operations.insert(operation.id.clone(), operation);
        while self.operations.len() > max {
            let Some(oldest) = self.operation_order.pop_front() else { break };
            self.evict_operation(&oldest);
        }
        self.enforce_byte_budget();
    }

    fn evict_operation(&mut self, id: &str) {
        self.settle(id);
        if let Some(operation) = self.operations.remove(id) {
            self.stored_bytes = self.stored_bytes.saturating_sub(operation.bytes);
        }
    }

    /// Adds or replaces a resource, then forgets the oldest ones beyond the bounds.
    fn upsert_resource(&mut self, key: &str, resource: Resource, max: usize) {
        self.stored_bytes += resource.bytes;
        if let Some(old) = self.resources.insert(key.to_owned(), resource) {
            self.stored_bytes = self.stored_bytes.saturating_sub(old.bytes);
        }
        let generation = self.resources.get(key).map_or(0, |resource| resource.generation);
        self.resource_order.push_back((key.to_owned(), generation));
        while self.resources.len() > max {
            if !self.evict_oldest_resource() {
                break;
            }
        }
        if self.resource_order.len() > 2 * max + 16 {
            let resources = &self.resources;
            self.resource_order.retain(|(key, generation)| {
                resources.get(key).is_some_and(|resource| resource.generation == *generation)
            });
        }
        self.enforce_byte_budget();
    }

    fn remove_resource(&mut self, key: &str) {
        if let Some(resource) = self.resources.remove(key) {
            self.stored_bytes = self.stored_bytes.saturating_sub(resource.bytes);
        }
    }

    fn evict_oldest_resource(&mut self) -> bool {
        while let Some((key, generation)) = self.resource_order.pop_front() {
            if self.resources.get(&key).is_some_and(|resource| resource.generation == generation) {
                self.remove_resource(&key);
                return true;
            }
        }
        false
    }

    fn enforce_byte_budget(&mut self) {
        while self.stored_bytes > MAX_STORED_BYTES {
            if self.evict_oldest_resource() {
                continue;
            }
            let Some(oldest) = self.operation_order.pop_front() else { break };
            self.evict_operation(&oldest);
        }
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// The operation's phase (counting a poll when `poll`), applying its effect on its
    /// resource once it is done. `None` if the operation is unknown.
    fn observe(&mut self, id: &str, poll: bool) -> Option<Phase> {
        let phase = self.operations.get_mut(id)?.observe(poll);
        if matches!(phase, Phase::Done(_)) {
            self.settle(id);
        }
        Some(phase)
    }

    /// Applies a finished (or evicted) operation's effect on its resource, once.
    fn settle(&mut self, id: &str) {
        let Some(operation) = self.operations.get_mut(id) else { return };
        if operation.settled {
            return;
        }
        operation.settled = true;
        let outcome = operation.outcome;
        let kind = operation.kind.clone();
        let Some(key) = kind.resource() else { return };
        let Some(resource) = self.resources.get_mut(key) else { return };
        if resource.pending.as_deref() != Some(id) {
            return; // a later operation took the resource over
        }
        resource.pending = None;
        if matches!(kind, OpKind::Delete { .. }) && outcome == Outcome::Succeeded {
            self.remove_resource(key);
        } else {
            resource.state = outcome.as_str().to_owned();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

#[derive(Debug)]
enum Route {
    Widget { key: String, id: String, name: String },
    Restart { key: String },
    Operation(String),
    OperationResult(String),
    Jobs,
    JobMonitor(String),
    Job(String),
    NotFound,
}

fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|segment| !segment.is_empty()).collect();
    let literal = |index: usize, word: &str| {
        segments.get(index).is_some_and(|segment| segment.eq_ignore_ascii_case(word))
    };
    let is_widget = segments.len() >= 8
        && literal(0, "subscriptions")
        && literal(2, "resourceGroups")
        && literal(4, "providers")
        && literal(5, "Mock.Widgets")
        && literal(6, "widgets");
    if is_widget {
        let id = format!("/{}", segments[..8].join("/"));
        let key = id.to_ascii_lowercase();
        match segments.len() {
            8 => return Route::Widget { key, id, name: segments[7].to_owned() },
            9 if literal(8, "restart") => return Route::Restart { key },
            _ => return Route::NotFound,
        }
    }
    match segments.as_slice() {
        ["operations", id] => Route::Operation((*id).to_owned()),
        ["operationResults", id] => Route::OperationResult((*id).to_owned()),
        ["jobs"] => Route::Jobs,
        ["jobs", "operations", id] => Route::JobMonitor((*id).to_owned()),
        ["jobs", id] => Route::Job((*id).to_owned()),
        _ => Route::NotFound,
    }
}

/// What the request log needs to know besides the request and the response.
#[derive(Debug, Default)]
struct Ctx {
    operation_id: Option<String>,
    faults: Vec<Fault>,
}

/// Per-request control, read from the `x-mock-*` headers of an initial request.
#[derive(Debug)]
struct Control {
    outcome: Outcome,
    progression: Progression,
    retry_after: RetryAfter,
    headers: Option<InitialHeaders>,
    /// A spec from `x-mock-faults`, with its generator.
    faults: Option<(FaultSpec, fastrand::Rng)>,
}

/// Faults drawn for one request.
#[derive(Debug, Default)]
struct Drawn {
    delay: Option<Duration>,
    kind: Option<FaultKind>,
    retry_after_429: RetryAfter,
    oversized_bytes: u64,
}

/// What to do with a request once its faults are drawn.
enum Next {
    /// Build the normal reply, then corrupt it with this fault, if any.
    Proceed(Option<FaultKind>),
    /// Answer this instead.
    Replace(Reply),
}

/// The service state shared by all connections of one server.
#[derive(Debug)]
pub(crate) struct State {
    config: MockConfig,
    base: String,
    other_origin: String,
    store: Mutex<Store>,
    rng: Mutex<fastrand::Rng>,
    pub(crate) log: RequestLog,
}

/// The hyper handler serving `state`.
pub(crate) fn handler(state: Arc<State>) -> Handler {
    Arc::new(move |request, conn| {
        let state = state.clone();
        Box::pin(async move { state.handle(request, conn).await })
    })
}

impl State {
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

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    async fn handle(&self, request: hyper::Request<Incoming>, conn: Conn) -> Handled {
        let (parts, body) = request.into_parts();
        let mut entry = LogEntry::new(&parts);
        let mut ctx = Ctx::default();
        let result = self.dispatch(&parts, body, &conn, &mut ctx).await;
        entry.operation_id = ctx.operation_id;
        entry.faults = ctx.faults;
        entry.status = result.as_ref().ok().map(|reply| reply.status.as_u16());
        self.log.record(entry);
        let reply = result?;
        Ok(reply.into_response(parts.headers.get(H_CLIENT_REQUEST_ID)))
    }

    async fn dispatch(
        &self,
        parts: &Parts,
        body: Incoming,
        conn: &Conn,
        ctx: &mut Ctx,
    ) -> Result<Reply, ResetConnection> {
        let method = &parts.method;
        match (route(parts.uri.path()), method) {
            (Route::Widget { key, .. }, &Method::GET) => {
                let pending = lock(&self.store).resources.get(&key).and_then(|r| r.pending.clone());
                self.poll(pending.as_deref(), conn, ctx, |state| state.get_widget(&key)).await
            }
            (Route::Widget { key, id, name }, &Method::PUT | &Method::PATCH) => {
                let patch = method == Method::PATCH;
                self.create(parts, body, conn, ctx, |state, control, input| {
                    state.put_widget(control, input, &key, &id, &name, patch)
                })
                .await
            }
            (Route::Widget { key, .. }, &Method::DELETE) => {
                self.create(parts, body, conn, ctx, |state, control, _| {
                    state.delete_widget(control, &key)
                })
                .await
            }
            (Route::Widget { .. }, _) => Ok(not_allowed("GET, PUT, PATCH, DELETE")),
            (Route::Restart { key }, &Method::POST) => {
                self.create(parts, body, conn, ctx, |state, control, _| {
                    state.restart_widget(control, &key)
                })
                .await
            }
            (Route::Jobs, &Method::POST) => {
                self.create(parts, body, conn, ctx, |state, control, input| {
                    state.start_job(control, input)
                })
                .await
            }
            (Route::Restart { .. } | Route::Jobs, _) => Ok(not_allowed("POST")),
            (Route::Operation(id) | Route::JobMonitor(id), &Method::GET) => {
                self.poll(Some(&id), conn, ctx, |state| state.monitor(&id)).await
            }
            (Route::OperationResult(id), &Method::GET) => {
                self.poll(Some(&id), conn, ctx, |state| state.operation_result(&id)).await
            }
            (Route::Job(id), &Method::GET) => {
                self.poll(Some(&id), conn, ctx, |state| state.job(&id)).await
            }
            (
                Route::Operation(_)
                | Route::JobMonitor(_)
                | Route::OperationResult(_)
                | Route::Job(_),
                _,
            ) => Ok(not_allowed("GET")),
            (Route::NotFound, _) => Ok(Reply::error(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("lro-mock has no route for {} {}", parts.method, parts.uri.path()),
            )),
        }
    }

    /// A poll: draw faults (against the operation's own spec if it has one), then answer.
    async fn poll(
        &self,
        operation: Option<&str>,
        conn: &Conn,
        ctx: &mut Ctx,
        answer: impl FnOnce(&Self) -> (Reply, Option<String>),
    ) -> Result<Reply, ResetConnection> {
        let drawn = self.draw_for_poll(operation);
        ctx.operation_id = operation.map(str::to_owned);
        let kind = match self.inject(&drawn, conn, ctx).await? {
            // Replaced answers never reach the operation, so it does not advance.
            Next::Replace(reply) => return Ok(reply),
            Next::Proceed(kind) => kind,
        };
        let (reply, operation_id) = answer(self);
        ctx.operation_id = operation_id;
        Ok(self.corrupt(reply, kind, &drawn, ctx))
    }

    /// An initial request: read the control headers and the body, draw faults (only if the
    /// spec covers initial requests), then create the operation.
    async fn create(
        &self,
        parts: &Parts,
        body: Incoming,
        conn: &Conn,
        ctx: &mut Ctx,
        start: impl FnOnce(&Self, Control, Value) -> Result<(Reply, Option<String>), Reply>,
    ) -> Result<Reply, ResetConnection> {
        let mut control = match self.control(&parts.headers) {
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
        let next = self.inject(&drawn, conn, ctx).await?;
        let kind = match next {
            Next::Replace(reply) => return Ok(reply),
            Next::Proceed(kind) => kind,
        };
        let (reply, operation_id) = match start(self, control, input) {
            Ok(created) => created,
            Err(reply) => return Ok(reply),
        };
        ctx.operation_id = operation_id;
        Ok(self.corrupt(reply, kind, &drawn, ctx))
    }

    fn control(&self, headers: &HeaderMap) -> Result<Control, Reply> {
        fn parse<T>(
            headers: &HeaderMap,
            name: &str,
            parse: impl FnOnce(&str) -> Result<T, String>,
        ) -> Result<Option<T>, Reply> {
            let Some(value) = headers.get(name) else { return Ok(None) };
            let bad = |reason: String| {
                Reply::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidMockHeader",
                    format!("{name}: {reason}"),
                )
            };
            let text = value.to_str().map_err(|_| bad("not visible ASCII".to_owned()))?;
            parse(text).map(Some).map_err(bad)
        }
        let polls = parse(headers, "x-mock-polls", |text| {
            text.trim()
                .parse::<u32>()
                .map_err(|_| format!("expected a number of polls, got {text:?}"))
        })?;
        Ok(Control {
            outcome: parse(headers, "x-mock-outcome", str::parse)?.unwrap_or_default(),
            progression: polls.map_or(self.config.progression, Progression::Polls),
            retry_after: parse(headers, "x-mock-retry-after", str::parse)?
                .unwrap_or(self.config.retry_after),
            headers: parse(headers, "x-mock-final-state", str::parse)?
                .or(self.config.initial_headers),
            faults: parse(headers, "x-mock-faults", |text| {
                FaultSpec::parse(text).map_err(|error| error.to_string())
            })?
            .map(|spec| {
                let rng = spec.rng();
                (spec, rng)
            }),
        })
    }

    fn draw_server(&self) -> Drawn {
        if self.config.faults.is_empty() {
            return Drawn::default();
        }
        draw(&self.config.faults, &mut lock(&self.rng))
    }

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

    /// Applies the faults that replace the response, or delay it.
    async fn inject(
        &self,
        drawn: &Drawn,
        conn: &Conn,
        ctx: &mut Ctx,
    ) -> Result<Next, ResetConnection> {
        if let Some(delay) = drawn.delay {
            ctx.faults.push(Fault::Slow(delay));
            conn.sleep(delay).await;
        }
        let replace = |fault: Fault, reply: Reply| (fault, reply);
        let (fault, reply) = match drawn.kind {
            Some(FaultKind::InternalServerError) => replace(
                Fault::InternalServerError,
                Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    "injected fault: 500",
                ),
            ),
            Some(FaultKind::ServiceUnavailable) => replace(
                Fault::ServiceUnavailable,
                Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "injected fault: 503",
                ),
            ),
            Some(FaultKind::TooManyRequests) => replace(
                Fault::TooManyRequests(drawn.retry_after_429),
                Reply::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "injected fault: 429",
                )
                .retry_after(drawn.retry_after_429),
            ),
            Some(FaultKind::Reset) => {
                ctx.faults.push(Fault::Reset);
                return Err(conn.reset());
            }
            other => return Ok(Next::Proceed(other)),
        };
        ctx.faults.push(fault);
        Ok(Next::Replace(reply))
    }

    /// Applies the faults that corrupt a normal response.
    fn corrupt(
        &self,
        mut reply: Reply,
        kind: Option<FaultKind>,
        drawn: &Drawn,
        ctx: &mut Ctx,
    ) -> Reply {
        let no_body = reply.status == StatusCode::NO_CONTENT;
        match kind {
            Some(FaultKind::Malformed) if !no_body => {
                reply.body = ReplyBody::Malformed;
                ctx.faults.push(Fault::Malformed);
            }
            Some(FaultKind::NoStatus) => {
                if let ReplyBody::Json(Value::Object(body)) = &mut reply.body {
                    if body.remove("status").is_some() {
                        ctx.faults.push(Fault::NoStatus);
                    }
                }
            }
            Some(FaultKind::Oversized) if !no_body => {
                reply.pad_to = Some(drawn.oversized_bytes);
                ctx.faults.push(Fault::Oversized(drawn.oversized_bytes));
            }
            Some(FaultKind::CrossOrigin) => {
                let mut moved = false;
                for (name, value) in &mut reply.headers {
                    if POLLING_HEADERS.contains(name) {
                        if let Some(rest) = value.strip_prefix(&self.base) {
                            *value = format!("{}{rest}", self.other_origin);
                            moved = true;
                        }
                    }
                }
                if let ReplyBody::Json(Value::Object(body)) = &mut reply.body {
                    if let Some(Value::String(url)) = body.get_mut("resourceLocation") {
                        if let Some(rest) = url.strip_prefix(&self.base) {
                            *url = format!("{}{rest}", self.other_origin);
                            moved = true;
                        }
                    }
                }
                if !moved {
                    let target = match &ctx.operation_id {
                        Some(id) => format!("{}/operationResults/{id}", self.other_origin),
                        None => format!("{}/", self.other_origin),
                    };
                    reply.headers.push((H_LOCATION, target));
                }
                ctx.faults.push(Fault::CrossOrigin);
            }
            _ => {}
        }
        reply
    }

    // -----------------------------------------------------------------------------------------
    // Initial requests

    fn new_operation(
        &self,
        store: &mut Store,
        kind: OpKind,
        control: &mut Control,
        bytes: usize,
    ) -> Operation {
        Operation {
            id: store.new_id(),
            kind,
            outcome: control.outcome,
            progression: control.progression,
            polls: 0,
            created: tokio::time::Instant::now(),
            start_time: SystemTime::now(),
            end_time: None,
            retry_after: control.retry_after,
            faults: control.faults.take(),
            resource_polled: false,
            settled: false,
            bytes,
        }
    }

    /// Adds the polling headers an initial response carries.
    fn polling_headers(
        &self,
        reply: Reply,
        headers: InitialHeaders,
        monitor: &'static str,
        id: &str,
    ) -> Reply {
        let mut reply = reply;
        if headers.monitor() {
            let url = if monitor == H_OPERATION_LOCATION {
                format!("{}/jobs/operations/{id}", self.base)
            } else {
                format!("{}/operations/{id}", self.base)
            };
            reply = reply.header(monitor, url);
        }
        if headers.location() {
            reply = reply.header(H_LOCATION, format!("{}/operationResults/{id}", self.base));
        }
        reply
    }

    fn put_widget(
        &self,
        mut control: Control,
        input: Value,
        key: &str,
        id: &str,
        name: &str,
        patch: bool,
    ) -> Result<(Reply, Option<String>), Reply> {
        let properties = match &input {
            Value::Null => Map::new(),
            Value::Object(body) => match body.get("properties") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(properties)) => properties.clone(),
                Some(_) => return Err(bad_body("`properties` must be an object")),
            },
            _ => return Err(bad_body("the body must be a JSON object")),
        };
        let bytes = Value::Object(properties.clone()).to_string().len();
        let mut store = lock(&self.store);
        let existing =
            store.resources.get(key).map(|resource| (resource.id.clone(), &resource.properties));
        if patch && existing.is_none() {
            return Err(not_found_resource(id));
        }
        let created = existing.is_none();
        let (resource_id, merged) = match existing {
            Some((existing_id, old)) if patch => {
                let mut merged = old.clone();
                merged.extend(properties);
                (existing_id, merged)
            }
            Some((existing_id, _)) => (existing_id, properties),
            None => (id.to_owned(), properties),
        };
        let headers = control.headers.unwrap_or(InitialHeaders::Monitor);
        let kind = if patch {
            OpKind::Patch { resource: key.to_owned() }
        } else {
            OpKind::Put { resource: key.to_owned(), created }
        };
        let word = kind.in_progress_word();
        let mut operation = self.new_operation(&mut store, kind, &mut control, 0);
        operation.resource_polled = headers == InitialHeaders::Neither;
        let op_id = operation.id.clone();
        let generation = store.generation();
        let resource = Resource {
            id: resource_id,
            name: name.to_owned(),
            properties: merged,
            state: "Succeeded".to_owned(),
            pending: Some(op_id.clone()),
            generation,
            bytes,
        };
        let body = resource.body(word);
        store.upsert_resource(key, resource, self.config.max_operations);
        store.insert_operation(operation, self.config.max_operations);
        drop(store);
        let status = if patch || !created { StatusCode::OK } else { StatusCode::CREATED };
        let reply = Reply::json(status, body).retry_after(control.retry_after);
        let reply = self.polling_headers(reply, headers, H_AZURE_ASYNC, &op_id);
        Ok((reply, Some(op_id)))
    }

    fn delete_widget(
        &self,
        mut control: Control,
        key: &str,
    ) -> Result<(Reply, Option<String>), Reply> {
        let mut store = lock(&self.store);
        if !store.resources.contains_key(key) {
            return Ok((Reply::new(StatusCode::NO_CONTENT), None));
        }
        let kind = OpKind::Delete { resource: key.to_owned() };
        let operation = self.new_operation(&mut store, kind, &mut control, 0);
        let op_id = operation.id.clone();
        if let Some(resource) = store.resources.get_mut(key) {
            resource.pending = Some(op_id.clone());
        }
        store.insert_operation(operation, self.config.max_operations);
        drop(store);
        let headers = initial_or(control.headers, InitialHeaders::Location);
        let reply = Reply::new(StatusCode::ACCEPTED).retry_after(control.retry_after);
        Ok((self.polling_headers(reply, headers, H_AZURE_ASYNC, &op_id), Some(op_id)))
    }

    fn restart_widget(
        &self,
        mut control: Control,
        key: &str,
    ) -> Result<(Reply, Option<String>), Reply> {
        let mut store = lock(&self.store);
        let Some(resource) = store.resources.get(key) else {
            return Err(not_found_resource(key));
        };
        let kind =
            OpKind::Restart { resource_id: resource.id.clone(), name: resource.name.clone() };
        let operation = self.new_operation(&mut store, kind, &mut control, 0);
        let op_id = operation.id.clone();
        store.insert_operation(operation, self.config.max_operations);
        drop(store);
        let headers = initial_or(control.headers, InitialHeaders::Location);
        let reply = Reply::new(StatusCode::ACCEPTED).retry_after(control.retry_after);
        Ok((self.polling_headers(reply, headers, H_AZURE_ASYNC, &op_id), Some(op_id)))
    }

    fn start_job(
        &self,
        mut control: Control,
        input: Value,
    ) -> Result<(Reply, Option<String>), Reply> {
        let bytes = input.to_string().len();
        let mut store = lock(&self.store);
        let operation = self.new_operation(&mut store, OpKind::Job { input }, &mut control, bytes);
        let op_id = operation.id.clone();
        store.insert_operation(operation, self.config.max_operations);
        drop(store);
        let headers = initial_or(control.headers, InitialHeaders::Monitor);
        let body = json!({ "id": op_id, "status": "NotStarted" });
        let reply = Reply::json(StatusCode::ACCEPTED, body).retry_after(control.retry_after);
        Ok((self.polling_headers(reply, headers, H_OPERATION_LOCATION, &op_id), Some(op_id)))
    }

    // -----------------------------------------------------------------------------------------
    // Polls

    fn get_widget(&self, key: &str) -> (Reply, Option<String>) {
        let mut store = lock(&self.store);
        let Some(resource) = store.resources.get(key) else {
            return (not_found_resource(key), None);
        };
        let Some(pending) = resource.pending.clone() else {
            let body = resource.body(&resource.state);
            return (Reply::json(StatusCode::OK, body), None);
        };
        let (poll, word, retry_after) = match store.operations.get(&pending) {
            Some(op) => (op.resource_polled, op.kind.in_progress_word(), op.retry_after),
            None => (false, "Succeeded", RetryAfter::None),
        };
        let phase = store.observe(&pending, poll);
        let Some(resource) = store.resources.get(key) else {
            return (not_found_resource(key), Some(pending)); // deleted just now
        };
        let reply = match phase {
            Some(Phase::NotStarted | Phase::Running) => {
                Reply::json(StatusCode::OK, resource.body(word)).retry_after(retry_after)
            }
            _ => Reply::json(StatusCode::OK, resource.body(&resource.state)),
        };
        (reply, Some(pending))
    }

    fn monitor(&self, id: &str) -> (Reply, Option<String>) {
        let mut store = lock(&self.store);
        let Some(phase) = store.observe(id, true) else {
            return (not_found_operation(id), None);
        };
        let Some(operation) = store.operations.get(id) else {
            return (not_found_operation(id), None);
        };
        let mut reply = Reply::json(StatusCode::OK, operation.monitor_body(phase, &self.base));
        if !matches!(phase, Phase::Done(_)) {
            reply = reply.retry_after(operation.retry_after);
        }
        (reply, Some(id.to_owned()))
    }

    fn operation_result(&self, id: &str) -> (Reply, Option<String>) {
        let mut store = lock(&self.store);
        let Some(phase) = store.observe(id, true) else {
            return (not_found_operation(id), None);
        };
        let Some(operation) = store.operations.get(id) else {
            return (not_found_operation(id), None);
        };
        let reply = match phase {
            Phase::NotStarted | Phase::Running => {
                Reply::new(StatusCode::ACCEPTED).retry_after(operation.retry_after)
            }
            Phase::Done(Outcome::Failed | Outcome::Canceled) => {
                let error = operation.error().unwrap_or(Value::Null);
                Reply::json(StatusCode::BAD_REQUEST, json!({ "error": error }))
            }
            Phase::Done(Outcome::Succeeded) => match &operation.kind {
                OpKind::Delete { .. } => Reply::new(StatusCode::NO_CONTENT),
                OpKind::Put { resource, .. } | OpKind::Patch { resource } => {
                    let body = store.resources.get(resource).map_or_else(
                        || json!({ "id": id, "status": "Succeeded" }),
                        |resource| resource.body(&resource.state),
                    );
                    Reply::json(StatusCode::OK, body)
                }
                OpKind::Restart { resource_id, name } => Reply::json(
                    StatusCode::OK,
                    json!({ "operationId": id, "id": resource_id, "name": name, "restarted": true }),
                ),
                OpKind::Job { input } => {
                    Reply::json(StatusCode::OK, operation.job_body(phase, input))
                }
            },
        };
        (reply, Some(id.to_owned()))
    }

    fn job(&self, id: &str) -> (Reply, Option<String>) {
        let mut store = lock(&self.store);
        let phase = match store.operations.get(id) {
            Some(Operation { kind: OpKind::Job { .. }, .. }) => store.observe(id, false),
            _ => None,
        };
        let reply = match (phase, store.operations.get(id)) {
            (Some(phase), Some(operation @ Operation { kind: OpKind::Job { input }, .. })) => {
                Reply::json(StatusCode::OK, operation.job_body(phase, input))
            }
            _ => {
                return (
                    Reply::error(StatusCode::NOT_FOUND, "JobNotFound", format!("no job {id}")),
                    None,
                );
            }
        };
        (reply, Some(id.to_owned()))
    }
}

fn draw(spec: &FaultSpec, rng: &mut fastrand::Rng) -> Drawn {
    let (delay, kind) = spec.draw(rng);
    Drawn {
        delay,
        kind,
        retry_after_429: spec.retry_after_429(),
        oversized_bytes: spec.oversized_bytes(),
    }
}

/// `none` is for PUT and PATCH only; the other routes fall back to their default.
fn initial_or(headers: Option<InitialHeaders>, default: InitialHeaders) -> InitialHeaders {
    match headers {
        Some(InitialHeaders::Neither) | None => default,
        Some(headers) => headers,
    }
}

fn bad_body(message: &str) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "InvalidRequestContent", message)
}

fn not_found_resource(id: &str) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("the resource {id} was not found"),
    )
}

fn not_found_operation(id: &str) -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "OperationNotFound", format!("no operation {id}"))
}

fn not_allowed(allow: &'static str) -> Reply {
    Reply::error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("allowed: {allow}"))
        .header(ALLOW.as_str(), allow)
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-05-07T12:34:56.789Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let rest = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.123Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_778_155_200); // 2026-05-07T12:00:00Z
        assert_eq!(rfc3339(later), "2026-05-07T12:00:00.000Z");
    }

    #[test]
    fn routes() {
        let arm = "/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/w1";
        assert!(matches!(route(arm), Route::Widget { ref name, .. } if name == "w1"));
        assert!(matches!(route(&format!("{arm}/restart")), Route::Restart { .. }));
        assert!(matches!(route(&arm.to_lowercase()), Route::Widget { .. }));
        assert!(matches!(route("/operations/x"), Route::Operation(ref id) if id == "x"));
        assert!(matches!(route("/operationResults/x"), Route::OperationResult(_)));
        assert!(matches!(route("/jobs"), Route::Jobs));
        assert!(matches!(route("/jobs/operations/x"), Route::JobMonitor(_)));
        assert!(matches!(route("/jobs/x"), Route::Job(_)));
        assert!(matches!(route("/nope"), Route::NotFound));
        assert!(matches!(route(&format!("{arm}/other")), Route::NotFound));
    }

    #[test]
    fn eviction_keeps_the_newest() {
        let config = MockConfig::builder().max_operations(3).build();
        let state = State::new(config, SocketAddr::from(([127, 0, 0, 1], 1)));
        for _ in 0..5 {
            let control = Control {
                outcome: Outcome::Succeeded,
                progression: Progression::Polls(1),
                retry_after: RetryAfter::None,
                headers: None,
                faults: None,
            };
            assert!(state.start_job(control, Value::Null).is_ok());
        }
        let store = lock(&state.store);
        assert_eq!(store.operations.len(), 3);
        assert_eq!(store.operation_order.len(), 3);
        assert!(!store.operations.contains_key("00000000-0000-4000-8000-000000000001"));
        assert!(store.operations.contains_key("00000000-0000-4000-8000-000000000005"));
    }
}
