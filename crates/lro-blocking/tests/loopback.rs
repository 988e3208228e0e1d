//! `BlockingClient` against real loopback servers: plain HTTP, HTTPS with a self-signed
//! certificate, a server that offers HTTP/2, oversized bodies, stalls, resets, and a whole
//! operation through the blocking poller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use lro_blocking::BlockingClient;
use lro_core::{HttpClient, InitialResponse, LroPoller, TransportErrorKind, deserialize};
use lro_strategies::LroBasePolling;
use support::{Reply, Server, ok, self_signed};

fn get(url: &str) -> Request<Bytes> {
    Request::get(url).body(Bytes::new()).unwrap()
}

#[test]
fn plain_http_requests_share_one_kept_alive_connection() {
    let server = Server::start(Arc::new(|_: &str| ok("hello")), None);
    let client = BlockingClient::new().unwrap();
    for _ in 0..3 {
        assert_eq!(client.send(get(&server.url("/"))).unwrap().body(), "hello");
    }
    assert_eq!(server.connections(), 1);
}

#[test]
fn a_get_without_a_body_says_no_length_and_an_empty_put_says_zero() {
    let server = Server::start(Arc::new(|_: &str| ok("{}")), None);
    let client = BlockingClient::new().unwrap();
    client.send(get(&server.url("/poll"))).unwrap();
    let put = Request::put(server.url("/start")).body(Bytes::new()).unwrap();
    client.send(put).unwrap();
    let length = |i: usize| {
        let seen = server.seen();
        seen[i].headers.iter().find(|(name, _)| name == "content-length").map(|(_, v)| v.clone())
    };
    assert_eq!(length(0), None, "a poll carries no body and says nothing of one");
    assert_eq!(length(1).as_deref(), Some("0"), "a PUT says its length, even zero");
}

#[test]
fn error_statuses_come_back_as_responses() {
    let server = Server::start(
        Arc::new(|_: &str| {
            Reply::Full(503, vec![("retry-after".into(), "2".into())], b"busy".to_vec())
        }),
        None,
    );
    let response = BlockingClient::new().unwrap().send(get(&server.url("/"))).unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "2");
}

#[test]
fn https_with_a_self_signed_certificate_trusted_explicitly() {
    let (cert, config) = self_signed(&[b"http/1.1"]);
    let server = Server::start(Arc::new(|_: &str| ok("secure")), Some(config));
    let url = format!("https://localhost:{}/", server.addr.port());
    let client =
        BlockingClient::builder().default_roots(false).add_root_certificate(cert).build().unwrap();
    assert_eq!(client.send(get(&url)).unwrap().body(), "secure");
}

#[test]
fn a_server_offering_http2_is_spoken_to_in_http1() {
    // ureq is HTTP/1.1 only: against a server that offers h2 and http/1.1 through ALPN, the
    // handshake must settle on HTTP/1.1 and the request succeed.
    let (cert, config) = self_signed(&[b"h2", b"http/1.1"]);
    let server = Server::start(Arc::new(|_: &str| ok("negotiated")), Some(config));
    let url = format!("https://localhost:{}/", server.addr.port());
    let client = BlockingClient::builder().add_root_certificate(cert).build().unwrap();
    let response = client.send(get(&url)).unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.body(), "negotiated");
}

#[test]
fn https_with_an_untrusted_certificate_fails_to_connect() {
    let (_cert, config) = self_signed(&[b"http/1.1"]);
    let server = Server::start(Arc::new(|_: &str| ok("secure")), Some(config));
    let url = format!("https://localhost:{}/", server.addr.port());
    let error = BlockingClient::new().unwrap().send(get(&url)).unwrap_err();
    assert_eq!(error.kind(), TransportErrorKind::Connect, "{error}");
}

