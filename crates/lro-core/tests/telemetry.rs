//! Spans, events and metrics of one operation, captured by a test subscriber and a test
//! recorder (features `tracing` and `metrics`): names, fields, redaction, counters.
#![cfg(all(feature = "tracing", feature = "metrics"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use lro_core::test_util::{WithHeader, json_response};
use lro_core::{
    Action, Engine, InitialResponse, OriginPolicy, PollOptions, Timestamp, TransportError,
    WaitReason,
};
use lro_strategies::LroBasePolling;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

const SECRET: &str = "s3cr3t-VALUE";

// ---- a capturing tracing layer -------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct EventRecord {
    level: tracing::Level,
    span: Option<String>,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Captured {
    spans: Vec<SpanRecord>,
    ids: BTreeMap<u64, usize>,
    events: Vec<EventRecord>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut record =
            SpanRecord { name: attrs.metadata().name().to_owned(), ..Default::default() };
        attrs.record(&mut Fields(&mut record.fields));
        record.parent = ctx.span(id).and_then(|s| s.parent()).map(|p| p.name().to_owned());
        let mut captured = self.0.lock().unwrap();
        let index = captured.spans.len();
        captured.spans.push(record);
        captured.ids.insert(id.into_u64(), index);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut captured = self.0.lock().unwrap();
        let Some(&index) = captured.ids.get(&id.into_u64()) else { return };
        values.record(&mut Fields(&mut captured.spans[index].fields));
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let span = ctx.event_span(event).map(|s| s.name().to_owned());
        let level = *event.metadata().level();
        self.0.lock().unwrap().events.push(EventRecord { level, span, fields });
    }
}

// ---- a recording metrics recorder ----------------------------------------------------------

#[derive(Default)]
struct Metrics {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Mutex<Vec<f64>>>>>,
}

