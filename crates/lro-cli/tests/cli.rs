//! Black-box tests of the `lro` command line: the real binary, run with `std::process::Command`
//! against the embedded mock service (`lro_mock::MockServer`) or a scripted server, checking
//! exit codes, the `--output json` schema, the token file, text output and `lro mock`.
//!
//! Every run is bounded (see `support::RUN_LIMIT`); operations poll with `--interval 0` or a few
//! tens of milliseconds, so the whole file takes a few seconds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lro_core::ContinuationToken;
use lro_mock::scripted::{ScriptedServer, Step};
use lro_mock::{MockConfig, MockServer};
use serde_json::{Value, json};
use support::{
    TempDir, arg, base64, gets_after_initial, lro_line, raw_request, run, run_line, shell_words,
    spawn_line, token_envelope, wait_limited, wait_until, widget,
};

fn mock() -> MockServer {
    MockServer::start_blocking(MockConfig::builder().build()).expect("start the mock service")
}

fn scripted(steps: Vec<Step>) -> ScriptedServer {
    ScriptedServer::start_blocking(steps).expect("start the scripted server")
}

fn polls(json: &Value) -> usize {
    usize::try_from(json["polls"].as_u64().expect("polls")).expect("polls fits")
}

fn token(json: &Value) -> String {
    json["continuation_token"].as_str().expect("a continuation token").to_owned()
}

// ---------------------------------------------------------------------------------------------
// 1. The JSON result of a successful ARM PUT.

