//! The async `AsyncLroPoller` over a scripted transport with virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use lro_core::test_util::{ScriptedTransport, json_response};
use lro_core::{
    AsyncLroPoller, LroError, StrategyPolling, TransportError, async_poller, deserialize,
};
use serde_json::Value;
use support::{Immediate, Monitor, OP, RESOURCE, started, status};

type Poller = AsyncLroPoller<Value, StrategyPolling<Monitor, Value>>;

fn poller(transport: &Arc<ScriptedTransport>, method: &str) -> Poller {
    AsyncLroPoller::new(
        transport.clone(),
        transport.clone(),
        started(method, ""),
        deserialize::json(),
        StrategyPolling::new(Monitor::default()),
    )
    .expect("initialized")
}

/// A poller of a `POST` over `transport` (its own timer too), polling with `options`.
fn poller_with<C>(transport: &Arc<C>, options: lro_core::PollOptions) -> Poller
where
    C: lro_core::AsyncHttpClient + lro_core::AsyncTimer + 'static,
{
    let method = StrategyPolling::with_options(Monitor::default(), options);
    AsyncLroPoller::new(
        transport.clone(),
        transport.clone(),
        started("POST", ""),
        deserialize::json(),
        method,
    )
    .expect("initialized")
}

/// Polls `future` once, with a waker that does nothing.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

#[tokio::test]
async fn awaiting_the_poller_polls_to_the_end_and_returns_the_resource() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    transport.push_get(OP, status("Succeeded"));
    transport.push_get(RESOURCE, json_response(200, r#"{"name":"w1"}"#));
    let poller = poller(&transport, "PUT");
    assert!(transport.requests().is_empty(), "nothing is sent before the poller is awaited");
    assert_eq!(poller.await.unwrap()["name"], "w1");
    assert_eq!(transport.urls(), [OP, OP, RESOURCE]);
    assert_eq!(transport.sleeps(), [Duration::from_secs(30)]);
}

#[tokio::test]
async fn async_poller_builds_and_awaits_in_one_call() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Succeeded"));
    let body: Value = async_poller(
        transport.clone(),
        transport,
        started("POST", ""),
        deserialize::json(),
        StrategyPolling::new(Monitor::default()),
    )
    .await
    .unwrap();
    assert_eq!(body["status"], "Succeeded");
}

#[tokio::test]
async fn an_initially_failed_operation_raises_when_awaited() {
    let transport = Arc::new(ScriptedTransport::new());
    let poller: Poller = AsyncLroPoller::new(
        transport.clone(),
        transport.clone(),
        started("POST", r#"{"status":"Failed"}"#),
        deserialize::json(),
        StrategyPolling::new(Monitor::default()),
    )
    .expect("initialization succeeds");
    let error = poller.await.expect_err("failed");
    assert!(matches!(error, LroError::OperationFailed(_)));
    assert!(transport.requests().is_empty());
}

#[tokio::test]
async fn a_timed_out_wait_returns_a_token_and_awaiting_again_continues_the_same_request() {
    let transport = Arc::new(ScriptedTransport::new());
    let gate = transport.push_held(OP, status("Succeeded"));
    let poller = poller(&transport, "POST");
    let error = poller.result(Some(Duration::from_secs(5))).await.expect_err("timed out");
    assert!(matches!(error, LroError::Timeout(_)), "{error:?}");
    assert!(error.continuation_token().is_some());
    assert!(!poller.done());

    // The held request is kept with the run: the next wait receives its answer, it does not
    // send the poll again.
    gate.open();
    assert_eq!(poller.result(None).await.unwrap()["status"], "Succeeded");
    assert_eq!(transport.urls(), [OP]);
}

#[tokio::test]
async fn awaiting_the_poller_after_a_timed_out_wait_continues_the_same_request() {
    let transport = Arc::new(ScriptedTransport::new());
    let gate = transport.push_held(OP, status("Succeeded"));
    let poller = poller(&transport, "POST");
    let error = poller.result(Some(Duration::from_secs(5))).await.expect_err("timed out");
    assert!(matches!(error, LroError::Timeout(_)), "{error:?}");

    // `.await` takes the run the wait left, with its request in flight: nothing is sent again.
    gate.open();
    assert_eq!(poller.await.unwrap()["status"], "Succeeded");
    assert_eq!(transport.urls(), [OP]);
}

#[tokio::test]
async fn awaiting_a_poller_whose_run_failed_gives_the_same_error_and_sends_nothing_more() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_error(OP, TransportError::other("connection reset"));
    let options = lro_core::PollOptions::builder().retry(lro_core::RetryPolicy::none()).build();
    let poller = poller_with(&transport, options);
    let first = poller.wait(None).await.expect_err("the transport failed");
    let again = poller.await.expect_err("the run has ended");
    assert_eq!(again.to_string(), first.to_string());
    assert!(again.continuation_token().is_some());
    assert_eq!(transport.urls(), [OP]);
}

