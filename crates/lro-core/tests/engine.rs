//! The sans-IO engine, driven by hand: actions in, responses out, time passed as an argument.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Response;
use lro_core::test_util::{WithHeader, json_response};
use lro_core::{
    Action, ContinuationToken, Engine, InitialResponse, LroError, OriginPolicy, PollOptions,
    RetryPolicy, StatusKind, StatusVocabulary, Timestamp, TransportError,
};
use support::{Immediate, Monitor, OP, RESOURCE, started, status};

fn t0() -> Timestamp {
    // A frozen clock with a fixed wall-clock time, so arithmetic on dates is exact.
    let frozen = lro_core::Timer::now(&lro_core::test_util::ManualClock::new());
    Timestamp::new(frozen.instant, SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
}

fn options() -> PollOptions {
    PollOptions::builder().interval(Duration::from_secs(30)).build()
}

fn start(method: &str) -> Engine<Monitor> {
    Engine::start(Monitor::default(), options(), started(method, "")).expect("starts")
}

fn expect_get(action: Action) -> http::Request<Bytes> {
    match action {
        Action::SendRequest(request) => {
            assert_eq!(request.method(), "GET");
            request
        }
        other => panic!("expected a GET, got {other:?}"),
    }
}

fn expect_wait(action: Action) -> Duration {
    match action {
        Action::Wait(d) => d,
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn first_poll_is_immediate_then_the_interval_is_waited() {
    let now = t0();
    let mut engine = start("POST");
    assert_eq!(expect_get(engine.poll(now)).uri(), OP);
    engine.handle_response(now, status("Running"));
    assert_eq!(expect_wait(engine.poll(now)), Duration::from_secs(30));
    // Ten seconds later, twenty remain.
    let later = now.advanced(Duration::from_secs(10));
    assert_eq!(expect_wait(engine.poll(later)), Duration::from_secs(20));
    let due = now.advanced(Duration::from_secs(30));
    expect_get(engine.poll(due));
    engine.handle_response(due, status("Succeeded"));
    assert!(matches!(engine.poll(due), Action::Done));
    assert!(engine.finished() && engine.status().is_success());
    assert_eq!(
        engine.outcome().map(|r| r.body().clone()).ok(),
        Some(Bytes::from_static(br#"{"status":"Succeeded"}"#))
    );
}

/// An engine over [`Monitor`] polling with no wait between polls, and the count of its
/// `poll_uri` calls.
fn back_to_back() -> (Engine<Monitor>, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let monitor = Monitor::default();
    let asked = std::sync::Arc::clone(&monitor.asked);
    let options = PollOptions::builder().interval(Duration::ZERO).build();
    (Engine::start(monitor, options, started("POST", "")).expect("starts"), asked)
}

fn asked(count: &std::sync::atomic::AtomicUsize) -> usize {
    count.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn back_to_back_polls_reuse_the_uri_the_strategy_still_polls() {
    let now = t0();
    let (mut engine, count) = back_to_back();
    let before = asked(&count);
    for _ in 0..5 {
        assert_eq!(expect_get(engine.poll(now)).uri(), OP);
        engine.handle_response(now, status("Running"));
    }
    // Built for the first poll and for the second (the first to follow an answer without a
    // wait), then reused: the strategy was asked for those two only.
    assert_eq!(asked(&count) - before, 2);
    // A request dropped unsent is built alike again.
    assert_eq!(expect_get(engine.poll(now)).uri(), OP);
    assert_eq!(expect_get(engine.poll(now)).uri(), OP);
    assert_eq!(asked(&count) - before, 2);
}

#[test]
fn a_moved_polling_url_is_polled_next_even_back_to_back() {
    let now = t0();
    let (mut engine, _) = back_to_back();
    for _ in 0..2 {
        assert_eq!(expect_get(engine.poll(now)).uri(), OP);
        engine.handle_response(now, status("Running"));
    }
    let moved = "http://svc/op/moved";
    engine.handle_response(now, status("Running").with_header("operation-location", moved));
    assert_eq!(expect_get(engine.poll(now)).uri(), moved);
    engine.handle_response(now, status("Running"));
    assert_eq!(expect_get(engine.poll(now)).uri(), moved);
}

#[test]
fn a_reused_uri_is_never_one_the_policy_would_refuse() {
    let now = t0();
    let (mut engine, _) = back_to_back();
    for _ in 0..2 {
        expect_get(engine.poll(now));
        engine.handle_response(now, status("Running"));
    }
    let elsewhere = "http://evil.example/op";
    engine.handle_response(now, status("Running").with_header("operation-location", elsewhere));
    assert!(matches!(engine.poll(now), Action::Done));
    assert!(matches!(engine.outcome(), Err(LroError::Policy(_))));
}

#[test]
fn polls_after_a_wait_ask_the_strategy_again() {
    let now = t0();
    let monitor = Monitor::default();
    let count = std::sync::Arc::clone(&monitor.asked);
    let mut engine = Engine::start(monitor, options(), started("POST", "")).expect("starts");
    let before = asked(&count);
    let mut at = now;
    for _ in 0..3 {
        expect_get(engine.poll(at));
        engine.handle_response(at, status("Running"));
        at = at.advanced(expect_wait(engine.poll(at)));
    }
    assert_eq!(asked(&count) - before, 3);
}

#[test]
fn poll_does_not_advance_state_so_a_dropped_request_is_sent_again() {
    let now = t0();
    let mut engine = start("POST");
    let first = expect_get(engine.poll(now));
    let again = expect_get(engine.poll(now));
    assert_eq!(first.uri(), again.uri());
    assert_eq!(engine.polls(), 0);
}

#[test]
fn retry_after_of_each_poll_response_sets_the_next_wait() {
    let now = t0();
    let mut engine = start("POST");
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Running").with_header("retry-after", "5"));
    assert_eq!(expect_wait(engine.poll(now)), Duration::from_secs(5));
    let next = now.advanced(Duration::from_secs(5));
    expect_get(engine.poll(next));
    engine.handle_response(next, status("Running").with_header("retry-after-ms", "250"));
    assert_eq!(expect_wait(engine.poll(next)), Duration::from_millis(250));
}

#[test]
fn absurd_retry_after_is_capped_at_max_delay() {
    let now = t0();
    let options = PollOptions::builder().max_delay(Duration::from_secs(60)).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Running").with_header("retry-after", "1e300"));
    assert_eq!(expect_wait(engine.poll(now)), Duration::from_secs(60));
}

#[test]
fn terminal_failure_ends_with_operation_failed_and_a_token() {
    let now = t0();
    let mut engine = start("POST");
    expect_get(engine.poll(now));
    let body = r#"{"status":"Failed","error":{"code":"Quota","message":"no room"}}"#;
    engine.handle_response(now, json_response(200, body));
    assert!(matches!(engine.poll(now), Action::Done));
    let error = engine.outcome().expect_err("failed");
    let LroError::OperationFailed(details) = error else { panic!("{error:?}") };
    assert_eq!(details.operation_status().map(|s| s.as_str()), Some("Failed"));
    assert!(details.message().contains("(Quota) no room"), "{}", details.message());
    assert!(error.continuation_token().is_some());
    assert_eq!(engine.status().as_str(), "Failed");
}

#[test]
fn canceled_is_terminal_but_british_cancelled_keeps_polling_by_default() {
    let now = t0();
    let mut engine = start("POST");
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Cancelled"));
    assert_eq!(engine.status().kind(), StatusKind::InProgress);
    expect_wait(engine.poll(now));

    let words = StatusVocabulary::azure().with("Cancelled", StatusKind::Canceled);
    let options = PollOptions::builder().vocabulary(words).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Cancelled"));
    assert!(matches!(engine.outcome(), Err(LroError::OperationFailed(_))));
}

#[test]
fn initially_failed_operation_fails_when_driven_like_azure_async_poller() {
    let now = t0();
    let engine =
        Engine::start(Monitor::default(), options(), started("POST", r#"{"status":"Failed"}"#));
    let mut engine = engine.expect("initialization itself succeeds");
    assert!(engine.finished());
    assert!(matches!(engine.poll(now), Action::Done));
    assert!(matches!(engine.outcome(), Err(LroError::OperationFailed(_))));
}

#[test]
fn initially_succeeded_put_still_does_its_final_get() {
    let now = t0();
    let mut engine =
        Engine::start(Monitor::default(), options(), started("PUT", r#"{"status":"Succeeded"}"#))
            .unwrap();
    assert!(!engine.finished());
    assert_eq!(expect_get(engine.poll(now)).uri(), RESOURCE);
    engine.handle_response(now, json_response(200, r#"{"name":"w1"}"#));
    assert!(matches!(engine.poll(now), Action::Done));
    assert_eq!(engine.outcome().unwrap().body(), &Bytes::from_static(br#"{"name":"w1"}"#));
    assert_eq!(engine.polls(), 1);
}

#[test]
fn an_operation_finished_at_start_needs_no_request() {
    let mut engine = Engine::start(Immediate, options(), started("POST", "")).unwrap();
    assert!(engine.finished());
    assert!(matches!(engine.poll(t0()), Action::Done));
    assert_eq!(engine.outcome().unwrap().status(), 202);
}

#[test]
fn transport_errors_end_polling_with_a_token_and_keep_the_status() {
    let now = t0();
    let options = PollOptions::builder().retry(RetryPolicy::none()).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Running"));
    let later = now.advanced(Duration::from_secs(30));
    expect_get(engine.poll(later));
    engine.handle_transport_error(later, TransportError::other("connection reset"));
    let error = engine.outcome().expect_err("transport error");
    assert!(matches!(error, LroError::Transport(_)));
    assert!(error.continuation_token().is_some());
    assert_eq!(engine.status().as_str(), "Running");
}

#[test]
fn bad_status_marks_the_operation_failed_like_azure_core() {
    let now = t0();
    // Without retries, as azure-core's polling methods (its pipeline retries before them).
    let options = PollOptions::builder().retry(RetryPolicy::none()).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, json_response(500, ""));
    assert!(matches!(engine.outcome(), Err(LroError::BadStatus(_))));
    assert_eq!(engine.status().as_str(), "Failed");
}

#[test]
fn max_polls_gives_up_with_a_timeout_carrying_a_token() {
    let now = t0();
    let options = PollOptions::builder().max_polls(2).interval(Duration::ZERO).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    for _ in 0..2 {
        expect_get(engine.poll(now));
        engine.handle_response(now, status("Running"));
    }
    let error = engine.outcome().expect_err("gave up");
    let LroError::Timeout(timeout) = error else { panic!("{error:?}") };
    assert_eq!(timeout.polls(), 2);
    assert!(error.continuation_token().is_some());
}

#[test]
fn max_elapsed_gives_up_before_a_wait_that_would_overrun_it() {
    let now = t0();
    let options = PollOptions::builder().max_elapsed(Duration::from_secs(60)).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Running"));
    let t30 = now.advanced(Duration::from_secs(30));
    assert_eq!(expect_wait(engine.poll(now)), Duration::from_secs(30));
    expect_get(engine.poll(t30));
    engine.handle_response(t30, status("Running")); // next poll at 60 s: still allowed
    let t60 = now.advanced(Duration::from_secs(60));
    expect_get(engine.poll(t60));
    engine.handle_response(t60, status("Running")); // next poll at 90 s: over the limit
    assert!(matches!(engine.outcome(), Err(LroError::Timeout(_))));
}

#[test]
fn polls_to_another_origin_are_refused_by_default() {
    let now = t0();
    let initial = InitialResponse::new(
        lro_core::test_util::ScriptedTransport::request_head("POST", RESOURCE),
        json_response(202, "").with_header("operation-location", "https://evil.example/op"),
    );
    let mut engine = Engine::start(Monitor::default(), options(), initial.clone()).unwrap();
    assert!(matches!(engine.poll(now), Action::Done));
    let error = engine.outcome().expect_err("refused");
    assert!(matches!(error, LroError::Policy(_)));
    assert!(error.chain().to_string().contains("https://evil.example"), "{error}");

    let trusting = PollOptions::builder().origins(OriginPolicy::any()).build();
    let mut engine = Engine::start(Monitor::default(), trusting, initial).unwrap();
    assert_eq!(expect_get(engine.poll(now)).uri(), "https://evil.example/op");
}

#[test]
fn polls_repeat_the_client_request_id_and_the_configured_headers() {
    let now = t0();
    let mut head_request = http::Request::post(RESOURCE).body(()).unwrap();
    head_request.headers_mut().insert("x-ms-client-request-id", "abc-123".parse().unwrap());
    head_request.headers_mut().insert("authorization", "Bearer secret".parse().unwrap());
    let initial = InitialResponse::from_exchange(
        &head_request,
        json_response(202, "").with_header("operation-location", OP),
    );
    let options = PollOptions::builder()
        .header(http::HeaderName::from_static("x-extra"), http::HeaderValue::from_static("1"))
        .build();
    let mut engine = Engine::start(Monitor::default(), options, initial).unwrap();
    let request = expect_get(engine.poll(now));
    assert_eq!(request.headers()["x-ms-client-request-id"], "abc-123");
    assert_eq!(request.headers()["x-extra"], "1");
    assert!(
        request.headers().get("authorization").is_none(),
        "credentials are the client's business"
    );
}

#[test]
fn missing_polling_link_is_a_bad_response() {
    let initial = InitialResponse::new(
        lro_core::test_util::ScriptedTransport::request_head("POST", RESOURCE),
        json_response(202, ""),
    );
    let mut engine = Engine::start(Monitor::default(), options(), initial).unwrap();
    assert!(matches!(engine.poll(t0()), Action::Done));
    assert!(matches!(engine.outcome(), Err(LroError::BadResponse(_))));
}

#[test]
fn initial_strategy_errors_are_returned_from_start_without_a_token() {
    let initial = InitialResponse::new(
        lro_core::test_util::ScriptedTransport::request_head("PUT", RESOURCE),
        json_response(500, ""),
    );
    let error = Engine::start(Monitor::default(), options(), initial).expect_err("bad status");
    assert!(matches!(error, LroError::BadStatus(_)));
    assert!(error.continuation_token().is_none());
}

#[test]
fn a_token_resumes_where_polling_had_got_to() {
    let now = t0();
    let mut engine = start("PUT");
    expect_get(engine.poll(now));
    // The service moves the monitor; the token must remember the new place.
    engine.handle_response(
        now,
        status("Running").with_header("operation-location", "http://svc/op2"),
    );
    let token = engine.continuation_token().unwrap();
    assert_eq!(engine.polls(), 1);

    let text = token.to_string();
    let parsed: ContinuationToken = text.parse().unwrap();
    let mut resumed = Engine::resume(Monitor::default(), options(), &parsed).unwrap();
    assert_eq!(resumed.polls(), 1);
    assert_eq!(
        expect_get(resumed.poll(now)).uri(),
        "http://svc/op2",
        "resumed polls at once, where it was"
    );
    resumed.handle_response(now, status("Succeeded"));
    assert_eq!(expect_get(resumed.poll(now)).uri(), RESOURCE, "final GET of the original PUT URL");
    resumed.handle_response(now, json_response(200, r#"{"name":"w1"}"#));
    assert!(resumed.finished() && resumed.outcome().is_ok());
}

#[test]
fn a_token_without_progress_resumes_from_the_initial_response() {
    let state = lro_core::token::TokenState::new(&started("POST", ""), None);
    let token = ContinuationToken::encode(&state).unwrap();
    let mut engine = Engine::resume(Monitor::default(), options(), &token).unwrap();
    assert_eq!(expect_get(engine.poll(t0())).uri(), OP);
}

#[test]
fn hostile_progress_in_a_token_is_rejected() {
    let state = lro_core::token::TokenState::new(
        &started("POST", ""),
        Some(serde_json::json!({"polls": 1, "strategy": {"url": 42}})),
    );
    let token = ContinuationToken::encode(&state).unwrap();
    let error = Engine::resume(Monitor::default(), options(), &token).expect_err("rejected");
    assert!(matches!(error, LroError::InvalidContinuationToken(_)), "{error:?}");

    let state = lro_core::token::TokenState::new(
        &started("POST", ""),
        Some(serde_json::json!({"polls": -1})),
    );
    let token = ContinuationToken::encode(&state).unwrap();
    let error = Engine::resume(Monitor::default(), options(), &token).expect_err("rejected");
    assert!(matches!(error, LroError::InvalidContinuationToken(_)), "{error:?}");
}

#[test]
fn responses_after_the_end_are_ignored() {
    let now = t0();
    let mut engine = Engine::start(Immediate, options(), started("POST", "")).unwrap();
    engine.handle_response(now, Response::new(Bytes::from_static(b"late")));
    engine.handle_transport_error(now, TransportError::other("late"));
    assert_eq!(engine.outcome().unwrap().status(), 202);
}

#[test]
fn an_overflowing_retry_after_waits_in_the_far_future_never_now() {
    let now = t0();
    for hint in ["inf", "1e308", "99999999999999999999"] {
        let options = PollOptions::builder().max_delay(Duration::MAX).build();
        let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
        expect_get(engine.poll(now));
        engine.handle_response(now, status("Running").with_header("retry-after", hint));
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(expect_wait(engine.poll(now)) >= century, "{hint}");
        // However much time passes on a clock that cannot represent the due time, still a wait.
        assert!(expect_wait(engine.poll(now.advanced(Duration::MAX))) > Duration::ZERO, "{hint}");
    }
}

#[test]
fn a_tiny_retry_after_waits_at_least_the_minimum_delay() {
    let now = t0();
    let options = PollOptions::builder().interval(Duration::ZERO).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Running").with_header("retry-after", "1e-9"));
    assert_eq!(expect_wait(engine.poll(now)), lro_core::DEFAULT_MIN_DELAY);
    let next = now.advanced(lro_core::DEFAULT_MIN_DELAY);
    expect_get(engine.poll(next));
    engine.handle_response(next, status("Running").with_header("retry-after-ms", "0.000001"));
    assert_eq!(expect_wait(engine.poll(next)), lro_core::DEFAULT_MIN_DELAY);

    let custom = PollOptions::builder().interval(Duration::ZERO).min_delay(Duration::from_secs(2));
    let mut engine =
        Engine::start(Monitor::default(), custom.build(), started("POST", "")).unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Running").with_header("retry-after", "0.001"));
    assert_eq!(expect_wait(engine.poll(now)), Duration::from_secs(2));
}

#[test]
fn a_zero_interval_without_a_hint_still_polls_at_once() {
    let now = t0();
    let options = PollOptions::builder().interval(Duration::ZERO).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Running"));
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Running").with_header("retry-after", "0"));
    expect_get(engine.poll(now));
}

#[test]
fn a_polling_url_with_user_information_is_refused_even_on_the_same_origin() {
    let initial = InitialResponse::new(
        lro_core::test_util::ScriptedTransport::request_head("POST", RESOURCE),
        json_response(202, "").with_header("operation-location", "http://user:hunter2@svc/op"),
    );
    let mut engine = Engine::start(Monitor::default(), options(), initial).unwrap();
    assert!(matches!(engine.poll(t0()), Action::Done));
    let error = engine.outcome().expect_err("refused");
    assert!(matches!(error, LroError::Policy(_)), "{error:?}");
    assert!(error.chain().to_string().contains("user information"), "{error}");
    assert!(
        !error.chain().to_string().contains("hunter2"),
        "the message repeats the password: {error}"
    );
}

#[test]
fn a_refused_final_get_marks_the_status_failed() {
    let now = t0();
    // The monitor is on the pinned origin, the PUT URL (the final GET) is not.
    let evil = InitialResponse::new(
        lro_core::test_util::ScriptedTransport::request_head("PUT", "https://evil.example/w/1"),
        json_response(201, "").with_header("operation-location", "https://svc.example/op"),
    );
    let pinned = OriginPolicy::pinned("https://svc.example").unwrap();
    let mut engine =
        Engine::start(Monitor::default(), PollOptions::builder().origins(pinned).build(), evil)
            .unwrap();
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Succeeded"));
    assert!(matches!(engine.poll(now), Action::Done), "the final GET is refused");
    assert!(matches!(engine.outcome(), Err(LroError::Policy(_))));
    assert_eq!(engine.status().kind(), StatusKind::Failed, "status agrees with the outcome");
}

#[test]
fn a_resumed_engine_shows_the_saved_status_before_its_first_poll() {
    let now = t0();
    let mut engine = start("POST");
    expect_get(engine.poll(now));
    engine.handle_response(now, status("Provisioning"));
    let token = engine.continuation_token().unwrap();
    let resumed = Engine::resume(Monitor::default(), options(), &token).unwrap();
    assert_eq!(resumed.status().as_str(), "Provisioning");
}

/// A header value that is a slice of a large "connection buffer", as hyper's are.
fn sliced(buffer: &Bytes, text: &str) -> http::HeaderValue {
    let start = buffer.len() - text.len();
    assert_eq!(&buffer[start..], text.as_bytes());
    http::HeaderValue::from_maybe_shared(buffer.slice(start..)).unwrap()
}

fn buffer_ending_with(text: &str) -> Bytes {
    let mut bytes = vec![b'x'; 8192];
    bytes.extend_from_slice(text.as_bytes());
    Bytes::from(bytes)
}

#[test]
fn an_idle_engine_keeps_no_poll_response_and_only_the_token_parts_of_the_initial_one() {
    let now = t0();
    let buffer = buffer_ending_with(OP);
    let mut initial = started("POST", "");
    let response = json_response(202, "")
        .with_header("x-diagnostics", &"d".repeat(60_000))
        .with_header("x-ms-client-request-id", "kept-on-the-request-only");
    let mut response = response;
    response.headers_mut().insert("operation-location", sliced(&buffer, OP));
    let mut head = initial.request().clone();
    let mut headers = head.headers().clone();
    headers.insert("authorization", http::HeaderValue::from_static("Bearer secret"));
    head = lro_core::RequestHead::new(head.method().clone(), head.uri().clone(), headers);
    initial = InitialResponse::new(head, response);
    let mut engine = Engine::start(Monitor::default(), options(), initial).unwrap();
    let kept = engine.initial();
    assert!(kept.request().headers().get("authorization").is_none(), "no credential kept");
    assert!(kept.response().headers().get("x-diagnostics").is_none(), "no 60 KB header kept");
    assert_eq!(kept.response().headers()["operation-location"], OP);
    // The kept Operation-Location is a copy: the 8 KiB buffer is ours alone again.
    assert!(buffer.is_unique(), "the engine pins the transport's buffer");
    expect_get(engine.poll(now));
    let poll_buffer = buffer_ending_with("30");
    let mut running = status("Running");
    running.headers_mut().insert("retry-after", sliced(&poll_buffer, "30"));
    engine.handle_response(now, running);
    assert_eq!(expect_wait(engine.poll(now)), Duration::from_secs(30), "the hint was read");
    assert!(poll_buffer.is_unique(), "a running poll's response is dropped once read");
    // The token still resumes the operation.
    let token = engine.continuation_token().unwrap();
    let resumed = Engine::resume(Monitor::default(), options(), &token).unwrap();
    assert_eq!(resumed.initial().response().headers()["operation-location"], OP);
}

#[test]
fn the_response_polling_ends_with_is_kept_whole_in_bytes_of_its_own() {
    let now = t0();
    let mut engine = start("POST");
    expect_get(engine.poll(now));
    let buffer = buffer_ending_with("done");
    // Its body, like its headers, a slice of the connection's buffer (as hyper's body of one
    // chunk is).
    let body_buffer = buffer_ending_with(r#"{"status":"Succeeded"}"#);
    let mut done = status("Succeeded");
    *done.body_mut() = body_buffer.slice(8192..);
    done.headers_mut().insert("x-note", sliced(&buffer, "done"));
    engine.handle_response(now, done);
    while let Action::SendRequest(_) = engine.poll(now) {
        let mut resource = json_response(200, r#"{"id":"w"}"#);
        resource.headers_mut().insert("x-note", sliced(&buffer, "done"));
        engine.handle_response(now, resource);
    }
    let outcome = engine.outcome().unwrap();
    assert_eq!(outcome.headers()["x-note"], "done", "every header of the result is kept");
    assert_eq!(outcome.body(), r#"{"status":"Succeeded"}"#, "the body as it came");
    assert!(buffer.is_unique(), "the kept result's headers pin the transport's buffer");
    assert!(body_buffer.is_unique(), "the kept result's body pins the transport's buffer");
}

#[test]
fn a_relative_poll_url_is_refused_even_when_any_origin_is_allowed() {
    let initial = InitialResponse::new(
        lro_core::test_util::ScriptedTransport::request_head("POST", RESOURCE),
        json_response(202, "").with_header("operation-location", "/relative/op"),
    );
    let options = PollOptions::builder().origins(OriginPolicy::any()).build();
    let mut engine = Engine::start(Monitor::default(), options, initial).unwrap();
    assert!(matches!(engine.poll(t0()), Action::Done), "nothing is sent");
    let error = engine.outcome().unwrap_err();
    assert!(matches!(error, LroError::Policy(_)), "{error:?}");
    assert!(error.chain().to_string().contains("not an absolute URL"), "{}", error.chain());
}

#[test]
fn an_operation_done_in_its_initial_response_keeps_it_whole_in_bytes_of_its_own() {
    let buffer = buffer_ending_with("done");
    let mut response = json_response(200, r#"{"status":"Succeeded"}"#);
    response.headers_mut().insert("x-note", sliced(&buffer, "done"));
    let initial = InitialResponse::new(
        lro_core::test_util::ScriptedTransport::request_head("DELETE", RESOURCE),
        response,
    );
    let mut engine = Engine::start(Monitor::default(), options(), initial).unwrap();
    assert!(matches!(engine.poll(t0()), Action::Done));
    assert_eq!(engine.outcome().unwrap().headers()["x-note"], "done", "the result, whole");
    assert!(buffer.is_unique(), "the kept result pins the transport's buffer");
}
