//! The blocking `LroPoller` over a scripted transport with virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use lro_core::test_util::{ScriptedTransport, json_response};
use lro_core::{
    AlreadyComplete, HttpClient, LroError, LroPoller, PollingMethod, StrategyPolling, Timer,
    TransportError, deserialize,
};
use serde_json::Value;
use support::{Immediate, Monitor, OP, RESOURCE, started, status};

type Poller = LroPoller<Value, StrategyPolling<Monitor, Value>>;

fn poller(transport: &Arc<ScriptedTransport>, method: &str) -> Poller {
    LroPoller::new(
        transport.clone(),
        transport.clone(),
        started(method, ""),
        deserialize::json(),
        StrategyPolling::new(Monitor::default()),
    )
    .expect("initialized")
}

#[test]
fn result_polls_to_the_end_in_virtual_time_and_returns_the_final_resource() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    transport.push_get(OP, status("Succeeded"));
    transport.push_get(RESOURCE, json_response(200, r#"{"name":"w1"}"#));
    let poller = poller(&transport, "PUT");
    assert_eq!(poller.result(None).unwrap()["name"], "w1");
    assert!(poller.done());
    assert_eq!(poller.status().as_str(), "Succeeded");
    assert_eq!(transport.urls(), [OP, OP, RESOURCE]);
    assert_eq!(transport.sleeps(), [Duration::from_secs(30)]);
    assert_eq!(transport.remaining(), 0);
}

#[test]
fn an_operation_finished_at_construction_starts_no_thread() {
    let transport = Arc::new(ScriptedTransport::new());
    let poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        started("POST", r#"{"id":1}"#),
        deserialize::json::<Value>(),
        StrategyPolling::new(Immediate),
    )
    .unwrap();
    assert!(poller.done(), "done before any wait");
    assert_eq!(poller.result(Some(Duration::ZERO)).unwrap()["id"], 1);
    assert!(transport.requests().is_empty());
}

#[test]
fn initialization_errors_come_from_the_constructor_without_a_token() {
    let transport = Arc::new(ScriptedTransport::new());
    let initial = lro_core::InitialResponse::new(
        ScriptedTransport::request_head("PUT", RESOURCE),
        json_response(500, r#"{"error":{"code":"Boom","message":"no"}}"#),
    );
    let error = LroPoller::new(
        transport.clone(),
        transport,
        initial,
        deserialize::json::<Value>(),
        StrategyPolling::new(Monitor::default()),
    )
    .expect_err("bad initial status");
    assert!(matches!(error, LroError::BadStatus(_)));
    assert!(error.continuation_token().is_none());
}

#[test]
fn a_timed_out_result_carries_a_token_and_polling_goes_on() {
    let transport = Arc::new(ScriptedTransport::new());
    let gate = transport.push_held(OP, status("Succeeded"));
    let poller = poller(&transport, "POST");

    let error = poller.result(Some(Duration::ZERO)).expect_err("not finished yet");
    assert!(matches!(error, LroError::Timeout(_)), "{error:?}");
    let token = error.continuation_token().expect("a token to resume with");
    assert!(!poller.done());

    gate.open();
    assert_eq!(poller.result(None).unwrap()["status"], "Succeeded");
    assert!(!token.as_str().is_empty());
}

#[test]
fn status_and_token_are_readable_while_the_thread_is_polling() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    let gate = transport.push_held(OP, status("Succeeded"));
    let poller = poller(&transport, "POST");
    // Wait (in real time, briefly) until the thread is blocked on the second, held poll.
    while transport.requests().len() < 2 {
        std::thread::yield_now();
    }
    assert_eq!(poller.status().as_str(), "Running");
    assert!(poller.continuation_token().is_ok());
    assert_eq!(poller.polling_method().polls(), 1);
    gate.open();
    poller.wait(None).unwrap();
    assert_eq!(poller.status().as_str(), "Succeeded");
}

#[test]
fn errors_from_the_polling_thread_carry_a_token_and_are_returned_every_time() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    transport.push_error(OP, TransportError::other("connection reset"));
    let poller = poller(&transport, "POST");
    for _ in 0..2 {
        let error = poller.result(None).expect_err("transport failure");
        assert!(matches!(error, LroError::Transport(_)), "{error:?}");
        assert!(error.continuation_token().is_some());
    }
}