#[test]
fn start_arm_put_succeeds_with_the_exact_json_schema() {
    let server = mock();
    let url = widget(&server.base_url(), "w1");
    let run = run_line(&format!(
        r#"start --method PUT --url {url} --flavour arm
           --body '{{"properties": {{"color": "blue"}}}}' --interval 0 --output json"#
    ));
    let json = run.outcome("succeeded");
    assert_eq!(
        run.stdout.trim().lines().count(),
        1,
        "one JSON object, on one line\n{}",
        run.describe()
    );
    assert_eq!(json["status"], "Succeeded", "{}", run.describe());
    assert!(json["error"].is_null());
    assert!(json["continuation_token"].is_null(), "no token on success\n{}", run.describe());
    assert_eq!(json["resource"]["properties"]["color"], "blue");
    assert_eq!(json["resource"]["properties"]["provisioningState"], "Succeeded");
    assert_eq!(json["resource"]["name"], "w1");

    let log = server.log();
    assert_eq!(log[0].method, "PUT", "the initial request comes first: {log:?}");
    assert_eq!(log.iter().filter(|e| e.method != "GET").count(), 1, "one initial request: {log:?}");
    // Two in-progress polls (the mock's default), the terminal one, then the final GET.
    assert_eq!(gets_after_initial(&log), 4, "{log:?}");
    assert_eq!(
        polls(&json),
        gets_after_initial(&log),
        "polls = GETs the service saw\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Data-plane jobs and final-state-via.

#[test]
fn start_post_job_with_final_state_via_operation_location_returns_the_monitor_body() {
    let server = mock();
    let run = run_line(&format!(
        r#"start --method POST --url {url} --body '{{"task": "render"}}'
           --final-state-via operation-location --interval 0 --output json"#,
        url = server.url("/jobs")
    ));
    let json = run.outcome("succeeded");
    let resource = &json["resource"];
    assert_eq!(json["status"], "Succeeded");
    assert_eq!(resource["status"], "Succeeded", "{}", run.describe());
    assert!(resource["startTime"].is_string(), "the monitor body\n{}", run.describe());
    assert!(resource["resourceLocation"].is_string(), "the monitor body\n{}", run.describe());
    assert!(resource.get("input").is_none(), "not the job resource\n{}", run.describe());

    let log = server.log();
    let last = log.last().expect("requests");
    assert!(last.path.starts_with("/jobs/operations/"), "the last GET is the monitor: {log:?}");
    assert!(!log.iter().any(|e| e.path.starts_with("/jobs/0")), "no GET of the job: {log:?}");
    assert_eq!(polls(&json), gets_after_initial(&log));
}

#[test]
fn start_post_job_by_default_returns_the_job_from_resource_location() {
    let server = mock();
    let run = run_line(&format!(
        r#"start --method POST --url {url} --body '{{"task": "render"}}' --interval 0
           --output json"#,
        url = server.url("/jobs")
    ));
    let json = run.outcome("succeeded");
    let resource = &json["resource"];
    assert_eq!(json["status"], "Succeeded");
    assert_eq!(
        resource["input"],
        json!({"task": "render"}),
        "the job resource\n{}",
        run.describe()
    );
    assert!(resource["result"]["output"].is_string(), "the finished job\n{}", run.describe());

    let log = server.log();
    let last = log.last().expect("requests");
    let job_id = resource["id"].as_str().expect("job id");
    assert_eq!(last.path, format!("/jobs/{job_id}"), "final GET via resourceLocation: {log:?}");
    assert_eq!(polls(&json), gets_after_initial(&log));
}

#[test]
fn body_file_is_sent_as_the_request_body() {
    let server = mock();
    let dir = TempDir::new("body");
    let body = dir.join("body.json");
    std::fs::write(&body, r#"{"from": "a file", "n": [1, 2, 3]}"#).unwrap();
    let run = run_line(&format!(
        "start --method POST --url {url} --body-file '{body}' --interval 0 --output json",
        url = server.url("/jobs"),
        body = arg(&body)
    ));
    let json = run.outcome("succeeded");
    assert_eq!(
        json["resource"]["input"],
        json!({"from": "a file", "n": [1, 2, 3]}),
        "{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. DELETE: an empty final body.

#[test]
fn start_delete_reports_a_null_resource() {
    let server = mock();
    for flavour in ["arm", "base"] {
        let url = widget(&server.base_url(), &format!("doomed-{flavour}"));
        let created = run_line(&format!(
            "start --method PUT --url {url} --flavour arm --body '{{}}' --interval 0 --output json"
        ));
        created.outcome("succeeded");
        let before = server.log().len();

        let run = run_line(&format!(
            "start --method DELETE --url {url} --flavour {flavour} --interval 0 --output json"
        ));
        let json = run.outcome("succeeded");
        assert!(json["resource"].is_null(), "an empty final body is null\n{}", run.describe());
        assert_eq!(json["status"], "Succeeded", "{}", run.describe());
        assert!(json["continuation_token"].is_null());
        let log = server.log();
        assert_eq!(log[before].method, "DELETE");
        assert_eq!(polls(&json), gets_after_initial(&log[before..]), "{log:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Failed and canceled operations.

#[test]
fn a_failed_operation_exits_1_with_the_service_error_body() {
    let server = mock();
    let url = widget(&server.base_url(), "broken");
    let run = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' \
         --header 'x-mock-outcome: Failed' --interval 0 --output json"
    ));
    let json = run.outcome("failed");
    assert_eq!(json["status"], "Failed", "{}", run.describe());
    assert_eq!(json["error"]["kind"], "operation_failed");
    assert_eq!(json["error"]["http_status"], 200, "the status of the response that failed");
    assert!(json["error"]["message"].as_str().unwrap().contains("MockOperationFailed"));
    assert_eq!(json["resource"], Value::Null, "no resource unless succeeded");
    let body = &json["error"]["body"];
    assert_eq!(body["status"], "Failed", "the service's body\n{}", run.describe());
    assert_eq!(body["error"]["code"], "MockOperationFailed", "{}", run.describe());
    assert_eq!(polls(&json), gets_after_initial(&server.log()));
}

#[test]
fn a_canceled_operation_exits_1_with_outcome_canceled() {
    let server = mock();
    let run = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-outcome: Canceled' --interval 0 \
         --output json",
        url = server.url("/jobs")
    ));
    let json = run.outcome("canceled");
    assert_eq!(json["status"], "Canceled", "{}", run.describe());
    assert_eq!(json["error"]["kind"], "operation_failed");
    assert_eq!(json["error"]["http_status"], 200);
    assert_eq!(json["resource"], Value::Null, "no resource unless succeeded");
    assert_eq!(json["error"]["body"]["status"], "Canceled", "{}", run.describe());
    assert_eq!(
        json["error"]["body"]["error"]["code"],
        "MockOperationCanceled",
        "{}",
        run.describe()
    );
    assert_eq!(polls(&json), gets_after_initial(&server.log()));
}

// ---------------------------------------------------------------------------------------------
// 5. A non-JSON final body (and the status word as the service spelled it).

#[test]
fn a_non_json_final_body_is_a_json_string() {
    let server = scripted(vec![
        Step::new("PUT", "/things/t1")
            .status(201)
            .header("Operation-Location", "{base}/ops/1")
            .json(r#"{"status": "Running"}"#),
        Step::get("/ops/1").json(r#"{"status": "succeeded"}"#),
        Step::get("/things/t1").header("content-type", "text/plain").body("thing t1 is ready"),
    ]);
    let run = run_line(&format!(
        "start --method PUT --url {url} --body '{{}}' --interval 0 --output json",
        url = server.url("/things/t1")
    ));
    let json = run.outcome("succeeded");
    assert_eq!(json["resource"], "thing t1 is ready", "{}", run.describe());
    assert_eq!(
        json["status"],
        "succeeded",
        "the status as the service sent it\n{}",
        run.describe()
    );
    assert_eq!(json["polls"], 2);
    assert!(
        server.is_complete(),
        "left: {:?}, mismatches: {:?}",
        server.remaining(),
        server.mismatches()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. bad_status, and resuming after it.

#[test]
fn a_poll_answering_500_is_bad_status_with_a_token_that_resumes() {
    let server = scripted(vec![
        Step::new("PUT", "/things/t2")
            .status(201)
            .header("Operation-Location", "{base}/ops/2")
            .json(r#"{"status": "Running"}"#),
        Step::get("/ops/2").status(500).json(r#"{"error": {"code": "Boom", "message": "oops"}}"#),
        // What the resumed run sees.
        Step::get("/ops/2").json(r#"{"status": "Succeeded"}"#),
        Step::get("/things/t2").json(r#"{"name": "t2"}"#),
    ]);
    let start = run_line(&format!(
        "start --method PUT --url {url} --body '{{}}' --interval 0 --retries 0 --output json",
        url = server.url("/things/t2")
    ));
    let json = start.error("bad_status");
    assert_eq!(json["error"]["http_status"], 500, "{}", start.describe());
    assert_eq!(json["polls"], 1, "{}", start.describe());
    let token = token(&json);
    token.parse::<ContinuationToken>().expect("the token parses");

    let resume = run_line(&format!("resume --token {token} --interval 0 --output json"));
    let json = resume.outcome("succeeded");
    assert_eq!(json["resource"], json!({"name": "t2"}), "{}", resume.describe());
    assert_eq!(json["polls"], 2, "the resumed run's own GETs\n{}", resume.describe());
    assert!(
        server.is_complete(),
        "left: {:?}, mismatches: {:?}",
        server.remaining(),
        server.mismatches()
    );
}

/// When the service refuses the initial request, its error body is `error.body`, `resource` is
/// null, and the status is "Failed" (as azure-core sets it).
#[test]
fn bad_initial_status_reports_failed_and_the_service_error_body() {
    // Refused at once: PATCH of a widget that does not exist.
    let server = mock();
    let url = widget(&server.base_url(), "absent");
    let refused = run_line(&format!(
        "start --method PATCH --url {url} --flavour arm --body '{{}}' --interval 0 --output json"
    ));
    let json = refused.error("bad_status");
    assert_eq!(json["error"]["http_status"], 404, "{}", refused.describe());
    assert_eq!(
        json["error"]["body"]["error"]["code"],
        "ResourceNotFound",
        "the service's error body\n{}",
        refused.describe()
    );
    assert_eq!(json["resource"], Value::Null);
    assert_eq!(json["status"], "Failed", "as azure-core\n{}", refused.describe());

    // Refused while polling.
    let server = scripted(vec![
        Step::new("PUT", "/things/t4").status(201).header("Operation-Location", "{base}/ops/4"),
        Step::get("/ops/4").status(500).json(r#"{"error": {"code": "Boom", "message": "oops"}}"#),
    ]);
    let failed = run_line(&format!(
        "start --method PUT --url {url} --interval 0 --retries 0 --output json",
        url = server.url("/things/t4")
    ));
    let json = failed.error("bad_status");
    assert_eq!(json["resource"], Value::Null);
    assert_eq!(
        json["error"]["body"],
        json!({"error": {"code": "Boom", "message": "oops"}}),
        "the service's error body\n{}",
        failed.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Transport errors.

#[test]
fn a_closed_port_is_a_transport_error() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // closed again
    let url = format!("http://{addr}/things/t3");
    let run = run_line(&format!(
        "start --method PUT --url {url} --body '{{}}' --timeout 5 --output json"
    ));
    let json = run.error("transport");
    assert!(json["status"].is_null(), "no status without a response\n{}", run.describe());
    assert!(json["resource"].is_null());
    assert!(json["error"]["http_status"].is_null());
    assert_eq!(json["polls"], 0);
    assert!(json["continuation_token"].is_null(), "nothing to resume\n{}", run.describe());
}

#[test]
fn a_connection_reset_while_polling_is_a_transport_error_with_a_token() {
    let server = scripted(vec![
        Step::new("POST", "/tasks").status(202).header("Operation-Location", "{base}/ops/3"),
        Step::get("/ops/3").reset(),
    ]);
    let run = run_line(&format!(
        "start --method POST --url {url} --interval 0 --retries 0 --output json",
        url = server.url("/tasks")
    ));
    let json = run.error("transport");
    token(&json).parse::<ContinuationToken>().expect("the token parses");
    assert!(json["error"]["http_status"].is_null());
}

// ---------------------------------------------------------------------------------------------
// Other error kinds, from the mock's fault injection.

#[test]
fn malformed_unusable_and_cross_origin_polls_are_decode_bad_response_and_policy() {
    let server = mock();
    for (faults, kind) in [
        ("malformed=1", "decode"),
        ("nostatus=1", "bad_response"),
        ("cross-origin=1,initial=true", "policy"),
    ] {
        let url = widget(&server.base_url(), "faulty");
        let run = run_line(&format!(
            "start --method PUT --url {url} --flavour arm --body '{{}}' \
             --header 'x-mock-faults: {faults}' --interval 0 --output json"
        ));
        let json = run.error(kind);
        token(&json).parse::<ContinuationToken>().expect("the token parses");
    }
    assert!(
        !server.log().iter().any(|e| e.path.contains("127.0.0.2")),
        "nothing was sent to the other origin"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. --timeout, then resume.

#[test]
fn timeout_reports_a_token_that_resume_finishes() {
    let server = mock();
    let run1 = run_line(&format!(
        r#"start --method POST --url {url} --body '{{"task": "slow"}}'
           --header 'x-mock-polls: 100' --interval 0.1 --timeout 1.5 --output json"#,
        url = server.url("/jobs")
    ));
    let json = run1.error("timeout");
    assert!(run1.elapsed >= Duration::from_millis(1500), "{}", run1.describe());
    assert!(
        run1.elapsed < Duration::from_secs(8),
        "the deadline ends the run, not the operation (10 s)\n{}",
        run1.describe()
    );
    assert!(json["status"].is_string(), "the last status seen\n{}", run1.describe());
    assert_ne!(json["status"], "Succeeded");
    assert!(json["error"]["http_status"].is_null());
    let seen = gets_after_initial(&server.log());
    assert!(polls(&json) >= 1, "{}", run1.describe());
    assert!(polls(&json).abs_diff(seen) <= 1, "polls ~ GETs seen ({seen})\n{}", run1.describe());
    let token = token(&json);

    let run2 = run_line(&format!("resume --token {token} --interval 0 --output json"));
    let json = run2.outcome("succeeded");
    assert_eq!(json["status"], "Succeeded");
    assert_eq!(json["resource"]["input"], json!({"task": "slow"}), "{}", run2.describe());
    let log = server.log();
    assert_eq!(log.iter().filter(|e| e.method == "POST").count(), 1, "resuming sends no new POST");
    let operation = log[0].operation_id.clone().expect("the operation id");
    assert!(
        log.iter().all(|e| e.operation_id.as_deref() == Some(operation.as_str())),
        "every request was about the one operation: {log:?}"
    );
}

#[test]
fn resume_token_file_after_a_timed_out_start() {
    let server = mock();
    let dir = TempDir::new("timeout-file");
    let file = dir.join("op.token");
    let run1 = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-polls: 100' --interval 0.1 \
         --timeout 1.5 --token-file '{file}' --output json",
        url = server.url("/jobs"),
        file = arg(&file)
    ));
    let json = run1.error("timeout");
    let in_file = std::fs::read_to_string(&file).expect("the token file exists");
    assert_eq!(in_file.trim(), token(&json), "the file holds the token of the report");
    assert_eq!(dir.names(), ["op.token"], "no temporary file is left");

    let run2 = run_line(&format!(
        "resume --token-file '{file}' --interval 0 --output json",
        file = arg(&file)
    ));
    let json = run2.outcome("succeeded");
    assert!(json["resource"]["result"].is_object(), "the finished job\n{}", run2.describe());
    assert_eq!(dir.names(), ["op.token"], "no temporary file is left");
}

#[test]
fn timeout_ends_the_run_even_when_retry_after_asks_for_longer() {
    let server = mock();
    let run = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-retry-after: 30' --interval 0 \
         --timeout 1.5 --output json",
        url = server.url("/jobs")
    ));
    let json = run.error("timeout");
    assert!(run.elapsed < Duration::from_secs(20), "not the 30 s asked\n{}", run.describe());
    token(&json).parse::<ContinuationToken>().expect("the token parses");
}

#[test]
fn timeout_covers_the_initial_request() {
    let server = mock();
    let run = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-faults: slow=1:10s,initial=true' \
         --timeout 0.3 --output json",
        url = server.url("/jobs")
    ));
    let json = run.error("timeout");
    assert!(run.elapsed < Duration::from_secs(8), "not the 10 s answer\n{}", run.describe());
    assert!(json["status"].is_null(), "no response, no status\n{}", run.describe());
    assert!(json["continuation_token"].is_null(), "no token before the initial response");
}

/// `--timeout` is the overall deadline: a deadline too far away for the clock is no deadline
/// (or a usage error), never one that has already passed. (1e19 s fits a `Duration` but not an
/// `Instant`.) The operation takes ~150 ms, so a deadline that has passed always shows.
#[test]
fn a_huge_timeout_is_not_an_immediate_deadline() {
    let server = mock();
    let run = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-polls: 3' --interval 0.05 \
         --timeout 1e19 --output json",
        url = server.url("/jobs")
    ));
    if run.code() == Some(2) {
        return; // refused as a usage error: fine too
    }
    run.outcome("succeeded");
}

// ---------------------------------------------------------------------------------------------
// 9. The token file.

#[test]
fn token_file_holds_a_resumable_token_and_no_temporary_file() {
    let server = mock();
    let dir = TempDir::new("token-file");
    let file = dir.join("op.token");
    let url = widget(&server.base_url(), "tf");
    let run1 = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --interval 0 \
         --token-file '{file}' --output json",
        file = arg(&file)
    ));
    run1.outcome("succeeded");
    assert_eq!(dir.names(), ["op.token"], "only the token file, no temporary file");

    let text = std::fs::read_to_string(&file).unwrap();
    text.trim().parse::<ContinuationToken>().expect("the file holds a token that parses");
    let envelope = token_envelope(&text);
    assert_eq!(envelope["version"], 1, "azure-core's envelope: {envelope}");
    assert_eq!(envelope["data"]["request"]["method"], "PUT");
    assert_eq!(envelope["data"]["request"]["url"], url.as_str());

    let run2 = run_line(&format!(
        "resume --token-file '{file}' --flavour arm --interval 0 --output json",
        file = arg(&file)
    ));
    let json = run2.outcome("succeeded");
    assert_eq!(json["resource"]["name"], "tf", "{}", run2.describe());
    assert_eq!(dir.names(), ["op.token"], "no temporary file after resume either");
}

#[test]
fn token_file_is_written_after_the_initial_response_before_any_poll() {
    let server = mock();
    let dir = TempDir::new("first-write");
    let file = dir.join("op.token");
    let url = widget(&server.base_url(), "first");
    // Every poll is answered after 10 s: only the initial response can have written the file.
    let mut child = spawn_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' \
         --header 'x-mock-faults: slow=1:10s' --interval 0 --token-file '{file}' --output json",
        file = arg(&file)
    ));
    let written = wait_until(Duration::from_secs(8), || file.exists());
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(written, "the token file appears after the initial response");
    assert!(running, "while the first poll was still pending");
    let log = server.log();
    assert_eq!(log.len(), 1, "no poll was answered yet: {log:?}");
    let envelope = token_envelope(&std::fs::read_to_string(&file).unwrap());
    assert_eq!(envelope["data"]["request"]["method"], "PUT");
}

#[test]
fn token_file_is_updated_while_polling_and_a_killed_run_resumes() {
    let server = mock();
    let dir = TempDir::new("killed");
    let file = dir.join("op.token");
    let url = widget(&server.base_url(), "killed");
    let mut child = spawn_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --header 'x-mock-polls: 100' \
         --interval 0.1 --token-file '{file}' --output json",
        file = arg(&file)
    ));
    let appeared = wait_until(Duration::from_secs(8), || file.exists());
    let first = std::fs::read_to_string(&file).unwrap_or_default();
    let changed = wait_until(Duration::from_secs(8), || {
        std::fs::read_to_string(&file).is_ok_and(|now| now != first)
    });
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let status = wait_limited(&mut child, Duration::from_secs(5)).expect("the killed child ends");
    assert!(appeared, "the token file appears");
    assert!(changed, "the token file is rewritten after polls");
    assert!(still_running, "killed mid-operation (the test needs more polls)");
    assert!(!status.success());

    let run = run_line(&format!(
        "resume --token-file '{file}' --flavour arm --interval 0 --output json",
        file = arg(&file)
    ));
    let json = run.outcome("succeeded");
    assert_eq!(
        json["resource"]["properties"]["provisioningState"],
        "Succeeded",
        "{}",
        run.describe()
    );
    assert!(polls(&json) >= 1);
    let log = server.log();
    assert_eq!(log.iter().filter(|e| e.method == "PUT").count(), 1, "no second PUT: {log:?}");
    let operation = log[0].operation_id.clone().expect("operation id");
    let monitor = format!("/operations/{operation}");
    let widget_path = log[0].path.clone();
    assert!(
        log[1..].iter().all(|e| e.method == "GET" && (e.path == monitor || e.path == widget_path)),
        "the resumed run polled the same operation: {log:?}"
    );
}

#[test]
fn token_file_is_never_seen_half_written() {
    let server = mock();
    let dir = TempDir::new("atomic");
    let file = dir.join("op.token");
    let mut child = spawn_line(&format!(
        "start --method POST --url {url} --header 'x-mock-polls: 300' --interval 0 \
         --token-file '{file}' --output json",
        url = server.url("/jobs"),
        file = arg(&file)
    ));
    // 300 polls, each token written with two fsyncs: seconds on a busy disk.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads = 0;
    let mut distinct = std::collections::BTreeSet::new();
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            reads += 1;
            assert!(text.ends_with('\n'), "a whole token, with its newline: {text:?}");
            text.trim().parse::<ContinuationToken>().expect("a whole token");
            distinct.insert(text);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lro did not finish in time");
        }
        std::thread::yield_now();
    };
    assert!(status.success());
    assert!(reads > 0 && distinct.len() > 1, "{reads} reads, {} distinct tokens", distinct.len());
    assert_eq!(dir.names(), ["op.token"], "no temporary file is left");
}

