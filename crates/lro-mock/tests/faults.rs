//! Fault injection over real loopback HTTP: every kind, per server and per operation,
//! determinism under a seed, and the spec parser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use lro_mock::{Fault, FaultKind, FaultSpec, MockConfig, MockServer, RetryAfter};
use support::{get, h1, raw_exchange, send, try_send};

/// Starts a job whose polls get the faults of `spec` (sent as `x-mock-faults`); returns the
/// monitor URL.
async fn job_with_faults(server: &MockServer, client: &support::Http, spec: &str) -> String {
    let post = send(
        client,
        "POST",
        &server.url("/jobs"),
        &[("x-mock-faults", spec), ("x-mock-polls", "5")],
        "",
    )
    .await;
    assert_eq!(post.status, 202, "faults apply to polls, not to the initial request");
    post.header("operation-location").unwrap().to_owned()
}

fn last_faults(server: &MockServer) -> Vec<Fault> {
    server.log().last().unwrap().faults.clone()
}

#[tokio::test]
async fn status_faults_replace_the_answer_and_do_not_advance_the_operation() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let client = h1();

    let monitor = job_with_faults(&server, &client, "500=1").await;
    let answer = get(&client, &monitor).await;
    assert_eq!(answer.status, 500);
    assert_eq!(answer.json()["error"]["code"], "InternalServerError");
    assert_eq!(last_faults(&server), [Fault::InternalServerError]);

    let monitor = job_with_faults(&server, &client, "503=1").await;
    assert_eq!(get(&client, &monitor).await.status, 503);
    assert_eq!(last_faults(&server), [Fault::ServiceUnavailable]);

    let monitor = job_with_faults(&server, &client, "429=1").await;
    let answer = get(&client, &monitor).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after"), Some("1"));
    let monitor = job_with_faults(&server, &client, "429=1:ms:5").await;
    let answer = get(&client, &monitor).await;
    assert_eq!(answer.header("retry-after-ms"), Some("5"));
    assert_eq!(last_faults(&server), [Fault::TooManyRequests(RetryAfter::Millis(5))]);

    // Replaced answers do not advance the operation: the answered polls still go
    // NotStarted, Running, Succeeded however many 500s come between them.
    let headers = [("x-mock-faults", "seed=3,500=0.5"), ("x-mock-polls", "2")];
    let post = send(&client, "POST", &server.url("/jobs"), &headers, "").await;
    let monitor = post.header("operation-location").unwrap().to_owned();
    let (mut words, mut failures) = (Vec::new(), 0);
    for _ in 0..60 {
        let answer = get(&client, &monitor).await;
        if answer.status == 500 {
            failures += 1;
            continue;
        }
        words.push(answer.status_word());
        if words.len() == 3 {
            break;
        }
    }
    assert_eq!(words, ["NotStarted", "Running", "Succeeded"]);
    assert!(failures > 0);
}

#[tokio::test]
async fn corrupting_faults() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let client = h1();

    let monitor = job_with_faults(&server, &client, "malformed=1").await;
    let answer = get(&client, &monitor).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<serde_json::Value>(&answer.body).is_err());
    assert_eq!(last_faults(&server), [Fault::Malformed]);

    let monitor = job_with_faults(&server, &client, "nostatus=1").await;
    let body = get(&client, &monitor).await.json();
    assert!(body.get("status").is_none());
    assert!(body["id"].is_string());
    assert_eq!(last_faults(&server), [Fault::NoStatus]);

    let monitor = job_with_faults(&server, &client, "oversized=1:2MiB").await;
    let answer = get(&client, &monitor).await;
    assert_eq!(answer.body.len(), 2 << 20);
    assert_eq!(answer.header("content-length"), Some("2097152"));
    assert_eq!(answer.status_word(), "NotStarted", "padding is JSON whitespace");
    assert_eq!(last_faults(&server), [Fault::Oversized(2 << 20)]);

    let monitor = job_with_faults(&server, &client, "slow=1:5ms").await;
    let started = Instant::now();
    assert_eq!(get(&client, &monitor).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(5));
    assert_eq!(last_faults(&server), [Fault::Slow(Duration::from_millis(5))]);
}

