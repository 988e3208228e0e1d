//! Continuation tokens interoperate with Python azure-core's version-1 tokens, both ways.
//!
//! `tests/tokens/cases.json` describes operations: the initial exchange, what the service answers
//! after resuming, and the expected resource. `tests/tokens/python_tokens.py make` sends each
//! initial request through the real azure-core and keeps its token; the result is committed as
//! `tests/tokens/python_tokens.json`, so these tests resume azure-core's tokens without Python
//! (`LRO_PYTHON_TOKENS=<file>` replaces the fixture: `cargo xtask conformance` passes tokens it
//! has just made). The other way, every case's Rust token is written to the file named by
//! `LRO_WRITE_RUST_TOKENS`, and `python_tokens.py resume` resumes them in azure-core.
//!
//! A case's `known_differences` records what azure-core cannot do (and why); the Python script
//! checks that azure-core still fails exactly that way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use lro_core::test_util::ScriptedTransport;
use lro_core::token::TokenState;
use lro_core::{
    AsyncLroPoller, BlockingOperation, ContinuationToken, Deserializer, HttpClient,
    InitialResponse, LroError, LroPoller, OriginPolicy, PollingMethod, RequestHead, Strategy,
    StrategyPolling, deserialize,
};
use lro_strategies::{ArmPolling, FinalStateVia, LroBasePolling, NoPolling};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{ORIGINAL, url_of};

mod support;

const CASES: &str = include_str!("tokens/cases.json");
/// azure-core's tokens for the cases, made by `python_tokens.py make` with azure-core 1.41.0
/// and azure-mgmt-core 1.6.0.
const PYTHON_TOKENS: &str = include_str!("tokens/python_tokens.json");
const PYTHON_TOKENS_ENV: &str = "LRO_PYTHON_TOKENS";
const WRITE_RUST_TOKENS_ENV: &str = "LRO_WRITE_RUST_TOKENS";

const CLIENT_REQUEST_ID: &str = "x-ms-client-request-id";
/// What the cases put in credentials; no token may hold either.
const FORBIDDEN: [&str; 2] = ["secret", "Bearer"];
const PYTHON_TO_RUST: &str = "python-to-rust";
const RUST_TO_PYTHON: &str = "rust-to-python";

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    method: String,
    flavour: String,
    final_state_via: Option<String>,
    #[serde(default)]
    request_headers: BTreeMap<String, String>,
    initial: Reply,
    polls: Vec<Reply>,
    expect_resource: Value,
    #[serde(default)]
    known_differences: Vec<KnownDifference>,
}

#[derive(Debug, Deserialize)]
struct Reply {
    #[serde(rename = "match", default)]
    target: Option<String>,
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Value,
    #[serde(default)]
    raw_body: Option<String>,
}

#[derive(Debug, Deserialize)]
struct KnownDifference {
    direction: String,
    python_error: String,
    reason: String,
}

/// One entry of a tokens file (both directions use this shape).
#[derive(Debug, Serialize, Deserialize)]
struct NamedToken {
    name: String,
    token: String,
}

impl Reply {
    fn body_bytes(&self) -> Bytes {
        match (&self.raw_body, &self.body) {
            (Some(raw), _) => Bytes::from(raw.clone()),
            (None, Value::Null) => Bytes::new(),
            (None, body) => Bytes::from(body.to_string()),
        }
    }

    fn response(&self) -> Response<Bytes> {
        let mut response = Response::new(self.body_bytes());
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap();
        *response.headers_mut() = header_map(&self.headers);
        response
    }
}

fn header_map(headers: &BTreeMap<String, String>) -> HeaderMap {
    headers
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            )
        })
        .collect()
}

impl Case {
    fn differs(&self, direction: &str) -> bool {
        self.known_differences.iter().any(|k| k.direction == direction)
    }

    fn initial(&self) -> InitialResponse {
        let head = RequestHead::new(
            Method::from_bytes(self.method.as_bytes()).unwrap(),
            ORIGINAL.parse().unwrap(),
            header_map(&self.request_headers),
        );
        InitialResponse::new(head, self.initial.response())
    }

    /// A transport that serves the case's polls, in order, and nothing else.
    fn transport(&self) -> Arc<ScriptedTransport> {
        let transport = Arc::new(ScriptedTransport::new());
        for poll in &self.polls {
            transport.push_get(url_of(poll.target.as_deref().unwrap()), poll.response());
        }
        transport
    }