// ---------------------------------------------------------------------------------------------
// 10. --interval and Retry-After.

#[test]
fn interval_zero_polls_at_once() {
    let server = mock();
    let run = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-polls: 10' --interval 0 --output json",
        url = server.url("/jobs")
    ));
    run.outcome("succeeded");
    // The default interval is 30 s; even one second per poll would take 10 s.
    assert!(run.elapsed < Duration::from_secs(8), "{}", run.describe());
}

#[test]
fn interval_sets_the_wait_between_polls_without_retry_after() {
    let server = mock();
    let run = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-polls: 2' --interval 0.15 --output json",
        url = server.url("/jobs")
    ));
    run.outcome("succeeded");
    // Two in-progress polls, each followed by a 150 ms wait (not the default 30 s).
    assert!(run.elapsed >= Duration::from_millis(300), "{}", run.describe());
    assert!(run.elapsed < Duration::from_secs(8), "{}", run.describe());
}

#[test]
fn interval_zero_still_honours_retry_after() {
    let server = mock();
    let run = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-polls: 2' \
         --header 'x-mock-retry-after: ms:200' --interval 0 --output json",
        url = server.url("/jobs")
    ));
    run.outcome("succeeded");
    // Two in-progress polls, each asking for 200 ms (not the default 30 s).
    assert!(run.elapsed >= Duration::from_millis(400), "{}", run.describe());
    assert!(run.elapsed < Duration::from_secs(8), "{}", run.describe());
}

