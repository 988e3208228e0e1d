//! The two seams to the outside world: sending HTTP requests, and time.
//!
//! A transport crate (or a user) implements [`HttpClient`] and/or [`AsyncHttpClient`] over its
//! HTTP stack, and [`Timer`] / [`AsyncTimer`] over its clock. Nothing else in this crate performs
//! I/O or reads a clock.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response};

/// A boxed error from a transport or a deserializer.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A boxed future, as returned by [`AsyncTimer::sleep`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What kind of transport failure happened, for callers that react differently to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connection could not be established (DNS, refused, TLS handshake, ...).
    Connect,
    /// The request or the connection timed out.
    Timeout,
    /// The response body was larger than the configured limit.
    BodyTooLarge,
    /// The transport cannot work as it is used (e.g. an async transport outside its runtime):
    /// a programming error, never retried.
    Unusable,
    /// Anything else (reset connection, protocol error, ...).
    Other,
}

/// The cap on a response body every transport of the workspace applies by default: 16 MiB
/// (re-exported by each transport crate as its own `DEFAULT_MAX_BODY`).
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// A request that could not be completed: no HTTP response is available.
///
/// ```
/// use lro_core::{TransportError, TransportErrorKind};
///
/// let err = TransportError::new(TransportErrorKind::Timeout, "no answer within 30 s");
/// assert_eq!(err.kind(), TransportErrorKind::Timeout);
/// assert_eq!(err.to_string(), "timed out");
/// let cause = std::error::Error::source(&err).map(ToString::to_string);
/// assert_eq!(cause.as_deref(), Some("no answer within 30 s"));
/// ```
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportErrorKind,
    source: Arc<dyn StdError + Send + Sync + 'static>,
}

impl TransportError {
    /// A transport error of `kind` caused by `source` (an error value or a message).
    pub fn new(kind: TransportErrorKind, source: impl Into<BoxError>) -> Self {
        TransportError { kind, source: Arc::from(source.into()) }
    }

    /// A transport error of kind [`TransportErrorKind::Other`].
    pub fn other(source: impl Into<BoxError>) -> Self {
        Self::new(TransportErrorKind::Other, source)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// A response body larger than the transport's cap of `max` bytes (of kind
    /// [`BodyTooLarge`](TransportErrorKind::BodyTooLarge)).
    pub fn body_too_large(max: usize) -> Self {
        Self::new(
            TransportErrorKind::BodyTooLarge,
            format!("the response body is larger than the {max}-byte limit"),
        )
    }

    /// A TLS handshake answered in plain text: the URL says `https://` but the port serves
    /// plain HTTP. Of kind [`Connect`](TransportErrorKind::Connect), with a cause that names
    /// the fix, then `source` (what the TLS library said).
    ///
    /// ```
    /// use lro_core::TransportError;
    ///
    /// let err = TransportError::not_tls("received corrupt message of type InvalidContentType");
    /// let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    /// assert!(cause.contains("plain HTTP"));
    /// ```
    pub fn not_tls(source: impl Into<BoxError>) -> Self {
        Self::new(TransportErrorKind::Connect, NotTls(source.into()))
    }
}

/// The cause of [`TransportError::not_tls`].
#[derive(Debug)]
struct NotTls(BoxError);

impl fmt::Display for NotTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the server answered the TLS handshake in plain text: this port serves plain HTTP, \
             so use an http:// URL for it",
        )
    }
}

impl StdError for NotTls {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// The first cause of type `E` of `error`: `error` itself, its [`source`](StdError::source)s,
/// and the errors inside `std::io::Error`s on the way. For transports that classify the
/// failures of their stack (a TLS error wrapped in an I/O error wrapped in a client error).
///
/// ```
/// use lro_core::find_cause;
///
/// let io = std::io::Error::other(std::fmt::Error);
/// assert!(find_cause::<std::fmt::Error>(&io).is_some());
/// ```
pub fn find_cause<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    causes(error).find_map(|cause| cause.downcast_ref::<E>())
}

/// `error` and its causes, in order: its [`source`](StdError::source)s, and the error inside
/// each `std::io::Error` on the way (whose own `source` skips it). At most 32: a cyclic chain
/// (a bug elsewhere) must not hang the caller.
///
/// ```
/// use lro_core::causes;
///
/// let io = std::io::Error::other(std::fmt::Error);
/// assert_eq!(causes(&io).count(), 2);
/// ```
pub fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let next = |e: &&'a (dyn StdError + 'static)| -> Option<&'a (dyn StdError + 'static)> {
        let e: &'a (dyn StdError + 'static) = *e;
        match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        }
    };
    std::iter::successors(Some(error), next).take(32)
}

