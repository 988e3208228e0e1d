//! `TowerClient` over in-memory tower services: readiness driven per request, services that
//! are not `Sync`, bodies streamed past the cap or failing, tower's timeout, error kinds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use lro_core::{AsyncHttpClient, BoxError, TransportError, TransportErrorKind};
use lro_tower::TowerClient;
use tower::util::{BoxCloneService, service_fn};
use tower::{ServiceBuilder, ServiceExt};

fn get() -> Request<Bytes> {
    Request::get("http://svc/op").body(Bytes::new()).unwrap()
}

/// A body of `frames` data frames of `size` bytes each, with no declared size; counts the
/// frames it was asked for.
struct Chunks {
    left: usize,
    size: usize,
    polled: Arc<AtomicUsize>,
    then_fail: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(self.then_fail.then(|| Err("connection reset mid-body".into())));
        }
        self.left -= 1;
        self.polled.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; self.size])))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[tokio::test]
async fn a_streamed_body_without_a_declared_size_is_cut_off_one_chunk_past_the_cap() {
    let polled = Arc::new(AtomicUsize::new(0));
    let count = polled.clone();
    let service = service_fn(move |_req: Request<Bytes>| {
        let body = Chunks { left: 1024, size: 64 * 1024, polled: count.clone(), then_fail: false };
        async move { Ok::<_, Infallible>(Response::new(body)) }
    });
    let client = TowerClient::new(service).max_body_size(256 * 1024);
    let error = client.send(get()).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::BodyTooLarge, "{error}");
    // Four chunks fill the cap; the fifth passes it and ends the read (of 1,024).
    assert_eq!(polled.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_body_of_exactly_the_cap_is_accepted() {
    let service = service_fn(|_req: Request<Bytes>| async {
        let polled = Arc::new(AtomicUsize::new(0));
        Ok::<_, Infallible>(Response::new(Chunks { left: 4, size: 1024, polled, then_fail: false }))
    });
    let response = TowerClient::new(service).max_body_size(4096).send(get()).await.unwrap();
    assert_eq!(response.body().len(), 4096);
}

#[tokio::test]
async fn a_body_error_while_collecting_is_an_other_error() {
    let service = service_fn(|_req: Request<Bytes>| async {
        let polled = Arc::new(AtomicUsize::new(0));
        Ok::<_, Infallible>(Response::new(Chunks { left: 2, size: 10, polled, then_fail: true }))
    });
    let error = TowerClient::new(service).send(get()).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Other);
    let cause = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("connection reset mid-body"));
}

#[tokio::test]
async fn the_response_keeps_its_status_headers_and_version() {
    let service = service_fn(|request: Request<Bytes>| async move {
        let mut response = Response::new(http_body_util::Full::new(request.into_body()));
        *response.status_mut() = StatusCode::IM_A_TEAPOT;
        *response.version_mut() = Version::HTTP_2;
        response.headers_mut().insert("retry-after", HeaderValue::from_static("7"));
        Ok::<_, Infallible>(response)
    });
    let request = Request::post("http://svc/jobs").body(Bytes::from_static(b"echo")).unwrap();
    let response = TowerClient::new(service).send(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.body(), "echo");
}

#[tokio::test]
async fn readiness_is_driven_on_a_clone_for_each_request() {
    // ConcurrencyLimit panics if called before poll_ready said yes, and its clones share one
    // semaphore: three concurrent sends through a limit of one must run one at a time.
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, peak) = (running.clone(), most.clone());
    let inner = service_fn(move |_req: Request<Bytes>| {
        let (now, peak) = (now.clone(), peak.clone());
        async move {
            let current = now.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(current, Ordering::SeqCst);
            tokio::task::yield_now().await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(Bytes::from("ok"))))
        }
    });
    let client = TowerClient::new(ServiceBuilder::new().concurrency_limit(1).service(inner));
    let (a, b, c) = tokio::join!(client.send(get()), client.send(get()), client.send(get()));
    for response in [a, b, c] {
        assert_eq!(response.unwrap().body(), "ok");
    }
    assert_eq!(most.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_boxed_service_that_is_not_sync_is_a_client_shared_across_tasks() {
    let service: BoxCloneService<Request<Bytes>, Response<http_body_util::Full<Bytes>>, BoxError> =
        service_fn(|_req: Request<Bytes>| async {
            Ok::<_, BoxError>(Response::new(http_body_util::Full::new(Bytes::from("boxed"))))
        })
        .boxed_clone();
    let client = Arc::new(TowerClient::new(service));
    let shared: Arc<dyn AsyncHttpClient> = client.clone();
    let task = tokio::spawn(async move { shared.send(get()).await });
    assert_eq!(task.await.unwrap().unwrap().body(), "boxed");
    assert_eq!(client.send(get()).await.unwrap().body(), "boxed");
}

#[cfg(feature = "timeout")]
#[tokio::test(start_paused = true)]
async fn towers_timeout_layer_gives_a_timeout_error() {
    let never = service_fn(|_req: Request<Bytes>| async {
        std::future::pending::<Result<Response<http_body_util::Empty<Bytes>>, Infallible>>().await
    });
    // Paused time: the 30 s pass at once.
    let client = TowerClient::new(
        ServiceBuilder::new().timeout(std::time::Duration::from_secs(30)).service(never),
    );
    let error = client.send(get()).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Timeout, "{error}");
}

#[tokio::test]
async fn a_transport_error_from_the_stack_keeps_its_kind() {
    let refused = service_fn(|_req: Request<Bytes>| async {
        Err::<Response<http_body_util::Empty<Bytes>>, _>(TransportError::new(
            TransportErrorKind::Connect,
            "refused by an inner lro transport",
        ))
    });
    let error = TowerClient::new(refused).send(get()).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Connect);
    let cause = std::error::Error::source(&error).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("refused by an inner lro transport"));
}

/// A service that is never ready: its `poll_ready` fails.
#[derive(Clone)]
struct Unready;

impl tower::Service<Request<Bytes>> for Unready {
    type Response = Response<http_body_util::Empty<Bytes>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Err(std::io::ErrorKind::ConnectionRefused.into()))
    }

    fn call(&mut self, _request: Request<Bytes>) -> Self::Future {
        panic!("called although poll_ready failed")
    }
}

#[tokio::test]
async fn a_poll_ready_failure_is_mapped_like_a_call_failure() {
    let error = TowerClient::new(Unready).send(get()).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Connect);
}

#[test]
fn the_client_is_cloneable_and_debug_prints_its_cap() {
    let client = TowerClient::new(Unready).max_body_size(10);
    let copy = client.clone();
    assert_eq!(format!("{copy:?}"), "TowerClient { max_body_size: 10, .. }");
    let _service: Unready = client.into_inner();
}