// ---------------------------------------------------------------------------------------------
// 11. Usage errors.

#[test]
fn usage_errors_exit_2_and_send_nothing() {
    let server = mock();
    let url = widget(&server.base_url(), "usage");
    let dir = TempDir::new("usage");
    let body = dir.join("body.json");
    std::fs::write(&body, "{}").unwrap();
    let body = arg(&body);
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["frobnicate"],
        vec!["start", "--url", &url],
        vec!["start", "--method", "PUT"],
        vec!["start", "--method", "PUT", "--url", &url, "--flavour", "azure"],
        vec!["start", "--method", "PUT", "--url", &url, "--final-state-via", "somewhere"],
        vec!["start", "--method", "PUT", "--url", &url, "--body", "not json"],
        vec!["start", "--method", "PUT", "--url", &url, "--header", "no-colon"],
        vec!["start", "--method", "PUT", "--url", &url, "--interval", "-1"],
        vec!["start", "--method", "PUT", "--url", &url, "--interval=-1"],
        vec!["start", "--method", "PUT", "--url", &url, "--interval", "soon"],
        vec!["start", "--method", "PUT", "--url", &url, "--timeout=-1"],
        vec!["start", "--method", "PUT", "--url", &url, "--body", "{}", "--body-file", body],
        vec!["start", "--method", "PUT", "--url", &url, "--output", "yaml"],
        vec!["start", "--method", "PUT", "--url", "not a url"],
        vec!["start", "--method", "NOT A METHOD", "--url", &url],
        vec!["start", "--method", "PUT", "--url", &url, "--header", "bad name: v"],
        vec!["resume"],
        vec!["resume", "--interval", "0"],
        vec!["resume", "--token", "abc", "--token-file", body],
        vec!["resume", "--token", "abc", "--flavour", "azure"],
        vec!["mock", "--faults", "bogus"],
    ];
    for args in cases {
        let mut args = args;
        if args.first() == Some(&"start") {
            args.extend(["--output", "json"]);
        }
        let run = run(&args);
        assert_eq!(run.code(), Some(2), "a usage error\n{}", run.describe());
        assert!(run.stdout.trim().is_empty(), "nothing on stdout\n{}", run.describe());
        assert!(!run.stderr.trim().is_empty(), "an explanation on stderr\n{}", run.describe());
    }
    assert!(server.log().is_empty(), "usage errors send nothing: {:?}", server.log());
}

