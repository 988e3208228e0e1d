//! Small loopback servers for the transport tests: plain, TLS, stalling, resetting.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};

pub type Handler = Arc<dyn Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync>;

/// A running test server: its address and how many connections it accepted.
pub struct Server {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A server that hands each accepted connection to `on_connection`, counting them.
async fn accepting(mut on_connection: impl FnMut(TcpStream) + Send + 'static) -> Server {
    let listener = listener().await;
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            on_connection(stream);
        }
    });
    Server { addr, connections, task }
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge), optionally over TLS.
pub async fn serve(handler: Handler, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    accepting(move |stream| {
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = handler(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let builder = Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            }
        });
    })
    .await
}

/// Accepts connections and then does something other than answering.
pub async fn misbehave(reset: bool) -> Server {
    let mut held = Vec::new();
    accepting(move |stream| {
        if reset {
            drop(stream); // closes before any response
        } else {
            held.push(stream); // never answers
        }
    })
    .await
}

/// Answers the headers, then a byte of body every `every`, without end: chunked, or with
/// `connection: close` (a body delimited by the connection's close).
#[allow(dead_code)] // not every test file uses it
pub async fn drip(every: std::time::Duration, close: bool) -> Server {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    accepting(move |mut stream| {
        tokio::spawn(async move {
            let (head, byte): (&[u8], &[u8]) = if close {
                (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", b"y")
            } else {
                (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", b"1\r\ny\r\n")
            };
            // The request's head first (a GET: no body).
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(head).await;
            // Until the client hangs up.
            while stream.write_all(byte).await.is_ok() {
                tokio::time::sleep(every).await;
            }
        });
    })
    .await
}

/// A self-signed certificate for `localhost`, and a TLS acceptor offering h2 and http/1.1.
pub fn self_signed() -> (Vec<u8>, tokio_rustls::TlsAcceptor) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_der = certified.cert.der().to_vec();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![rustls::pki_types::CertificateDer::from(cert_der.clone())], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (cert_der, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

pub fn text(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response
}
