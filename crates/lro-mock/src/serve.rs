//! The accept loop shared by [`MockServer`](crate::MockServer) and
//! [`ScriptedServer`](crate::scripted::ScriptedServer): HTTP/1.1 and HTTP/2 (prior knowledge)
//! on one port, connection resets on demand, graceful and bounded shutdown.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinSet;

use crate::body::MockBody;

/// How long connections get to finish their in-flight responses once shutdown starts.
const GRACE: Duration = Duration::from_secs(2);
/// Open connections beyond this are closed as soon as they are accepted.
const MAX_CONNECTIONS: usize = 1024;
/// A client must send its request head within this time (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send its whole request body within this time.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop never spins.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a handler answers: a response, or "reset this connection".
pub(crate) type Handled = Result<Response<MockBody>, ResetConnection>;

/// A request handler: one per server, shared by every connection.
pub(crate) type Handler = Arc<dyn Fn(Request<Incoming>, Conn) -> BoxFuture<Handled> + Send + Sync>;

/// The error a handler returns to close its connection without answering.
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset on purpose by lro-mock")
    }
}

impl std::error::Error for ResetConnection {}

/// Per-connection control shared by the connection task, its I/O and its handlers.
#[derive(Debug, Default)]
struct ConnCtl {
    reset: AtomicBool,
    notify: Notify,
}

/// What a handler knows about its connection: it can reset it, and sleep until shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    ctl: Arc<ConnCtl>,
    shutdown: watch::Receiver<bool>,
}

impl Conn {
    /// Marks the connection for an abortive close (TCP RST) and returns the handler's error.
    pub(crate) fn reset(&self) -> ResetConnection {
        self.ctl.reset.store(true, Ordering::SeqCst);
        self.ctl.notify.notify_one();
        ResetConnection
    }

    /// Sleeps for `delay`, or less if the server shuts down meanwhile.
    pub(crate) async fn sleep(&self, delay: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut shutdown) => {}
        }
    }
}

/// The TCP stream, which sends a RST instead of a FIN when its connection was reset on purpose.
struct ResettableStream {
    inner: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.ctl.reset.load(Ordering::SeqCst) {
            // Zero linger: close() sends RST and never blocks.
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once shutdown was requested (or the sender is gone). The watch guard never
/// outlives this function, which keeps the callers' futures `Send`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Binds 127.0.0.1:`port` (0 = ephemeral) without needing a runtime.
pub(crate) fn bind(port: u16) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A running accept loop. Dropping it starts a graceful shutdown; when the loop runs on its own
/// thread, the drop also waits for that thread.
#[derive(Debug)]
pub(crate) struct Running {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    done: Option<oneshot::Receiver<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Running {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the accept loop on the caller's tokio runtime.
    pub(crate) fn spawn(listener: std::net::TcpListener, handler: Handler) -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|error| io::Error::other(format!("no tokio runtime: {error}")))?;
        let _guard = runtime.enter();
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let (finished, done) = oneshot::channel();
        runtime.spawn(async move {
            accept_loop(listener, handler, stop).await;
            let _ = finished.send(());
        });
        Ok(Self { addr, shutdown, done: Some(done), thread: None })
    }

    /// Starts the accept loop on a multi-thread runtime of its own, on a background thread.
    pub(crate) fn spawn_thread(
        listener: std::net::TcpListener,
        handler: Handler,
        name: &str,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("{name}-worker"))
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let (finished, done) = oneshot::channel();
        let thread = thread::Builder::new().name(name.to_owned()).spawn(move || {
            runtime.block_on(accept_loop(listener, handler, stop));
            // Cancels whatever is left (nothing, normally) and frees the worker threads.
            runtime.shutdown_timeout(GRACE);
            let _ = finished.send(());
        })?;
        Ok(Self { addr, shutdown, done: Some(done), thread: Some(thread) })
    }

    /// Shuts down and waits until the listener is closed and the connections have ended
    /// (or were cut after the grace period).
    pub(crate) async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, handler: Handler, stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stopping) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        continue; // dropping the stream closes it
                    }
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, handler.clone(), stop.clone()));
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
        }
    }
    drop(listener); // the port is free from here on
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(GRACE + Duration::from_millis(500), drain).await;
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, handler: Handler, mut stop: watch::Receiver<bool>) {
    let ctl = Arc::new(ConnCtl::default());
    let io = TokioIo::new(ResettableStream { inner: stream, ctl: ctl.clone() });
    let conn = Conn { ctl: ctl.clone(), shutdown: stop.clone() };
    let service = service_fn(move |request| handler(request, conn.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = ctl.notify.notified() => return, // reset: drop the connection now
        () = stopped(&mut stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    let finish = async {
        tokio::select! {
            _ = connection.as_mut() => {}
            () = ctl.notify.notified() => {}
        }
    };
    let _ = tokio::time::timeout(GRACE, finish).await;
}

/// Why a request body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge,
    TimedOut,
    Broken,
}

/// Reads a request body, at most `limit` bytes and within [`BODY_READ_TIMEOUT`].
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    use hyper::body::Body as _;
    if body.size_hint().lower() > limit as u64 {
        return Err(BodyError::TooLarge);
    }
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, collect).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge)
        }
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}