// ---------------------------------------------------------------------------------------------
// 12. Invalid tokens.

#[test]
fn invalid_tokens_are_invalid_token_errors() {
    let dir = TempDir::new("invalid");
    let file = dir.join("garbage.token");
    std::fs::write(&file, "definitely not a token\n").unwrap();
    let version_2 = base64(br#"{"version": 2, "data": {}}"#);
    let not_json = base64(b"hello");
    let mut runs = vec![run_line(&format!("resume --token-file '{}' --output json", arg(&file)))];
    for token in ["garbage!", not_json.as_str(), version_2.as_str()] {
        runs.push(run_line(&format!("resume --token {token} --interval 0 --output json")));
    }
    for run in runs {
        let json = run.error("invalid_token");
        assert!(json["status"].is_null(), "{}", run.describe());
        assert!(json["resource"].is_null());
        assert!(json["error"]["http_status"].is_null());
        assert_eq!(json["polls"], 0);
        assert!(json["continuation_token"].is_null());
    }
}

#[test]
fn resume_accepts_a_python_azure_core_token() {
    let server = mock();
    let url = widget(&server.base_url(), "from-python");
    let path = url.strip_prefix(&server.base_url()).unwrap();
    let initial = raw_request(
        server.addr(),
        "PUT",
        path,
        &[("x-ms-client-request-id", "py-req-1"), ("x-mock-polls", "1")],
        r#"{"properties": {"size": 3}}"#,
    );
    assert_eq!(initial.status, 201);
    let monitor = initial.header("azure-asyncoperation").expect("Azure-AsyncOperation").to_owned();
    let body: Value = serde_json::from_slice(&initial.body).expect("a JSON body");
    // As azure-core 1.38+ writes it: original header names, no `progress`.
    let data = json!({
        "request": {"method": "PUT", "url": url, "headers": {"x-ms-client-request-id": "py-req-1"}},
        "response": {
            "status_code": 201,
            "headers": {"Azure-AsyncOperation": monitor, "Content-Type": "application/json"},
            "content": base64(&initial.body),
        },
        "context": {"deserialized_data": body},
    });
    let token = base64(json!({"version": 1, "data": data}).to_string().as_bytes());

    let run = run_line(&format!("resume --token {token} --flavour arm --interval 0 --output json"));
    let json = run.outcome("succeeded");
    assert_eq!(json["resource"]["properties"]["size"], 3, "{}", run.describe());
    assert_eq!(json["resource"]["properties"]["provisioningState"], "Succeeded");
    let log = server.log();
    assert_eq!(polls(&json), gets_after_initial(&log), "{log:?}");
    assert!(
        log.iter().all(|e| e.client_request_id.as_deref() == Some("py-req-1")),
        "the polls repeat the token's request id: {log:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 13. Text output.

#[test]
fn text_output_shows_plain_status_lines_and_the_result() {
    let server = mock();
    let url = widget(&server.base_url(), "texty");
    let run = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --interval 0"
    ));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("status:")),
        "plain status lines\n{}",
        run.describe()
    );
    assert!(
        lines.last().is_some_and(|l| l.starts_with("succeeded in ") && l.contains(" polls ")),
        "a final line with the time and the polls\n{}",
        run.describe()
    );
    assert!(!run.stderr.contains('\r') && !run.stderr.contains('\u{1b}'), "no terminal codes");
    let resource: Value = serde_json::from_str(&run.stdout).expect("the resource on stdout");
    assert_eq!(resource["properties"]["provisioningState"], "Succeeded", "{}", run.describe());
}

