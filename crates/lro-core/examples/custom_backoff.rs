//! The seed's custom polling method, written from scratch: follow the `Location` header until it
//! stops answering 202, waiting twice as long after every poll. Run with
//! `cargo run -p lro-core --example custom_backoff --features test-util`.
//!
//! It is written once, as a sans-IO [`Strategy`] (where to poll, what a response says) and a
//! [`DelayPolicy`] (how long to wait), and works with both pollers. Written this way it keeps
//! every guarantee of the engine: same-origin polls, capped waits, retries of transient faults,
//! continuation tokens.
#![allow(missing_debug_implementations, unreachable_pub)] // lints of this workspace, not needed in yours

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, Uri};
use lro_core::{
    DelayContext, DelayPolicy, InitialResponse, LroError, PollOptions, Strategy, StrategyPolling,
};

/// Where to poll: the latest `Location`; the status: 202 means "still running".
#[derive(Debug, Default)]
pub struct FollowLocation {
    url: Option<Uri>,
}

fn location(response: &Response<Bytes>) -> Option<Uri> {
    response.headers().get("location")?.to_str().ok()?.parse().ok()
}

impl Strategy for FollowLocation {
    fn start(&mut self, initial: &InitialResponse) -> Result<Arc<str>, LroError> {
        self.url = location(initial.response());
        if self.url.is_some() {
            Ok("InProgress".into())
        } else {
            self.read_poll(initial.response())
        }
    }

    fn poll_uri(&self) -> Option<Uri> {
        self.url.clone()
    }

    fn read_poll(&mut self, response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
        self.url = location(response).or(self.url.take());
        match response.status() {
            StatusCode::ACCEPTED => Ok("InProgress".into()),
            code if code.is_success() => Ok("Succeeded".into()),
            _ => Err(LroError::bad_status(response, &Method::GET)),
        }
    }
}

/// Waits `first`, then twice as long after every poll, at most `max`.
#[derive(Debug)]
pub struct Doubling {
    first: Duration,
    max: Duration,
}

impl DelayPolicy for Doubling {
    fn next_delay(&mut self, ctx: &DelayContext) -> Duration {
        let doublings = ctx.polls.saturating_sub(1).min(31);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// The custom method, for either poller.
pub fn exponential_location_polling<T>(
    first: Duration,
    max: Duration,
) -> StrategyPolling<FollowLocation, T> {
    let options = PollOptions::builder().delay(Doubling { first, max }).build();
    StrategyPolling::with_options(FollowLocation::default(), options)
}

/// Runs the method against a scripted service through both pollers; returns, for each, the
/// waits (virtual time) and the resource.
#[allow(clippy::unwrap_used)]
pub fn demo() -> Vec<(Vec<Duration>, serde_json::Value)> {
    use lro_core::test_util::{ScriptedTransport, WithHeader, json_response};
    use lro_core::{AsyncLroPoller, LroPoller, deserialize};

    let script = || {
        let transport = Arc::new(ScriptedTransport::new());
        for _ in 0..4 {
            transport.push_get("http://svc/status/1", json_response(202, ""));
        }
        transport.push_get("http://svc/status/1", json_response(200, r#"{"name":"w1"}"#));
        let initial = InitialResponse::new(
            ScriptedTransport::request_head("POST", "http://svc/widgets"),
            json_response(202, "").with_header("location", "http://svc/status/1"),
        );
        (transport, initial)
    };
    let (first, max) = (Duration::from_secs(1), Duration::from_secs(5));

    let (transport, initial) = script();
    let method = exponential_location_polling(first, max);
    let poller =
        LroPoller::new(transport.clone(), transport.clone(), initial, deserialize::json(), method)
            .unwrap();
    let resource = poller.result(None).unwrap();
    let blocking = (transport.sleeps(), resource);

    let (transport, initial) = script();
    let method = exponential_location_polling(first, max);
    let poller = AsyncLroPoller::new(
        transport.clone(),
        transport.clone(),
        initial,
        deserialize::json(),
        method,
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let resource = runtime.block_on(poller.result(None)).unwrap();
    vec![blocking, (transport.sleeps(), resource)]
}

#[allow(dead_code)]
fn main() {
    for (sleeps, resource) in demo() {
        println!("waited {sleeps:?} (virtual time), got {resource}");
    }
}
