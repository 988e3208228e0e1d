//! The initial request is the caller's: retried only when asked, and then by default only when
//! sending it twice is harmless.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lro_core::test_util::{ScriptedTransport, WithHeader, json_response};
use lro_core::{InitialResponse, LroError, RetryPolicy, TransportError};

const URL: &str = "http://svc/widgets/1";

fn request(method: &str) -> http::Request<Bytes> {
    http::Request::builder().method(method).uri(URL).body(Bytes::from_static(b"{}")).unwrap()
}

#[test]
fn plain_send_never_retries() {
    let transport = ScriptedTransport::new();
    transport.push("PUT", URL, json_response(503, ""));
    let initial = InitialResponse::send(&transport, request("PUT")).unwrap();
    assert_eq!(initial.response().status(), 503);
    assert_eq!(transport.requests().len(), 1);
}

#[test]
fn an_idempotent_request_is_retried_with_the_same_body_after_retry_after() {
    let transport = ScriptedTransport::new();
    transport.push("PUT", URL, json_response(429, "").with_header("retry-after", "3"));
    transport.push_failure("PUT", URL, TransportError::other("connection reset"));
    transport.push("PUT", URL, json_response(201, r#"{"status":"Running"}"#));
    let policy = RetryPolicy::builder().seed(5).build();
    let initial =
        InitialResponse::send_with_retry(&transport, &transport, request("PUT"), &policy).unwrap();
    assert_eq!(initial.response().status(), 201);
    let seen = transport.requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|r| r.body == Bytes::from_static(b"{}")), "{seen:?}");
    assert_eq!(transport.sleeps()[0], Duration::from_secs(3), "Retry-After of the 429");
}

#[test]
fn a_post_is_not_retried_unless_it_is_repeatable_or_the_policy_says_so() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_failure("POST", URL, TransportError::other("reset"));
    let error = InitialResponse::send_with_retry(
        &*transport,
        &*transport,
        request("POST"),
        &Default::default(),
    )
    .expect_err("not retried");
    assert!(matches!(error, LroError::Transport(_)));
    assert_eq!(error.attempts(), Some(1));

    let transport = ScriptedTransport::new();
    transport.push_failure("POST", URL, TransportError::other("reset"));
    transport.push("POST", URL, json_response(202, ""));
    let mut repeatable = request("POST");
    repeatable.headers_mut().insert("repeatability-request-id", "r-1".parse().unwrap());
    let initial =
        InitialResponse::send_with_retry(&transport, &transport, repeatable, &Default::default())
            .unwrap();
    assert_eq!(initial.response().status(), 202);

    let transport = ScriptedTransport::new();
    transport.push_failure("POST", URL, TransportError::other("reset"));
    transport.push("POST", URL, json_response(202, ""));
    let any = RetryPolicy::builder().any_initial_method(true).build();
    let initial = InitialResponse::send_with_retry(&transport, &transport, request("POST"), &any);
    assert_eq!(initial.unwrap().response().status(), 202);
}

#[tokio::test]
async fn the_async_sender_retries_and_reports_the_attempts_when_the_budget_is_spent() {
    let transport = ScriptedTransport::new();
    for _ in 0..3 {
        transport.push_failure("DELETE", URL, TransportError::other("reset"));
    }
    let policy = RetryPolicy::builder().max_retries(2).build();
    let error =
        InitialResponse::send_async_with_retry(&transport, &transport, request("DELETE"), &policy)
            .await
            .expect_err("budget spent");
    assert_eq!(error.attempts(), Some(3));
    assert!(error.chain().to_string().contains("after 3 attempts"), "{error}");
}