#[test]
fn text_output_on_timeout_says_how_to_resume() {
    let server = mock();
    let dir = TempDir::new("text-timeout");
    let file = dir.join("op.token");
    let with_file = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-polls: 100' --interval 0.1 \
         --timeout 1.5 --token-file '{file}'",
        url = server.url("/jobs"),
        file = arg(&file)
    ));
    assert_eq!(with_file.code(), Some(1), "{}", with_file.describe());
    let path = file.display().to_string();
    // The hint quotes the path when a shell needs it (e.g. a space in TMPDIR).
    let path = if path.contains(' ') { format!("'{path}'") } else { path };
    let hint = format!("resume with: lro resume --token-file {path}");
    assert!(with_file.stderr.contains(&hint), "{hint:?}\n{}", with_file.describe());

    let without_file = run_line(&format!(
        "start --method POST --url {url} --header 'x-mock-polls: 100' --interval 0.1 --timeout 1.5",
        url = server.url("/jobs")
    ));
    assert_eq!(without_file.code(), Some(1), "{}", without_file.describe());
    let line = without_file
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("resume with: lro resume --token "))
        .unwrap_or_else(|| panic!("a resume hint\n{}", without_file.describe()));
    let token = line.split_whitespace().next().unwrap_or_default();
    token.parse::<ContinuationToken>().expect("the hint's token parses");
}

/// Runs the command of the `resume with: lro …` hint (quotes around words removed), adding
/// `--interval 0` and `--output json` unless the hint already sets them.
fn follow_the_hint(failed: &support::Run) -> support::Run {
    let hint = failed
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("resume with: lro "))
        .unwrap_or_else(|| panic!("a resume hint\n{}", failed.describe()));
    let mut args = shell_words(hint);
    for (option, value) in [("--interval", "0"), ("--output", "json")] {
        if !args.iter().any(|a| a == option) {
            args.extend([option.to_owned(), value.to_owned()]);
        }
    }
    run(&args)
}