#[tokio::test]
async fn cross_origin_urls() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let client = h1();
    let other = format!("http://127.0.0.2:{}", server.addr().port());

    // On a poll: a Location header towards the other origin.
    let monitor = job_with_faults(&server, &client, "cross-origin=1").await;
    let answer = get(&client, &monitor).await;
    assert!(answer.header("location").unwrap().starts_with(&format!("{other}/operationResults/")));
    assert_eq!(last_faults(&server), [Fault::CrossOrigin]);

    // On the initial request, when the spec says so: the monitor itself moves.
    let headers = [("x-mock-faults", "cross-origin=1,initial=true")];
    let post = send(&client, "POST", &server.url("/jobs"), &headers, "").await;
    assert_eq!(post.status, 202);
    assert!(
        post.header("operation-location")
            .unwrap()
            .starts_with(&format!("{other}/jobs/operations/"))
    );

    // And resourceLocation on a terminal monitor.
    let headers = [("x-mock-faults", "cross-origin=1"), ("x-mock-polls", "0")];
    let post = send(&client, "POST", &server.url("/jobs"), &headers, "").await;
    let done = get(&client, post.header("operation-location").unwrap()).await.json();
    assert!(done["resourceLocation"].as_str().unwrap().starts_with(&other));
}

#[tokio::test]
async fn reset_closes_the_connection_without_an_answer() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let client = h1();
    let monitor = job_with_faults(&server, &client, "reset=1").await;
    let path = monitor.trim_start_matches(&server.base_url()).to_owned();

    let request = format!("GET {path} HTTP/1.1\r\nhost: mock\r\n\r\n");
    match raw_exchange(server.addr(), &request).await {
        Ok(bytes) => {
            assert!(bytes.is_empty(), "no answer expected: {:?}", String::from_utf8_lossy(&bytes))
        }
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    let entry = server.log().last().cloned().unwrap();
    assert_eq!(entry.status, None);
    assert_eq!(entry.faults, [Fault::Reset]);

    // The hyper client sees an error, and the server keeps serving new connections.
    assert!(try_send(&client, "GET", &monitor, &[], "").await.is_err());
    assert_eq!(get(&client, &server.url("/jobs/none")).await.status, 404);

    // Over HTTP/2 the whole connection goes too; a new one works.
    let over_h2 = support::h2();
    assert!(try_send(&over_h2, "GET", &monitor, &[], "").await.is_err());
    assert_eq!(get(&over_h2, &server.url("/jobs/none")).await.status, 404);
}

#[tokio::test]
async fn server_faults_spare_initial_requests_unless_asked() {
    let config = MockConfig::builder().faults(FaultSpec::parse("500=1").unwrap()).build();
    let server = MockServer::start(config).await.unwrap();
    let client = h1();
    let post = send(&client, "POST", &server.url("/jobs"), &[], "").await;
    assert_eq!(post.status, 202);
    assert_eq!(get(&client, post.header("operation-location").unwrap()).await.status, 500);
    // A per-operation spec replaces the server's.
    let clean = job_with_faults(&server, &client, "seed=1").await;
    assert_eq!(get(&client, &clean).await.status, 200);

    let config =
        MockConfig::builder().faults(FaultSpec::parse("503=1,initial=true").unwrap()).build();
    let server = MockServer::start(config).await.unwrap();
    assert_eq!(send(&client, "POST", &server.url("/jobs"), &[], "").await.status, 503);
    assert!(server.log()[0].operation_id.is_none(), "no operation was created");
}

/// The faults of 60 polls against a fresh server with `spec`.
async fn fault_sequence(spec: &str) -> Vec<Vec<Fault>> {
    let config = MockConfig::builder().faults(FaultSpec::parse(spec).unwrap()).build();
    let server = MockServer::start(config).await.unwrap();
    let client = h1();
    let post = send(&client, "POST", &server.url("/jobs"), &[("x-mock-polls", "1000")], "").await;
    let monitor = post.header("operation-location").unwrap().to_owned();
    for _ in 0..60 {
        let answer = get(&client, &monitor).await;
        assert!([200, 429, 500, 503].contains(&answer.status));
    }
    server.log().into_iter().skip(1).map(|entry| entry.faults).collect()
}

#[tokio::test]
async fn same_seed_same_faults() {
    let spec = "seed=42,500=0.15,503=0.1,429=0.1:0,malformed=0.1,nostatus=0.1,cross-origin=0.1,oversized=0.05:1KiB";
    let first = fault_sequence(spec).await;
    let second = fault_sequence(spec).await;
    assert_eq!(first, second);
    assert_eq!(first.len(), 60);
    let kinds: std::collections::BTreeSet<FaultKind> =
        first.iter().flatten().map(Fault::kind).collect();
    assert!(kinds.len() >= 5, "a varied sequence: {kinds:?}");
    assert!(first.iter().any(Vec::is_empty), "some polls are clean");

    let other_seed = fault_sequence(&spec.replace("seed=42", "seed=43")).await;
    assert_ne!(first, other_seed);

    // Per-operation specs are deterministic too, each operation with its own generator.
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let client = h1();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let monitor = job_with_faults(&server, &client, "seed=9,500=0.5").await;
        let mut codes = Vec::new();
        for _ in 0..20 {
            codes.push(get(&client, &monitor).await.status);
        }
        runs.push(codes);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].contains(&500) && runs[0].contains(&200));
}