    /// The case's polling method (as `conformance.rs` maps flavour and final-state-via), with
    /// an interval of 0 and the given origin policy.
    fn method(&self, origins: Option<OriginPolicy>) -> StrategyPolling<Box<dyn Strategy>, Value> {
        let mut builder = match self.flavour.as_str() {
            "none" => return StrategyPolling::new(Box::new(NoPolling) as Box<dyn Strategy>),
            "arm" => ArmPolling::builder(),
            "base" => LroBasePolling::builder(),
            other => panic!("{}: unknown flavour {other:?}", self.name),
        };
        builder = builder.interval(std::time::Duration::ZERO);
        if let Some(via) = &self.final_state_via {
            builder = builder.final_state_via(via.parse::<FinalStateVia>().unwrap());
        }
        if let Some(origins) = origins {
            builder = builder.poll_options(|o| o.origins(origins));
        }
        let (strategy, options) = builder.into_parts();
        StrategyPolling::with_options(Box::new(strategy) as Box<dyn Strategy>, options)
    }

    /// What a resumed operation must have done: the expected resource, every scripted poll
    /// used, and every poll repeating the token's `x-ms-client-request-id` (none if it has none).
    fn check(
        &self,
        token: &ContinuationToken,
        transport: &ScriptedTransport,
        result: Result<Value, LroError>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        match result {
            Ok(resource) if resource == self.expect_resource => {}
            Ok(resource) => {
                problems.push(format!("resource {resource}, expected {}", self.expect_resource))
            }
            Err(error) => problems.push(format!("error {error:?}")),
        }
        if transport.remaining() != 0 {
            problems.push(format!("{} scripted poll(s) never requested", transport.remaining()));
        }
        let state: TokenState = token.decode().unwrap();
        let id = state.request.as_ref().and_then(|r| r.headers.get(CLIENT_REQUEST_ID)).cloned();
        for request in transport.requests() {
            let sent =
                request.headers.get(CLIENT_REQUEST_ID).map(|v| v.to_str().unwrap().to_owned());
            if sent != id {
                problems.push(format!(
                    "a poll to {} carried request id {sent:?}, not {id:?}",
                    request.uri
                ));
            }
        }
        problems.into_iter().map(|p| format!("{}: {p}", self.name)).collect()
    }
}

fn cases() -> Vec<Case> {
    serde_json::from_str(CASES).expect("cases.json is a list of cases")
}

fn case_named<'a>(cases: &'a [Case], name: &str) -> &'a Case {
    cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case named {name:?}"))
}

/// The body as JSON, `null` when empty (the Python scripts' callback).
fn json_or_null() -> Deserializer<Value> {
    deserialize::with(|response: &Response<Bytes>| {
        if response.body().is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(response.body())?)
    })
}

/// azure-core's tokens: the file named by `LRO_PYTHON_TOKENS`, else the committed fixture.
fn python_tokens() -> Vec<NamedToken> {
    let (text, source) = match std::env::var_os(PYTHON_TOKENS_ENV) {
        Some(path) => {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{PYTHON_TOKENS_ENV}={}: cannot read it: {e}", path.to_string_lossy())
            });
            (text, format!("{} ({PYTHON_TOKENS_ENV})", path.to_string_lossy()))
        }
        None => {
            (PYTHON_TOKENS.to_owned(), String::from("the fixture tests/tokens/python_tokens.json"))
        }
    };
    let tokens: Vec<NamedToken> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{source} is not a JSON list of {{name, token}}: {e}"));
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| println!("resuming {} azure-core token(s) from {source}", tokens.len()));
    tokens
}

/// This library's token for the case, taken right after the initial response.
fn rust_token(case: &Case) -> ContinuationToken {
    let method = case.method(None);
    let transport = Arc::new(ScriptedTransport::new());
    let client: Arc<dyn HttpClient> = transport.clone();
    let operation = PollingMethod::initialize(method, client, case.initial(), json_or_null())
        .unwrap_or_else(|e| panic!("{}: initialize: {e:?}", case.name));
    assert!(transport.requests().is_empty(), "{}: initialize sent a request", case.name);
    BlockingOperation::continuation_token(&operation)
        .unwrap_or_else(|e| panic!("{}: continuation_token: {e:?}", case.name))
}