struct Histo(Arc<Mutex<Vec<f64>>>);
impl metrics::HistogramFn for Histo {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn key_text(key: &metrics::Key) -> String {
    let mut labels: Vec<String> =
        key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl metrics::Recorder for Metrics {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let cell = self.counters.lock().unwrap().entry(key_text(key)).or_default().clone();
        metrics::Counter::from_arc(cell)
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        let cell = self.histograms.lock().unwrap().entry(key_text(key)).or_default().clone();
        metrics::Histogram::from_arc(Arc::new(Histo(cell)))
    }
}

impl Metrics {
    fn counter(&self, key: &str) -> u64 {
        self.counters.lock().unwrap().get(key).map_or(0, |c| c.load(Ordering::Relaxed))
    }
    fn histogram(&self, key: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap()
            .get(key)
            .map(|h| h.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

// ---- the operation -------------------------------------------------------------------------

fn t0() -> Timestamp {
    let frozen = lro_core::Timer::now(&lro_core::test_util::ManualClock::new());
    Timestamp::new(frozen.instant, SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
}

fn get(action: Action) -> Request<Bytes> {
    match action {
        Action::SendRequest(request) => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn wait(action: Action) -> Duration {
    match action {
        Action::Wait(d) => d,
        other => panic!("expected a wait, got {other:?}"),
    }
}

/// A PUT with an `Authorization` header and an `api-key` on every poll, polled through an
/// Operation-Location URL with a SAS-like query: throttled once, running at 40 %, a reset
/// connection, then done.
fn run_operation() -> (Vec<Duration>, Engine<LroBasePolling>) {
    let request = Request::put(format!("https://svc.example/widgets/w1?sig={SECRET}"))
        .header("authorization", format!("Bearer {SECRET}"))
        .body(Bytes::new())
        .unwrap();
    let response = json_response(202, "").with_header(
        "operation-location",
        &format!("https://svc.example/operations/op1?sig={SECRET}"),
    );
    let initial = InitialResponse::from_exchange(&request, response);
    let options = PollOptions::builder()
        .interval(Duration::from_secs(10))
        .header(HeaderName::from_static("api-key"), HeaderValue::from_static(SECRET))
        .origins(OriginPolicy::same_origin())
        .build();
    let strategy = LroBasePolling::builder().into_parts().0;
    let mut engine = Engine::start(strategy, options, initial).unwrap();
    let mut now = t0();
    let mut waits = Vec::new();

    // 1: throttled, Retry-After 7 s.
    get(engine.poll(now));
    engine.handle_response(now, json_response(429, "").with_header("retry-after", "7"));
    waits.push(wait(engine.poll(now)));
    assert_eq!(engine.next_wait().map(|(_, r)| r), Some(WaitReason::Throttled));
    now = now.advanced(Duration::from_secs(7));
    // 2: running, 40 %, the service asks for 5 s.
    get(engine.poll(now));
    engine.handle_response(
        now,
        json_response(200, r#"{"status":"Running","percentComplete":40}"#)
            .with_header("retry-after", "5"),
    );
    waits.push(wait(engine.poll(now)));
    assert_eq!(engine.next_wait().map(|(_, r)| r), Some(WaitReason::RetryAfter));
    now = now.advanced(Duration::from_secs(5));
    // 3: the connection resets.
    get(engine.poll(now));
    engine.handle_transport_error(now, TransportError::other("connection reset"));
    let backoff = wait(engine.poll(now));
    waits.push(backoff);
    assert_eq!(engine.next_wait().map(|(_, r)| r), Some(WaitReason::Backoff));
    now = now.advanced(backoff);
    // 4: running, no hint: the interval.
    get(engine.poll(now));
    engine.handle_response(now, json_response(200, r#"{"status":"Running"}"#));
    waits.push(wait(engine.poll(now)));
    assert_eq!(engine.next_wait().map(|(_, r)| r), Some(WaitReason::Interval));
    now = now.advanced(Duration::from_secs(10));
    // 5: done (a PUT: then the final GET on the resource URL).
    get(engine.poll(now));
    engine.handle_response(now, json_response(200, r#"{"status":"Succeeded"}"#));
    let last = get(engine.poll(now));
    assert_eq!(last.uri().path(), "/widgets/w1", "the final GET");
    engine.handle_response(now, json_response(200, r#"{"name":"w1"}"#));
    assert!(matches!(engine.poll(now), Action::Done));
    assert!(engine.outcome().is_ok());
    (waits, engine)
}

fn captured<T>(f: impl FnOnce() -> T) -> (T, Captured, Metrics) {
    captured_at(tracing::level_filters::LevelFilter::TRACE, f)
}

/// As [`captured`], with a subscriber that wants only `level` and above (`lro -v` is INFO).
fn captured_at<T>(
    level: tracing::level_filters::LevelFilter,
    f: impl FnOnce() -> T,
) -> (T, Captured, Metrics) {
    use tracing_subscriber::Layer as _;
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone().with_filter(level));
    let recorder = Metrics::default();
    let value = tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, f)
    });
    let captured = std::mem::take(&mut *capture.0.lock().unwrap());
    (value, captured, recorder)
}

#[test]
fn one_operation_span_with_otel_fields_and_the_outcome() {
    let (_, captured, _) = captured(run_operation);
    let operations: Vec<_> = captured.spans.iter().filter(|s| s.name == "lro.operation").collect();
    assert_eq!(operations.len(), 1);
    let op = &operations[0].fields;
    assert_eq!(op["http.request.method"], "PUT");
    assert_eq!(op["server.address"], "svc.example");
    assert_eq!(op["server.port"], "443");
    assert_eq!(op["url.full"], "https://svc.example/widgets/w1");
    assert_eq!(op["lro.operation_url"], "https://svc.example/operations/op1");
    assert_eq!(op["lro.strategy"], "operation-resource");
    assert_eq!(op["lro.resumed"], "false");
    assert_eq!(op["lro.outcome"], "succeeded");
    assert_eq!(op["lro.polls"], "4", "three status polls answered with a status, and the GET");
    assert_eq!(op["lro.status"], "Succeeded");
    let finished: Vec<_> = captured
        .events
        .iter()
        .filter(|e| e.fields.get("message").is_some_and(|m| m == "operation finished"))
        .collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].span.as_deref(), Some("lro.operation"));
    assert_eq!(finished[0].fields["lro.outcome"], "succeeded");
}

#[test]
fn one_poll_span_per_request_with_status_code_attempt_and_the_delay_chosen_and_why() {
    let (_, captured, _) = captured(run_operation);
    let polls: Vec<_> = captured.spans.iter().filter(|s| s.name == "lro.poll").collect();
    assert_eq!(polls.len(), 6, "429, 200, reset, 200, 200, final GET");
    assert!(polls.iter().all(|p| p.parent.as_deref() == Some("lro.operation")));
    let field = |i: usize, name: &str| polls[i].fields.get(name).cloned().unwrap_or_default();
    assert_eq!(field(0, "http.response.status_code"), "429");
    assert_eq!(field(0, "lro.delay_reason"), "throttled");
    assert_eq!(field(0, "lro.delay_ms"), "7000");
    assert_eq!(field(0, "lro.attempt"), "1");
    assert_eq!(field(1, "lro.attempt"), "2", "the throttled request, again");
    assert_eq!(field(1, "lro.status"), "Running");
    assert_eq!(field(1, "lro.percent_complete"), "40");
    assert_eq!(field(1, "lro.delay_reason"), "retry_after");
    assert_eq!(field(1, "lro.delay_ms"), "5000");
    assert_eq!(field(2, "error.type"), "Other");
    assert_eq!(field(2, "lro.delay_reason"), "backoff");
    assert_eq!(field(3, "lro.delay_reason"), "interval");
    assert_eq!(field(3, "lro.delay_ms"), "10000");
    assert_eq!(field(5, "lro.final_get"), "true");
    assert_eq!(field(5, "url.full"), "https://svc.example/widgets/w1");
    let retries: Vec<_> = captured
        .events
        .iter()
        .filter(|e| e.fields.get("message").is_some_and(|m| m.contains("retrying")))
        .collect();
    assert_eq!(retries.len(), 2, "the 429 and the reset");
    assert_eq!(retries[0].fields["lro.delay_reason"], "throttled");
    assert_eq!(retries[0].span.as_deref(), Some("lro.operation"));
}

#[test]
fn no_span_or_event_carries_a_credential_or_a_query() {
    let (_, captured, _) = captured(run_operation);
    let everything = format!("{:?}{:?}", captured.spans, captured.events);
    assert!(!everything.contains(SECRET), "a secret leaked into telemetry: {everything}");
    assert!(!everything.contains("sig="), "a query string leaked: {everything}");
    assert!(!everything.to_ascii_lowercase().contains("bearer"));
}

#[test]
fn metrics_count_polls_retries_throttled_waits_and_time_the_operation() {
    let ((waits, _), _, metrics) = captured(run_operation);
    let strategy = "strategy=operation-resource";
    assert_eq!(metrics.counter(&format!("lro_operations_started_total{{{strategy}}}")), 1);
    assert_eq!(metrics.counter(&format!("lro_polls_total{{{strategy}}}")), 5, "answered requests");
    assert_eq!(metrics.counter(&format!("lro_retries_total{{reason=throttled,{strategy}}}")), 1);
    assert_eq!(metrics.counter(&format!("lro_retries_total{{reason=backoff,{strategy}}}")), 1);
    assert_eq!(metrics.counter("lro_throttled_waits_total{source=operation}"), 1);
    let finished = format!("lro_operations_finished_total{{outcome=succeeded,{strategy}}}");
    assert_eq!(metrics.counter(&finished), 1);
    let durations = metrics
        .histogram(&format!("lro_operation_duration_seconds{{outcome=succeeded,{strategy}}}"));
    let expected: Duration = waits.iter().sum();
    assert_eq!(
        durations,
        vec![expected.as_secs_f64()],
        "virtual time from the first poll to the end"
    );
}

#[test]
fn a_refused_poll_is_a_warning_naming_the_policy_and_the_outcome() {
    let request = Request::put("https://svc.example/widgets/w1").body(Bytes::new()).unwrap();
    let response =
        json_response(202, "").with_header("operation-location", "https://evil.example/op?sig=x");
    let initial = InitialResponse::from_exchange(&request, response);
    let strategy = LroBasePolling::builder().into_parts().0;
    let (_, captured, metrics) = captured(|| {
        let mut engine = Engine::start(strategy, PollOptions::default(), initial).unwrap();
        assert!(matches!(engine.poll(t0()), Action::Done));
        engine
    });
    let warning =
        captured.events.iter().find(|e| e.level == tracing::Level::WARN).expect("a warning");
    assert_eq!(warning.fields["lro.outcome"], "policy");
    assert_eq!(warning.fields["error.type"], "policy");
    assert!(warning.fields["error.message"].contains("https://evil.example"), "{warning:?}");
    assert!(!warning.fields["error.message"].contains("sig="));
    assert_eq!(
        metrics
            .counter("lro_operations_finished_total{outcome=policy,strategy=operation-resource}"),
        1
    );
}

#[test]
fn without_a_subscriber_nothing_is_recorded_and_the_operation_still_runs() {
    // No subscriber, no recorder: the hooks are no-ops, the engine behaves the same.
    let (waits, engine) = run_operation();
    assert_eq!(waits.len(), 4);
    assert_eq!(engine.polls(), 4);
}

#[test]
fn wait_reasons_read_as_words() {
    assert_eq!(WaitReason::RetryAfter.to_string(), "Retry-After");
    assert_eq!(WaitReason::Throttled.to_string(), "throttled");
}

#[test]
fn a_fleet_pausing_a_throttled_origin_counts_it_and_says_so() {
    use lro_core::{Fleet, FleetAction, FleetOptions};
    let request = Request::post("https://svc.example/jobs").body(Bytes::new()).unwrap();
    let response = json_response(202, "")
        .with_header("operation-location", &format!("https://svc.example/ops/1?sig={SECRET}"));
    let initial = InitialResponse::from_exchange(&request, response);
    let strategy = LroBasePolling::builder().into_parts().0;
    let (_, captured, metrics) = captured(|| {
        let engine = Engine::start(strategy, PollOptions::default(), initial).unwrap();
        let mut fleet = Fleet::new(FleetOptions::builder().build());
        let now = t0();
        fleet.add(now, 1_u32, engine, None);
        let FleetAction::Send { id, .. } = fleet.poll(now) else { panic!("a poll is due") };
        let throttled = json_response(429, "").with_header("retry-after", "30");
        fleet.handle_response(now, id, throttled);
    });
    assert_eq!(metrics.counter("lro_throttled_waits_total{source=fleet}"), 1);
    let event = captured
        .events
        .iter()
        .find(|e| e.fields.get("message").is_some_and(|m| m.contains("origin throttled")))
        .expect("an event for the paused origin");
    assert_eq!(event.fields["lro.origin"], "https://svc.example:443");
    assert_eq!(event.fields["lro.delay_ms"], "30000");
    let everything = format!("{:?}{:?}", captured.spans, captured.events);
    assert!(!everything.contains(SECRET));
}

#[test]
fn at_info_level_retries_are_events_of_the_operation_span() {
    // `lro -v`: poll spans (DEBUG) are off; a retry must still say which operation it is in.
    let (_, captured, _) = captured_at(tracing::level_filters::LevelFilter::INFO, run_operation);
    assert!(captured.spans.iter().all(|s| s.name != "lro.poll"));
    let retries: Vec<_> = captured
        .events
        .iter()
        .filter(|e| e.fields.get("message").is_some_and(|m| m.contains("retrying")))
        .collect();
    assert_eq!(retries.len(), 2);
    assert!(retries.iter().all(|e| e.span.as_deref() == Some("lro.operation")), "{retries:?}");
}

#[test]
fn an_error_naming_a_bad_link_keeps_its_query_out_of_telemetry() {
    // A status monitor that moves the poll to a link that cannot be used, carrying a secret.
    let request = Request::put("https://svc.example/widgets/w1").body(Bytes::new()).unwrap();
    let response = json_response(202, "").with_header("location", "https://svc.example/ops/1");
    let initial = InitialResponse::from_exchange(&request, response);
    let strategy = LroBasePolling::builder().into_parts().0;
    let (_, captured, _) = captured(|| {
        let mut engine = Engine::start(strategy, PollOptions::default(), initial).unwrap();
        let now = t0();
        get(engine.poll(now));
        let moved = json_response(202, "")
            .with_header("location", &format!("https://svc.example:99999/x?sig={SECRET}"));
        engine.handle_response(now, moved);
        assert!(matches!(engine.poll(now), Action::Done));
        assert!(engine.outcome().is_err());
    });
    let ended = captured
        .events
        .iter()
        .find(|e| e.fields.get("message").is_some_and(|m| m.contains("ended with an error")))
        .expect("the error event");
    assert_eq!(ended.fields["error.type"], "bad_response", "{ended:?}");
    let everything = format!("{:?}{:?}", captured.spans, captured.events);
    assert!(!everything.contains(SECRET), "{everything}");
}

#[test]
fn events_of_the_outcome_come_even_when_operation_spans_are_filtered_out() {
    // `LRO_LOG=lro_core=warn`: no INFO operation span, but the refusal is a warning.
    let request = Request::put("https://svc.example/widgets/w1").body(Bytes::new()).unwrap();
    let response =
        json_response(202, "").with_header("operation-location", "https://evil.example/op");
    let initial = InitialResponse::from_exchange(&request, response);
    let strategy = LroBasePolling::builder().into_parts().0;
    let (_, captured, _) = captured_at(tracing::level_filters::LevelFilter::WARN, || {
        let mut engine = Engine::start(strategy, PollOptions::default(), initial).unwrap();
        assert!(matches!(engine.poll(t0()), Action::Done));
    });
    assert!(captured.spans.is_empty());
    assert!(
        captured.events.iter().any(|e| e.level == tracing::Level::WARN),
        "{:?}",
        captured.events
    );
}
