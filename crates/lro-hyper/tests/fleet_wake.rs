//! Early wake-up: a fleet that listens to the mock's event stream (`GET /events`) and wakes an
//! operation when it ends finishes with fewer polls, and sooner, than one that only polls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use lro_core::{
    Engine, FleetHandle, FleetOptions, FleetStream, InitialResponse, PollOptions, Strategy,
    deserialize,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_mock::{MockConfig, MockServer};
use lro_strategies::ArmPolling;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type Handle = FleetHandle<String, Box<dyn Strategy>>;

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

/// Wakes an operation whenever the mock says it ended.
async fn listen(mock_addr: std::net::SocketAddr, handle: Handle) {
    let mut stream = tokio::net::TcpStream::connect(mock_addr).await.unwrap();
    stream.write_all(b"GET /events HTTP/1.1\r\nhost: mock\r\n\r\n").await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(data) = line.strip_prefix("data: ") {
            let event: Value = serde_json::from_str(data).unwrap();
            handle.wake(event["operation"].as_str().unwrap().to_owned());
        }
    }
}

/// Runs 20 operations that end 300 ms after they start; returns (GETs sent, elapsed).
async fn run(interval: Duration, with_events: bool) -> (usize, Duration) {
    let config = MockConfig::builder().progress_after(Duration::from_millis(300)).build();
    let mock = MockServer::start(config).await.unwrap();
    let client = Arc::new(HyperClient::new().unwrap());
    let (mut fleet, handle) = FleetStream::<String, Box<dyn Strategy>, Value>::new(
        client.clone(),
        TokioTimer,
        deserialize::json(),
        FleetOptions::default(),
    );
    if with_events {
        tokio::spawn(listen(mock.addr(), handle.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await; // the stream is open
    }
    let started = tokio::time::Instant::now();
    for n in 0..20 {
        let url = mock.url(&format!(
            "/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/wake-{n}"
        ));
        let request = http::Request::put(&url).body(Bytes::from_static(b"{}")).unwrap();
        let initial = InitialResponse::send_async(&*client, request).await.unwrap();
        let monitor = initial.response().headers()["azure-asyncoperation"].to_str().unwrap();
        let id = monitor.rsplit('/').next().unwrap().to_owned();
        let (strategy, _) = ArmPolling::builder().into_parts();
        let options = PollOptions::builder().interval(interval).build();
        let engine =
            Engine::start(Box::new(strategy) as Box<dyn Strategy>, options, initial).unwrap();
        handle.add(id, engine, None);
    }
    let mut succeeded = 0;
    while let Some(ended) = next(&mut fleet).await {
        let widget = ended.result.unwrap();
        assert_eq!(widget["properties"]["provisioningState"], "Succeeded");
        succeeded += 1;
    }
    assert_eq!(succeeded, 20);
    let gets = mock.log().iter().filter(|e| e.method == "GET" && e.path != "/events").count();
    (gets, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_woken_by_events_finishes_with_fewer_polls_than_one_that_only_polls() {
    let (polled_gets, polled_time) =
        tokio::time::timeout(Duration::from_secs(30), run(Duration::from_millis(50), false))
            .await
            .unwrap();
    let (woken_gets, woken_time) =
        tokio::time::timeout(Duration::from_secs(30), run(Duration::from_secs(20), true))
            .await
            .unwrap();
    println!(
        "polling every 50 ms: {polled_gets} GETs in {polled_time:?}; woken by events (interval 20 s): {woken_gets} GETs in {woken_time:?}"
    );
    assert!(woken_gets < polled_gets, "{woken_gets} GETs woken vs {polled_gets} polling");
    assert!(woken_time < Duration::from_secs(5), "the 20 s interval was skipped: {woken_time:?}");
}