#[test]
fn a_token_from_an_error_resumes_the_operation_in_a_new_poller() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running").with_moved_monitor("http://svc/op2"));
    transport.push_error("http://svc/op2", TransportError::other("connection reset"));
    let error = poller(&transport, "POST").result(None).expect_err("failed");
    let token = error.continuation_token().expect("token").clone();

    let later = Arc::new(ScriptedTransport::new());
    later.push_get("http://svc/op2", status("Succeeded"));
    let resumed: Poller = LroPoller::from_continuation_token(
        StrategyPolling::new(Monitor::default()),
        &token,
        later.clone(),
        later.clone(),
        deserialize::json(),
    )
    .unwrap();
    assert_eq!(resumed.result(None).unwrap()["status"], "Succeeded");
    assert_eq!(later.urls(), ["http://svc/op2"]);
}

#[test]
fn done_callbacks_run_once_whether_added_before_or_after_completion() {
    let transport = Arc::new(ScriptedTransport::new());
    let gate = transport.push_held(OP, status("Succeeded"));
    let poller = poller(&transport, "POST");
    let calls = Arc::new(AtomicUsize::new(0));
    let (seen_tx, seen_rx) = mpsc::channel();

    let counter = calls.clone();
    poller.add_done_callback(move |method| {
        counter.fetch_add(1, Ordering::SeqCst);
        seen_tx.send(method.status().to_string()).ok();
    });
    let counter = calls.clone();
    let removed = poller.add_done_callback(move |_| {
        counter.fetch_add(100, Ordering::SeqCst);
    });
    assert_eq!(poller.remove_done_callback(removed), Ok(true));
    assert_eq!(poller.remove_done_callback(removed), Ok(false), "unknown ids are not an error");
    poller.add_done_callback(|_| panic!("a panicking callback must not stop the others"));

    gate.open();
    poller.wait(None).unwrap();
    assert_eq!(seen_rx.recv_timeout(Duration::from_secs(10)).unwrap(), "Succeeded");

    let counter = calls.clone();
    poller.add_done_callback(move |_| {
        counter.fetch_add(10, Ordering::SeqCst);
    });
    assert_eq!(calls.load(Ordering::SeqCst), 11, "later callbacks run at once, on this thread");
    assert_eq!(poller.remove_done_callback(removed), Err(AlreadyComplete));
}

#[test]
fn callbacks_run_even_when_polling_failed() {
    let transport = Arc::new(ScriptedTransport::new());
    let gate = transport.push_held(OP, status("Failed"));
    let poller = poller(&transport, "POST");
    let (tx, rx) = mpsc::channel();
    poller.add_done_callback(move |method| {
        tx.send(method.finished()).ok();
    });
    gate.open();
    assert!(matches!(poller.wait(None), Err(LroError::OperationFailed(_))));
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
}

/// Real time, real waiting: the default `Timer` methods.
struct RealTime(ScriptedTransport);

impl HttpClient for RealTime {
    fn send(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, TransportError> {
        self.0.send(request)
    }
}
impl Timer for RealTime {}

#[test]
fn dropping_the_poller_interrupts_a_long_wait_and_the_thread_ends() {
    let transport = ScriptedTransport::new();
    transport.push_get(OP, status("Running").with_retry_after("3600"));
    let transport = Arc::new(RealTime(transport));
    let poller: Poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        started("POST", ""),
        deserialize::json(),
        StrategyPolling::new(Monitor::default()),
    )
    .unwrap();
    while transport.0.requests().is_empty() {
        std::thread::yield_now();
    }
    // Drop on another thread so that a broken interrupt fails this test instead of hanging it.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(poller);
        tx.send(()).ok();
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("drop returned without waiting out the hour-long Retry-After");
    wait_until_only_owner(&transport);
    assert_eq!(transport.0.requests().len(), 1, "nothing sent after the drop");
}

/// Waits (a bounded number of yields) until the polling thread has let go of `shared`.
fn wait_until_only_owner<T>(shared: &Arc<T>) {
    for _ in 0..50_000_000u64 {
        if Arc::strong_count(shared) == 1 {
            return;
        }
        std::thread::yield_now();
    }
    panic!("the polling thread never ended");
}

