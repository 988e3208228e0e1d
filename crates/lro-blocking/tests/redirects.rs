//! No redirect is ever followed: a 3xx goes back to the engine as a response, so a service (or
//! anyone who can answer one poll) cannot send the caller's credentials to another host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use lro_blocking::BlockingClient;
use lro_core::{HttpClient, InitialResponse, LroError, LroPoller, deserialize};
use lro_strategies::LroBasePolling;
use support::{Reply, Server, ok};

/// A server on another port: the foreign origin. It records every request it receives.
fn foreign() -> Server {
    Server::start(Arc::new(|_: &str| ok(r#"{"status":"Succeeded","stolen":true}"#)), None)
}

fn redirecting_to(target: String) -> Server {
    Server::start(
        Arc::new(move |path: &str| match path {
            "/op" => Reply::Full(307, vec![("location".into(), target.clone())], Vec::new()),
            _ => Reply::Full(404, Vec::new(), Vec::new()),
        }),
        None,
    )
}

#[test]
fn a_redirect_comes_back_as_a_response_and_is_not_followed() {
    let other = foreign();
    let origin = redirecting_to(other.url("/x"));
    let request = Request::get(origin.url("/op"))
        .header("api-key", "secret-1")
        .header("ocp-apim-subscription-key", "secret-2")
        .body(Bytes::new())
        .unwrap();
    let response = BlockingClient::new().unwrap().send(request).unwrap();
    assert_eq!(response.status(), 307);
    assert!(other.seen().is_empty(), "the foreign origin was contacted: {:?}", other.seen());
}

#[test]
fn an_agent_from_the_user_that_follows_redirects_still_does_not() {
    let other = foreign();
    let origin = redirecting_to(other.url("/x"));
    let agent = ureq::Agent::new_with_defaults(); // follows up to 10 redirects on its own
    let client = BlockingClient::from_agent(agent, 1024 * 1024);
    let request =
        Request::get(origin.url("/op")).header("api-key", "secret").body(Bytes::new()).unwrap();
    assert_eq!(client.send(request).unwrap().status(), 307);
    assert!(other.seen().is_empty(), "the foreign origin was contacted: {:?}", other.seen());
}

#[test]
fn a_poll_answered_with_a_cross_origin_redirect_never_reaches_the_other_host() {
    let other = foreign();
    let origin = redirecting_to(other.url("/x"));
    let head = Request::post(origin.url("/jobs")).body(()).unwrap();
    let mut first = http::Response::new(Bytes::new());
    *first.status_mut() = http::StatusCode::ACCEPTED;
    first.headers_mut().insert("operation-location", origin.url("/op").parse().unwrap());
    let method = LroBasePolling::builder()
        .interval(Duration::ZERO)
        .header("api-key".parse().unwrap(), "secret".parse().unwrap())
        .build();
    let poller = LroPoller::new(
        Arc::new(BlockingClient::new().unwrap()),
        lro_core::SystemTimer,
        InitialResponse::from_exchange(&head, first),
        deserialize::json::<serde_json::Value>(),
        method,
    )
    .unwrap();
    let error = poller.result(None).unwrap_err();
    assert!(matches!(error, LroError::BadStatus(_)), "{error}");
    assert_eq!(error.response().map(|r| r.status_code().as_u16()), Some(307));
    assert!(other.seen().is_empty(), "the foreign origin was contacted: {:?}", other.seen());
    let polled = origin.seen();
    assert!(polled.iter().any(|s| s.path == "/op"), "{polled:?}");
}
