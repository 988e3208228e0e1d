//! lro-hyper used outside a tokio runtime (driven by another executor): a clear, typed error
//! instead of tokio's "there is no reactor running" panic, and no retry of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use lro_core::test_util::block_on;
use lro_core::{
    AsyncHttpClient, AsyncLroPoller, AsyncTimer, InitialResponse, LroError, TransportErrorKind,
    deserialize,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_strategies::LroBasePolling;

#[test]
fn a_request_outside_tokio_is_an_unusable_transport_error() {
    let client = HyperClient::new().expect("building needs no runtime");
    let request = Request::get("http://127.0.0.1:9/op").body(Bytes::new()).unwrap();
    let error = block_on(client.send(request)).expect_err("no runtime");
    assert_eq!(error.kind(), TransportErrorKind::Unusable);
    let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("tokio runtime"), "{cause}");
}

#[test]
fn a_poller_outside_tokio_fails_at_once_without_retrying() {
    let head = Request::post("http://127.0.0.1:9/jobs").body(()).unwrap();
    let mut first = http::Response::new(Bytes::new());
    *first.status_mut() = http::StatusCode::ACCEPTED;
    first.headers_mut().insert("operation-location", "http://127.0.0.1:9/op".parse().unwrap());
    let poller = AsyncLroPoller::new(
        Arc::new(HyperClient::new().unwrap()),
        lro_hyper::TokioTimer,
        InitialResponse::from_exchange(&head, first),
        deserialize::none(),
        LroBasePolling::builder().build(),
    )
    .unwrap();
    let error = block_on(poller.result(None)).expect_err("no runtime");
    assert!(matches!(error, LroError::Transport(_)), "{error:?}");
    assert_eq!(error.attempts(), Some(1), "an unusable transport is not retried");
    assert!(error.chain().to_string().contains("tokio runtime"), "{}", error.chain());
}

#[test]
fn a_tokio_timer_sleep_outside_tokio_still_waits_and_ends() {
    // The timer's future falls back to a thread of its own instead of panicking.
    block_on(TokioTimer.sleep(Duration::from_millis(5)));
}

#[test]
fn a_runtime_without_io_or_time_gives_the_same_clear_error() {
    // A runtime built without `enable_all()`: hyper and tokio's timers would panic.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let client = HyperClient::new().unwrap();
    let request = Request::get("http://127.0.0.1:9/op").body(Bytes::new()).unwrap();
    let error = runtime.block_on(client.send(request)).expect_err("no IO driver");
    assert_eq!(error.kind(), TransportErrorKind::Unusable);
    runtime.block_on(TokioTimer.sleep(Duration::from_millis(5))); // falls back to a thread
}

#[test]
fn a_runtime_with_io_but_no_time_still_ends_a_stalled_request_at_its_timeout() {
    // The kernel accepts the connection; nobody ever answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/op", listener.local_addr().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    // A hyper-util client that needs no timer itself (no connect timeout, no pool timer): the
    // request timeout is ours alone, and needs no timer of the runtime either.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let plain = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Full<Bytes>>(connector);
    let limit = Duration::from_millis(200);
    let client = HyperClient::from_client_with(plain, Some(limit), 1024);
    let request = Request::get(url).body(Bytes::new()).unwrap();
    let started = std::time::Instant::now();
    let error = runtime.block_on(client.send(request)).expect_err("no answer");
    assert_eq!(error.kind(), TransportErrorKind::Timeout, "{error}");
    assert!(started.elapsed() >= limit, "ended early");
    // Nobody ever answers: only the request timeout ends this, however loaded the machine.
    assert!(started.elapsed() < Duration::from_secs(10), "ended late: {:?}", started.elapsed());
}
