//! The conformance table (`tests/conformance/scenarios.json`), replayed through the blocking and
//! the async poller. `cargo xtask conformance` replays the same table through Python azure-core
//! (`tests/conformance/azure_oracle.py`), so every expectation here is azure-core's behaviour,
//! except where a scenario's `rust` block records a deliberate difference and its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use lro_core::test_util::{ManualClock, ScriptedTransport};
use lro_core::{
    AsyncHttpClient, AsyncLroPoller, AsyncTimer, BlockingOperation, Deserializer, HttpClient,
    InitialResponse, LroError, LroPoller, PollingMethod, RequestHead, StatusKind, StrategyPolling,
    Timer, TransportError, deserialize,
};
use lro_strategies::{ArmPolling, FinalStateVia, LroBasePolling, NoPolling};
use serde_json::{Map, Value};
use support::{ORIGINAL, name_of, url_of};

mod support;

const TABLE: &str = include_str!("conformance/scenarios.json");
/// One scenario, with the Rust-side expectations already merged: `expect`, then `expect_async`
/// (this library behaves as azure-core's async poller), then `rust.expect`.
struct Scenario {
    name: String,
    raw: Value,
    polls: Vec<Value>,
    expect: Map<String, Value>,
}

fn scenarios() -> Vec<Scenario> {
    let table: Vec<Value> = serde_json::from_str(TABLE).expect("the table is JSON");
    table
        .into_iter()
        .map(|raw| {
            let mut expect = raw["expect"].as_object().cloned().expect("expect object");
            let rust = raw.get("rust");
            for overlay in
                [raw.get("expect_async"), rust.and_then(|r| r.get("expect"))].into_iter().flatten()
            {
                for (k, v) in overlay.as_object().expect("overlay object") {
                    expect.insert(k.clone(), v.clone());
                }
            }
            let polls = rust
                .and_then(|r| r.get("polls"))
                .or_else(|| raw.get("polls_async"))
                .unwrap_or(&raw["polls"])
                .as_array()
                .cloned()
                .unwrap_or_default();
            Scenario {
                name: raw["name"].as_str().unwrap_or_default().to_owned(),
                raw,
                polls,
                expect,
            }
        })
        .collect()
}

fn response(
    status: u64,
    headers: &Value,
    body: Option<&Value>,
    raw_body: Option<&Value>,
) -> Response<Bytes> {
    let text = match (raw_body.and_then(Value::as_str), body) {
        (Some(raw), _) => raw.to_owned(),
        (None, Some(Value::Null) | None) => String::new(),
        (None, Some(body)) => body.to_string(),
    };
    let mut response = Response::new(Bytes::from(text));
    // The table uses 1000 (as azure-core's tests do) for "not an LRO status"; HTTP codes stop at
    // 999, so replay it as 299, equally outside {200, 201, 202, 204}.
    let status = if status > 999 { 299 } else { status };
    *response.status_mut() = StatusCode::from_u16(u16::try_from(status).unwrap()).unwrap();
    for (name, value) in headers.as_object().into_iter().flatten() {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        response
            .headers_mut()
            .append(name, HeaderValue::from_str(value.as_str().unwrap()).unwrap());
    }
    response
}

impl Scenario {
    /// The initial exchange, with the table's `http://host` replaced by `origin`.
    fn initial(&self, origin: &str) -> InitialResponse {
        let initial = relocate(&self.raw["initial"], origin);
        let response = response(
            initial["status"].as_u64().unwrap(),
            &initial["headers"],
            Some(&initial["body"]),
            None,
        );
        let method = self.raw["method"].as_str().unwrap();
        let head = ScriptedTransport::request_head(method, &ORIGINAL.replace(TABLE_ORIGIN, origin));
        InitialResponse::new(
            RequestHead::new(head.method().clone(), head.uri().clone(), Default::default()),
            response,
        )
    }

    fn in_memory(&self) -> Arc<ScriptedTransport> {
        let transport = Arc::new(ScriptedTransport::new());
        for poll in &self.polls {
            let url = url_of(poll["match"].as_str().unwrap());
            if poll.get("network_error").and_then(Value::as_bool) == Some(true) {
                transport.push_error(url, TransportError::other("connection refused (scripted)"));
            } else {
                let status = poll["status"].as_u64().unwrap();
                transport.push_get(
                    url,
                    response(status, &poll["headers"], poll.get("body"), poll.get("raw_body")),
                );
            }
        }
        transport
    }