/// The forbidden words found anywhere in a token once decoded (its JSON, and the response
/// body, which is base64 inside the JSON).
fn leaks(token: &ContinuationToken) -> Vec<&'static str> {
    let data: Value = token.decode().unwrap();
    let state: TokenState = token.decode().unwrap();
    let body = state.initial_response().unwrap().response().body().clone();
    let text = format!("{data} {}", String::from_utf8_lossy(&body));
    FORBIDDEN.into_iter().filter(|word| text.contains(word)).collect()
}

#[test]
fn the_credential_check_looks_into_headers_and_into_the_base64_body() {
    let in_header = ContinuationToken::encode(&json!({
        "request": {"method": "GET", "url": ORIGINAL, "headers": {"authorization": "Bearer x"}},
        "response": {"status_code": 200, "headers": {}, "content": ""},
    }))
    .unwrap();
    assert_eq!(leaks(&in_header), ["Bearer"]);
    let mut response = Response::new(Bytes::from_static(br#"{"password":"secret"}"#));
    *response.status_mut() = StatusCode::OK;
    let initial = InitialResponse::new(ScriptedTransport::request_head("PUT", ORIGINAL), response);
    let in_body = ContinuationToken::encode(&TokenState::new(&initial, None)).unwrap();
    assert!(!in_body.as_str().contains("secret"), "the body is base64 in the token");
    assert_eq!(leaks(&in_body), ["secret"]);
}

fn resume_blocking(case: &Case, token: &ContinuationToken) -> Vec<String> {
    let transport = case.transport();
    let result = LroPoller::from_continuation_token(
        case.method(None),
        token,
        transport.clone(),
        transport.clone(),
        json_or_null(),
    )
    .and_then(|poller| poller.result(None));
    case.check(token, &transport, result)
}

async fn resume_async(case: &Case, token: &ContinuationToken) -> Vec<String> {
    let transport = case.transport();
    let result = match AsyncLroPoller::from_continuation_token(
        case.method(None),
        token,
        transport.clone(),
        transport.clone(),
        json_or_null(),
    ) {
        Ok(poller) => poller.result(None).await,
        Err(error) => Err(error),
    };
    case.check(token, &transport, result)
}

fn assert_none(failures: &[String]) {
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_cases_cover_the_required_operations_and_explain_their_known_differences() {
    let all = cases();
    assert!(all.len() >= 8, "{} cases", all.len());
    let mut names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "case names must be unique");
    for flavour in ["base", "arm", "none"] {
        assert!(all.iter().any(|c| c.flavour == flavour), "no {flavour} case");
    }
    assert!(all.iter().any(|c| c.initial.raw_body.is_some()), "no case with a non-JSON body");
    assert!(all.iter().any(|c| !c.initial.body.to_string().is_ascii()), "no non-ASCII body");
    for case in &all {
        assert!(
            case.request_headers.get("authorization").is_some_and(|v| v.contains("Bearer secret")),
            "{}: every case sends credentials, to check that no token keeps them",
            case.name
        );
        for known in &case.known_differences {
            assert!(
                [PYTHON_TO_RUST, RUST_TO_PYTHON].contains(&known.direction.as_str()),
                "{}: unknown direction {:?}",
                case.name,
                known.direction
            );
            assert!(!known.python_error.is_empty(), "{}: which error?", case.name);
            assert!(known.reason.len() > 40, "{}: a known difference needs its reason", case.name);
        }
    }
}

#[test]
fn there_is_an_azure_core_token_for_every_case_except_those_azure_core_cannot_make() {
    let all = cases();
    let tokens = python_tokens();
    let mut have: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
    have.sort_unstable();
    let mut want: Vec<&str> =
        all.iter().filter(|c| !c.differs(PYTHON_TO_RUST)).map(|c| c.name.as_str()).collect();
    want.sort_unstable();
    assert_eq!(
        have, want,
        "regenerate the fixture: python_tokens.py make (see docs/strategies.md)"
    );
    let no_polling = all.iter().find(|c| c.flavour == "none").unwrap();
    assert!(
        no_polling.differs(PYTHON_TO_RUST),
        "azure-core cannot make a NoPolling token for a real response (semantics §4)"
    );
}

#[test]
fn azure_core_tokens_hold_no_credentials() {
    let leaked: Vec<String> = python_tokens()
        .iter()
        .filter_map(|t| {
            let found = leaks(&ContinuationToken::from_string(t.token.clone()));
            (!found.is_empty()).then(|| format!("{}: {found:?}", t.name))
        })
        .collect();
    assert_none(&leaked);
}

#[test]
fn every_azure_core_token_resumes_in_the_blocking_poller_with_the_same_result() {
    let all = cases();
    let failures: Vec<String> = python_tokens()
        .iter()
        .flat_map(|t| {
            resume_blocking(
                case_named(&all, &t.name),
                &ContinuationToken::from_string(t.token.clone()),
            )
        })
        .collect();
    assert_none(&failures);
}

#[tokio::test]
async fn every_azure_core_token_resumes_in_the_async_poller_with_the_same_result() {
    let all = cases();
    let mut failures = Vec::new();
    for t in python_tokens() {
        let token = ContinuationToken::from_string(t.token.clone());
        failures.extend(resume_async(case_named(&all, &t.name), &token).await);
    }
    assert_none(&failures);
}

/// The response headers of a token, by lower-case name (azure-core keeps the service's
/// spelling, this library writes lower case; both read them without regard to case).
fn lowercase_headers(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()
}

/// A body for comparison: parsed JSON when it is JSON (key order and escapes may differ
/// between Python's and serde_json's writers), else its bytes.
fn comparable_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| json!({ "bytes": body }))
}

