//! The fleet's async driver: status-change observer and live counters, on virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use futures_core::Stream as _;
use lro_core::test_util::{
    OperationLocationStrategy, ScriptedTransport, WithHeader, json_response,
};
use lro_core::{
    Engine, FleetOptions, FleetResult, FleetStream, InitialResponse, PollOptions, deserialize,
};
use serde_json::Value;

fn status(word: &str) -> http::Response<bytes::Bytes> {
    json_response(200, &format!(r#"{{"status":"{word}"}}"#))
}

#[tokio::test]
async fn the_observer_sees_each_status_change_and_the_handle_counts_requests() {
    let transport = Arc::new(ScriptedTransport::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let (fleet, handle) = FleetStream::<u32, OperationLocationStrategy, Value>::new(
        transport.clone(),
        transport.clone(),
        deserialize::json(),
        FleetOptions::default(),
    );
    let mut fleet = fleet.on_status_change(move |key, engine: &Engine<_>| {
        let token = engine.continuation_token().map(|t| !t.as_str().is_empty());
        record.lock().unwrap().push((*key, engine.status().as_str().to_owned(), token.ok()));
    });
    let monitor = "http://svc/op/1";
    transport.push_get(monitor, status("Running"));
    transport.push_get(monitor, status("Running"));
    transport.push_get(monitor, status("Finalizing"));
    transport.push_get(monitor, json_response(200, r#"{"status":"Succeeded","n":1}"#));
    let initial = InitialResponse::new(
        ScriptedTransport::request_head("POST", "http://svc/jobs"),
        json_response(202, "").with_header("operation-location", monitor),
    );
    let engine =
        Engine::start(OperationLocationStrategy::default(), PollOptions::default(), initial)
            .unwrap();
    handle.add(1, engine, None);
    let ended: Option<FleetResult<u32, Value>> =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut fleet).poll_next(cx)).await;
    let ended = ended.unwrap();
    assert_eq!(ended.result.unwrap()["n"], 1);
    let seen = seen.lock().unwrap().clone();
    let expected = [(1, "Running", Some(true)), (1, "Finalizing", Some(true))];
    let seen: Vec<_> = seen.iter().map(|(k, s, t)| (*k, s.as_str(), *t)).collect();
    assert_eq!(seen, expected, "one call per change, none for the repeat nor for the end");
    let stats = handle.stats();
    assert_eq!((stats.requests_sent, stats.operations, stats.throttled), (4, 0, 0));
}
