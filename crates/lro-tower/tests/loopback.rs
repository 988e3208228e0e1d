//! `TowerClient` over a real tower stack (hyper-util's client behind tower layers) against the
//! mock LRO service and other loopback servers: whole operations, a layer seeing every request,
//! the body cap, redirects, refused connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lro_core::{
    AsyncHttpClient, AsyncLroPoller, AsyncPollingMethod, BoxError, InitialResponse, LroError,
    TransportErrorKind, deserialize,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_mock::scripted::{ScriptedServer, Step};
use lro_mock::{MockConfig, MockServer};
use lro_strategies::{ArmPolling, LroBasePolling};
use lro_tower::TowerClient;
use tower::ServiceBuilder;
use tower::util::BoxCloneService;

/// The header the test layer adds to every request.
const MARK: &str = "x-lro-tower-layer";

type Stack = BoxCloneService<Request<Bytes>, Response<hyper::body::Incoming>, BoxError>;

/// hyper-util's pooled client behind two layers: one adds [`MARK`], one turns the `Bytes` body
/// into hyper's `Full`. Boxed as users often do (a `BoxCloneService` is not `Sync`).
fn stack() -> Stack {
    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .map_err(BoxError::from)
        .map_request(|mut request: Request<Bytes>| {
            request.headers_mut().insert(MARK, HeaderValue::from_static("1"));
            request.map(Full::new)
        })
        .service(hyper);
    BoxCloneService::new(service)
}

fn client() -> Arc<TowerClient<Stack>> {
    Arc::new(TowerClient::new(stack()))
}

fn widget_url(mock: &MockServer, name: &str) -> String {
    mock.url(&format!("/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/{name}"))
}

/// Fails the test instead of hanging it if something never completes.
async fn bounded<F: std::future::IntoFuture>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("finished within 20 s")
}

/// Sends `request` as the initial request and polls with `method` to the end, with no waits.
async fn run<M: AsyncPollingMethod<Bytes> + 'static>(
    client: Arc<TowerClient<Stack>>,
    request: Request<Bytes>,
    method: M,
) -> Result<Bytes, LroError> {
    let initial = InitialResponse::send_async(&*client, request).await?;
    let poller = AsyncLroPoller::new(client, TokioTimer, initial, deserialize::bytes(), method)?;
    bounded(poller).await
}

/// The resource's current bytes, read by another transport.
async fn fetch(url: &str) -> Bytes {
    let request = Request::get(url).body(Bytes::new()).unwrap();
    let response = HyperClient::new().unwrap().send(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body()
}

#[tokio::test]
async fn an_arm_put_through_a_tower_stack_ends_with_the_final_resource_byte_exact() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let url = widget_url(&mock, "tower-1");
    let request = Request::put(&url)
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"properties":{"color":"teal"}}"#))
        .unwrap();
    let method = ArmPolling::builder().interval(Duration::ZERO).build();
    let resource = run(client(), request, method).await.unwrap();
    assert_eq!(resource, fetch(&url).await);
    let value: serde_json::Value = serde_json::from_slice(&resource).unwrap();
    assert_eq!(value["properties"]["color"], "teal");
    assert_eq!(value["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn a_data_plane_job_through_a_tower_stack_ends_with_the_job_byte_exact() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let request = Request::post(mock.url("/jobs"))
        .header("content-type", "application/json")
        .body(Bytes::from_static(br#"{"n":7}"#))
        .unwrap();
    let method = LroBasePolling::builder().interval(Duration::ZERO).build();
    let job = run(client(), request, method).await.unwrap();
    let value: serde_json::Value = serde_json::from_slice(&job).unwrap();
    assert_eq!(value["status"], "Succeeded");
    assert_eq!(value["input"]["n"], 7);
    let id = value["id"].as_str().unwrap();
    assert_eq!(job, fetch(&mock.url(&format!("/jobs/{id}"))).await);
}

#[tokio::test]
async fn a_layer_in_the_stack_sees_every_request_of_the_operation() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let request = Request::post(mock.url("/jobs")).body(Bytes::from_static(b"{}")).unwrap();
    let method = LroBasePolling::builder().interval(Duration::ZERO).build();
    run(client(), request, method).await.unwrap();
    let log = mock.log();
    // The POST, three polls (NotStarted, Running, Succeeded) and the final GET.
    assert_eq!(log.len(), 5, "{log:?}");
    for entry in &log {
        assert!(entry.header_names.iter().any(|name| name == MARK), "{entry:?}");
    }
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
    let capped = TowerClient::new(stack()).max_body_size(1024 * 1024);
    let error = bounded(capped.send(oversized())).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::BodyTooLarge, "{error}");
    // Under the default cap (16 MiB) the same answer is read whole.
    let response = bounded(TowerClient::new(stack()).send(oversized())).await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.body().len(), 2 * 1024 * 1024);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let request = Request::get(format!("http://127.0.0.1:{port}/op")).body(Bytes::new()).unwrap();
    let error = bounded(TowerClient::new(stack()).send(request)).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Connect, "{error}");
}

#[tokio::test]
async fn a_redirect_comes_back_to_the_engine_as_a_response() {
    let foreign = ScriptedServer::start(vec![Step::get("/x").json(r#"{"status":"Succeeded"}"#)])
        .await
        .unwrap();
    let origin = ScriptedServer::start(vec![
        Step::get("/op").status(307).header("location", &foreign.url("/x")),
    ])
    .await
    .unwrap();
    let head = Request::post(origin.url("/jobs")).body(()).unwrap();
    let mut first = Response::new(Bytes::new());
    *first.status_mut() = http::StatusCode::ACCEPTED;
    first.headers_mut().insert("operation-location", origin.url("/op").parse().unwrap());
    let method = LroBasePolling::builder()
        .interval(Duration::ZERO)
        .header("api-key".parse().unwrap(), "secret".parse().unwrap())
        .build();
    let poller = AsyncLroPoller::new(
        client(),
        TokioTimer,
        InitialResponse::from_exchange(&head, first),
        deserialize::bytes(),
        method,
    )
    .unwrap();
    let error = bounded(poller).await.unwrap_err();
    assert!(matches!(error, LroError::BadStatus(_)), "{error}");
    assert_eq!(error.response().map(|r| r.status_code().as_u16()), Some(307));
    assert!(foreign.requests().is_empty(), "the foreign origin was contacted");
}
