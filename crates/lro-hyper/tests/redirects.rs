//! No redirect is ever followed: a 3xx goes back to the engine as a response, so a service (or
//! anyone who can answer one poll) cannot send the caller's credentials to another host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use lro_core::{AsyncHttpClient, AsyncLroPoller, InitialResponse, LroError, deserialize};
use lro_hyper::HyperClient;
use lro_strategies::LroBasePolling;
use support::{Handler, Server, serve, text};

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// A server on another port: the foreign origin. It records the headers of every request.
async fn foreign() -> (Server, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let handler: Handler = Arc::new(move |req: &Request<_>| {
        log.lock().unwrap().push(req.headers().clone());
        text(200, r#"{"status":"Succeeded","stolen":true}"#)
    });
    (serve(handler, None).await, seen)
}

async fn redirecting_to(target: String) -> Server {
    let handler: Handler = Arc::new(move |req: &Request<_>| {
        let mut response = text(if req.uri().path() == "/op" { 307 } else { 404 }, "");
        response.headers_mut().insert("location", target.parse().unwrap());
        response
    });
    serve(handler, None).await
}

#[tokio::test]
async fn a_redirect_comes_back_as_a_response_and_is_not_followed() {
    let (other, seen) = foreign().await;
    let origin = redirecting_to(other.url("/x")).await;
    let request = Request::get(origin.url("/op"))
        .header("api-key", "secret-1")
        .header("ocp-apim-subscription-key", "secret-2")
        .body(Bytes::new())
        .unwrap();
    let response = HyperClient::new().unwrap().send(request).await.unwrap();
    assert_eq!(response.status(), 307);
    assert!(seen.lock().unwrap().is_empty(), "the foreign origin was contacted");
}

#[tokio::test]
async fn a_poll_answered_with_a_cross_origin_redirect_never_reaches_the_other_host() {
    let (other, seen) = foreign().await;
    let origin = redirecting_to(other.url("/x")).await;
    let head = Request::post(origin.url("/jobs")).body(()).unwrap();
    let mut first = http::Response::new(Bytes::new());
    *first.status_mut() = http::StatusCode::ACCEPTED;
    first.headers_mut().insert("operation-location", origin.url("/op").parse().unwrap());
    let method = LroBasePolling::builder()
        .interval(Duration::ZERO)
        .header("api-key".parse().unwrap(), "secret".parse().unwrap())
        .build();
    let poller = AsyncLroPoller::new(
        Arc::new(HyperClient::new().unwrap()),
        lro_hyper::TokioTimer,
        InitialResponse::from_exchange(&head, first),
        deserialize::json::<serde_json::Value>(),
        method,
    )
    .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(20), poller).await.unwrap().unwrap_err();
    assert!(matches!(error, LroError::BadStatus(_)), "{error}");
    assert_eq!(error.response().map(|r| r.status_code().as_u16()), Some(307));
    assert!(seen.lock().unwrap().is_empty(), "the foreign origin was contacted");
}