impl fmt::Display for TransportError {
    /// The kind of failure only; what the transport said is the [`source`](StdError::source).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            TransportErrorKind::Connect => "connection failed",
            TransportErrorKind::Timeout => "timed out",
            TransportErrorKind::BodyTooLarge => "response body too large",
            TransportErrorKind::Unusable => "transport unusable here",
            TransportErrorKind::Other => "transport error",
        })
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// A blocking HTTP client: sends one request, returns the whole response.
///
/// Implementations own connection pooling, TLS, timeouts and the cap on body size; the pollers
/// only call [`send`](HttpClient::send). The trait is object safe and implemented for `&T`,
/// `Arc<T>` and `Box<T>`.
///
/// Plugging in another HTTP stack takes one `impl`:
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use lro_core::{HttpClient, TransportError};
///
/// /// A stand-in for any blocking HTTP library.
/// struct MyStack;
/// impl MyStack {
///     fn call(&self, method: &str, url: &str) -> Result<(u16, Vec<u8>), String> {
///         Ok((200, br#"{"status":"Succeeded"}"#.to_vec()))
///     }
/// }
///
/// impl HttpClient for MyStack {
///     fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
///         let (status, body) = self
///             .call(request.method().as_str(), &request.uri().to_string())
///             .map_err(TransportError::other)?;
///         Response::builder()
///             .status(status)
///             .body(Bytes::from(body))
///             .map_err(TransportError::other)
///     }
/// }
///
/// let response = MyStack.send(Request::get("http://localhost/op").body(Bytes::new()).unwrap());
/// assert_eq!(response.unwrap().status(), 200);
/// ```
pub trait HttpClient: Send + Sync {
    /// Sends `request` and reads the whole response body.
    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError>;
}

/// An async HTTP client: sends one request, returns the whole response.
///
/// The async counterpart of [`HttpClient`]; runtime-agnostic. Object safe (through
/// [`async_trait`](https://docs.rs/async-trait)) and implemented for `&T`, `Arc<T>` and `Box<T>`.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use lro_core::{AsyncHttpClient, TransportError};
///
/// struct Canned;
///
/// #[async_trait::async_trait]
/// impl AsyncHttpClient for Canned {
///     async fn send(&self, _request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
///         Ok(Response::new(Bytes::from_static(br#"{"status":"Running"}"#)))
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait AsyncHttpClient: Send + Sync {
    /// Sends `request` and reads the whole response body.
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError>;
}

macro_rules! forward_clients {
    ($($ptr:ty),*) => {$(
        impl<T: HttpClient + ?Sized> HttpClient for $ptr {
            fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
                (**self).send(request)
            }
        }

        // Written out rather than through `async_trait`, which would box the pointee's
        // (already boxed) future a second time on every request.
        impl<T: AsyncHttpClient + ?Sized> AsyncHttpClient for $ptr {
            fn send<'life0, 'async_trait>(
                &'life0 self,
                request: Request<Bytes>,
            ) -> BoxFuture<'async_trait, Result<Response<Bytes>, TransportError>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                (**self).send(request)
            }
        }
    )*};
}
forward_clients!(&T, Arc<T>, Box<T>);

/// How far ahead "the far future" is when a duration overflows a clock: about a century.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A reading of the clocks, handed to the engine instead of letting it read a clock itself.
///
/// `instant` measures delays; `wall` resolves `Retry-After` HTTP dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timestamp {
    /// Monotonic time: delays and deadlines are measured with it.
    pub instant: Instant,
    /// Wall-clock time: only used to turn an HTTP date into a delay.
    pub wall: SystemTime,
}

impl Timestamp {
    /// A timestamp from its two readings.
    pub fn new(instant: Instant, wall: SystemTime) -> Self {
        Timestamp { instant, wall }
    }

    /// This timestamp moved forward by `by`, saturating at the far future (about a century
    /// ahead) when `by` overflows the clock, so time always moves forward.
    #[must_use]
    pub fn advanced(self, by: Duration) -> Self {
        Timestamp {
            instant: crate::deadline::deadline_after(self.instant, by),
            wall: self
                .wall
                .checked_add(by)
                .or_else(|| self.wall.checked_add(FAR_FUTURE))
                .unwrap_or(self.wall),
        }
    }
}