/// The hint after a timeout must be a command that resumes the operation; with `--flavour arm`
/// the one printed lacks `--flavour arm`, and resuming then fails with invalid_token.
#[test]
fn the_resume_hint_after_an_arm_timeout_resumes_the_operation() {
    let server = mock();
    let dir = TempDir::new("hint-arm");
    let file = dir.join("op.token");
    let url = widget(&server.base_url(), "hinted");
    let failed = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --header 'x-mock-polls: 30' \
         --interval 0.1 --timeout 1.5 --token-file '{file}'",
        file = arg(&file)
    ));
    assert_eq!(failed.code(), Some(1), "{}", failed.describe());
    let resumed = follow_the_hint(&failed);
    let json = resumed.outcome("succeeded");
    assert_eq!(json["resource"]["name"], "hinted", "{}", resumed.describe());
}

/// Same with `--final-state-via`: following the hint silently returns another resource (the
/// job instead of the monitor body the run asked for).
#[test]
fn the_resume_hint_after_a_timeout_keeps_final_state_via() {
    let server = mock();
    let dir = TempDir::new("hint-fsv");
    let file = dir.join("op.token");
    let failed = run_line(&format!(
        "start --method POST --url {url} --final-state-via operation-location \
         --header 'x-mock-polls: 30' --interval 0.1 --timeout 1.5 --token-file '{file}'",
        url = server.url("/jobs"),
        file = arg(&file)
    ));
    assert_eq!(failed.code(), Some(1), "{}", failed.describe());
    let resumed = follow_the_hint(&failed);
    let json = resumed.outcome("succeeded");
    let resource = &json["resource"];
    assert!(
        resource["resourceLocation"].is_string() && resource.get("input").is_none(),
        "the monitor body, as --final-state-via operation-location asked\n{}",
        resumed.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// 14. lro mock.

/// `lro` with `line`, its stdout piped (where `lro mock` prints its URL).
fn mock_command(line: &str) -> std::process::Child {
    lro_line(line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// SIGINT or SIGTERM as soon as the URL is out: the service stops cleanly and exits 0 (its
/// handlers are in place before it prints; SIGTERM used to kill it outright).
#[test]
#[cfg(unix)]
fn mock_command_stops_cleanly_on_a_signal_sent_as_soon_as_its_url_is_out() {
    for signal in ["INT", "TERM"] {
        let mut child = mock_command("mock --port 0 --quiet");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("http://"), "the URL first: {line:?}");
        assert!(support::signal(child.id(), signal), "kill -{signal}");
        let stopped = wait_limited(&mut child, Duration::from_secs(10)).expect("it stops");
        assert!(stopped.success(), "SIG{signal}: lro mock exits 0: {stopped:?}");
    }
}

#[test]
fn mock_command_prints_its_base_url_first_and_serves() {
    let mut child = mock_command("mock --port 0");
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let first = receiver.recv_timeout(Duration::from_secs(5));
    let outcome = first.as_ref().ok().map(|base| {
        let base = base.trim();
        let run = run_line(&format!(
            "start --method PUT --url {url} --flavour arm --body '{{}}' --interval 0 --output json",
            url = widget(base, "served")
        ));
        (base.to_owned(), run)
    });
    // Stop it: Ctrl-C where we can send it, else kill.
    #[cfg(unix)]
    let interrupted = support::signal(child.id(), "INT");
    #[cfg(not(unix))]
    let interrupted = false;
    let stopped = if interrupted {
        wait_limited(&mut child, Duration::from_secs(5))
    } else {
        let _ = child.kill();
        child.wait().ok()
    };
    let (base, run) = outcome.expect("lro mock printed a first line within 5 s");
    assert!(base.starts_with("http://127.0.0.1:"), "the base URL first: {base:?}");
    let port: u16 = base.rsplit(':').next().unwrap().parse().expect("a port");
    assert_ne!(port, 0);
    run.outcome("succeeded");
    let stopped = stopped.expect("lro mock stops on Ctrl-C");
    if interrupted {
        assert!(stopped.success(), "lro mock exits 0 when interrupted: {stopped:?}");
    }
}

#[test]
fn mock_command_rejects_a_bogus_fault_spec_with_exit_2() {
    let run = run_line("mock --port 0 --faults bogus");
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stdout.trim().is_empty(), "no base URL\n{}", run.describe());
}

// ---------------------------------------------------------------------------------------------
// 15. Request headers.

#[test]
fn header_values_reach_the_service() {
    let server = mock();
    let url = widget(&server.base_url(), "headers");
    let run = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' \
         --header 'x-ms-client-request-id: cli-test-42' --header 'X-Custom-Thing:  yes ' \
         --interval 0 --output json"
    ));
    run.outcome("succeeded");
    let log = server.log();
    assert!(log.len() > 1);
    assert!(
        log.iter().all(|e| e.header_names.iter().any(|n| n == "x-custom-thing")),
        "--header goes on the initial request and on every poll: {log:?}"
    );
    assert!(
        log[1..].iter().all(|e| !e.header_names.iter().any(|n| n == "content-type")),
        "but not the body's content-type on the GETs: {log:?}"
    );
    assert!(
        log.iter().all(|e| e.client_request_id.as_deref() == Some("cli-test-42")),
        "the given id, on the initial request and every poll: {log:?}"
    );
}