#[tokio::test]
async fn dropping_the_future_stops_polling_and_nothing_runs_in_the_background() {
    let transport = Arc::new(ScriptedTransport::new());
    let _gate = transport.push_held(OP, status("Running"));
    let poller = poller(&transport, "POST");
    let held_by_poller = Arc::strong_count(&transport);
    {
        let mut waiting = pin!(poller.wait(None));
        assert!(poll_once(waiting.as_mut()).is_pending());
    }
    assert_eq!(transport.requests().len(), 1);
    tokio::task::yield_now().await;
    assert_eq!(transport.requests().len(), 1, "no task polls behind the caller's back");
    assert_eq!(Arc::strong_count(&transport), held_by_poller, "nothing else holds the transport");
    drop(poller);
    assert_eq!(Arc::strong_count(&transport), 1, "dropping the poller drops the run");
}

#[tokio::test]
async fn progress_yields_the_first_status_each_change_and_then_ends() {
    let transport = Arc::new(ScriptedTransport::new());
    for word in ["NotStarted", "Running", "Running", "Succeeded"] {
        transport.push_get(OP, status(word));
    }
    let poller = poller(&transport, "POST");
    let mut progress = poller.progress();
    let mut seen = Vec::new();
    while let Some(update) = next(&mut progress).await {
        seen.push(update.unwrap().to_string());
    }
    assert_eq!(seen, ["InProgress", "NotStarted", "Running", "Succeeded"]);
    let requests = transport.requests().len();
    assert_eq!(poller.result(None).await.unwrap()["status"], "Succeeded");
    assert_eq!(transport.requests().len(), requests, "the result needs no further request");
}

#[tokio::test]
async fn progress_ends_with_the_error_and_its_token() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_error(OP, TransportError::other("connection reset"));
    let poller = poller(&transport, "POST");
    let mut progress = poller.progress();
    assert!(next(&mut progress).await.unwrap().is_ok());
    let error = next(&mut progress).await.unwrap().expect_err("transport error");
    assert!(error.continuation_token().is_some());
    assert!(next(&mut progress).await.is_none());
}