/// A way to interrupt a blocking wait, shared between a poller and its polling thread.
///
/// [`LroPoller`](crate::LroPoller) sets it when dropped so that a polling thread stops waiting
/// at once instead of sleeping out a long `Retry-After`.
#[derive(Debug, Default)]
pub struct Interrupt {
    /// Read without the lock by [`is_set`](Self::is_set) (a polling thread checks it before
    /// every request); written under it, so that a waiter cannot miss the wake-up.
    set: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Interrupt {
    /// A new, unset interrupt.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the interrupt and wakes every waiter.
    pub fn set(&self) {
        let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.set.store(true, Ordering::Release);
        drop(guard);
        self.changed.notify_all();
    }

    /// Whether [`set`](Self::set) was called.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Blocks for `duration` of real time, or until the interrupt is set. Returns `true` if it
    /// was set.
    pub fn wait_timeout(&self, duration: Duration) -> bool {
        let guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let _guard = self
            .changed
            .wait_timeout_while(guard, duration, |()| !self.is_set())
            .unwrap_or_else(PoisonError::into_inner);
        self.is_set()
    }
}

/// Time for blocking polling: a clock, and a way to wait.
///
/// The default methods use the system clocks and really wait; tests substitute a manual clock
/// (see `ManualClock` behind the `test-util` feature) so that nothing sleeps for real.
pub trait Timer: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp {
        system_now()
    }

    /// Blocks for `duration`, returning early once `interrupt` is set.
    fn sleep(&self, duration: Duration, interrupt: &Interrupt) {
        interrupt.wait_timeout(duration);
    }
}

/// Time for async polling: a clock, and a sleep future from the caller's runtime.
///
/// ```
/// use std::time::Duration;
/// use lro_core::{AsyncTimer, BoxFuture};
///
/// /// Would call the runtime's sleep (e.g. `tokio::time::sleep`); this one returns at once.
/// struct Instantly;
/// impl AsyncTimer for Instantly {
///     fn sleep(&self, _duration: Duration) -> BoxFuture<'static, ()> {
///         Box::pin(async {})
///     }
/// }
/// ```
pub trait AsyncTimer: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp {
        system_now()
    }

    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

macro_rules! forward_timers {
    ($($ptr:ty),*) => {$(
        impl<T: Timer + ?Sized> Timer for $ptr {
            fn now(&self) -> Timestamp {
                (**self).now()
            }
            fn sleep(&self, duration: Duration, interrupt: &Interrupt) {
                (**self).sleep(duration, interrupt)
            }
        }

        impl<T: AsyncTimer + ?Sized> AsyncTimer for $ptr {
            fn now(&self) -> Timestamp {
                (**self).now()
            }
            fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
                (**self).sleep(duration)
            }
        }
    )*};
}
forward_timers!(&T, Arc<T>, Box<T>);

/// The system clocks and real waiting: the blocking poller's default [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::exhaustive_structs)] // a unit value, used as `SystemTimer`
pub struct SystemTimer;

impl Timer for SystemTimer {}

/// Reads the system clocks; the only place in this crate that does.
#[allow(clippy::disallowed_methods)]
pub(crate) fn system_now() -> Timestamp {
    Timestamp::new(Instant::now(), SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object_safe(_: &dyn HttpClient, _: &dyn AsyncHttpClient, _: &dyn Timer, _: &dyn AsyncTimer) {
    }

    struct Ok200;
    impl HttpClient for Ok200 {
        fn send(&self, _: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
            Ok(Response::new(Bytes::new()))
        }
    }

    #[test]
    fn clients_work_through_references_arcs_and_boxes() {
        let request = || Request::new(Bytes::new());
        let arc = Arc::new(Ok200);
        let boxed: Box<dyn HttpClient> = Box::new(Ok200);
        let by_ref: &dyn HttpClient = &&Ok200;
        assert!(by_ref.send(request()).is_ok());
        assert!(arc.send(request()).is_ok());
        assert!(boxed.send(request()).is_ok());
        let _ = object_safe;
    }

    #[test]
    fn interrupt_ends_a_wait_at_once() {
        let interrupt = Arc::new(Interrupt::new());
        let setter = Arc::clone(&interrupt);
        let handle = std::thread::spawn(move || setter.set());
        // An hour-long wait that must return as soon as the other thread sets the interrupt.
        assert!(interrupt.wait_timeout(Duration::from_secs(3600)));
        handle.join().ok();
        assert!(interrupt.is_set());
    }

    #[test]
    fn timestamp_advance_saturates_at_the_far_future_never_at_now() {
        let t = system_now();
        let far = t.advanced(Duration::MAX);
        assert!(far.instant.saturating_duration_since(t.instant) >= FAR_FUTURE);
        assert!(far.wall.duration_since(t.wall).unwrap_or_default() >= FAR_FUTURE);
    }

    #[test]
    fn transport_error_keeps_its_source() {
        let err = TransportError::new(TransportErrorKind::Connect, "refused");
        assert_eq!(err.source().map(ToString::to_string).as_deref(), Some("refused"));
    }
}
