//! `Debug` output of the engine's types: where an operation points and stands, never a URL's
//! query (a SAS signature), its user information or a header value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use lro_core::test_util::{WithHeader, json_response};
use lro_core::token::TokenState;
use lro_core::{Action, Engine, InitialResponse, OriginPolicy, PollOptions, Timestamp};
use lro_strategies::LroBasePolling;

const SECRET: &str = "s3cretSig";

fn assert_hidden(what: &str, shown: &str) {
    assert!(!shown.contains(SECRET), "{what} shows a secret: {shown}");
    assert!(!shown.contains("sig="), "{what} shows a query: {shown}");
}

/// A PUT whose URL, monitor link and resource link each carry a signature, and whose request
/// has a custom (not recognised as a credential) header.
fn initial() -> InitialResponse {
    let request = Request::put(format!("https://svc.example/widgets/w1?sig={SECRET}"))
        .header("x-custom", SECRET)
        .body(Bytes::new())
        .unwrap();
    let response = json_response(201, r#"{"status":"Running"}"#)
        .with_header(
            "operation-location",
            &format!("https://svc.example/operations/op1?sig={SECRET}"),
        )
        .with_header("location", &format!("https://svc.example/results/w1?sig={SECRET}"));
    InitialResponse::from_exchange(&request, response)
}

fn engine() -> Engine<LroBasePolling> {
    let options = PollOptions::builder()
        .interval(Duration::from_secs(10))
        .header(HeaderName::from_static("x-tenant"), HeaderValue::from_static(SECRET))
        .origins(OriginPolicy::same_origin())
        .build();
    Engine::start(LroBasePolling::builder().into_parts().0, options, initial()).unwrap()
}

fn now() -> Timestamp {
    lro_core::Timer::now(&lro_core::test_util::ManualClock::new())
}

#[test]
fn an_initial_response_shows_its_urls_without_their_queries_and_its_headers_by_name() {
    let shown = format!("{:?}", initial());
    assert_hidden("InitialResponse", &shown);
    assert!(shown.contains("https://svc.example/widgets/w1?…"), "{shown}");
    assert!(shown.contains("\"operation-location\""), "{shown}");
    assert!(shown.contains("\"x-custom\""), "{shown}");
}

#[test]
fn an_engine_shows_where_it_stands_and_no_link_or_header_value() {
    let mut engine = engine();
    assert_hidden("a new engine", &format!("{engine:?}"));
    let Action::SendRequest(_) = engine.poll(now()) else { panic!("expected a poll") };
    engine.handle_response(now(), json_response(200, r#"{"status":"Succeeded"}"#));
    let shown = format!("{engine:?}");
    assert_hidden("an engine at its final request", &shown);
    assert!(shown.contains("final request") && shown.contains("polls: 1"), "{shown}");
}

#[test]
fn a_poll_action_shows_its_url_without_the_query_and_its_headers_by_name() {
    let mut engine = engine();
    let action = engine.poll(now());
    let shown = format!("{action:?}");
    assert_hidden("Action::SendRequest", &shown);
    assert!(shown.contains("https://svc.example/operations/op1?…"), "{shown}");
    assert!(shown.contains("\"x-tenant\""), "{shown}");
    assert_eq!(format!("{:?}", Action::Wait(Duration::from_secs(2))), "Wait(2s)");
}

#[test]
fn a_token_state_shows_urls_without_queries_and_its_content_and_progress_by_size() {
    let token = engine().continuation_token().unwrap();
    let state: TokenState = token.decode().unwrap();
    assert!(state.progress.is_some(), "the progress holds the links: the case to check");
    let shown = format!("{state:?}");
    assert_hidden("TokenState", &shown);
    assert!(shown.contains("https://svc.example/widgets/w1?…"), "{shown}");
    assert!(shown.contains("content_len") && shown.contains("progress_len"), "{shown}");
}
