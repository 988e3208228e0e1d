//! `max_connections_per_host` over loopback: many concurrent requests to one host never open
//! more connections than the cap, and all of them are answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use lro_core::AsyncHttpClient as _;
use lro_hyper::HyperClient;
use tokio::net::TcpListener;

/// A server that answers each request 50 ms after it arrives (so that requests overlap) and
/// counts the connections it accepted.
async fn slow_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/op", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|_: Request<Incoming>| async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                });
                let builder = Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (url, accepted)
}

/// Sends 12 requests at once; returns how many connections the server accepted.
async fn twelve_at_once(client: HyperClient) -> usize {
    let (url, accepted) = slow_server().await;
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, url) = (client.clone(), url.clone());
        sends.spawn(async move {
            let request = Request::get(url.as_str()).body(Bytes::new()).unwrap();
            client.send(request).await.map(|r| r.status().as_u16())
        });
    }
    while let Some(sent) = sends.join_next().await {
        assert_eq!(sent.unwrap().unwrap(), 200, "every request is answered");
    }
    accepted.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_one_host_never_open_more_connections_than_the_cap() {
    let capped = HyperClient::builder().max_connections_per_host(Some(3)).build().unwrap();
    let connections = twelve_at_once(capped).await;
    assert!((1..=3).contains(&connections), "{connections} connections with a cap of 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cap_the_same_requests_open_more_connections() {
    // What the cap prevents: hyper-util's pool opens a connection per concurrent request.
    let uncapped = HyperClient::builder().build().unwrap();
    let connections = twelve_at_once(uncapped).await;
    assert!(connections > 3, "only {connections} connections without a cap");
}
