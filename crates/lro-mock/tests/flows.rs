//! The mock service's operation flows over real loopback HTTP: ARM PUT / PATCH / DELETE /
//! restart, data-plane jobs, outcomes, Retry-After modes, control headers and errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, SystemTime};

use lro_mock::{InitialHeaders, MockConfig, MockServer, RetryAfter};
use support::{get, h1, last_segment, send, widget};

async fn server(config: MockConfig) -> MockServer {
    MockServer::start(config).await.unwrap()
}

/// Creates a widget that is already provisioned (its operation polled to the end).
async fn provisioned(server: &MockServer, client: &support::Http, name: &str) {
    let put = send(client, "PUT", &server.url(&widget(name)), &[("x-mock-polls", "0")], "").await;
    assert_eq!(put.status, 201);
    let monitor = get(client, put.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(monitor.status_word(), "Succeeded");
}

#[tokio::test]
async fn put_then_monitor_then_get() {
    let server = server(MockConfig::default()).await;
    let client = h1();
    let path = widget("w1");
    let url = server.url(&format!("{path}?api-version=2024-01-01"));
    let put = send(&client, "PUT", &url, &[], r#"{"properties": {"color": "blue"}}"#).await;

    assert_eq!(put.status, 201);
    assert_eq!(put.header("content-type"), Some("application/json"));
    let monitor = put.header("azure-asyncoperation").unwrap().to_owned();
    assert!(monitor.starts_with(&format!("{}/operations/", server.base_url())), "{monitor}");
    assert_eq!(put.header("location"), None);
    assert_eq!(put.header("retry-after"), None);
    let body = put.json();
    assert_eq!(body["id"], path);
    assert_eq!(body["name"], "w1");
    assert_eq!(body["properties"]["color"], "blue");
    assert_eq!(body["properties"]["provisioningState"], "Creating");

    let during = get(&client, &url).await;
    assert_eq!(during.status, 200);
    assert_eq!(during.json()["properties"]["provisioningState"], "Creating");

    let mut words = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let poll = get(&client, &monitor).await;
        assert_eq!(poll.status, 200);
        words.push(poll.status_word());
        last = Some(poll.json());
    }
    assert_eq!(words, ["NotStarted", "Running", "Succeeded", "Succeeded"]);
    let last = last.unwrap();
    let id = last_segment(&monitor);
    assert_eq!(last["id"], id.as_str());
    assert!(last["startTime"].as_str().unwrap().ends_with('Z'));
    assert!(last["endTime"].is_string());
    assert!(last.get("error").is_none());
    assert!(last.get("resourceLocation").is_none());

    let after = get(&client, &url).await;
    assert_eq!(after.json()["properties"]["provisioningState"], "Succeeded");
    assert_eq!(after.json()["properties"]["color"], "blue");
    // PUT, one GET of the resource while the operation ran, four monitor polls.
    assert_eq!(server.counters().operation(&id), 6);
    assert_eq!(server.log()[0].operation_id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn put_again_and_patch_update_the_resource() {
    let server = server(MockConfig::default()).await;
    let client = h1();
    let url = server.url(&widget("w2"));
    assert_eq!(send(&client, "PATCH", &url, &[], "{}").await.status, 404);
    provisioned(&server, &client, "w2").await;

    let replace = send(&client, "PUT", &url, &[], r#"{"properties": {"a": 1}}"#).await;
    assert_eq!(replace.status, 200);
    assert_eq!(replace.json()["properties"]["provisioningState"], "Updating");

    let patch =
        send(&client, "PATCH", &url, &[("x-mock-polls", "0")], r#"{"properties": {"b": 2}}"#).await;
    assert_eq!(patch.status, 200);
    let body = patch.json();
    assert_eq!(body["properties"]["a"], 1);
    assert_eq!(body["properties"]["b"], 2);
    assert_eq!(body["properties"]["provisioningState"], "Updating");
    let monitor = get(&client, patch.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(monitor.status_word(), "Succeeded");
    assert_eq!(get(&client, &url).await.json()["properties"]["provisioningState"], "Succeeded");

    let bad = send(&client, "PUT", &url, &[], r#"{"properties": 3}"#).await;
    assert_eq!(bad.status, 400);
    let not_json = send(&client, "PUT", &url, &[], "{").await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.json()["error"]["code"], "InvalidRequestContent");
}

#[tokio::test]
async fn delete_then_location_then_204() {
    let server = server(MockConfig::default()).await;
    let client = h1();
    let url = server.url(&widget("doomed"));
    provisioned(&server, &client, "doomed").await;

    let delete = send(&client, "DELETE", &url, &[], "").await;
    assert_eq!(delete.status, 202);
    assert!(delete.body.is_empty());
    assert_eq!(delete.header("azure-asyncoperation"), None);
    let location = delete.header("location").unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/operationResults/", server.base_url())));

    assert_eq!(get(&client, &url).await.json()["properties"]["provisioningState"], "Deleting");
    let codes: Vec<u16> = {
        let mut codes = Vec::new();
        for _ in 0..4 {
            codes.push(get(&client, &location).await.status);
        }
        codes
    };
    assert_eq!(codes, [202, 202, 204, 204]);
    assert_eq!(get(&client, &url).await.status, 404);
    assert_eq!(get(&client, &url).await.json()["error"]["code"], "ResourceNotFound");
    // Deleting what is not there succeeds at once.
    assert_eq!(send(&client, "DELETE", &url, &[], "").await.status, 204);
}

#[tokio::test]
async fn post_job_then_operation_location_then_resource_location() {
    let server = server(MockConfig::default()).await;
    let client = h1();
    let post =
        send(&client, "POST", &server.url("/jobs?api-version=7"), &[], r#"{"task": "resize"}"#)
            .await;
    assert_eq!(post.status, 202);
    let monitor = post.header("operation-location").unwrap().to_owned();
    assert!(monitor.starts_with(&format!("{}/jobs/operations/", server.base_url())), "{monitor}");
    let id = last_segment(&monitor);
    assert_eq!(post.json()["id"], id.as_str());
    assert_eq!(post.json()["status"], "NotStarted");

    let first = get(&client, &monitor).await.json();
    assert_eq!(first["status"], "NotStarted");
    assert!(first.get("resourceLocation").is_none());
    assert_eq!(get(&client, &monitor).await.status_word(), "Running");
    let done = get(&client, &monitor).await.json();
    assert_eq!(done["status"], "Succeeded");
    let result_url = done["resourceLocation"].as_str().unwrap();
    assert_eq!(result_url, format!("{}/jobs/{id}", server.base_url()));

    let result = get(&client, result_url).await;
    assert_eq!(result.status, 200);
    let result = result.json();
    assert_eq!(result["status"], "Succeeded");
    assert_eq!(result["input"]["task"], "resize");
    assert!(result["result"]["output"].is_string());
    assert_eq!(get(&client, &server.url("/jobs/unknown")).await.status, 404);
}

#[tokio::test]
async fn restart_with_both_headers() {
    let server = server(MockConfig::default()).await;
    let client = h1();
    let restart_url = server.url(&format!("{}/restart", widget("r1")));
    assert_eq!(send(&client, "POST", &restart_url, &[], "").await.status, 404);
    provisioned(&server, &client, "r1").await;

    let post = send(&client, "POST", &restart_url, &[("x-mock-final-state", "both")], "").await;
    assert_eq!(post.status, 202);
    let location = post.header("location").unwrap().to_owned();
    let monitor = post.header("azure-asyncoperation").unwrap().to_owned();
    assert_eq!(last_segment(&location), last_segment(&monitor));

    assert_eq!(get(&client, &location).await.status, 202);
    assert_eq!(get(&client, &monitor).await.status_word(), "Running");
    let done = get(&client, &location).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.json()["restarted"], true);
    assert_eq!(done.json()["name"], "r1");
    // The resource's provisioning state is not touched by an action.
    let resource = get(&client, &server.url(&widget("r1"))).await.json();
    assert_eq!(resource["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn failed_and_canceled_outcomes_carry_errors() {
    let server = server(MockConfig::default()).await;
    let client = h1();

    let job = send(
        &client,
        "POST",
        &server.url("/jobs"),
        &[("x-mock-outcome", "Failed"), ("x-mock-polls", "0")],
        "",
    )
    .await;
    let monitor = job.header("operation-location").unwrap().to_owned();
    let failed = get(&client, &monitor).await.json();
    assert_eq!(failed["status"], "Failed");
    assert_eq!(failed["error"]["code"], "MockOperationFailed");
    assert!(failed["error"]["message"].is_string());
    assert!(failed["endTime"].is_string());
    assert!(failed.get("resourceLocation").is_none());
    let job = get(&client, &server.url(&format!("/jobs/{}", last_segment(&monitor)))).await.json();
    assert_eq!(job["status"], "Failed");
    assert_eq!(job["error"]["code"], "MockOperationFailed");
    assert!(job.get("result").is_none());

    let url = server.url(&widget("c1"));
    let put =
        send(&client, "PUT", &url, &[("x-mock-outcome", "canceled"), ("x-mock-polls", "1")], "")
            .await;
    let monitor = put.header("azure-asyncoperation").unwrap().to_owned();
    assert_eq!(get(&client, &monitor).await.status_word(), "NotStarted");
    let canceled = get(&client, &monitor).await.json();
    assert_eq!(canceled["status"], "Canceled");
    assert_eq!(canceled["error"]["code"], "MockOperationCanceled");
    assert_eq!(get(&client, &url).await.json()["properties"]["provisioningState"], "Canceled");

    let delete =
        send(&client, "DELETE", &url, &[("x-mock-outcome", "Failed"), ("x-mock-polls", "0")], "")
            .await;
    let result = get(&client, delete.header("location").unwrap()).await;
    assert_eq!(result.status, 400);
    assert_eq!(result.json()["error"]["code"], "MockOperationFailed");
    // A failed delete leaves the resource, in state Failed.
    assert_eq!(get(&client, &url).await.json()["properties"]["provisioningState"], "Failed");
}

#[tokio::test]
async fn every_retry_after_mode() {
    let server = server(MockConfig::default()).await;
    let client = h1();
    let start = |mode: &'static str| {
        let client = client.clone();
        let url = server.url("/jobs");
        async move {
            send(&client, "POST", &url, &[("x-mock-retry-after", mode), ("x-mock-polls", "1")], "")
                .await
        }
    };

    let none = start("none").await;
    assert_eq!(none.header("retry-after"), None);
    assert_eq!(none.header("retry-after-ms"), None);

    let seconds = start("3").await;
    assert_eq!(seconds.header("retry-after"), Some("3"));
    let monitor = seconds.header("operation-location").unwrap().to_owned();
    assert_eq!(get(&client, &monitor).await.header("retry-after"), Some("3"));
    let terminal = get(&client, &monitor).await;
    assert_eq!(terminal.status_word(), "Succeeded");
    assert_eq!(terminal.header("retry-after"), None, "no hint once terminal");

    let millis = start("ms:250").await;
    assert_eq!(millis.header("retry-after-ms"), Some("250"));
    assert_eq!(millis.header("retry-after"), None);
    let monitor = millis.header("operation-location").unwrap().to_owned();
    assert_eq!(get(&client, &monitor).await.header("retry-after-ms"), Some("250"));

    let date = start("date:60").await;
    let when = httpdate::parse_http_date(date.header("retry-after").unwrap()).unwrap();
    let ahead = when.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(ahead > Duration::from_secs(55) && ahead <= Duration::from_secs(61), "{ahead:?}");

    // The Location flavour carries it too.
    provisioned(&server, &client, "ra").await;
    let delete =
        send(&client, "DELETE", &server.url(&widget("ra")), &[("x-mock-retry-after", "2")], "")
            .await;
    assert_eq!(delete.header("retry-after"), Some("2"));
    assert_eq!(
        get(&client, delete.header("location").unwrap()).await.header("retry-after"),
        Some("2")
    );

    let bad =
        send(&client, "POST", &server.url("/jobs"), &[("x-mock-retry-after", "soon")], "").await;
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("x-mock-retry-after"));
    let too_long =
        send(&client, "POST", &server.url("/jobs"), &[("x-mock-retry-after", "ms:9999999")], "")
            .await;
    assert_eq!(too_long.status, 400);
}

#[tokio::test]
async fn configured_defaults_apply_and_headers_override_them() {
    let config = MockConfig::builder()
        .retry_after(RetryAfter::Seconds(7))
        .initial_headers(InitialHeaders::Both)
        .progress_after_polls(0)
        .build();
    let server = server(config).await;
    let client = h1();
    let put = send(&client, "PUT", &server.url(&widget("d1")), &[], "").await;
    assert_eq!(put.header("retry-after"), Some("7"));
    assert!(put.header("azure-asyncoperation").is_some());
    let location = put.header("location").unwrap().to_owned();
    let result = get(&client, &location).await;
    assert_eq!(result.status, 200, "progress after 0 polls: the first poll is terminal");
    assert_eq!(result.json()["properties"]["provisioningState"], "Succeeded");

    let only_location =
        send(&client, "POST", &server.url("/jobs"), &[("x-mock-final-state", "location")], "")
            .await;
    assert!(only_location.header("operation-location").is_none());
    assert!(only_location.header("location").unwrap().contains("/operationResults/"));
}

#[tokio::test]
async fn body_polling_when_no_header_is_sent() {
    let server = server(MockConfig::default()).await;
    let client = h1();
    let url = server.url(&widget("bp"));
    let put =
        send(&client, "PUT", &url, &[("x-mock-final-state", "none"), ("x-mock-polls", "1")], "")
            .await;
    assert_eq!(put.status, 201);
    assert!(put.header("azure-asyncoperation").is_none() && put.header("location").is_none());
    assert_eq!(get(&client, &url).await.json()["properties"]["provisioningState"], "Creating");
    assert_eq!(get(&client, &url).await.json()["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn progress_by_elapsed_time() {
    let now = server(MockConfig::builder().progress_after(Duration::ZERO).build()).await;
    let never =
        server(MockConfig::builder().progress_after(Duration::from_secs(3600)).build()).await;
    let client = h1();
    let post = send(&client, "POST", &now.url("/jobs"), &[], "").await;
    assert_eq!(
        get(&client, post.header("operation-location").unwrap()).await.status_word(),
        "Succeeded"
    );

    let post = send(&client, "POST", &never.url("/jobs"), &[], "").await;
    let monitor = post.header("operation-location").unwrap().to_owned();
    let mut words = Vec::new();
    for _ in 0..4 {
        words.push(get(&client, &monitor).await.status_word());
    }
    assert_eq!(words, ["NotStarted", "Running", "Running", "Running"]);
    // x-mock-polls switches one operation back to counting polls.
    let post = send(&client, "POST", &never.url("/jobs"), &[("x-mock-polls", "0")], "").await;
    assert_eq!(
        get(&client, post.header("operation-location").unwrap()).await.status_word(),
        "Succeeded"
    );
}

#[tokio::test]
async fn bad_requests_and_unknown_routes() {
    let server = server(MockConfig::builder().max_request_body(64).build()).await;
    let client = h1();
    let jobs = server.url("/jobs");
    for (header, value) in [
        ("x-mock-polls", "many"),
        ("x-mock-outcome", "Maybe"),
        ("x-mock-final-state", "sideways"),
        ("x-mock-faults", "500=2"),
    ] {
        let answer = send(&client, "POST", &jobs, &[(header, value)], "").await;
        assert_eq!(answer.status, 400, "{header}: {value}");
        assert_eq!(answer.json()["error"]["code"], "InvalidMockHeader");
        assert!(answer.json()["error"]["message"].as_str().unwrap().starts_with(header));
    }
    let large = format!("{{\"padding\": \"{}\"}}", "x".repeat(100));
    assert_eq!(send(&client, "POST", &jobs, &[], &large).await.status, 413);
    assert_eq!(get(&client, &server.url("/nowhere")).await.status, 404);
    assert_eq!(get(&client, &server.url("/operations/unknown")).await.status, 404);
    assert_eq!(get(&client, &server.url("/operationResults/unknown")).await.status, 404);
    let not_allowed = send(&client, "DELETE", &jobs, &[], "").await;
    assert_eq!(not_allowed.status, 405);
    assert_eq!(not_allowed.header("allow"), Some("POST"));
    assert_eq!(get(&client, &jobs).await.status, 405);
}

#[tokio::test]
async fn log_keeps_request_ids_and_never_credentials() {
    let server = server(MockConfig::default()).await;
    let client = h1();
    let headers = [("x-ms-client-request-id", "req-42"), ("authorization", "Bearer s3cr3t-token")];
    let post = send(&client, "POST", &server.url("/jobs?api-version=1"), &headers, "").await;
    assert_eq!(post.header("x-ms-client-request-id"), Some("req-42"), "echoed");
    get(&client, post.header("operation-location").unwrap()).await;

    let log = server.log();
    assert_eq!(log.len(), 2);
    let first = &log[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/jobs?api-version=1");
    assert_eq!(first.status, Some(202));
    assert_eq!(first.client_request_id.as_deref(), Some("req-42"));
    assert!(first.authorization);
    assert!(first.header_names.iter().any(|name| name == "authorization"));
    assert!(!format!("{log:?}").contains("s3cr3t"), "credentials must not be stored");
    assert!(!log[1].authorization);
    assert_eq!(log[1].operation_id, first.operation_id);

    let counters = server.counters();
    assert_eq!(counters.total, 2);
    assert_eq!(counters.method("POST"), 1);
    assert_eq!(counters.method("GET"), 1);
    assert_eq!(counters.path("/jobs"), 1);
    assert_eq!(counters.operation(first.operation_id.as_deref().unwrap()), 2);
}