#[test]
fn parses_good_specs() {
    let empty = FaultSpec::parse("").unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty, FaultSpec::default());

    let full = FaultSpec::parse(
        "seed=7,500=0.1,503=0.05,429=0.1,reset=0.02,slow=0.1:200ms,malformed=0.05,nostatus=0.05,\
         oversized=0.01:32MiB,cross-origin=0.01",
    )
    .unwrap();
    assert_eq!(full.seed(), 7);
    assert_eq!(full.probability(FaultKind::InternalServerError), 0.1);
    assert_eq!(full.probability(FaultKind::ServiceUnavailable), 0.05);
    assert_eq!(full.probability(FaultKind::TooManyRequests), 0.1);
    assert_eq!(full.probability(FaultKind::Reset), 0.02);
    assert_eq!(full.probability(FaultKind::Slow), 0.1);
    assert_eq!(full.slow_delay(), Duration::from_millis(200));
    assert_eq!(full.probability(FaultKind::Malformed), 0.05);
    assert_eq!(full.probability(FaultKind::NoStatus), 0.05);
    assert_eq!(full.probability(FaultKind::Oversized), 0.01);
    assert_eq!(full.oversized_bytes(), 32 << 20);
    assert_eq!(full.probability(FaultKind::CrossOrigin), 0.01);
    assert!(!full.applies_to_initial());
    // Display writes a spec that parses back to the same value.
    assert_eq!(FaultSpec::parse(&full.to_string()).unwrap(), full);

    let spaced: FaultSpec =
        " 500 = 0.5 , , slow=1:2s, 429=0:date:30 , initial=TRUE,".parse().unwrap();
    assert_eq!(spaced.probability(FaultKind::InternalServerError), 0.5);
    assert_eq!(spaced.slow_delay(), Duration::from_secs(2));
    assert_eq!(spaced.retry_after_429(), RetryAfter::HttpDate(30));
    assert!(spaced.applies_to_initial());
    assert_eq!(FaultSpec::parse("no-status=1").unwrap().probability(FaultKind::NoStatus), 1.0);
    assert_eq!(FaultSpec::parse("oversized=1:512KiB").unwrap().oversized_bytes(), 512 << 10);
    assert_eq!(FaultSpec::parse("oversized=1:1000").unwrap().oversized_bytes(), 1000);
    assert_eq!(
        FaultSpec::parse("500=0.5,503=0.5").unwrap().probability(FaultKind::ServiceUnavailable),
        0.5
    );
    assert_eq!(FaultSpec::parse("slow=1,500=1").unwrap().probability(FaultKind::Slow), 1.0);
}

#[test]
fn refuses_bad_specs_clearly() {
    let cases = [
        ("500", "500", "expected key=value"),
        ("500=abc", "500=abc", "not a probability"),
        ("500=1.5", "500=1.5", "outside 0 to 1"),
        ("500=-0.1", "500=-0.1", "outside 0 to 1"),
        ("500=NaN", "500=NaN", "outside 0 to 1"),
        ("teapot=0.1", "teapot=0.1", "unknown key `teapot`"),
        ("500=0.1,500=0.2", "500=0.2", "appears twice"),
        ("slow=0.1:20", "slow=0.1:20", "200ms or 2s"),
        ("slow=0.1:11s", "slow=0.1:11s", "10s cap"),
        ("oversized=0.1:2GiB", "oversized=0.1:2GiB", "1 GiB cap"),
        ("oversized=0.1:lots", "oversized=0.1:lots", "expected a size"),
        ("reset=0.1:5", "reset=0.1:5", "takes no `:` parameter"),
        ("seed=-1", "seed=-1", "unsigned 64-bit"),
        ("initial=maybe", "initial=maybe", "true or false"),
        ("429=0.1:soon", "429=0.1:soon", "expected none"),
        ("500=0.6,503=0.6", "", "add up to"),
    ];
    for (spec, item, reason) in cases {
        let error = FaultSpec::parse(spec).unwrap_err();
        assert_eq!(error.item(), item, "{spec}");
        assert!(error.reason().contains(reason), "{spec}: {error}");
        assert!(error.to_string().starts_with("invalid fault spec"), "{error}");
    }
    assert_eq!(
        FaultSpec::parse("500=2").unwrap_err().to_string(),
        "invalid fault spec item `500=2`: the probability 2 is outside 0 to 1"
    );
}
