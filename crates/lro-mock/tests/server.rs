//! The mock server's life: ports, HTTP/2 prior knowledge, the bounded log, graceful shutdown
//! on drop in both modes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use lro_mock::{MockConfig, MockServer};
use support::{get, h1, h2, port_is_free, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn http2_prior_knowledge_and_http1_on_one_port() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let over_h2 = h2();
    let post = send(&over_h2, "POST", &server.url("/jobs"), &[], "").await;
    assert_eq!(post.version, http::Version::HTTP_2);
    assert_eq!(post.status, 202);
    let monitor = post.header("operation-location").unwrap().to_owned();
    assert_eq!(get(&over_h2, &monitor).await.status_word(), "NotStarted");
    assert_eq!(get(&h1(), &monitor).await.status_word(), "Running");

    let log = server.log();
    assert_eq!(log[0].version, http::Version::HTTP_2);
    assert_eq!(log[2].version, http::Version::HTTP_11);
}

#[tokio::test]
async fn the_log_is_bounded_and_the_counters_are_not() {
    let server = MockServer::start(MockConfig::builder().log_capacity(5).build()).await.unwrap();
    let client = h1();
    for index in 0..8 {
        assert_eq!(get(&client, &server.url(&format!("/nowhere/{index}"))).await.status, 404);
    }
    let paths: Vec<String> = server.log().into_iter().map(|entry| entry.path).collect();
    assert_eq!(paths, ["/nowhere/3", "/nowhere/4", "/nowhere/5", "/nowhere/6", "/nowhere/7"]);
    let counters = server.counters();
    assert_eq!(counters.total, 8);
    assert_eq!(counters.method("GET"), 8);
    assert_eq!(counters.by_path.len(), 8);

    let silent = MockServer::start(MockConfig::builder().log_capacity(0).build()).await.unwrap();
    get(&client, &silent.url("/x")).await;
    assert!(silent.log().is_empty());
    assert_eq!(silent.counters().total, 1);
}

#[tokio::test]
async fn stored_operations_are_bounded() {
    let server = MockServer::start(MockConfig::builder().max_operations(2).build()).await.unwrap();
    let client = h1();
    let mut monitors = Vec::new();
    for _ in 0..3 {
        let post = send(&client, "POST", &server.url("/jobs"), &[], "").await;
        monitors.push(post.header("operation-location").unwrap().to_owned());
    }
    assert_eq!(get(&client, &monitors[0]).await.status, 404, "the oldest was forgotten");
    assert_eq!(get(&client, &monitors[1]).await.status, 200);
    assert_eq!(get(&client, &monitors[2]).await.status, 200);
}

#[tokio::test]
async fn shutdown_releases_the_port_and_a_fixed_port_can_be_reused() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let port = server.addr().port();
    assert_eq!(server.base_url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(get(&h1(), &server.url("/x")).await.status, 404);
    server.shutdown().await;
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "free once shutdown returns");

    let again = MockServer::start(MockConfig::builder().port(port).build()).await.unwrap();
    assert_eq!(again.addr().port(), port);
    let busy = MockServer::start(MockConfig::builder().port(port).build()).await;
    assert_eq!(busy.unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
}

#[tokio::test]
async fn dropping_closes_idle_connections_and_frees_the_port() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let port = server.addr().port();
    // A kept-alive connection, idle after one exchange.
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(b"GET /x HTTP/1.1\r\nhost: mock\r\n\r\n").await.unwrap();
    let mut buffer = vec![0; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 404"));

    drop(server);
    let rest = tokio::time::timeout(support::STEP, stream.read(&mut buffer)).await.unwrap();
    assert_eq!(rest.unwrap(), 0, "the server closed the idle connection");
    assert!(port_is_free(port).await);
}

#[test]
fn blocking_server_stops_when_dropped() {
    let server = MockServer::start_blocking(MockConfig::default()).unwrap();
    let port = server.addr().port();
    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(b"POST /jobs HTTP/1.1\r\nhost: mock\r\ncontent-length: 0\r\n\r\n").unwrap();
    let mut buffer = vec![0; 4096];
    let read = stream.read(&mut buffer).unwrap();
    assert!(buffer[..read].starts_with(b"HTTP/1.1 202"));

    drop(server);
    // The drop waited for the server: the port is free at once and the connection is closed.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    assert_eq!(stream.read(&mut buffer).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_server_inside_a_runtime() {
    let server = MockServer::start_blocking(MockConfig::default()).unwrap();
    let post = send(&h1(), "POST", &server.url("/jobs"), &[], "").await;
    assert_eq!(post.status, 202);
    let port = server.addr().port();
    server.shutdown().await;
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

#[tokio::test]
async fn shutdown_cuts_slow_responses_short() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let client = h1();
    let headers = [("x-mock-faults", "slow=1:10s")];
    let post = send(&client, "POST", &server.url("/jobs"), &headers, "").await;
    let monitor = post.header("operation-location").unwrap().to_owned();
    let pending =
        tokio::spawn(async move { support::try_send(&client, "GET", &monitor, &[], "").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = std::time::Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // The slow poll was answered early (or its connection closed), not after 10 s.
    let _ = tokio::time::timeout(support::STEP, pending).await.unwrap();
}
