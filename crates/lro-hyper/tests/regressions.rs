//! Regressions of issue #8 over real loopback HTTP through the async poller: hostile
//! `Retry-After` values cannot make a hot loop, and one poller shared by two tasks sends each
//! request once and gives both the final resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use lro_core::{AsyncLroPoller, InitialResponse, PollOptions, StrategyPolling, deserialize};
use lro_hyper::HyperClient;
use lro_mock::{MockConfig, MockServer};
use lro_strategies::{ArmPolling, LroBasePolling};
use serde_json::Value;
use support::{Handler, serve, text};

/// A monitor that answers `Running` with `retry_after`, counting the polls.
async fn always_running(retry_after: &'static str) -> (support::Server, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let handler: Handler = Arc::new(move |_req: &Request<_>| {
        seen.fetch_add(1, Ordering::SeqCst);
        let mut response = text(200, r#"{"status":"Running"}"#);
        response.headers_mut().insert("retry-after", retry_after.parse().unwrap());
        response
    });
    (serve(handler, None).await, polls)
}

fn started(server: &support::Server) -> InitialResponse {
    let head = Request::post(server.url("/jobs")).body(()).unwrap();
    let mut first = http::Response::new(Bytes::new());
    *first.status_mut() = http::StatusCode::ACCEPTED;
    first.headers_mut().insert("operation-location", server.url("/op").parse().unwrap());
    InitialResponse::from_exchange(&head, first)
}

/// Polls for `window` of real time (the waits under test are the transport's real timer).
async fn polls_within(window: Duration, retry_after: &'static str, max_delay: Duration) -> usize {
    let (server, polls) = always_running(retry_after).await;
    let (strategy, _) = LroBasePolling::builder().into_parts();
    let options = PollOptions::builder().interval(Duration::ZERO).max_delay(max_delay).build();
    let poller = AsyncLroPoller::new(
        Arc::new(HyperClient::new().unwrap()),
        lro_hyper::TokioTimer,
        started(&server),
        deserialize::json::<Value>(),
        StrategyPolling::with_options(strategy, options),
    )
    .unwrap();
    let outcome = tokio::time::timeout(window, poller.result(None)).await;
    assert!(outcome.is_err(), "the surrounding timeout fired: the poller yielded");
    polls.load(Ordering::SeqCst)
}

#[tokio::test]
async fn an_infinite_retry_after_with_no_cap_waits_instead_of_polling_in_a_loop() {
    for hint in ["inf", "1e308"] {
        // A second: time for the first poll even on a loaded machine, and for many more if the
        // poller did not wait.
        let polls = polls_within(Duration::from_secs(1), hint, Duration::MAX).await;
        assert_eq!(polls, 1, "Retry-After: {hint}");
    }
}

#[tokio::test]
async fn a_tiny_retry_after_cannot_make_the_poller_spin() {
    // A second at no less than 100 ms a poll: eleven polls at most (the old code: thousands).
    let polls = polls_within(Duration::from_secs(1), "1e-9", Duration::from_secs(600)).await;
    assert!((1..=11).contains(&polls), "{polls} polls in a second");
}

#[tokio::test]
async fn two_tasks_sharing_a_poller_get_the_resource_and_send_each_poll_once() {
    let mock = MockServer::start(MockConfig::builder().build()).await.unwrap();
    let url = mock.url("/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/shared");
    let client = Arc::new(HyperClient::new().unwrap());
    let request = Request::put(&url)
        .header("content-type", "application/json")
        .header("x-mock-polls", "5")
        .body(Bytes::from_static(b"{}"))
        .unwrap();
    let initial = InitialResponse::send_async(&*client, request).await.unwrap();
    let method = ArmPolling::builder().interval(Duration::from_millis(1)).build();
    let poller = AsyncLroPoller::new(
        client,
        lro_hyper::TokioTimer,
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    let (first, second) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(poller.result(None), poller.result(None))
    })
    .await
    .unwrap();
    for result in [first, second] {
        let widget = result.unwrap();
        assert_eq!(widget["name"], "shared");
        assert_eq!(widget["properties"]["provisioningState"], "Succeeded");
    }
    let gets = mock.log().iter().filter(|entry| entry.method == "GET").count();
    // The mock's script: 5 in-progress polls, the terminal one, and the final GET of the
    // resource. A second driver would have sent some of them twice.
    assert_eq!(gets, 5 + 1 + 1, "{:?}", mock.log());
}
