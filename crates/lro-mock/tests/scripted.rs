//! The scripted server: replay over real loopback HTTP, `{base}`, resets, mismatches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lro_mock::scripted::{ScriptedServer, Step};
use support::{get, h1, h2, raw_exchange, send};

#[tokio::test]
async fn replays_an_operation() {
    let server = ScriptedServer::start(vec![
        Step::new("put", "http://host/resource")
            .status(201)
            .header("Azure-AsyncOperation", "{base}/async")
            .json(r#"{"properties": {"provisioningState": "Creating"}}"#),
        Step::get("http://host/async")
            .json(r#"{"status": "InProgress"}"#)
            .header("retry-after", "0"),
        Step::get("/async")
            .json(r#"{"status": "Succeeded", "resourceLocation": "{base}/resource"}"#),
        Step::get("/resource").json(r#"{"properties": {"provisioningState": "Succeeded"}}"#),
    ])
    .await
    .unwrap();
    let client = h1();
    let headers = [("x-ms-client-request-id", "abc"), ("authorization", "Bearer secret")];
    let put = send(&client, "PUT", &server.url("/resource"), &headers, "{}").await;
    assert_eq!(put.status, 201);
    let monitor = put.header("azure-asyncoperation").unwrap().to_owned();
    assert_eq!(monitor, format!("{}/async", server.base_url()));

    let first = get(&client, &monitor).await;
    assert_eq!(first.status_word(), "InProgress");
    assert_eq!(first.header("retry-after"), Some("0"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    let done = get(&client, &monitor).await.json();
    assert_eq!(done["resourceLocation"], format!("{}/resource", server.base_url()));
    let resource = get(&client, done["resourceLocation"].as_str().unwrap()).await;
    assert_eq!(resource.json()["properties"]["provisioningState"], "Succeeded");

    assert!(server.is_complete());
    assert!(server.remaining().is_empty());
    let requests = server.requests();
    let seen: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(seen, ["PUT /resource", "GET /async", "GET /async", "GET /resource"]);
    assert_eq!(requests[0].body.as_ref(), b"{}");
    assert_eq!(requests[0].headers["x-ms-client-request-id"], "abc");
    assert_eq!(requests[0].headers["authorization"], "<redacted>");
    assert!(!requests[1].headers.contains_key("authorization"));
}

#[tokio::test]
async fn mismatches_get_599_and_leave_the_step() {
    let server = ScriptedServer::start(vec![Step::get("/a"), Step::get("/b?x=1").status(204)])
        .await
        .unwrap();
    let client = h1();

    let wrong = get(&client, &server.url("/b?x=1")).await;
    assert_eq!(wrong.status, 599);
    let text = String::from_utf8(wrong.body.to_vec()).unwrap();
    assert!(text.contains("GET /b?x=1") && text.contains("expected step 1 of 2: GET /a"), "{text}");
    assert_eq!(server.remaining().len(), 2);

    assert_eq!(get(&client, &server.url("/a?ignored=1")).await.status, 200, "no query in the step");
    assert_eq!(get(&client, &server.url("/b?x=2")).await.status, 599, "the step names a query");
    assert_eq!(send(&client, "POST", &server.url("/b?x=1"), &[], "").await.status, 599);
    assert_eq!(get(&client, &server.url("/b?x=1")).await.status, 204);
    let extra = get(&client, &server.url("/c")).await;
    assert_eq!(extra.status, 599);
    assert!(String::from_utf8_lossy(&extra.body).contains("no step left (all 2 used)"));

    let mismatches = server.mismatches();
    assert_eq!(mismatches.len(), 4);
    assert_eq!(mismatches[0].step, 0);
    assert_eq!(mismatches[0].expected.as_deref(), Some("GET /a"));
    assert_eq!(mismatches[0].received, "GET /b?x=1");
    assert_eq!(mismatches[2].received, "POST /b?x=1");
    assert_eq!(mismatches[3].step, 2);
    assert_eq!(mismatches[3].expected, None);
    assert!(server.remaining().is_empty());
    assert!(!server.is_complete());
    assert_eq!(server.requests().len(), 6);
}

#[tokio::test]
async fn reset_steps_close_the_connection() {
    let server = ScriptedServer::start(vec![Step::get("/op").reset(), Step::get("/op").body("ok")])
        .await
        .unwrap();
    assert!(server.remaining()[0].is_reset());
    match raw_exchange(server.addr(), "GET /op HTTP/1.1\r\nhost: x\r\n\r\n").await {
        Ok(bytes) => assert!(bytes.is_empty()),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    let answer = get(&h1(), &server.url("/op")).await;
    assert_eq!(answer.body.as_ref(), b"ok");
    assert!(server.is_complete());
}

#[tokio::test]
async fn refuses_invalid_steps() {
    let bad_status = ScriptedServer::start(vec![Step::get("/").status(1000)]).await.unwrap_err();
    assert_eq!(bad_status.kind(), std::io::ErrorKind::InvalidInput);
    assert!(bad_status.to_string().contains("invalid status 1000"), "{bad_status}");
    let bad_header =
        ScriptedServer::start(vec![Step::get("/").header("bad header", "x")]).await.unwrap_err();
    assert!(bad_header.to_string().contains("step 1 (GET /)"), "{bad_header}");
    let bad_value =
        ScriptedServer::start(vec![Step::get("/").header("x", "line\nbreak")]).await.unwrap_err();
    assert_eq!(bad_value.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn blocking_and_http2() {
    let server = ScriptedServer::start_blocking(vec![
        Step::new("POST", "{base}/jobs").status(202).header("operation-location", "{base}/op"),
    ])
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let post = send(&h2(), "POST", &server.url("/jobs"), &[], "").await;
        assert_eq!(post.version, http::Version::HTTP_2);
        assert_eq!(post.status, 202);
        assert_eq!(
            post.header("operation-location"),
            Some(format!("{}/op", server.base_url()).as_str())
        );
    });
    assert_eq!(server.requests()[0].version, http::Version::HTTP_2);
    assert!(server.is_complete());
}
