//! A small test client over hyper-util's legacy client, and raw-socket helpers.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// Every network step of a test must finish within this time.
pub const STEP: Duration = Duration::from_secs(5);

pub type Http = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client.
pub fn h1() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (no upgrade, no TLS).
pub fn h2() -> Http {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// `/subscriptions/…/widgets/{name}`.
pub fn widget(name: &str) -> String {
    format!("/subscriptions/sub-1/resourceGroups/rg-1/providers/Mock.Widgets/widgets/{name}")
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!("not JSON ({error}): {:?}", String::from_utf8_lossy(&self.body))
        })
    }

    pub fn status_word(&self) -> String {
        self.json()["status"].as_str().unwrap().to_owned()
    }
}

/// Sends a request; `Err` carries the client error's text (e.g. after a reset).
pub async fn try_send(
    client: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, String> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let response = timeout(STEP, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|error| format!("{error:?}"))?;
    let (parts, body) = response.into_parts();
    let body = timeout(STEP, body.collect())
        .await
        .map_err(|_| "body timed out".to_owned())?
        .map_err(|error| format!("{error:?}"))?
        .to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

pub async fn send(
    client: &Http,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    try_send(client, method, url, headers, body).await.unwrap()
}

pub async fn get(client: &Http, url: &str) -> Answer {
    send(client, "GET", url, &[], "").await
}

/// The last path segment of a URL (an operation id).
pub fn last_segment(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// Sends one HTTP/1.1 request on a fresh connection and reads until the server closes it.
/// `Ok(bytes)` is what arrived (empty when the server closed without answering); `Err` is the
/// read error (e.g. a connection reset).
pub async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = timeout(STEP, tokio::net::TcpStream::connect(addr)).await.unwrap()?;
    stream.write_all(request.as_bytes()).await?;
    let mut received = Vec::new();
    timeout(STEP, stream.read_to_end(&mut received)).await.unwrap()?;
    Ok(received)
}

/// Binds `port` on 127.0.0.1, retrying for up to a second (async servers release their port
/// on their runtime, shortly after the drop).
pub async fn port_is_free(port: u16) -> bool {
    for _ in 0..200 {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}