    fn option(&self, key: &str) -> &Value {
        self.raw["options"].get(key).unwrap_or(&Value::Null)
    }

    fn method(&self) -> StrategyPolling<Box<dyn lro_core::Strategy>, Value> {
        if self.option("polling").as_bool() == Some(false) {
            return StrategyPolling::new(Box::new(NoPolling) as Box<dyn lro_core::Strategy>);
        }
        let mut builder = if self.option("flavour").as_str() == Some("arm") {
            ArmPolling::builder()
        } else {
            LroBasePolling::builder()
        };
        let interval = self.option("polling_interval").as_f64().unwrap_or(0.0);
        // azure-core's polling methods, replayed here, do not retry (its pipeline does).
        builder = builder
            .interval(std::time::Duration::from_secs_f64(interval))
            .retry(lro_core::RetryPolicy::none());
        if let Some(via) = self.option("final_state_via").as_str() {
            builder = builder
                .final_state_via(via.parse::<FinalStateVia>().expect("known final-state-via"));
        }
        if let Some(id) = self.option("request_id").as_str() {
            builder = builder.header(
                HeaderName::from_static("x-ms-client-request-id"),
                HeaderValue::from_str(id).unwrap(),
            );
        }
        let (strategy, options) = builder.into_parts();
        StrategyPolling::with_options(Box::new(strategy) as Box<dyn lro_core::Strategy>, options)
    }

    fn resumes(&self) -> bool {
        self.option("resume_from_continuation_token").as_bool() == Some(true)
    }
}

/// The table writes every URL on `http://host`; a replay over loopback moves them to its server.
const TABLE_ORIGIN: &str = "http://host";

/// `value` with the table's origin replaced by `origin` in every string.
fn relocate(value: &Value, origin: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(TABLE_ORIGIN, origin)),
        Value::Array(items) => Value::Array(items.iter().map(|v| relocate(v, origin)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), relocate(v, origin))).collect())
        }
        other => other.clone(),
    }
}

/// A transport a scenario is replayed through, and what it saw.
trait Replay: HttpClient + Timer + AsyncHttpClient + AsyncTimer + 'static {
    /// The origin that stands for the table's `http://host`.
    fn origin(&self) -> String;
    /// The requests after the initial one: URL and `x-ms-client-request-id`.
    fn seen(&self) -> Vec<(String, Option<String>)>;
    /// The waits, in order.
    fn waits(&self) -> Vec<std::time::Duration>;
}

impl Replay for ScriptedTransport {
    fn origin(&self) -> String {
        TABLE_ORIGIN.to_owned()
    }
    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.requests()
            .iter()
            .map(|r| {
                let id = r.headers.get("x-ms-client-request-id").and_then(|v| v.to_str().ok());
                (r.uri.to_string(), id.map(str::to_owned))
            })
            .collect()
    }
    fn waits(&self) -> Vec<std::time::Duration> {
        self.sleeps()
    }
}

/// A replay over real loopback HTTP: the scenario's polls are served by an `lro-mock`
/// scripted server; the blocking poller sends through `lro-blocking` (ureq), the async poller
/// through `lro-hyper`; waits are virtual (a manual clock), so the Retry-After scenarios take no
/// real time.
struct Loopback {
    server: lro_mock::scripted::ScriptedServer,
    blocking: lro_blocking::BlockingClient,
    hyper: lro_hyper::HyperClient,
    clock: ManualClock,
}

impl Loopback {
    fn serve(s: &Scenario) -> Arc<Loopback> {
        let steps = s
            .polls
            .iter()
            .map(|poll| {
                let step = lro_mock::scripted::Step::get(url_of(poll["match"].as_str().unwrap()));
                if poll.get("network_error").and_then(Value::as_bool) == Some(true) {
                    return step.reset();
                }
                let poll = relocate(poll, "{base}");
                let status = poll["status"].as_u64().unwrap();
                let mut step =
                    step.status(u16::try_from(if status > 999 { 299 } else { status }).unwrap());
                for (name, value) in poll["headers"].as_object().into_iter().flatten() {
                    step = step.header(name, value.as_str().unwrap());
                }
                let body = response(status, &Value::Null, poll.get("body"), poll.get("raw_body"))
                    .into_body();
                step.body(body)
            })
            .collect();
        Arc::new(Loopback {
            server: lro_mock::scripted::ScriptedServer::start_blocking(steps)
                .expect("the scripted server starts"),
            blocking: lro_blocking::BlockingClient::new().unwrap(),
            hyper: lro_hyper::HyperClient::new().unwrap(),
            clock: ManualClock::new(),
        })
    }
}

