//! Behaviour of the strategies beyond the azure-core table: relative URLs, URL hooks, tokens
//! that remember a moved Location, backoff on top of an algorithm, NoPolling tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use lro_core::test_util::{ScriptedTransport, WithHeader, json_response};
use lro_core::{
    BlockingOperation, InitialResponse, LroError, LroPoller, PollingMethod, deserialize,
};
use lro_strategies::{Algorithm, ExponentialBackoff, LroBasePolling, NoPolling};
use serde_json::Value;

fn initial(method: &str, status: u16, body: &str, headers: &[(&str, &str)]) -> InitialResponse {
    let mut response = json_response(status, body);
    for (name, value) in headers {
        response = response.with_header(name, value);
    }
    InitialResponse::new(
        ScriptedTransport::request_head(method, "https://svc.example/items/1?api-version=1"),
        response,
    )
}

fn status(word: &str) -> http::Response<bytes::Bytes> {
    json_response(200, &format!(r#"{{"status":"{word}"}}"#))
}

#[test]
fn relative_links_resolve_against_the_request_they_came_from() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get("https://svc.example/operations/7", status("Succeeded"));
    transport
        .push_get("https://svc.example/items/1?api-version=1", json_response(200, r#"{"id":1}"#));
    let method = LroBasePolling::builder().interval(Duration::ZERO).build();
    let initial = initial("PUT", 201, "", &[("operation-location", "/operations/7")]);
    let poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    assert_eq!(poller.result(None).unwrap()["id"], 1);
}

#[test]
fn relative_resource_location_resolves_against_the_monitor() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(
        "https://svc.example/ops/7",
        json_response(200, r#"{"status":"Succeeded","resourceLocation":"../results/7"}"#),
    );
    transport.push_get("https://svc.example/results/7", json_response(200, r#"{"done":true}"#));
    let method = LroBasePolling::builder().build();
    let initial = initial("POST", 202, "", &[("operation-location", "https://svc.example/ops/7")]);
    let poller =
        LroPoller::new(transport.clone(), transport, initial, deserialize::json::<Value>(), method)
            .unwrap();
    assert_eq!(poller.result(None).unwrap()["done"], true);
}

#[test]
fn the_api_version_hook_applies_to_polls_and_the_final_get() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get("https://svc.example/ops/7?api-version=2024-01-01", status("Succeeded"));
    transport
        .push_get("https://svc.example/items/1?api-version=2024-01-01", json_response(200, "{}"));
    let method = LroBasePolling::builder().api_version("2024-01-01").build();
    let initial = initial("PATCH", 202, "", &[("operation-location", "https://svc.example/ops/7")]);
    let poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    poller.result(None).unwrap();
    assert_eq!(transport.remaining(), 0);
}

#[test]
fn a_link_to_another_origin_is_refused_before_any_request() {
    let transport = Arc::new(ScriptedTransport::new());
    let method = LroBasePolling::builder().build();
    let initial =
        initial("POST", 202, "", &[("operation-location", "https://attacker.example/op")]);
    let poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    let error = poller.result(None).unwrap_err();
    assert!(matches!(error, LroError::Policy(_)), "{error:?}");
    assert!(transport.requests().is_empty(), "no credentialed request left for the other host");
}

#[test]
fn a_token_remembers_where_the_location_moved() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(
        "https://svc.example/status/1",
        json_response(202, "").with_header("location", "https://svc.example/status/2"),
    );
    transport.push_error("https://svc.example/status/2", lro_core::TransportError::other("reset"));
    let method = LroBasePolling::builder().interval(Duration::ZERO).build();
    let initial = initial("POST", 202, "", &[("location", "https://svc.example/status/1")]);
    let token =
        LroPoller::new(transport.clone(), transport, initial, deserialize::json::<Value>(), method)
            .unwrap()
            .result(None)
            .unwrap_err()
            .continuation_token()
            .cloned()
            .unwrap();

    let later = Arc::new(ScriptedTransport::new());
    later.push_get("https://svc.example/status/2", json_response(200, r#"{"ok":true}"#));
    let resumed = LroPoller::from_continuation_token(
        LroBasePolling::builder().build(),
        &token,
        later.clone(),
        later.clone(),
        deserialize::json::<Value>(),
    )
    .unwrap();
    assert_eq!(resumed.result(None).unwrap()["ok"], true);
    assert_eq!(later.urls(), ["https://svc.example/status/2"]);
}

#[test]
fn exponential_backoff_on_location_is_the_seed_custom_method_built_in() {
    let transport = Arc::new(ScriptedTransport::new());
    for _ in 0..4 {
        transport.push_get("https://svc.example/status/1", json_response(202, ""));
    }
    transport.push_get("https://svc.example/status/1", json_response(200, r#"{"name":"w1"}"#));
    let backoff = ExponentialBackoff::builder()
        .initial_delay(Duration::from_secs(1))
        .max_delay(Duration::from_secs(5))
        .build();
    let method = LroBasePolling::builder().algorithms([Algorithm::Location]).delay(backoff).build();
    let initial = initial("POST", 202, "", &[("location", "https://svc.example/status/1")]);
    let poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    assert_eq!(poller.result(None).unwrap()["name"], "w1");
    let waits: Vec<u64> = transport.sleeps().iter().map(Duration::as_secs).collect();
    assert_eq!(waits, [1, 2, 4, 5], "the same waits as examples/custom_backoff.rs in lro-core");
}

#[test]
fn max_polls_on_the_builder_gives_up_with_a_token() {
    let transport = Arc::new(ScriptedTransport::new());
    for _ in 0..3 {
        transport.push_get("https://svc.example/ops/7", status("Running"));
    }
    let method = LroBasePolling::builder().max_polls(3).build();
    let initial = initial("POST", 202, "", &[("operation-location", "https://svc.example/ops/7")]);
    let error =
        LroPoller::new(transport.clone(), transport, initial, deserialize::json::<Value>(), method)
            .unwrap()
            .result(None);
    let error = error.unwrap_err();
    assert!(
        matches!(error, LroError::Timeout(_)) && error.continuation_token().is_some(),
        "{error:?}"
    );
}

#[test]
fn no_polling_returns_the_initial_body_and_its_token_round_trips() {
    let transport = Arc::new(ScriptedTransport::new());
    let initial = initial("POST", 200, r#"{"id":9}"#, &[]);
    let poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        initial,
        deserialize::json::<Value>(),
        NoPolling::method(),
    )
    .unwrap();
    assert!(poller.done());
    assert_eq!(poller.status().as_str(), "succeeded");
    assert_eq!(poller.result(None).unwrap()["id"], 9);
    let token = poller.continuation_token().unwrap();

    let again = PollingMethod::from_continuation_token(
        NoPolling::method::<Value>(),
        transport.clone(),
        &token,
        deserialize::json(),
    )
    .unwrap();
    assert_eq!(BlockingOperation::resource(&again).unwrap()["id"], 9);
    assert!(transport.requests().is_empty());
}

#[test]
fn a_link_that_is_not_ascii_text_is_reported_as_such_not_as_empty() {
    let mut response = json_response(202, "");
    response.headers_mut().insert(
        "operation-location",
        http::HeaderValue::from_bytes(b"https://svc.example/op/\xff").unwrap(),
    );
    let initial = InitialResponse::new(
        ScriptedTransport::request_head("POST", "https://svc.example/jobs"),
        response,
    );
    let method = LroBasePolling::builder().build::<Value>();
    let transport = Arc::new(ScriptedTransport::new());
    let error = LroPoller::new(transport.clone(), transport, initial, deserialize::json(), method)
        .and_then(|poller| poller.result(None))
        .unwrap_err();
    assert!(matches!(error, LroError::BadResponse(_)), "{error:?}");
    assert!(error.chain().to_string().contains("not ASCII text"), "{error}");
    assert!(!error.chain().to_string().contains("empty"), "{error}");
}

#[test]
fn a_moved_location_that_cannot_be_followed_is_an_unusable_response() {
    for moved in [&b"https://svc.example/op/\xff"[..], b"http://[::1"] {
        let transport = Arc::new(ScriptedTransport::new());
        let mut answer = json_response(202, "");
        answer.headers_mut().insert("location", http::HeaderValue::from_bytes(moved).unwrap());
        transport.push_get("https://svc.example/op/1", answer);
        let initial = initial("DELETE", 202, "", &[("location", "https://svc.example/op/1")]);
        let method = LroBasePolling::builder().interval(Duration::ZERO).build::<Value>();
        let error =
            LroPoller::new(transport.clone(), transport, initial, deserialize::json(), method)
                .and_then(|poller| poller.result(None))
                .unwrap_err();
        assert!(matches!(error, LroError::BadResponse(_)), "{error:?}");
    }
}

#[test]
fn percent_complete_from_the_status_monitor_reaches_every_poll_event() {
    let transport = Arc::new(ScriptedTransport::new());
    let monitor = "https://svc.example/operations/7";
    for body in [
        r#"{"status":"Running","percentComplete":12.7}"#,
        r#"{"status":"Running"}"#,
        r#"{"status":"Running","percentComplete":250}"#,
        r#"{"status":"Succeeded","percentComplete":100.0}"#,
    ] {
        transport.push_get(monitor, json_response(200, body));
    }
    transport.push_get("https://svc.example/items/1?api-version=1", json_response(200, "{}"));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let method = LroBasePolling::builder()
        .interval(Duration::ZERO)
        .build()
        .observe(move |event| record.lock().unwrap().push(event.percent_complete));
    let initial =
        initial("PUT", 201, r#"{"percentComplete":"5"}"#, &[("operation-location", monitor)]);
    let poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    poller.result(Some(Duration::from_secs(10))).unwrap();
    // Not a number at first: unknown. Then 12 (whole percent), kept while the service is silent,
    // clamped to 100, and 100 at the end.
    assert_eq!(*seen.lock().unwrap(), [None, Some(12), Some(12), Some(100), Some(100), Some(100)]);
    assert_eq!(poller.polling_method().percent_complete(), Some(100));
}
