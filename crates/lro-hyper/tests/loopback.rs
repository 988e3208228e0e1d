//! `HyperClient` against real loopback servers: plain HTTP, HTTPS with a self-signed
//! certificate, HTTP/2, oversized bodies, stalls, resets, and a whole operation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use lro_core::{AsyncHttpClient, AsyncLroPoller, InitialResponse, TransportErrorKind, deserialize};
use lro_hyper::HyperClient;
use lro_strategies::LroBasePolling;
use support::{Handler, drip, misbehave, self_signed, serve, text};

fn get(url: &str) -> Request<Bytes> {
    Request::get(url).body(Bytes::new()).unwrap()
}

/// Fails the test instead of hanging it if something never completes.
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("finished within 20 s")
}

#[tokio::test]
async fn plain_http_requests_share_one_pooled_connection() {
    let server = serve(Arc::new(|_req: &Request<_>| text(200, "hello")), None).await;
    let client = HyperClient::new().unwrap();
    for _ in 0..3 {
        let response = bounded(client.send(get(&server.url("/")))).await.unwrap();
        assert_eq!(response.body(), "hello");
    }
    assert_eq!(server.connections(), 1, "keep-alive reused the connection");
}

#[tokio::test]
async fn https_with_a_self_signed_certificate_trusted_explicitly_negotiates_http2() {
    let (cert, acceptor) = self_signed();
    let server = serve(Arc::new(|_req: &Request<_>| text(200, "secure")), Some(acceptor)).await;
    let url = format!("https://localhost:{}/", server.addr.port());
    let client =
        HyperClient::builder().default_roots(false).add_root_certificate(cert).build().unwrap();
    let response = bounded(client.send(get(&url))).await.unwrap();
    assert_eq!(response.body(), "secure");
    assert_eq!(response.version(), Version::HTTP_2, "ALPN chose h2");
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_fails_to_connect() {
    let (_cert, acceptor) = self_signed();
    let server = serve(Arc::new(|_req: &Request<_>| text(200, "secure")), Some(acceptor)).await;
    let url = format!("https://localhost:{}/", server.addr.port());
    let error = bounded(HyperClient::new().unwrap().send(get(&url))).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Connect, "{error}");
}

#[tokio::test]
async fn http2_with_prior_knowledge_over_plain_http() {
    let server = serve(
        Arc::new(|req: &Request<_>| {
            text(200, if req.version() == Version::HTTP_2 { "h2" } else { "h1" })
        }),
        None,
    )
    .await;
    let client = HyperClient::builder().http2_only(true).build().unwrap();
    let response = bounded(client.send(get(&server.url("/")))).await.unwrap();
    assert_eq!(response.body(), "h2");
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_without_buffering_the_rest() {
    let chunked: Handler = Arc::new(|_req: &Request<_>| {
        // 4 MiB with Content-Length, served to a client capped at 1 MiB.
        http::Response::new(Full::new(Bytes::from(vec![b'x'; 4 * 1024 * 1024])))
    });
    let server = serve(chunked, None).await;
    let client = HyperClient::builder().max_body_size(1024 * 1024).build().unwrap();
    let error = bounded(client.send(get(&server.url("/big")))).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::BodyTooLarge, "{error}");
    let fits = HyperClient::builder().max_body_size(8 * 1024 * 1024).build().unwrap();
    assert_eq!(
        bounded(fits.send(get(&server.url("/big")))).await.unwrap().body().len(),
        4 * 1024 * 1024
    );
}

#[tokio::test]
async fn a_streamed_body_over_the_cap_is_cut_off() {
    use http_body_util::StreamBody;
    // No Content-Length: the cap must be enforced while reading.
    let server = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|_req| async {
                let chunks = (0..64).map(|_| {
                    Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(
                        vec![b'y'; 64 * 1024],
                    )))
                });
                let body = StreamBody::new(futures_stream(chunks));
                Ok::<_, std::convert::Infallible>(http::Response::new(body))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        addr
    };
    let client = HyperClient::builder().max_body_size(256 * 1024).build().unwrap();
    let error = bounded(client.send(get(&format!("http://{server}/stream")))).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::BodyTooLarge, "{error}");
}

