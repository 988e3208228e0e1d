//! `ReqwestClient` against the mock LRO service and other loopback servers: whole operations,
//! the response as reqwest read it, the body cap (declared and streamed), refused connections,
//! timeouts, and use outside a usable tokio runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use lro_core::test_util::block_on;
use lro_core::{
    AsyncHttpClient, AsyncLroPoller, AsyncPollingMethod, InitialResponse, LroError,
    TransportErrorKind, deserialize,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_mock::scripted::{ScriptedServer, Step};
use lro_mock::{MockConfig, MockServer};
use lro_reqwest::ReqwestClient;
use lro_strategies::{ArmPolling, LroBasePolling};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn get(url: &str) -> Request<Bytes> {
    Request::get(url).body(Bytes::new()).unwrap()
}

/// Fails the test instead of hanging it if something never completes.
async fn bounded<F: IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("finished within 20 s")
}

fn widget_url(mock: &MockServer, name: &str) -> String {
    mock.url(&format!("/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/{name}"))
}

/// Sends `request` as the initial request and polls with `method` to the end, with no waits.
async fn run<M: AsyncPollingMethod<Bytes> + 'static>(
    request: Request<Bytes>,
    method: M,
) -> Result<Bytes, LroError> {
    let client = Arc::new(ReqwestClient::new().unwrap());
    let initial = InitialResponse::send_async(&*client, request).await?;
    let poller = AsyncLroPoller::new(client, TokioTimer, initial, deserialize::bytes(), method)?;
    bounded(poller).await
}

/// The resource's current bytes, read by another transport.
async fn fetch(url: &str) -> Bytes {
    let response = HyperClient::new().unwrap().send(get(url)).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body()
}

#[tokio::test]
async fn an_arm_put_through_reqwest_ends_with_the_final_resource_byte_exact() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let url = widget_url(&mock, "reqwest-1");
    let request = Request::put(&url)
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"properties":{"color":"amber"}}"#))
        .unwrap();
    let resource =
        run(request, ArmPolling::builder().interval(Duration::ZERO).build()).await.unwrap();
    // The PUT, three polls of Azure-AsyncOperation and the final GET, all through reqwest.
    assert_eq!(mock.log().len(), 5, "{:?}", mock.log());
    assert_eq!(resource, fetch(&url).await);
    let value: serde_json::Value = serde_json::from_slice(&resource).unwrap();
    assert_eq!(value["properties"]["color"], "amber");
    assert_eq!(value["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn a_data_plane_job_through_reqwest_ends_with_the_job_byte_exact() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let request = Request::post(mock.url("/jobs"))
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"n":3}"#))
        .unwrap();
    let method = LroBasePolling::builder().interval(Duration::ZERO).build();
    let job = run(request, method).await.unwrap();
    let value: serde_json::Value = serde_json::from_slice(&job).unwrap();
    assert_eq!(value["status"], "Succeeded");
    assert_eq!(value["input"]["n"], 3);
    let id = value["id"].as_str().unwrap();
    assert_eq!(job, fetch(&mock.url(&format!("/jobs/{id}"))).await);
}

#[tokio::test]
async fn the_response_keeps_its_status_headers_and_version() {
    let server = ScriptedServer::start(vec![
        Step::get("/op")
            .status(418)
            .header("retry-after", "7")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .json(r#"{"status":"Running"}"#),
    ])
    .await
    .unwrap();
    let response = bounded(ReqwestClient::new().unwrap().send(get(&server.url("/op")))).await;
    let response = response.unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(response.headers()["retry-after"], "7");
    let multi: Vec<_> = response.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!(response.body(), r#"{"status":"Running"}"#);
}

#[tokio::test]
async fn a_body_over_the_cap_is_body_too_large() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let oversized = || {
        Request::post(mock.url("/jobs"))
            .header("x-mock-faults", "oversized=1:2MiB,initial=true")
            .body(Bytes::from_static(b"{}"))
            .unwrap()
    };
    let capped = ReqwestClient::new().unwrap().max_body_size(1024 * 1024);
    let error = bounded(capped.send(oversized())).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::BodyTooLarge, "{error}");
    // Under the default cap (16 MiB) the same answer is read whole.
    let response = bounded(ReqwestClient::new().unwrap().send(oversized())).await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.body().len(), 2 * 1024 * 1024);
}

#[test]
fn the_timeouts_are_the_same_as_lro_hypers() {
    assert_eq!(lro_reqwest::DEFAULT_REQUEST_TIMEOUT, lro_hyper::DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(lro_reqwest::DEFAULT_CONNECT_TIMEOUT, lro_hyper::DEFAULT_CONNECT_TIMEOUT);
}

/// 64 MiB in chunks of 64 KiB, without Content-Length; reports how many bytes were written
/// before the client went away.
async fn endless_chunked() -> (String, tokio::sync::oneshot::Receiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/stream", listener.local_addr().unwrap());
    let (report, written) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 4096];
        let _ = stream.read(&mut head).await;
        let mut sent = 0;
        let chunk = [b'y'; 64 * 1024];
        let mut result =
            stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
        while result.is_ok() && sent < 64 * 1024 * 1024 {
            result = async {
                stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                stream.write_all(&chunk).await?;
                stream.write_all(b"\r\n").await
            }
            .await;
            if result.is_ok() {
                sent += chunk.len();
            }
        }
        let _ = report.send(sent);
    });
    (url, written)
}

#[tokio::test]
async fn a_streamed_body_over_the_cap_is_cut_off_before_the_server_has_sent_it() {
    let (url, written) = endless_chunked().await;
    let client = ReqwestClient::new().unwrap().max_body_size(1024 * 1024);
    let error = bounded(client.send(get(&url))).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::BodyTooLarge, "{error}");
    // The client closed the connection: the server could not write its 64 MiB.
    let sent = bounded(written).await.unwrap();
    assert!(sent < 64 * 1024 * 1024, "the whole body was read: {sent} bytes");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/op?sig=SECRET-SIGNATURE");
    let error = bounded(ReqwestClient::new().unwrap().send(get(&url))).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Connect, "{error}");
    // The error travels into logs and spans: never the URL's query.
    let chain = lro_core::LroError::transport(error).chain().to_string();
    assert!(!chain.contains("SECRET"), "{chain}");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_gives_a_timeout_error() {
    // Accepts, reads, never answers. Paused time: the 30 s timeout passes at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/op", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    });
    let client =
        ReqwestClient::from_builder(reqwest::Client::builder().timeout(Duration::from_secs(30)))
            .unwrap();
    let error = client.send(get(&url)).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Timeout, "{error}");
    server.abort();
}

#[tokio::test]
async fn a_url_reqwest_cannot_take_is_an_other_error() {
    let request = Request::get("/relative/only").body(Bytes::new()).unwrap();
    let error = ReqwestClient::new().unwrap().send(request).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Other, "{error}");
}

#[test]
fn a_request_outside_tokio_is_an_unusable_error_not_a_panic() {
    let client = ReqwestClient::new().expect("building needs no runtime");
    let error = block_on(client.send(get("http://127.0.0.1:9/op"))).expect_err("no runtime");
    assert_eq!(error.kind(), TransportErrorKind::Unusable);
    let cause = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("tokio runtime"), "{cause}");
}

#[test]
fn a_request_on_a_runtime_without_io_is_an_unusable_error_not_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let client = ReqwestClient::new().unwrap();
    let error = runtime.block_on(client.send(get("http://127.0.0.1:9/op"))).unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Unusable, "{error}");
}
