//! A small threaded HTTP/1.1 loopback server for the blocking transport's tests, with TLS,
//! stalling, resetting and streaming variants. Test code only.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// What the server does with a request for `path`.
pub enum Reply {
    /// Status, headers and body.
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// A chunked body of `chunks` chunks of `size` bytes, without Content-Length.
    Stream { chunks: usize, size: usize },
    /// Keep the connection open and never answer.
    Stall,
    /// Answer the headers, then a byte of body every `every`, without end (chunked, or with
    /// `close`: a body delimited by the connection's close).
    Drip { every: std::time::Duration, close: bool },
    /// Close the connection without answering.
    Reset,
}

pub type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A request as the server saw it: path and headers (names lower-cased).
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

pub struct Server {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    log: Log,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: Handler, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let log: Log = Arc::default();
        let (count, halt, seen) = (connections.clone(), stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if halt.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let handler = handler.clone();
                let tls = tls.clone();
                let seen = seen.clone();
                std::thread::spawn(move || match tls {
                    None => serve_connection(stream, &handler, &seen),
                    Some(config) => {
                        let connection = rustls::ServerConnection::new(config).unwrap();
                        let stream = rustls::StreamOwned::new(connection, stream);
                        serve_connection(stream, &handler, &seen);
                    }
                });
            }
        });
        Server { addr, connections, log, stop, thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_connection<S: Read + Write>(stream: S, handler: &Handler, log: &Log) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        log.lock().unwrap().push(Seen { path: path.clone(), headers });
        let stream = reader.get_mut();
        match handler(&path) {
            Reply::Full(status, headers, body) => {
                let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                if stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(&body))
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
            }
            Reply::Stream { chunks, size } => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
                let chunk = vec![b'y'; size];
                for _ in 0..chunks {
                    let sent = stream
                        .write_all(format!("{size:x}\r\n").as_bytes())
                        .and_then(|()| stream.write_all(&chunk))
                        .and_then(|()| stream.write_all(b"\r\n"));
                    if sent.is_err() {
                        return; // the client hung up: it stopped reading, as it should
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n");
                return;
            }
            Reply::Drip { every, close } => {
                let (head, byte): (&[u8], &[u8]) = if close {
                    (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", b"y")
                } else {
                    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", b"1\r\ny\r\n")
                };
                let _ = stream.write_all(head);
                // Until the client hangs up (or the test's process ends).
                while stream.write_all(byte).is_ok() {
                    std::thread::sleep(every);
                }
                return;
            }
            Reply::Stall => {
                let mut sink = [0u8; 1];
                let _ = stream.read(&mut sink); // blocks until the client gives up
                return;
            }
            Reply::Reset => return,
        }
    }
}

pub fn ok(body: &str) -> Reply {
    Reply::Full(200, Vec::new(), body.as_bytes().to_vec())
}

/// A self-signed certificate for `localhost` and a server configuration using it.
pub fn self_signed(alpn: &[&[u8]]) -> (Vec<u8>, Arc<rustls::ServerConfig>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().to_vec();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![rustls::pki_types::CertificateDer::from(cert.clone())], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (cert, Arc::new(config))
}