#[test]
fn azure_core_and_rust_tokens_hold_the_same_state_apart_from_rusts_progress() {
    let all = cases();
    let mut failures = Vec::new();
    for t in python_tokens() {
        let case = case_named(&all, &t.name);
        let python: TokenState = ContinuationToken::from_string(t.token.clone()).decode().unwrap();
        let rust: TokenState = rust_token(case).decode().unwrap();
        let mut differ = |what: &str, p: String, r: String| {
            if p != r {
                failures.push(format!("{}: {what}: azure-core {p}, Rust {r}", case.name));
            }
        };
        let (p_request, r_request) =
            (python.request.clone().unwrap(), rust.request.clone().unwrap());
        differ("request method", p_request.method, r_request.method);
        differ("request url", p_request.url, r_request.url);
        match case.request_headers.get(CLIENT_REQUEST_ID) {
            Some(_) => differ(
                "request headers",
                format!("{:?}", p_request.headers),
                format!("{:?}", r_request.headers),
            ),
            // azure-core's RequestIdPolicy gave the request an id; this library sends none.
            None => differ(
                "request header names",
                format!("{:?}", p_request.headers.keys().collect::<Vec<_>>()),
                format!("{:?}", [CLIENT_REQUEST_ID]),
            ),
        }
        differ(
            "status",
            python.response.status_code.to_string(),
            rust.response.status_code.to_string(),
        );
        differ(
            "response headers",
            format!("{:?}", lowercase_headers(&python.response.headers)),
            format!("{:?}", lowercase_headers(&rust.response.headers)),
        );
        let p_initial = python.initial_response().unwrap();
        let r_initial = rust.initial_response().unwrap();
        differ(
            "body",
            comparable_body(p_initial.response().body()).to_string(),
            comparable_body(r_initial.response().body()).to_string(),
        );
        differ("context", python.context.to_string(), rust.context.to_string());
        differ("progress", format!("{:?}", python.progress), String::from("None"));
        if rust.progress.is_none() {
            failures.push(format!("{}: the Rust token records no progress", case.name));
        }
    }
    assert_none(&failures);
}

#[test]
fn a_non_json_initial_body_gives_a_null_deserialized_data_in_both_tokens() {
    let all = cases();
    let case = all.iter().find(|c| c.initial.raw_body.is_some()).unwrap();
    let python = python_tokens().into_iter().find(|t| t.name == case.name).unwrap();
    // `TokenState` skips `context` when reading (it is Python's copy of the body): read the
    // raw JSON to check what each side wrote.
    let python: Value = ContinuationToken::from_string(python.token).decode().unwrap();
    let rust_json: Value = rust_token(case).decode().unwrap();
    assert_eq!(python["context"], json!({"deserialized_data": null}));
    assert_eq!(rust_json["context"], json!({"deserialized_data": null}));
    let rust: TokenState = rust_token(case).decode().unwrap();
    assert_eq!(
        rust.initial_response().unwrap().response().body(),
        case.initial.raw_body.as_deref().unwrap().as_bytes()
    );
}