impl HttpClient for Loopback {
    fn send(&self, request: http::Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        self.blocking.send(request)
    }
}

#[async_trait::async_trait]
impl AsyncHttpClient for Loopback {
    async fn send(&self, request: http::Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        self.hyper.send(request).await
    }
}

impl Timer for Loopback {
    fn now(&self) -> lro_core::Timestamp {
        Timer::now(&self.clock)
    }
    fn sleep(&self, duration: std::time::Duration, interrupt: &lro_core::Interrupt) {
        Timer::sleep(&self.clock, duration, interrupt);
    }
}

impl AsyncTimer for Loopback {
    fn now(&self) -> lro_core::Timestamp {
        AsyncTimer::now(&self.clock)
    }
    fn sleep(&self, duration: std::time::Duration) -> lro_core::BoxFuture<'static, ()> {
        AsyncTimer::sleep(&self.clock, duration)
    }
}

impl Replay for Loopback {
    fn origin(&self) -> String {
        self.server.base_url()
    }
    fn seen(&self) -> Vec<(String, Option<String>)> {
        let base = self.server.base_url();
        self.server
            .requests()
            .iter()
            .map(|r| {
                let id = r.headers.get("x-ms-client-request-id").and_then(|v| v.to_str().ok());
                (format!("{base}{}", r.path), id.map(str::to_owned))
            })
            .collect()
    }
    fn waits(&self) -> Vec<std::time::Duration> {
        self.clock.sleeps()
    }
}

/// What one replay observed, in the table's vocabulary.
#[derive(Debug, Default)]
struct Observed {
    fields: BTreeMap<&'static str, Value>,
    /// What stood for the table's `http://host` in this replay.
    origin: String,
}

fn kind(error: &LroError) -> &'static str {
    match error {
        LroError::BadStatus(_) => "BadStatus",
        LroError::BadResponse(_) => "BadResponse",
        LroError::OperationFailed(_) => "OperationFailed",
        LroError::Decode(_) => "DecodeError",
        LroError::Transport(_) => "TransportError",
        LroError::Timeout(_) => "Timeout",
        LroError::InvalidContinuationToken(_) => "InvalidContinuationToken",
        LroError::Policy(_) => "Policy",
        _ => "Stopped",
    }
}

fn observe(
    result: Result<Value, LroError>,
    status: Option<String>,
    raised_at: &'static str,
    transport: &impl Replay,
) -> Observed {
    let mut o = Observed { origin: transport.origin(), ..Observed::default() };
    let f = &mut o.fields;
    match result {
        Ok(resource) => {
            f.insert("outcome", "succeeded".into());
            f.insert("error_kind", Value::Null);
            f.insert("resource", resource);
        }
        Err(error) => {
            let outcome = match &error {
                LroError::OperationFailed(e)
                    if e.operation_status().map(|s| s.kind()) == Some(StatusKind::Canceled) =>
                {
                    "canceled"
                }
                LroError::OperationFailed(_) => "failed",
                _ => "error",
            };
            f.insert("outcome", outcome.into());
            f.insert("error_kind", kind(&error).into());
            f.insert("error_raised_at", raised_at.into());
            f.insert("continuation_token_on_error", error.continuation_token().is_some().into());
        }
    }
    f.insert("status_string", status.map_or(Value::Null, Value::from));
    let requests = transport.seen();
    let origin = transport.origin();
    f.insert(
        "request_sequence",
        requests
            .iter()
            .map(|(url, _)| Value::from(name_of(&url.replacen(&origin, TABLE_ORIGIN, 1))))
            .collect(),
    );
    let sleeps: Vec<Value> = transport
        .waits()
        .iter()
        .map(|d| d.as_secs_f64())
        .filter(|s| *s > 0.0)
        .map(Value::from)
        .collect();
    f.insert("sleeps", sleeps.into());
    let ids: Vec<Value> =
        requests.iter().map(|(_, id)| id.clone().map_or(Value::Null, Value::from)).collect();
    f.insert("poll_request_ids", ids.into());
    o
}

fn json_or_raw() -> Deserializer<Value> {
    deserialize::with(|response: &Response<Bytes>| {
        if response.body().is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(response.body())?)
    })
}

