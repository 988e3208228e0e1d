//! Request routing: which [`Route`] a path names, which handler answers each route and method,
//! and the handlers themselves (initial requests that start operations, and polls).

use std::sync::MutexGuard;
use std::time::SystemTime;

use http::header::ALLOW;
use http::request::Parts;
use http::{Method, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::config::{InitialHeaders, Outcome};
use crate::control::Control;
use crate::reply::{H_AZURE_ASYNC, H_LOCATION, H_OPERATION_LOCATION, Reply};
use crate::retry_after::RetryAfter;
use crate::serve::{Conn, ResetConnection};
use crate::service::{Answer, Ctx, State, lock};
use crate::store::{OpKind, Operation, Phase, Resource, Store};

/// What a request path names.
#[derive(Debug)]
enum Route {
    /// `{widget}`: `key` is the lower-cased `id`.
    Widget { key: String, id: String, name: String },
    /// `{widget}/restart`.
    Restart { key: String },
    /// `/operations/{id}`.
    Operation(String),
    /// `/operationResults/{id}`.
    OperationResult(String),
    /// `/jobs`.
    Jobs,
    /// `/jobs/operations/{id}`.
    JobMonitor(String),
    /// `/jobs/{id}`.
    Job(String),
    /// Anything else.
    NotFound,
}

/// The route `path` names (literal segments of `{widget}` match in any case).
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

impl State {
    /// Answers a request by its route and method.
    pub(crate) async fn dispatch(
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

    // -----------------------------------------------------------------------------------------
    // Initial requests

    /// A new operation of this kind, taking its settings (and fault spec) from `control`.
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

    /// `PUT` or `PATCH {widget}`: stores the resource and starts its operation.
    fn put_widget(
        &self,
        mut control: Control,
        input: Value,
        key: &str,
        id: &str,
        name: &str,
        patch: bool,
    ) -> Result<Answer, Reply> {
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

    /// `DELETE {widget}`: starts its deletion (`204` if there is no such widget).
    fn delete_widget(&self, mut control: Control, key: &str) -> Result<Answer, Reply> {
        let mut store = lock(&self.store);
        if !store.resources.contains_key(key) {
            return Ok((Reply::new(StatusCode::NO_CONTENT), None));
        }
        let kind = OpKind::Delete { resource: key.to_owned() };
        let operation = self.new_operation(&mut store, kind, &mut control, 0);
        if let Some(resource) = store.resources.get_mut(key) {
            resource.pending = Some(operation.id.clone());
        }
        Ok(self.accepted(store, operation, &control))
    }

    /// `POST {widget}/restart`: starts a restart.
    fn restart_widget(&self, mut control: Control, key: &str) -> Result<Answer, Reply> {
        let mut store = lock(&self.store);
        let Some(resource) = store.resources.get(key) else {
            return Err(not_found_resource(key));
        };
        let kind =
            OpKind::Restart { resource_id: resource.id.clone(), name: resource.name.clone() };
        let operation = self.new_operation(&mut store, kind, &mut control, 0);
        Ok(self.accepted(store, operation, &control))
    }

    /// Stores `operation`, then answers `202` with its polling headers (`Location` unless
    /// `x-mock-final-state` says otherwise): the answer of `DELETE` and restart.
    fn accepted(
        &self,
        mut store: MutexGuard<'_, Store>,
        operation: Operation,
        control: &Control,
    ) -> Answer {
        let op_id = operation.id.clone();
        store.insert_operation(operation, self.config.max_operations);
        drop(store);
        let headers = initial_or(control.headers, InitialHeaders::Location);
        let reply = Reply::new(StatusCode::ACCEPTED).retry_after(control.retry_after);
        (self.polling_headers(reply, headers, H_AZURE_ASYNC, &op_id), Some(op_id))
    }

    /// `POST /jobs`: starts a job with this input.
    pub(crate) fn start_job(&self, mut control: Control, input: Value) -> Result<Answer, Reply> {
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

    /// `GET {widget}`: the resource, with the provisioning state of its pending operation (a
    /// poll of that operation when its initial response had no polling header).
    fn get_widget(&self, key: &str) -> Answer {
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

    /// `GET /operations/{id}` and `GET /jobs/operations/{id}`: the status monitor (a poll).
    fn monitor(&self, id: &str) -> Answer {
        self.poll_operation(id, |_, operation, phase| {
            let reply = Reply::json(StatusCode::OK, operation.monitor_body(phase, &self.base));
            if matches!(phase, Phase::Done(_)) {
                reply
            } else {
                reply.retry_after(operation.retry_after)
            }
        })
    }

    /// `GET /operationResults/{id}`: `202` while running, then the operation's result (a poll).
    fn operation_result(&self, id: &str) -> Answer {
        self.poll_operation(id, operation_result_reply)
    }

    /// Counts a poll of operation `id`, then answers from its phase (and the store); `404` if
    /// there is no such operation.
    fn poll_operation(
        &self,
        id: &str,
        answer: impl FnOnce(&Store, &Operation, Phase) -> Reply,
    ) -> Answer {
        let mut store = lock(&self.store);
        let Some(phase) = store.observe(id, true) else {
            return (not_found_operation(id), None);
        };
        let Some(operation) = store.operations.get(id) else {
            return (not_found_operation(id), None);
        };
        (answer(&store, operation, phase), Some(id.to_owned()))
    }

    /// `GET /jobs/{id}`: the job.
    fn job(&self, id: &str) -> Answer {
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

/// The answer of `GET /operationResults/{id}` in this phase: `202` while running, then the
/// operation's result.
fn operation_result_reply(store: &Store, operation: &Operation, phase: Phase) -> Reply {
    let id = &operation.id;
    match phase {
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
            OpKind::Job { input } => Reply::json(StatusCode::OK, operation.job_body(phase, input)),
        },
    }
}

/// `none` is for PUT and PATCH only; the other routes fall back to their default.
fn initial_or(headers: Option<InitialHeaders>, default: InitialHeaders) -> InitialHeaders {
    match headers {
        Some(InitialHeaders::Neither) | None => default,
        Some(headers) => headers,
    }
}

/// `400` for a request body of the wrong shape.
fn bad_body(message: &str) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "InvalidRequestContent", message)
}

/// `404` for a resource.
fn not_found_resource(id: &str) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("the resource {id} was not found"),
    )
}

/// `404` for an operation.
fn not_found_operation(id: &str) -> Reply {
    Reply::error(StatusCode::NOT_FOUND, "OperationNotFound", format!("no operation {id}"))
}

/// `405`, listing the allowed methods.
fn not_allowed(allow: &'static str) -> Reply {
    Reply::error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("allowed: {allow}"))
        .header(ALLOW.as_str(), allow)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