#[test]
fn credentials_given_with_header_stay_out_of_the_token() {
    let server = mock();
    let dir = TempDir::new("secret");
    let file = dir.join("op.token");
    let run = run_line(&format!(
        "start --method POST --url {url} --header 'Authorization: Bearer secret-value-123' \
         --header 'x-mock-polls: 100' --interval 0.1 --timeout 1.5 --token-file '{file}' \
         --output json",
        url = server.url("/jobs"),
        file = arg(&file)
    ));
    let json = run.error("timeout");
    assert!(server.log()[0].authorization, "the header reached the service");
    for token in [token(&json), std::fs::read_to_string(&file).unwrap()] {
        let decoded = token_envelope(&token).to_string();
        assert!(!decoded.contains("secret-value-123"), "a credential in the token: {decoded}");
    }
}

#[test]
fn a_client_request_id_is_added_when_none_is_given() {
    let server = mock();
    let mut ids = Vec::new();
    for name in ["id-1", "id-2"] {
        let url = widget(&server.base_url(), name);
        let before = server.log().len();
        let run = run_line(&format!(
            "start --method PUT --url {url} --flavour arm --body '{{}}' --interval 0 --output json"
        ));
        run.outcome("succeeded");
        let log = server.log();
        let id = log[before].client_request_id.clone().expect("an x-ms-client-request-id");
        assert!(!id.trim().is_empty());
        assert!(
            log[before..].iter().all(|e| e.client_request_id.as_deref() == Some(id.as_str())),
            "polls repeat it: {log:?}"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "a fresh id per operation");
}

#[test]
fn transient_faults_while_polling_are_retried_by_default() {
    let server = scripted(vec![
        Step::new("PUT", "/things/t9")
            .status(201)
            .header("Operation-Location", "{base}/ops/9")
            .json(r#"{"status": "Running"}"#),
        Step::get("/ops/9").status(503).header("Retry-After", "0").json("{}"),
        Step::get("/ops/9").status(429).header("Retry-After", "0").json("{}"),
        Step::get("/ops/9").json(r#"{"status": "Succeeded"}"#),
        Step::get("/things/t9").json(r#"{"name": "t9"}"#),
    ]);
    let run = run_line(&format!(
        "start --method PUT --url {url} --body '{{}}' --interval 0 --output json",
        url = server.url("/things/t9")
    ));
    let json = run.outcome("succeeded");
    assert_eq!(json["resource"], json!({"name": "t9"}), "{}", run.describe());
    assert_eq!(json["polls"], 4, "every GET sent, retries included\n{}", run.describe());
    assert!(server.is_complete(), "left: {:?}", server.remaining());
}

#[cfg(unix)]
#[test]
fn a_body_file_that_never_ends_is_refused_after_16_mib_not_read_forever() {
    let url = widget("http://127.0.0.1:9", "endless");
    let run = run(&["start", "--method", "PUT", "--url", &url, "--body-file", "/dev/zero"]);
    assert_eq!(run.code(), Some(2), "a usage error\n{}", run.describe());
    assert!(run.stderr.contains("cannot read --body-file"), "{}", run.describe());
    assert!(run.stderr.contains("larger than 16777216 bytes"), "{}", run.describe());
}

#[test]
fn a_bearer_token_under_any_header_name_is_kept_out_of_the_resume_advice() {
    let server = mock();
    for header in ["x-ms-authorization-auxiliary: Bearer aux-s3cr3t", "x-tenant: bearer aux-s3cr3t"]
    {
        let run = run_line(&format!(
            "start --method POST --url {url} --header '{header}' --header 'x-mock-polls: 100' \
             --interval 0.1 --timeout 1.5",
            url = server.url("/jobs"),
        ));
        assert_eq!(run.code(), Some(1), "{}", run.describe());
        assert!(run.stderr.contains("lro resume"), "the advice is given\n{}", run.describe());
        assert!(!run.stderr.contains("aux-s3cr3t"), "{header}: printed\n{}", run.describe());
        assert!(!run.stdout.contains("aux-s3cr3t"), "{header}: printed\n{}", run.describe());
    }
}

#[test]
fn a_malformed_header_or_url_is_refused_without_repeating_its_secret() {
    let url = widget("http://127.0.0.1:9", "w");
    let cases = [
        vec!["--url", url.as_str(), "--secret-header", "s3cr3t-value"],
        vec!["--url", url.as_str(), "--header", "Bearer s3cr3t-value: x"],
        vec!["--url", url.as_str(), "--header", "x-key: s3cr3t-value\u{7f}"],
        vec!["--url", "http://h/p?sig=s3cr3t-value x"],
        vec!["--url", "ftp://h/p?sig=s3cr3t-value"],
    ];
    for extra in cases {
        let mut args = vec!["start", "--method", "PUT"];
        args.extend(extra.iter().copied());
        let run = run(&args);
        assert_eq!(run.code(), Some(2), "a usage error\n{}", run.describe());
        assert!(!run.stderr.contains("s3cr3t"), "{extra:?}\n{}", run.describe());
    }
}

#[test]
fn a_url_with_user_information_is_refused_before_anything_is_sent() {
    let server = mock();
    let url = widget(&server.base_url(), "userinfo").replace("http://", "http://u:s3cr3t-pw@");
    let run = run(&["start", "--method", "PUT", "--url", &url, "--body", "{}"]);
    assert_eq!(run.code(), Some(2), "a usage error\n{}", run.describe());
    assert!(run.stderr.contains("user information"), "{}", run.describe());
    assert!(!run.stderr.contains("s3cr3t-pw"), "{}", run.describe());
    assert!(server.log().is_empty(), "nothing sent");
}
