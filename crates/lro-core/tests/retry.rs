//! Transient faults while polling: the engine retries polls and final GETs within a budget,
//! never changing the status for a failed attempt. Time is passed in by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use lro_core::test_util::{WithHeader, json_response};
use lro_core::{
    Action, Engine, LroError, PollOptions, RetryPolicy, Timestamp, TransportError,
    TransportErrorKind,
};
use support::{Monitor, OP, RESOURCE, started, status};

fn t0() -> Timestamp {
    let frozen = lro_core::Timer::now(&lro_core::test_util::ManualClock::new());
    Timestamp::new(frozen.instant, SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
}

fn start(method: &str, retry: RetryPolicy) -> Engine<Monitor> {
    let options = PollOptions::builder().interval(Duration::from_secs(30)).retry(retry).build();
    Engine::start(Monitor::default(), options, started(method, "")).unwrap()
}

fn seeded() -> RetryPolicy {
    RetryPolicy::builder().seed(42).build()
}

/// Polls until the next request, returning it and the time it went out.
fn next_request(
    engine: &mut Engine<Monitor>,
    mut now: Timestamp,
) -> (http::Request<Bytes>, Timestamp) {
    for _ in 0..10 {
        match engine.poll(now) {
            Action::SendRequest(request) => return (request, now),
            Action::Wait(wait) => now = now.advanced(wait),
            Action::Done => panic!("done early: {:?}", engine.outcome()),
        }
    }
    panic!("no request after ten waits");
}

fn connection_reset() -> TransportError {
    TransportError::other("connection reset by peer")
}

#[test]
fn a_503_with_retry_after_is_retried_after_that_wait_and_changes_nothing() {
    let now = t0();
    let mut engine = start("POST", seeded());
    let (request, now) = next_request(&mut engine, now);
    assert_eq!(request.uri(), OP);
    engine.handle_response(now, status("Running"));
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, json_response(503, "busy").with_header("retry-after", "2"));
    assert_eq!(engine.status().as_str(), "Running", "a failed attempt keeps the status");
    assert_eq!(engine.polls(), 1, "a failed attempt is not an answered poll");
    assert!(matches!(engine.poll(now), Action::Wait(d) if d == Duration::from_secs(2)));
    let (request, now) = next_request(&mut engine, now);
    assert_eq!(request.uri(), OP, "the same poll, again");
    engine.handle_response(now, status("Succeeded"));
    assert!(matches!(engine.poll(now), Action::Done));
    assert_eq!(engine.outcome().unwrap().body(), &Bytes::from_static(br#"{"status":"Succeeded"}"#));
}

#[test]
fn transient_faults_are_retried_with_jittered_backoff_then_fail_with_the_attempt_count() {
    let mut now = t0();
    let mut engine = start("POST", seeded());
    let mut waits = Vec::new();
    for attempt in 1..=4 {
        let (_, sent) = next_request(&mut engine, now);
        now = sent;
        engine.handle_transport_error(now, connection_reset());
        if attempt < 4 {
            let Action::Wait(wait) = engine.poll(now) else { panic!("attempt {attempt}: no wait") };
            waits.push(wait);
        }
    }
    // Full jitter: each wait is at most 0.8 s × 2^(n−1).
    for (n, wait) in waits.iter().enumerate() {
        assert!(*wait <= Duration::from_millis(800) * (1 << n), "retry {}: {wait:?}", n + 1);
    }
    let error = engine.outcome().expect_err("budget spent");
    assert!(matches!(error, LroError::Transport(_)), "{error:?}");
    assert_eq!(error.attempts(), Some(4));
    assert!(error.chain().to_string().contains("after 4 attempts"), "{error}");
    assert!(error.continuation_token().is_some());
    assert_eq!(engine.status().as_str(), "InProgress", "the status is still the last known one");
}

#[test]
fn every_transient_status_is_retried_and_an_exhausted_budget_carries_the_last_status() {
    for code in [408u16, 429, 500, 502, 503, 504] {
        let mut now = t0();
        let mut engine = start("POST", seeded());
        for _ in 0..4 {
            let (_, sent) = next_request(&mut engine, now);
            now = sent;
            engine.handle_response(now, json_response(code, r#"{"error":{"code":"Busy"}}"#));
        }
        let error = engine.outcome().expect_err("budget spent");
        let details = error.response().unwrap_or_else(|| panic!("{code}: {error:?}"));
        assert_eq!(details.status_code().as_u16(), code);
        assert_eq!(error.attempts(), Some(4), "{code}");
        assert!(error.continuation_token().is_some());
        assert_eq!(engine.status().as_str(), "InProgress", "{code}: not marked failed");
    }
}

#[test]
fn a_429_retry_after_is_capped_at_the_maximum_delay() {
    let now = t0();
    let options = PollOptions::builder().max_delay(Duration::from_secs(60)).retry(seeded()).build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, json_response(429, "").with_header("retry-after", "86400"));
    assert!(matches!(engine.poll(now), Action::Wait(d) if d == Duration::from_secs(60)));
}

#[test]
fn a_zero_retry_after_on_a_503_still_waits_the_minimum_delay() {
    let now = t0();
    let mut engine = start("POST", seeded());
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, json_response(503, "").with_header("retry-after", "0"));
    assert!(matches!(engine.poll(now), Action::Wait(d) if d == lro_core::DEFAULT_MIN_DELAY));
}

#[test]
fn the_final_get_is_retried_too_and_the_result_is_the_services_bytes() {
    let now = t0();
    let mut engine = start("PUT", seeded());
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, status("Succeeded"));
    let (request, now) = next_request(&mut engine, now);
    assert_eq!(request.uri(), RESOURCE);
    engine.handle_transport_error(now, TransportError::new(TransportErrorKind::Timeout, "slow"));
    let (request, now) = next_request(&mut engine, now);
    assert_eq!(request.uri(), RESOURCE, "the final GET, again");
    engine.handle_response(now, json_response(502, "bad gateway"));
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, json_response(200, r#"{"name": "w1" }"#));
    assert_eq!(engine.outcome().unwrap().body(), &Bytes::from_static(br#"{"name": "w1" }"#));
}

#[test]
fn terminal_failures_and_oversized_bodies_are_never_retried() {
    let now = t0();
    let mut engine = start("POST", seeded());
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, status("Failed"));
    assert!(matches!(engine.poll(now), Action::Done));
    assert!(matches!(engine.outcome(), Err(LroError::OperationFailed(_))));

    let mut other = start("POST", seeded());
    let (_, now) = next_request(&mut other, now);
    other.handle_transport_error(
        now,
        TransportError::new(TransportErrorKind::BodyTooLarge, "16 MiB"),
    );
    let error = other.outcome().expect_err("not retried");
    assert_eq!(error.attempts(), Some(1));
}

#[test]
fn no_retry_goes_past_the_operations_deadline() {
    let now = t0();
    let options = PollOptions::builder()
        .max_elapsed(Duration::from_secs(10))
        .retry(
            RetryPolicy::builder()
                .initial_backoff(Duration::from_secs(60))
                .max_retries(10)
                .seed(3)
                .build(),
        )
        .build();
    let mut engine = Engine::start(Monitor::default(), options, started("POST", "")).unwrap();
    let mut sent = 0;
    let mut clock = now;
    while let (Some((_, at)), false) = (try_next(&mut engine, clock), engine.finished()) {
        sent += 1;
        clock = at;
        engine.handle_transport_error(clock, connection_reset());
    }
    assert!(engine.finished());
    assert!(clock.instant.duration_since(now.instant) <= Duration::from_secs(10));
    assert!(sent < 11, "stopped by the deadline, not the budget ({sent} attempts)");
    assert!(matches!(engine.outcome(), Err(LroError::Transport(_))));
}

fn try_next(
    engine: &mut Engine<Monitor>,
    mut now: Timestamp,
) -> Option<(http::Request<Bytes>, Timestamp)> {
    loop {
        match engine.poll(now) {
            Action::SendRequest(request) => return Some((request, now)),
            Action::Wait(wait) => now = now.advanced(wait),
            Action::Done => return None,
        }
    }
}

#[test]
fn a_good_answer_resets_the_budget_for_the_next_request() {
    let mut now = t0();
    let mut engine = start("POST", seeded());
    for _ in 0..5 {
        for _ in 0..3 {
            let (_, sent) = next_request(&mut engine, now);
            now = sent;
            engine.handle_response(now, json_response(500, ""));
        }
        let (_, sent) = next_request(&mut engine, now);
        now = sent;
        engine.handle_response(now, status("Running"));
    }
    assert!(
        !engine.finished(),
        "15 faults in all, never more than 3 in a row: {:?}",
        engine.outcome()
    );
    assert_eq!(engine.polls(), 5);
}

#[test]
fn with_retries_off_the_first_fault_ends_the_operation() {
    let now = t0();
    let mut engine = start("POST", RetryPolicy::none());
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, json_response(503, ""));
    assert!(matches!(engine.outcome(), Err(LroError::BadStatus(_))));
    assert_eq!(engine.status().as_str(), "Failed", "azure-core's rule without retries");
}

#[test]
fn a_poll_body_that_cannot_be_decoded_is_polled_again() {
    let now = t0();
    let mut engine = start("POST", seeded());
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, json_response(200, r#"{"status": "Runn"#));
    assert!(!engine.finished(), "{:?}", engine.outcome());
    assert_eq!(engine.polls(), 0);
    let (request, now) = next_request(&mut engine, now);
    assert_eq!(request.uri(), OP);
    engine.handle_response(now, status("Succeeded"));
    assert!(engine.finished() && engine.outcome().is_ok());
}

#[test]
fn a_truncated_json_final_resource_is_fetched_again_and_then_returned_exactly() {
    let now = t0();
    let mut engine = start("PUT", seeded());
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, status("Succeeded"));
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, json_response(200, r#"{"name": "w"#));
    assert!(!engine.finished(), "a corrupted resource is not the result");
    let (request, now) = next_request(&mut engine, now);
    assert_eq!(request.uri(), RESOURCE);
    engine.handle_response(now, json_response(200, "{\"name\":\"w1\"}\n"));
    assert_eq!(engine.outcome().unwrap().body(), &Bytes::from_static(b"{\"name\":\"w1\"}\n"));
}

#[test]
fn with_retries_off_a_truncated_final_resource_is_returned_as_the_service_sent_it() {
    let now = t0();
    let mut engine = start("PUT", RetryPolicy::none());
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, status("Succeeded"));
    let (_, now) = next_request(&mut engine, now);
    engine.handle_response(now, json_response(200, r#"{"name": "w"#));
    assert_eq!(engine.outcome().unwrap().body(), &Bytes::from_static(br#"{"name": "w"#));
}
