//! No redirect is ever followed, whatever the builder said: a 3xx goes back to the engine as a
//! response, so a service (or anyone who can answer one poll) cannot send the caller's
//! credentials to another host. The foreign origin is a second loopback server that records
//! every request it receives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use lro_core::{AsyncHttpClient, AsyncLroPoller, InitialResponse, LroError, deserialize};
use lro_hyper::TokioTimer;
use lro_mock::scripted::{ScriptedServer, Step};
use lro_reqwest::ReqwestClient;
use lro_strategies::LroBasePolling;

/// The other origin: it would answer a redirected request, and records any it gets.
async fn foreign() -> ScriptedServer {
    ScriptedServer::start(vec![
        Step::get("/x").json(r#"{"status":"Succeeded","stolen":true}"#),
        Step::get("/x").json(r#"{"status":"Succeeded","stolen":true}"#),
    ])
    .await
    .unwrap()
}

/// The origin: answers `method /op` with `status` and a Location on the foreign server.
async fn redirecting(method: &str, status: u16, target: &str) -> ScriptedServer {
    ScriptedServer::start(vec![Step::new(method, "/op").status(status).header("location", target)])
        .await
        .unwrap()
}

async fn bounded<F: std::future::IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("finished within 20 s")
}

#[tokio::test]
async fn a_307_to_another_origin_comes_back_as_a_response_and_is_not_followed() {
    let other = foreign().await;
    let origin = redirecting("GET", 307, &other.url("/x")).await;
    let request = Request::get(origin.url("/op"))
        .header("api-key", "secret-1")
        .header("ocp-apim-subscription-key", "secret-2")
        .body(Bytes::new())
        .unwrap();
    let response = bounded(ReqwestClient::new().unwrap().send(request)).await.unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], other.url("/x").as_str());
    assert!(other.requests().is_empty(), "the foreign origin was contacted");
    assert!(origin.is_complete());
}

#[tokio::test]
async fn a_302_after_a_post_is_not_followed_either() {
    // reqwest would follow it with a GET (dropping the body but keeping the api-key).
    let other = foreign().await;
    let origin = redirecting("POST", 302, &other.url("/x")).await;
    let request = Request::post(origin.url("/op"))
        .header("api-key", "secret")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    let response = bounded(ReqwestClient::new().unwrap().send(request)).await.unwrap();
    assert_eq!(response.status(), 302);
    assert!(other.requests().is_empty(), "the foreign origin was contacted");
}

#[tokio::test]
async fn a_builder_that_asks_for_redirects_still_follows_none() {
    let other = foreign().await;
    let origin = redirecting("GET", 307, &other.url("/x")).await;
    let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::limited(10));
    let client = ReqwestClient::from_builder(builder).unwrap();
    let request = Request::get(origin.url("/op")).body(Bytes::new()).unwrap();
    let response = bounded(client.send(request)).await.unwrap();
    assert_eq!(response.status(), 307);
    assert!(other.requests().is_empty(), "the foreign origin was contacted");
}

#[tokio::test]
async fn a_poll_answered_with_a_cross_origin_redirect_never_reaches_the_other_host() {
    let other = foreign().await;
    let origin = redirecting("GET", 307, &other.url("/x")).await;
    let head = Request::post(origin.url("/jobs")).body(()).unwrap();
    let mut first = http::Response::new(Bytes::new());
    *first.status_mut() = http::StatusCode::ACCEPTED;
    first.headers_mut().insert("operation-location", origin.url("/op").parse().unwrap());
    let method = LroBasePolling::builder()
        .interval(Duration::ZERO)
        .header("api-key".parse().unwrap(), "secret".parse().unwrap())
        .build();
    let poller = AsyncLroPoller::new(
        Arc::new(ReqwestClient::new().unwrap()),
        TokioTimer,
        InitialResponse::from_exchange(&head, first),
        deserialize::json::<serde_json::Value>(),
        method,
    )
    .unwrap();
    let error = bounded(poller).await.unwrap_err();
    assert!(matches!(error, LroError::BadStatus(_)), "{error}");
    assert_eq!(error.response().map(|r| r.status_code().as_u16()), Some(307));
    assert!(other.requests().is_empty(), "the foreign origin was contacted");
    // The poll did reach the origin, with its credential.
    let polls = origin.requests();
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].headers["api-key"], "secret");
}