#[test]
fn a_body_over_the_cap_is_refused() {
    let server = Server::start(
        Arc::new(|_: &str| Reply::Full(200, Vec::new(), vec![b'x'; 4 * 1024 * 1024])),
        None,
    );
    let small = BlockingClient::builder().max_body_size(1024 * 1024).build().unwrap();
    assert_eq!(
        small.send(get(&server.url("/"))).unwrap_err().kind(),
        TransportErrorKind::BodyTooLarge
    );
    let large = BlockingClient::builder().max_body_size(8 * 1024 * 1024).build().unwrap();
    assert_eq!(large.send(get(&server.url("/"))).unwrap().body().len(), 4 * 1024 * 1024);
}

#[test]
fn a_streamed_body_over_the_cap_is_cut_off() {
    let server =
        Server::start(Arc::new(|_: &str| Reply::Stream { chunks: 64, size: 64 * 1024 }), None);
    let client = BlockingClient::builder().max_body_size(256 * 1024).build().unwrap();
    assert_eq!(
        client.send(get(&server.url("/"))).unwrap_err().kind(),
        TransportErrorKind::BodyTooLarge
    );
}

#[test]
fn a_stalled_server_gives_a_timeout_error() {
    let server = Server::start(Arc::new(|_: &str| Reply::Stall), None);
    // Real sockets, so real (short) time.
    let client = BlockingClient::builder()
        .request_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    assert_eq!(client.send(get(&server.url("/"))).unwrap_err().kind(), TransportErrorKind::Timeout);
}

#[test]
fn a_body_that_keeps_coming_slowly_still_ends_at_the_request_deadline() {
    // Each byte comes well within the time left: only a deadline for the whole request, not
    // one per read, ends this. With `close`, the cut-off body would look whole to ureq: it
    // must still be a timeout, never a short success.
    for close in [false, true] {
        let every = Duration::from_millis(20);
        let server = Server::start(Arc::new(move |_: &str| Reply::Drip { every, close }), None);
        let client = BlockingClient::builder()
            .request_timeout(Some(Duration::from_millis(300)))
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let error = client.send(get(&server.url("/"))).unwrap_err();
        assert_eq!(error.kind(), TransportErrorKind::Timeout, "close: {close}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "ended early: {took:?}");
        // The server drips forever: only the deadline ends this (the bound leaves room for a
        // loaded machine).
        assert!(took < Duration::from_secs(5), "ended late: {took:?}");
    }
}

#[test]
fn a_reset_connection_is_a_transport_error() {
    let server = Server::start(Arc::new(|_: &str| Reply::Reset), None);
    let error = BlockingClient::new().unwrap().send(get(&server.url("/"))).unwrap_err();
    assert!(
        matches!(error.kind(), TransportErrorKind::Other | TransportErrorKind::Connect),
        "{error}"
    );
}

#[test]
fn an_operation_runs_to_completion_through_the_blocking_poller() {
    let polls = Arc::new(AtomicUsize::new(0));
    let seen = polls.clone();
    let server = Server::start(
        Arc::new(move |path: &str| match path {
            "/op" if seen.fetch_add(1, Ordering::SeqCst) < 2 => ok(r#"{"status":"Running"}"#),
            "/op" => ok(r#"{"status":"Succeeded"}"#),
            "/widgets/1" => ok(r#"{"name":"w1"}"#),
            _ => Reply::Full(404, Vec::new(), Vec::new()),
        }),
        None,
    );
    let client = Arc::new(BlockingClient::new().unwrap());
    let head = Request::put(server.url("/widgets/1")).body(()).unwrap();
    let mut first = http::Response::new(Bytes::new());
    *first.status_mut() = http::StatusCode::CREATED;
    first.headers_mut().insert("operation-location", server.url("/op").parse().unwrap());
    let method = LroBasePolling::builder().interval(Duration::ZERO).build();
    let poller = LroPoller::new(
        client,
        lro_core::SystemTimer,
        InitialResponse::from_exchange(&head, first),
        deserialize::json::<serde_json::Value>(),
        method,
    )
    .unwrap();
    assert_eq!(poller.result(None).unwrap()["name"], "w1");
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    assert_eq!(server.connections(), 1);
}