/// The same token signed with a key: the same `data`, plus the envelope's `mac` member.
fn signed(token: &ContinuationToken) -> ContinuationToken {
    let key = lro_core::TokenKey::new(b"conformance signing key, 32 bytes").unwrap();
    let data: Value = token.decode().unwrap();
    let signed = ContinuationToken::encode_signed(&data, &key).unwrap();
    let (_, integrity): (Value, _) = signed.decode_verified(&key).unwrap();
    assert_eq!(integrity, lro_core::TokenIntegrity::Verified);
    signed
}

/// Makes this library's token for every case, checks it, and writes them all to the file named
/// by `LRO_WRITE_RUST_TOKENS` (for `python_tokens.py resume`) when that is set. Every other case's
/// token is signed, so azure-core is shown to resume signed tokens as well as plain ones.
#[test]
fn rust_tokens_hold_no_credentials_resume_in_rust_and_are_written_for_azure_core_on_request() {
    let all = cases();
    let mut failures = Vec::new();
    let mut written = Vec::new();
    for (index, case) in all.iter().enumerate() {
        let token = rust_token(case);
        let token = if index % 2 == 1 { signed(&token) } else { token };
        let found = leaks(&token);
        if !found.is_empty() {
            failures.push(format!("{}: the token contains {found:?}", case.name));
        }
        failures.extend(resume_blocking(case, &token));
        written.push(NamedToken { name: case.name.clone(), token: token.into_string() });
    }
    assert_none(&failures);
    match std::env::var_os(WRITE_RUST_TOKENS_ENV) {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).unwrap();
            }
            let mut text = serde_json::to_string_pretty(&written).unwrap();
            text.push('\n');
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("{WRITE_RUST_TOKENS_ENV}={}: {e}", path.display()));
            println!(
                "checked {} Rust token(s) and wrote them to {} ({WRITE_RUST_TOKENS_ENV}) for \
                 python_tokens.py resume",
                written.len(),
                path.display()
            );
        }
        None => println!(
            "checked {} Rust token(s); not written anywhere: {WRITE_RUST_TOKENS_ENV} is not set \
             (cargo xtask conformance sets it and resumes them in azure-core)",
            written.len()
        ),
    }
}

#[tokio::test]
async fn rust_tokens_resume_in_the_async_poller_with_the_same_result() {
    let mut failures = Vec::new();
    for case in &cases() {
        failures.extend(resume_async(case, &rust_token(case)).await);
    }
    assert_none(&failures);
}

// Hostile tokens. A token is caller-supplied input; these are written in azure-core's format,
// as an attacker would, with `ContinuationToken::encode` doing the envelope and base64.

fn forged(
    request_url: &str,
    operation_location: &str,
    progress: Option<Value>,
) -> ContinuationToken {
    let mut data = json!({
        "request": {"method": "PUT", "url": request_url, "headers": {"x-ms-client-request-id": "forged"}},
        "response": {
            "status_code": 202,
            "headers": {"Operation-Location": operation_location},
            "content": "",
        },
        "context": {"deserialized_data": null},
    });
    if let Some(progress) = progress {
        data["progress"] = progress;
    }
    ContinuationToken::encode(&data).unwrap()
}

fn base_method(origins: Option<OriginPolicy>) -> StrategyPolling<Box<dyn Strategy>, Value> {
    let mut builder = LroBasePolling::builder()
        .interval(std::time::Duration::ZERO)
        .retry(lro_core::RetryPolicy::none());
    if let Some(origins) = origins {
        builder = builder.poll_options(|o| o.origins(origins));
    }
    let (strategy, options) = builder.into_parts();
    StrategyPolling::with_options(Box::new(strategy) as Box<dyn Strategy>, options)
}

/// Resumes `token` over a transport with an empty script; returns the outcome and the URLs
/// requested.
fn resume_forged(
    token: &ContinuationToken,
    origins: Option<OriginPolicy>,
) -> (Result<Value, LroError>, Vec<String>) {
    let transport = Arc::new(ScriptedTransport::new());
    let result = LroPoller::from_continuation_token(
        base_method(origins),
        token,
        transport.clone(),
        transport.clone(),
        json_or_null(),
    )
    .and_then(|poller| poller.result(None));
    (result, transport.urls())
}