#[tokio::test]
async fn a_token_resumes_in_a_new_async_poller() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    transport.push_error(OP, TransportError::other("connection reset"));
    let token = poller(&transport, "PUT")
        .await
        .expect_err("failed")
        .continuation_token()
        .cloned()
        .expect("token");

    let later = Arc::new(ScriptedTransport::new());
    later.push_get(OP, status("Succeeded"));
    later.push_get(RESOURCE, json_response(200, r#"{"name":"w1"}"#));
    let resumed: Poller = AsyncLroPoller::from_continuation_token(
        StrategyPolling::new(Monitor::default()),
        &token,
        later.clone(),
        later.clone(),
        deserialize::json(),
    )
    .unwrap();
    assert_eq!(resumed.await.unwrap()["name"], "w1");
}

#[tokio::test]
async fn a_finished_operation_needs_no_request() {
    let transport = Arc::new(ScriptedTransport::new());
    let poller = AsyncLroPoller::new(
        transport.clone(),
        transport.clone(),
        started("POST", r#"{"id":3}"#),
        deserialize::json::<Value>(),
        StrategyPolling::new(Immediate),
    )
    .unwrap();
    assert!(poller.done());
    assert_eq!(poller.await.unwrap()["id"], 3);
    assert!(transport.requests().is_empty());
}

#[tokio::test]
async fn invalid_tokens_are_rejected_before_any_request() {
    let transport = Arc::new(ScriptedTransport::new());
    let token = lro_core::ContinuationToken::from_string("bm90IGpzb24=".into());
    let error = Poller::from_continuation_token(
        StrategyPolling::new(Monitor::default()),
        &token,
        transport.clone(),
        transport.clone(),
        deserialize::json(),
    )
    .expect_err("invalid");
    assert!(matches!(error, LroError::InvalidContinuationToken(_)));
    assert!(transport.requests().is_empty());
}

/// A script whose second poll is held until the returned gate opens.
fn held_put(transport: &ScriptedTransport) -> lro_core::test_util::Gate {
    transport.push_get(OP, status("Running"));
    let gate = transport.push_held(OP, status("Succeeded"));
    transport.push_get(RESOURCE, json_response(200, r#"{"name":"w1"}"#));
    gate
}

/// Yields to the runtime a few times, then opens `gate`.
async fn open_later(gate: lro_core::test_util::Gate) {
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    gate.open();
}

#[tokio::test]
async fn two_tasks_awaiting_one_poller_share_one_run_and_its_outcome() {
    let transport = Arc::new(ScriptedTransport::new());
    let gate = held_put(&transport);
    let poller = poller(&transport, "PUT");
    let (first, second, ()) =
        tokio::join!(poller.result(None), poller.result(None), open_later(gate));
    assert_eq!(first.unwrap()["name"], "w1");
    assert_eq!(second.unwrap()["name"], "w1", "the final resource, never a status body");
    assert_eq!(transport.urls(), [OP, OP, RESOURCE], "no request was sent twice");
}

#[tokio::test]
async fn progress_and_result_at_once_send_each_request_once() {
    let transport = Arc::new(ScriptedTransport::new());
    let gate = held_put(&transport);
    let poller = poller(&transport, "PUT");
    let mut progress = poller.progress();
    let watch = async {
        let mut seen = Vec::new();
        while let Some(update) = next(&mut progress).await {
            seen.push(update.unwrap().to_string());
        }
        seen
    };
    let (result, seen, ()) = tokio::join!(poller.result(None), watch, open_later(gate));
    assert_eq!(result.unwrap()["name"], "w1");
    assert_eq!(seen.last().map(String::as_str), Some("Succeeded"), "{seen:?}");
    assert_eq!(transport.urls(), [OP, OP, RESOURCE], "no request was sent twice");
}

#[tokio::test]
async fn when_the_driving_task_is_dropped_a_waiting_one_continues_its_run() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    let held = transport.push_held(OP, status("Running"));
    transport.push_get(OP, status("Succeeded"));
    transport.push_get(RESOURCE, json_response(200, r#"{"name":"w1"}"#));
    let poller = poller(&transport, "PUT");
    let mut first = Box::pin(poller.result(None));
    for _ in 0..10 {
        if transport.urls().len() == 2 {
            break;
        }
        assert!(poll_once(first.as_mut()).is_pending());
    }
    assert_eq!(transport.urls(), [OP, OP], "the first task is held on its second poll");
    let mut second = Box::pin(poller.result(None));
    assert!(poll_once(second.as_mut()).is_pending(), "waits on the same run");
    assert_eq!(transport.urls(), [OP, OP], "the second task sent nothing of its own");
    drop(first);
    held.open();
    assert_eq!(second.await.unwrap()["name"], "w1");
    assert_eq!(transport.urls(), [OP, OP, OP, RESOURCE], "the poll in flight was not sent again");
    assert_eq!(transport.remaining(), 0);
}

#[tokio::test]
async fn a_progress_stream_left_unpolled_does_not_block_the_result() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    transport.push_get(OP, status("Succeeded"));
    let poller = poller(&transport, "POST");
    let mut progress = poller.progress();
    let first = next(&mut progress).await; // the current status
    assert!(first.is_some());
    let _ = poll_once(std::pin::Pin::new(&mut std::future::poll_fn(|cx| {
        std::pin::Pin::new(&mut progress).poll_next(cx)
    })));
    // The stream is kept but no longer read: the result drives the run itself.
    let done = tokio::time::timeout(Duration::from_secs(10), poller.result(None)).await;
    assert_eq!(done.expect("not blocked by the idle stream").unwrap()["status"], "Succeeded");
    assert_eq!(transport.urls(), [OP, OP]);
}

#[tokio::test]
async fn a_timed_out_wait_reports_the_polls_made_so_far() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    let _held = transport.push_held(OP, status("Running"));
    let poller = poller(&transport, "POST");
    let error = poller.result(Some(Duration::from_secs(60))).await.expect_err("timed out");
    let LroError::Timeout(timeout) = &error else { panic!("{error:?}") };
    assert_eq!(timeout.polls(), 1);
    assert!(error.chain().to_string().contains("within 60s"), "{error}");
    assert!(!error.chain().to_string().contains("Some("), "{error}");
}

/// A transport that answers at once without ever being pending, forever `Running`. It panics
/// past 1,000 requests, so that a driver that never yields fails the test instead of hanging it.
struct Synchronous(std::sync::atomic::AtomicUsize);

impl Synchronous {
    fn sent(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl lro_core::AsyncHttpClient for Synchronous {
    async fn send(
        &self,
        _: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, TransportError> {
        let sent = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(sent < 1000, "the driver polled 1,000 times without yielding");
        Ok(status("Running"))
    }
}

impl lro_core::AsyncTimer for Synchronous {
    fn sleep(&self, _: Duration) -> lro_core::BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

#[test]
fn the_async_driver_yields_between_polls_even_when_nothing_is_ever_pending() {
    let transport = Arc::new(Synchronous(Default::default()));
    let options = lro_core::PollOptions::builder().interval(Duration::ZERO).build();
    let poller = poller_with(&transport, options);
    let mut result = Box::pin(poller.result(None));
    for round in 1..=5 {
        assert!(poll_once(result.as_mut()).is_pending());
        // One request per turn of the runtime: a surrounding timeout or another task gets its turn.
        assert_eq!(transport.sent(), round);
    }
}

/// [`Monitor`], with a bug: it panics reading its second poll.
#[derive(Debug, Default)]
struct PanicsOnSecondPoll(Monitor, u32);

impl lro_core::Strategy for PanicsOnSecondPoll {
    fn start(&mut self, initial: &lro_core::InitialResponse) -> Result<Arc<str>, LroError> {
        self.0.start(initial)
    }
    fn poll_uri(&self) -> Option<http::Uri> {
        self.0.poll_uri()
    }
    fn read_poll(&mut self, response: &http::Response<bytes::Bytes>) -> Result<Arc<str>, LroError> {
        self.1 += 1;
        assert!(self.1 < 2, "a bug in the strategy");
        self.0.read_poll(response)
    }
}

#[tokio::test]
async fn a_polling_method_that_panics_ends_for_the_other_waiter_with_the_panic_message() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    let held = transport.push_held(OP, status("Running"));
    let poller: AsyncLroPoller<Value, _> = AsyncLroPoller::new(
        transport.clone(),
        transport.clone(),
        started("POST", ""),
        deserialize::json(),
        StrategyPolling::new(PanicsOnSecondPoll::default()),
    )
    .unwrap();
    let mut first = Box::pin(poller.result(None));
    for _ in 0..10 {
        if transport.urls().len() == 2 {
            break;
        }
        assert!(poll_once(first.as_mut()).is_pending());
    }
    let mut second = Box::pin(poller.result(None));
    assert!(poll_once(second.as_mut()).is_pending(), "waits on the same run");
    held.open();
    // The task that drives the run when it panics gets the panic, as it would without a poller.
    let driven = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_once(first.as_mut()).is_pending()
    }));
    assert!(driven.is_err(), "the panic reached the task that polled the run");
    // The other ends with the blocking poller's error, rather than waiting forever.
    let Poll::Ready(Err(error)) = poll_once(second.as_mut()) else { panic!("still waiting") };
    let chain = error.chain().to_string();
    assert!(chain.contains("the polling method panicked: a bug in the strategy"), "{chain}");
}