/// A stream over an iterator.
fn futures_stream<I: Iterator + Unpin>(iter: I) -> IterStream<I> {
    IterStream(iter)
}

struct IterStream<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for IterStream<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

#[tokio::test]
async fn a_stalled_server_gives_a_timeout_error() {
    let server = misbehave(false).await;
    // Real sockets, so real (short) time: the only wait in this crate's tests.
    let client =
        HyperClient::builder().request_timeout(Some(Duration::from_millis(200))).build().unwrap();
    let error = bounded(client.send(get(&server.url("/")))).await.unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Timeout, "{error}");
}

#[tokio::test]
async fn a_body_that_keeps_coming_slowly_still_ends_at_the_request_deadline() {
    // Each byte comes well within the time left: only a deadline for the whole request, not
    // one per read, ends this; with `close`, the body cut short must not pass for whole.
    for close in [false, true] {
        let server = drip(Duration::from_millis(20), close).await;
        let limit = Duration::from_millis(300);
        let client = HyperClient::builder().request_timeout(Some(limit)).build().unwrap();
        let started = std::time::Instant::now();
        let error = bounded(client.send(get(&server.url("/")))).await.unwrap_err();
        assert_eq!(error.kind(), TransportErrorKind::Timeout, "close: {close}: {error:?}");
        let took = started.elapsed();
        assert!(took >= limit, "ended early: {took:?}");
        // Well before the test's own bound, and long after the limit: the deadline ended it.
        assert!(took < Duration::from_secs(5), "ended late: {took:?}");
    }
}

#[tokio::test]
async fn a_reset_connection_is_a_transport_error() {
    let server = misbehave(true).await;
    let error = bounded(HyperClient::new().unwrap().send(get(&server.url("/")))).await.unwrap_err();
    assert!(
        matches!(error.kind(), TransportErrorKind::Other | TransportErrorKind::Connect),
        "{error}"
    );
}

#[tokio::test]
async fn an_operation_runs_to_completion_over_loopback() {
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let handler: Handler = Arc::new(move |req: &Request<_>| match req.uri().path() {
        "/op" => {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let mut r = text(
                200,
                if n < 2 { r#"{"status":"Running"}"# } else { r#"{"status":"Succeeded"}"# },
            );
            r.headers_mut().insert("retry-after-ms", "1".parse().unwrap());
            r
        }
        "/widgets/1" => text(200, r#"{"name":"w1"}"#),
        _ => text(404, ""),
    });
    let server = serve(handler, None).await;
    let client = Arc::new(HyperClient::new().unwrap());
    let head = Request::put(server.url("/widgets/1")).body(()).unwrap();
    let mut first = http::Response::new(Bytes::new());
    *first.status_mut() = http::StatusCode::CREATED;
    first.headers_mut().insert("operation-location", server.url("/op").parse().unwrap());
    let initial = InitialResponse::from_exchange(&head, first);
    let poller = AsyncLroPoller::new(
        client.clone(),
        lro_hyper::TokioTimer,
        initial,
        deserialize::json::<serde_json::Value>(),
        LroBasePolling::builder().build(),
    )
    .unwrap();
    let widget = bounded(lro_hyper::spawn(poller)).await.unwrap().unwrap();
    assert_eq!(widget["name"], "w1");
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_user_supplied_hyper_client_is_wrapped_with_its_own_connector() {
    let server = serve(Arc::new(|_req: &Request<_>| text(200, "custom")), None).await;
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let inner = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let client = HyperClient::from_client_with(inner, Some(Duration::from_secs(5)), 4);
    let error = bounded(client.send(get(&server.url("/")))).await.unwrap_err();
    assert_eq!(
        error.kind(),
        TransportErrorKind::BodyTooLarge,
        "the 4-byte cap applies to a wrapped client"
    );
    let roomy = HyperClient::from_client(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, Full<Bytes>>(hyper_util::client::legacy::connect::HttpConnector::new()),
    );
    assert_eq!(bounded(roomy.send(get(&server.url("/")))).await.unwrap().body(), "custom");
}
