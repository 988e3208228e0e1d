//! A fleet over real loopback HTTP: 2,000 operations through one `FleetStream` against the mock
//! with faults in its polls (5% 503, 2% 429, 1% resets), under a shared budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use lro_core::{
    Engine, FleetOptions, FleetStream, InitialResponse, LroError, PollOptions, RetryPolicy,
    StatusKind, Strategy, deserialize,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_mock::{FaultSpec, MockConfig, MockServer};
use lro_strategies::ArmPolling;
use serde_json::Value;

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

const OUTCOMES: [&str; 3] = ["Succeeded", "Failed", "Canceled"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_operations_under_one_budget_all_reach_their_scripted_outcome() {
    let faults: FaultSpec = "seed=9,503=0.05,429=0.02:ms:20,reset=0.01".parse().unwrap();
    let config = MockConfig::builder().faults(faults).max_operations(5000).build();
    let mock = MockServer::start(config).await.unwrap();
    let client = Arc::new(HyperClient::new().unwrap());
    let options =
        FleetOptions::builder().rate(4000.0).burst(500).max_in_flight_per_origin(64).build();
    let (mut fleet, handle) = FleetStream::<usize, Box<dyn Strategy>, Value>::new(
        client.clone(),
        TokioTimer,
        deserialize::json(),
        options,
    );
    let total = 2000;
    let mut expected = HashMap::new();
    for n in 0..total {
        let outcome = OUTCOMES[n % 7 % 3]; // mostly Succeeded, some Failed and Canceled
        let url = mock.url(&format!(
            "/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/fleet-{n}"
        ));
        let request = http::Request::put(&url)
            .header("content-type", "application/json")
            .header("x-mock-outcome", outcome)
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let initial = InitialResponse::send_async(&*client, request).await.unwrap();
        let retry = RetryPolicy::builder()
            .max_retries(8)
            .initial_backoff(Duration::from_millis(10))
            .build();
        let (strategy, _) = ArmPolling::builder().into_parts();
        let poll = PollOptions::builder().interval(Duration::from_millis(10)).retry(retry).build();
        let engine = Engine::start(Box::new(strategy) as Box<dyn Strategy>, poll, initial).unwrap();
        handle.add(n, engine, Some(Duration::from_secs(120)));
        expected.insert(n, outcome);
    }
    let mut done = 0;
    let mut wrong = Vec::new();
    let results = async {
        while let Some(ended) = next(&mut fleet).await {
            let (key, result) = (ended.key, ended.result);
            done += 1;
            let fine = match (expected[&key], &result) {
                ("Succeeded", Ok(widget)) => {
                    widget["properties"]["provisioningState"] == "Succeeded"
                }
                ("Failed", Err(LroError::OperationFailed(e))) => {
                    e.operation_status().map(|s| s.kind()) == Some(StatusKind::Failed)
                }
                ("Canceled", Err(LroError::OperationFailed(e))) => {
                    e.operation_status().map(|s| s.kind()) == Some(StatusKind::Canceled)
                }
                _ => false,
            };
            if !fine {
                wrong.push(format!(
                    "{key}: expected {}, got {:?}",
                    expected[&key],
                    result.map_err(|e| e.chain().to_string())
                ));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), results).await.expect("the fleet finished");
    assert_eq!(done, total, "every operation ended");
    assert!(wrong.is_empty(), "{} wrong: {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
}