fn pinned() -> OriginPolicy {
    OriginPolicy::pinned("http://host").unwrap()
}

#[test]
fn a_token_pointing_polls_at_another_origin_sends_nothing_there() {
    let to_other_origin = forged(ORIGINAL, "http://other.example/op", None);
    // The default policy: only the origin of the token's own initial request.
    let (result, urls) = resume_forged(&to_other_origin, None);
    assert!(matches!(result, Err(LroError::Policy(_))), "{result:?}");
    assert!(urls.is_empty(), "requests were sent: {urls:?}");
    // A pinned origin refuses it too.
    let (result, urls) = resume_forged(&to_other_origin, Some(pinned()));
    assert!(matches!(result, Err(LroError::Policy(_))), "{result:?}");
    assert!(urls.is_empty(), "requests were sent: {urls:?}");
}

#[test]
fn a_pinned_origin_refuses_a_token_that_also_forges_its_initial_url() {
    let forged_end_to_end =
        forged("http://other.example/resource", "http://other.example/op", None);
    let (result, urls) = resume_forged(&forged_end_to_end, Some(pinned()));
    assert!(matches!(result, Err(LroError::Policy(_))), "{result:?}");
    assert!(urls.is_empty(), "requests were sent: {urls:?}");
}

/// Pins why tokens from elsewhere need `OriginPolicy::pinned`: the default policy trusts the
/// origin the token itself names as the initial request's.
#[test]
fn the_default_policy_follows_a_token_forged_end_to_end_so_foreign_tokens_need_a_pinned_origin() {
    let forged_end_to_end =
        forged("http://other.example/resource", "http://other.example/op", None);
    let (result, urls) = resume_forged(&forged_end_to_end, None);
    assert!(matches!(result, Err(LroError::Transport(_))), "{result:?}");
    assert_eq!(urls, ["http://other.example/op"]);
}

#[test]
fn a_pinned_origin_refuses_saved_progress_that_points_at_another_origin() {
    let progress = json!({
        "polls": 1,
        "strategy": {"algorithm": "operation-resource", "polling": "http://other.example/op"},
    });
    let token = forged(ORIGINAL, "http://host/op", Some(progress));
    for origins in [None, Some(pinned())] {
        let (result, urls) = resume_forged(&token, origins);
        assert!(matches!(result, Err(LroError::Policy(_))), "{result:?}");
        assert!(urls.is_empty(), "requests were sent: {urls:?}");
    }
}

#[tokio::test]
async fn a_token_with_garbage_progress_is_an_invalid_continuation_token() {
    let garbage = [
        json!("garbage"),
        json!(42),
        json!([]),
        json!({"polls": "many"}),
        json!({"polls": -1}),
        json!({"polls": 1, "strategy": 42}),
        json!({"polls": 1, "strategy": {"algorithm": "operation-resource"}}),
        json!({"polls": 1, "strategy": {"algorithm": "location", "polling": "http://host/loc"}}),
        json!({"polls": 1, "strategy": {"algorithm": "operation-resource", "polling": "not a url"}}),
        json!({"polls": 1, "strategy": {"algorithm": "operation-resource", "polling": "/relative"}}),
    ];
    for progress in garbage {
        let token = forged(ORIGINAL, "http://host/op", Some(progress.clone()));
        let transport = Arc::new(ScriptedTransport::new());
        let blocking = LroPoller::from_continuation_token(
            base_method(None),
            &token,
            transport.clone(),
            transport.clone(),
            json_or_null(),
        );
        assert!(
            matches!(blocking, Err(LroError::InvalidContinuationToken(_))),
            "blocking, progress {progress}: {:?}",
            blocking.err()
        );
        let nonblocking = AsyncLroPoller::from_continuation_token(
            base_method(None),
            &token,
            transport.clone(),
            transport.clone(),
            json_or_null(),
        );
        assert!(
            matches!(nonblocking, Err(LroError::InvalidContinuationToken(_))),
            "async, progress {progress}: {:?}",
            nonblocking.err()
        );
        assert!(transport.urls().is_empty());
    }
}