fn run_blocking<R: Replay>(s: &Scenario, transport: Arc<R>) -> Observed {
    let client: Arc<dyn HttpClient> = transport.clone();
    let method = s.method();
    let initial = s.initial(&transport.origin());
    let built = if s.resumes() {
        PollingMethod::initialize(method, client, initial, json_or_raw()).and_then(|operation| {
            let token = BlockingOperation::continuation_token(&operation)?;
            LroPoller::from_continuation_token(
                s.method(),
                &token,
                transport.clone(),
                transport.clone(),
                json_or_raw(),
            )
        })
    } else {
        LroPoller::new(transport.clone(), transport.clone(), initial, json_or_raw(), method)
    };
    match built {
        Err(e) => observe(Err(e), None, "constructor", &*transport),
        Ok(poller) => {
            let result = poller.result(None);
            observe(result, Some(poller.status().to_string()), "result", &*transport)
        }
    }
}

async fn run_async<R: Replay>(s: &Scenario, transport: Arc<R>) -> Observed {
    let initial = s.initial(&transport.origin());
    let built = AsyncLroPoller::new(
        transport.clone(),
        transport.clone(),
        initial,
        json_or_raw(),
        s.method(),
    )
    .and_then(|poller| {
        if !s.resumes() {
            return Ok(poller);
        }
        let token = poller.continuation_token()?;
        AsyncLroPoller::from_continuation_token(
            s.method(),
            &token,
            transport.clone(),
            transport.clone(),
            json_or_raw(),
        )
    });
    match built {
        Err(e) => observe(Err(e), None, "constructor", &*transport),
        Ok(poller) => {
            let result = poller.result(None).await;
            observe(result, Some(poller.status().to_string()), "result", &*transport)
        }
    }
}

/// The differences between what a scenario expects and what a replay observed.
fn differences(s: &Scenario, observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    let expected_sequence: Vec<Value> = s.polls.iter().map(|p| p["match"].clone()).collect();
    let mut expect = s.expect.clone();
    expect.entry("request_sequence").or_insert_with(|| expected_sequence.into());
    let failed_at_constructor =
        observed.fields.get("error_raised_at") == Some(&"constructor".into());
    for (key, want) in &expect {
        let skip = match key.as_str() {
            // Messages are ours to word; the kind of error is the contract.
            "error_message" | "final_get" => true,
            // No poller exists when the constructor fails; nothing is resolved for errors.
            "status_string" => failed_at_constructor,
            "resource" => observed.fields.get("outcome") != Some(&"succeeded".into()),
            "continuation_token_on_error" => {
                observed.fields.get("outcome") == Some(&"succeeded".into())
            }
            _ => false,
        };
        if skip {
            continue;
        }
        let want = if key == "resource" {
            relocate(want, &observed.origin)
        } else if key == "sleeps" {
            Value::from(
                want.as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v.as_f64() > Some(0.0))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        } else {
            want.clone()
        };
        let got = observed.fields.get(key.as_str()).cloned().unwrap_or(Value::Null);
        if !same(&want, &got) {
            out.push(format!("{}: {key}: expected {want}, got {got}", s.name));
        }
    }
    out
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(0.0)).abs() < 1e-9
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        _ => a == b,
    }
}

#[test]
fn the_table_has_at_least_sixty_scenarios_with_unique_names() {
    let all = scenarios();
    assert!(all.len() >= 60, "{} scenarios", all.len());
    let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "scenario names must be unique");
    for s in &all {
        if let Some(rust) = s.raw.get("rust") {
            let reason = rust.get("reason").and_then(Value::as_str).unwrap_or_default();
            assert!(reason.len() > 20, "{}: a deliberate difference needs its reason", s.name);
        }
    }
}

#[test]
fn every_scenario_behaves_as_azure_core_through_the_blocking_poller() {
    let failures: Vec<String> =
        scenarios().iter().flat_map(|s| differences(s, &run_blocking(s, s.in_memory()))).collect();
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn every_scenario_behaves_as_azure_core_through_the_async_poller() {
    let mut failures = Vec::new();
    for s in scenarios() {
        let transport = s.in_memory();
        failures.extend(differences(&s, &run_async(&s, transport).await));
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_scenario_behaves_as_azure_core_through_the_blocking_poller_over_loopback_http() {
    let failures: Vec<String> = scenarios()
        .iter()
        .flat_map(|s| differences(s, &run_blocking(s, Loopback::serve(s))))
        .collect();
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_behaves_as_azure_core_through_the_async_poller_over_loopback_http() {
    let mut failures = Vec::new();
    for s in scenarios() {
        let transport = tokio::task::block_in_place(|| Loopback::serve(&s));
        failures.extend(differences(&s, &run_async(&s, transport).await));
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}
