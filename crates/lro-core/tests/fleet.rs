//! The fleet scheduler on virtual time: budget, per-origin cap, coordinated 429 pause,
//! fairness, early wake-up, deadlines, removal, checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Response;
use lro_core::test_util::{ScriptedTransport, WithHeader, json_response};
use lro_core::{
    Engine, Fleet, FleetAction, FleetOptions, InitialResponse, LroError, PollOptions, Timestamp,
};
use support::{Monitor, status};

fn t0() -> Timestamp {
    let frozen = lro_core::Timer::now(&lro_core::test_util::ManualClock::new());
    Timestamp::new(frozen.instant, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

/// An operation on `host` whose monitor is `/op/{n}`, polled every `interval`.
fn engine(host: &str, n: usize, interval: Duration) -> Engine<Monitor> {
    let initial = InitialResponse::new(
        ScriptedTransport::request_head("POST", &format!("http://{host}/jobs")),
        json_response(202, "").with_header("operation-location", &format!("http://{host}/op/{n}")),
    );
    let options = PollOptions::builder().interval(interval).build();
    Engine::start(Monitor::default(), options, initial).unwrap()
}

/// What happened during a simulated run.
#[derive(Default)]
struct Run {
    /// (seconds since start, key, host) of every request sent.
    sent: Vec<(f64, usize, String)>,
    finished: BTreeMap<usize, Result<Bytes, String>>,
    max_in_flight: HashMap<String, usize>,
}

/// Drives `fleet` in virtual time. Every request is answered after `latency` by `answer`
/// (given the key and how many polls of it came before).
fn drive(
    fleet: &mut Fleet<usize, Monitor>,
    start: Timestamp,
    latency: Duration,
    mut answer: impl FnMut(usize, usize, Duration) -> Response<Bytes>,
    limit: Duration,
) -> Run {
    let mut run = Run::default();
    let mut now = start;
    let mut in_flight: Vec<(Timestamp, usize, String, lro_core::RequestId)> = Vec::new();
    let mut polls: HashMap<usize, usize> = HashMap::new();
    let elapsed = |now: Timestamp| now.instant.duration_since(start.instant);
    for _ in 0..1_000_000 {
        assert!(elapsed(now) <= limit, "the run went on past {limit:?}");
        match fleet.poll(now) {
            FleetAction::Send { key, id, request } => {
                let host = request.uri().host().unwrap().to_owned();
                run.sent.push((elapsed(now).as_secs_f64(), key, host.clone()));
                in_flight.push((now.advanced(latency), key, host.clone(), id));
                let busy = in_flight.iter().filter(|(_, _, h, _)| *h == host).count();
                let max = run.max_in_flight.entry(host).or_default();
                *max = (*max).max(busy);
            }
            FleetAction::Finished { key, outcome, .. } => {
                let outcome =
                    outcome.map(|r| r.body().clone()).map_err(|e| e.kind_name().to_owned());
                run.finished.insert(key, outcome);
            }
            action @ (FleetAction::Wait(_) | FleetAction::Idle) => {
                let next_answer = in_flight.iter().map(|(at, ..)| at.instant).min();
                let wake = match (&action, next_answer) {
                    (FleetAction::Wait(d), Some(at)) => now.advanced(*d).instant.min(at),
                    (FleetAction::Wait(d), None) => now.advanced(*d).instant,
                    (_, Some(at)) => at,
                    (_, None) => return run, // nothing queued, nothing in flight
                };
                now = now.advanced(wake.saturating_duration_since(now.instant));
                // Deliver every answer due by now, oldest first.
                in_flight.sort_by_key(|(at, ..)| at.instant);
                while in_flight.first().is_some_and(|(at, ..)| at.instant <= now.instant) {
                    let (_, key, _, id) = in_flight.remove(0);
                    let count = polls.entry(key).or_default();
                    let response = answer(key, *count, elapsed(now));
                    *count += 1;
                    fleet.handle_response(now, id, response);
                }
            }
        }
    }
    panic!("no end after a million steps");
}

/// Running for the first `n` polls, then Succeeded with the key in the body.
fn after(n: usize) -> impl FnMut(usize, usize, Duration) -> Response<Bytes> {
    move |key, polls, _| {
        if polls < n {
            status("Running")
        } else {
            json_response(200, &format!(r#"{{"status":"Succeeded","key":{key}}}"#))
        }
    }
}

#[test]
fn every_operation_finishes_and_the_rate_never_exceeds_the_budget() {
    let now = t0();
    let options = FleetOptions::builder().rate(10.0).burst(5).max_in_flight_per_origin(100).build();
    let mut fleet = Fleet::new(options);
    for n in 0..50 {
        fleet.add(now, n, engine("svc", n, Duration::ZERO), None);
    }
    let run = drive(&mut fleet, now, Duration::from_millis(10), after(2), Duration::from_secs(600));
    assert_eq!(run.finished.len(), 50);
    assert!(run.finished.values().all(Result::is_ok));
    assert_eq!(run.sent.len(), 150, "three polls each, no more");
    // In any one-second window: at most the burst plus one second of rate.
    for (i, (start, ..)) in run.sent.iter().enumerate() {
        let in_window = run.sent[i..].iter().take_while(|(t, ..)| *t < start + 1.0).count();
        assert!(in_window <= 15, "{in_window} requests in the second after {start}");
    }
    assert!(fleet.is_empty());
}

#[test]
fn requests_in_flight_per_origin_never_exceed_the_cap() {
    let now = t0();
    let options =
        FleetOptions::builder().rate(1000.0).burst(1000).max_in_flight_per_origin(3).build();
    let mut fleet = Fleet::new(options);
    for n in 0..40 {
        let host = if n % 2 == 0 { "a.example" } else { "b.example" };
        fleet.add(now, n, engine(host, n, Duration::ZERO), None);
    }
    let run = drive(&mut fleet, now, Duration::from_secs(1), after(1), Duration::from_secs(600));
    assert_eq!(run.finished.len(), 40);
    assert_eq!(run.max_in_flight.get("a.example"), Some(&3));
    assert_eq!(run.max_in_flight.get("b.example"), Some(&3));
}

#[test]
fn a_429_with_retry_after_pauses_every_poll_to_that_origin_and_no_other() {
    let now = t0();
    let mut fleet = Fleet::new(FleetOptions::default());
    for n in 0..10 {
        let host = if n < 5 { "throttled.example" } else { "calm.example" };
        fleet.add(now, n, engine(host, n, Duration::from_secs(1)), None);
    }
    let mut throttled_once = false;
    let answer = move |key: usize, polls: usize, _: Duration| {
        if key == 0 && !throttled_once {
            throttled_once = true;
            return json_response(429, "").with_header("retry-after", "30");
        }
        if polls < 3 { status("Running") } else { status("Succeeded") }
    };
    let run = drive(&mut fleet, now, Duration::from_millis(50), answer, Duration::from_secs(600));
    assert_eq!(run.finished.len(), 10);
    assert!(run.finished.values().all(Result::is_ok));
    let first_429_answered = 0.05; // the first request, answered after 50 ms
    let during_pause = |host: &str| {
        run.sent
            .iter()
            .filter(|(t, _, h)| h == host && *t > first_429_answered && *t < 30.0)
            .count()
    };
    assert_eq!(during_pause("throttled.example"), 0, "the whole origin waited: {:?}", run.sent);
    assert!(during_pause("calm.example") > 0, "other origins went on");
}

#[test]
fn over_budget_the_oldest_due_poll_goes_first() {
    let now = t0();
    let options = FleetOptions::builder().rate(1.0).burst(1).build();
    let mut fleet = Fleet::new(options);
    for n in 0..6 {
        fleet.add(now, n, engine("svc", n, Duration::from_secs(3600)), None);
    }
    let run = drive(&mut fleet, now, Duration::from_millis(1), after(0), Duration::from_secs(600));
    let order: Vec<usize> = run.sent.iter().map(|(_, key, _)| *key).collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5], "added first, served first");
    let times: Vec<u64> = run.sent.iter().map(|(t, ..)| t.round() as u64).collect();
    assert_eq!(times, [0, 1, 2, 3, 4, 5], "one a second, as the budget says");
}

#[test]
fn wake_makes_one_operation_poll_now_deadline_and_remove_end_others() {
    let now = t0();
    let mut fleet = Fleet::new(FleetOptions::default());
    fleet.add(now, 1, engine("svc", 1, Duration::from_secs(60)), None);
    fleet.add(now, 2, engine("svc", 2, Duration::from_secs(60)), Some(Duration::from_secs(5)));
    fleet.add(now, 3, engine("svc", 3, Duration::from_secs(60)), None);
    // First polls of all three, answered Running.
    for _ in 0..3 {
        let FleetAction::Send { id, .. } = fleet.poll(now) else { panic!("a send") };
        fleet.handle_response(now, id, status("Running"));
    }
    assert!(
        matches!(fleet.poll(now), FleetAction::Wait(d) if d == Duration::from_secs(5) || d == Duration::from_secs(60))
    );
    // A notification for 1, ten seconds later: it polls at once, not after 60 s.
    let later = now.advanced(Duration::from_secs(10));
    assert!(fleet.wake(later, &1));
    // Operation 2's deadline (5 s) has passed: it ends with a final timeout and a token.
    let mut seen = Vec::new();
    let mut woken = None;
    for _ in 0..2 {
        match fleet.poll(later) {
            FleetAction::Send { key, id, .. } => {
                woken = Some(id);
                seen.push(format!("send {key}"));
            }
            FleetAction::Finished { key, outcome: Err(LroError::Timeout(t)), .. } => {
                assert!(t.is_final());
                seen.push(format!("deadline {key}"));
            }
            other => panic!("{other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["deadline 2", "send 1"]);
    // Removing 3: it never polls again.
    assert!(fleet.remove(&3).is_some());
    fleet.handle_response(later, woken.unwrap(), status("Succeeded"));
    assert!(matches!(fleet.poll(later), FleetAction::Finished { key: 1, outcome: Ok(_), .. }));
    assert!(matches!(fleet.poll(later.advanced(Duration::from_secs(3600))), FleetAction::Idle));
    assert!(fleet.is_empty());
}

#[test]
fn a_checkpoint_of_every_operation_resumes_to_the_same_results() {
    let now = t0();
    let mut fleet = Fleet::new(FleetOptions::default());
    for n in 0..20 {
        fleet.add(now, n, engine("svc", n, Duration::from_secs(1)), None);
    }
    // One round of polls, then a crash: keep only the tokens.
    for _ in 0..20 {
        let FleetAction::Send { id, .. } = fleet.poll(now) else { panic!("a send") };
        fleet.handle_response(now, id, status("Running"));
    }
    let checkpoint = fleet.continuation_tokens();
    assert_eq!(checkpoint.len(), 20);
    drop(fleet);

    let mut resumed = Fleet::new(FleetOptions::default());
    for (key, token) in checkpoint {
        let options = PollOptions::builder().interval(Duration::from_secs(1)).build();
        let engine = Engine::resume(Monitor::default(), options, &token.unwrap()).unwrap();
        resumed.add(now, key, engine, None);
    }
    let run =
        drive(&mut resumed, now, Duration::from_millis(5), after(1), Duration::from_secs(600));
    assert_eq!(run.finished.len(), 20);
    for (key, outcome) in run.finished {
        let body = outcome.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["key"], key);
    }
}

/// Sends what is due now; returns the (key, id) of each request.
fn send_all(
    fleet: &mut Fleet<usize, Monitor>,
    now: Timestamp,
) -> Vec<(usize, lro_core::RequestId)> {
    let mut sent = Vec::new();
    while let FleetAction::Send { key, id, .. } = fleet.poll(now) {
        sent.push((key, id));
    }
    sent
}

#[test]
fn a_paused_origin_does_not_hold_back_the_polls_of_other_origins() {
    let now = t0();
    let mut fleet = Fleet::new(FleetOptions::default());
    fleet.add(now, 0, engine("throttled.example", 0, Duration::from_secs(1)), None);
    fleet.add(now, 1, engine("throttled.example", 1, Duration::from_secs(1)), None);
    fleet.add(now, 2, engine("calm.example", 2, Duration::from_secs(5)), None);
    for (key, id) in send_all(&mut fleet, now) {
        let answer = if key == 0 {
            json_response(429, "").with_header("retry-after", "600")
        } else {
            status("Running")
        };
        fleet.handle_response(now, id, answer);
    }
    // At 2 s operation 1 is due but paused for 600 s; operation 2 (another origin) is due at 5 s.
    let at2 = now.advanced(Duration::from_secs(2));
    match fleet.poll(at2) {
        FleetAction::Wait(wait) => assert!(wait <= Duration::from_secs(3), "waited {wait:?}"),
        other => panic!("{other:?}"),
    }
    let at5 = now.advanced(Duration::from_secs(5));
    assert!(matches!(fleet.poll(at5), FleetAction::Send { key: 2, .. }));
}

#[test]
fn a_full_origin_does_not_make_the_fleet_idle_while_another_poll_comes_due() {
    let now = t0();
    let options = FleetOptions::builder().max_in_flight_per_origin(1).build();
    let mut fleet = Fleet::new(options);
    fleet.add(now, 0, engine("a.example", 0, Duration::from_secs(1)), None);
    fleet.add(now, 1, engine("a.example", 1, Duration::from_secs(1)), None);
    fleet.add(now, 2, engine("b.example", 2, Duration::from_secs(1)), None);
    let sent = send_all(&mut fleet, now); // 0 and 2 go; 1 waits for a's slot
    assert_eq!(sent.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [0, 2]);
    let b = sent.iter().find(|(k, _)| *k == 2).unwrap().1;
    fleet.handle_response(now, b, status("Running")); // b polls again in 1 s
    assert!(matches!(fleet.poll(now), FleetAction::Wait(d) if d <= Duration::from_secs(1)));
}

#[test]
fn replacing_or_re_adding_an_operation_never_sends_twice_nor_leaks_a_slot() {
    let now = t0();
    let options = FleetOptions::builder().max_in_flight_per_origin(1).build();
    let mut fleet = Fleet::new(options);
    fleet.add(now, 7, engine("svc", 7, Duration::from_secs(1)), None);
    fleet.remove(&7);
    fleet.add(now, 7, engine("svc", 7, Duration::from_secs(1)), None);
    let sent = send_all(&mut fleet, now);
    assert_eq!(sent.len(), 1, "one operation 7, one request: {sent:?}");
    // Replaced while its request is in flight: the old answer is ignored, its slot freed.
    fleet.add(now, 7, engine("svc", 7, Duration::from_secs(1)), None);
    assert!(matches!(fleet.poll(now), FleetAction::Idle), "the slot is still taken");
    fleet.handle_response(now, sent[0].1, status("Succeeded"));
    let again = send_all(&mut fleet, now);
    assert_eq!(again.len(), 1, "the new operation 7 polls once its origin is free");
    fleet.handle_response(now, again[0].1, status("Succeeded"));
    assert!(matches!(fleet.poll(now), FleetAction::Finished { key: 7, outcome: Ok(_), .. }));
    assert!(fleet.is_empty() && fleet.in_flight() == 0);
}

#[test]
fn a_wake_while_a_poll_is_in_flight_polls_again_right_after_its_answer() {
    let now = t0();
    let mut fleet = Fleet::new(FleetOptions::default());
    fleet.add(now, 1, engine("svc", 1, Duration::from_secs(60)), None);
    let sent = send_all(&mut fleet, now);
    assert!(fleet.wake(now, &1)); // the notification overtakes the answer
    fleet.handle_response(now, sent[0].1, status("Running"));
    assert!(matches!(fleet.poll(now), FleetAction::Send { key: 1, .. }), "not after 60 s");
}

#[test]
fn a_response_reports_the_operation_whose_status_it_changed_and_stats_count_the_traffic() {
    let now = t0();
    let mut fleet = Fleet::new(FleetOptions::default());
    fleet.add(now, 1, engine("svc", 1, Duration::from_secs(1)), None);
    fleet.add(now, 2, engine("svc", 2, Duration::from_secs(1)), None);
    let sent = send_all(&mut fleet, now);
    assert_eq!(sent.len(), 2);
    // From the initial "InProgress" to "Running": a change, the operation goes on.
    assert_eq!(fleet.handle_response(now, sent[0].1, status("Running")), Some(sent[0].0));
    let running = fleet.engine(&sent[0].0).unwrap().status().as_str().to_owned();
    assert_eq!(running, "Running");
    // A 429 leaves the status alone but pauses the origin.
    let throttle = json_response(429, "").with_header("retry-after", "10");
    assert_eq!(fleet.handle_response(now, sent[1].1, throttle), None);
    let stats = fleet.stats(now);
    assert_eq!((stats.operations, stats.in_flight, stats.requests_sent), (2, 0, 2));
    assert_eq!((stats.throttled, stats.paused_origins), (1, 1));
    assert_eq!(fleet.stats(now.advanced(Duration::from_secs(11))).paused_origins, 0);
    // The same status again is no change; an operation that ends is reported by `Finished`.
    let later = now.advanced(Duration::from_secs(11));
    for (key, id) in send_all(&mut fleet, later) {
        let answer = if key == sent[0].0 { status("Running") } else { status("Succeeded") };
        assert_eq!(fleet.handle_response(later, id, answer), None, "operation {key}");
    }
    assert_eq!(fleet.stats(later).requests_sent, 4);
}

#[test]
fn an_operation_waiting_for_a_full_origin_still_ends_at_its_deadline() {
    let now = t0();
    let options = FleetOptions::builder().max_in_flight_per_origin(1).build();
    let mut fleet = Fleet::new(options);
    fleet.add(now, 0, engine("svc", 0, Duration::from_secs(1)), None);
    fleet.add(now, 1, engine("svc", 1, Duration::from_secs(1)), Some(Duration::from_secs(5)));
    let sent = send_all(&mut fleet, now); // 0 takes the only slot, and its answer never comes
    assert_eq!(sent.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [0]);
    match fleet.poll(now) {
        FleetAction::Wait(wait) => assert_eq!(wait, Duration::from_secs(5), "until the deadline"),
        other => panic!("{other:?}"),
    }
    let at5 = now.advanced(Duration::from_secs(5));
    match fleet.poll(at5) {
        FleetAction::Finished { key: 1, outcome: Err(e), .. } => {
            assert_eq!(e.kind_name(), "timeout", "{e}");
        }
        other => panic!("{other:?}"),
    }
    // The slot frees: nothing of operation 1 is sent.
    fleet.handle_response(at5, sent[0].1, status("Succeeded"));
    assert!(matches!(fleet.poll(at5), FleetAction::Finished { key: 0, outcome: Ok(_), .. }));
    assert!(matches!(fleet.poll(at5), FleetAction::Idle) && fleet.is_empty());
}

#[test]
fn woken_or_removed_operations_waiting_for_a_full_origin_never_strand_the_others() {
    let now = t0();
    let options = FleetOptions::builder().max_in_flight_per_origin(1).build();
    let mut fleet = Fleet::new(options);
    for key in [0, 1, 2, 3] {
        fleet.add(now, key, engine("svc", key, Duration::from_secs(1)), None);
    }
    let sent = send_all(&mut fleet, now); // 0 takes the slot; 1, 2 and 3 wait for it
    assert_eq!(sent.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [0]);
    for _ in 0..100 {
        assert!(fleet.wake(now, &1)); // a storm of notifications for a waiting operation
    }
    fleet.remove(&2);
    fleet.handle_response(now, sent[0].1, status("Succeeded"));
    let mut finished = Vec::new();
    let mut sends = 0;
    for _ in 0..50 {
        match fleet.poll(now) {
            FleetAction::Send { id, .. } => {
                sends += 1;
                fleet.handle_response(now, id, status("Succeeded"));
            }
            FleetAction::Finished { key, .. } => finished.push(key),
            FleetAction::Idle | FleetAction::Wait(_) => break,
        }
    }
    finished.sort_unstable();
    assert_eq!(finished, [0, 1, 3], "every operation left ends; none is stranded");
    assert_eq!(sends, 2, "one poll each for 1 and 3, however many wakes");
    assert!(fleet.is_empty());
}

#[test]
fn a_pause_past_the_end_of_time_still_pauses_the_origin() {
    let now = t0();
    let options = FleetOptions::builder().max_pause(Duration::MAX).build();
    let mut fleet = Fleet::new(options);
    fleet.add(now, 1, engine("svc", 1, Duration::from_secs(1)), None);
    let sent = send_all(&mut fleet, now);
    // An instant plus this much overflows: the pause saturates instead of being dropped.
    let throttle = json_response(429, "").with_header("retry-after", "1e300");
    fleet.handle_response(now, sent[0].1, throttle);
    let stats = fleet.stats(now);
    assert_eq!((stats.throttled, stats.paused_origins), (1, 1));
    let a_year = now.advanced(Duration::from_secs(365 * 24 * 3600));
    assert_eq!(fleet.stats(a_year).paused_origins, 1, "still paused");
    assert!(send_all(&mut fleet, a_year).is_empty(), "no poll goes to a paused origin");
}