/// A transport whose requests hang until released, as a stalled server would.
struct Stalled {
    entered: mpsc::SyncSender<()>,
    release: std::sync::Mutex<mpsc::Receiver<()>>,
    sent: std::sync::atomic::AtomicUsize,
}

impl HttpClient for Stalled {
    fn send(
        &self,
        _: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, TransportError> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.entered.send(()).ok();
        self.release.lock().unwrap().recv().ok();
        Ok(status("Running"))
    }
}
impl Timer for Stalled {}

#[test]
fn dropping_the_poller_never_waits_for_a_request_in_flight() {
    let (entered, in_flight) = mpsc::sync_channel(1);
    let (release, released) = mpsc::channel();
    let transport = Arc::new(Stalled {
        entered,
        release: std::sync::Mutex::new(released),
        sent: Default::default(),
    });
    let poller: Poller = LroPoller::new(
        transport.clone(),
        transport.clone(),
        started("POST", ""),
        deserialize::json(),
        StrategyPolling::new(Monitor::default()),
    )
    .unwrap();
    in_flight.recv_timeout(Duration::from_secs(20)).expect("the first poll went out");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(poller);
        tx.send(()).ok();
    });
    // The request is still held: the drop must return anyway.
    rx.recv_timeout(Duration::from_secs(20)).expect("drop returned while a request hung");
    release.send(()).ok(); // the abandoned request completes; its response is not used
    wait_until_only_owner(&transport);
    assert_eq!(transport.sent.load(std::sync::atomic::Ordering::SeqCst), 1, "nothing sent after");
}

/// A polling method that panics: the poller must report it, not hang.
struct Panics;

impl PollingMethod<()> for Panics {
    type Operation = Panics;
    fn initialize(
        self,
        _: Arc<dyn HttpClient>,
        _: lro_core::InitialResponse,
        _: lro_core::Deserializer<()>,
    ) -> Result<Panics, LroError> {
        Ok(self)
    }
}

impl lro_core::BlockingOperation<()> for Panics {
    fn run(&self, _: &lro_core::RunContext<'_>) -> Result<(), LroError> {
        panic!("bug in a custom method")
    }
    fn status(&self) -> lro_core::Status {
        lro_core::Status::new("Running", lro_core::StatusKind::InProgress)
    }
    fn finished(&self) -> bool {
        false
    }
    fn resource(&self) -> Result<(), LroError> {
        Ok(())
    }
}

#[test]
fn a_panicking_polling_method_is_reported_as_stopped() {
    let transport = Arc::new(ScriptedTransport::new());
    let poller = LroPoller::new(
        transport.clone(),
        transport,
        started("POST", ""),
        deserialize::none(),
        Panics,
    )
    .unwrap();
    let error = poller.result(None).expect_err("panicked");
    assert!(matches!(error, LroError::Stopped(_)));
    assert!(error.chain().to_string().contains("bug in a custom method"), "{error}");
}

trait ResponseExt {
    fn with_moved_monitor(self, url: &str) -> Self;
    fn with_retry_after(self, value: &str) -> Self;
}

impl ResponseExt for http::Response<bytes::Bytes> {
    fn with_moved_monitor(self, url: &str) -> Self {
        lro_core::test_util::WithHeader::with_header(self, "operation-location", url)
    }
    fn with_retry_after(self, value: &str) -> Self {
        lro_core::test_util::WithHeader::with_header(self, "retry-after", value)
    }
}

#[test]
fn an_observer_sees_the_initial_response_and_every_poll_with_a_token() {
    let transport = Arc::new(ScriptedTransport::new());
    transport.push_get(OP, status("Running"));
    transport.push_get(OP, status("Succeeded"));
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let method = StrategyPolling::new(Monitor::default()).observe(move |event| {
        seen.lock().unwrap().push((
            event.status.to_string(),
            event.polls,
            event.finished,
            event.continuation_token.is_some(),
        ));
    });
    let poller: Poller = LroPoller::new(
        transport.clone(),
        transport,
        started("POST", ""),
        deserialize::json(),
        method,
    )
    .unwrap();
    poller.wait(None).unwrap();
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            ("InProgress".to_owned(), 0, false, true),
            ("Running".to_owned(), 1, false, true),
            ("Succeeded".to_owned(), 2, true, true)
        ]
    );
}
