//! The polling-method contracts of azure-core, in Rust: [`PollingMethod`] and
//! [`AsyncPollingMethod`].
//!
//! A polling method is a configuration. A poller *initializes* it — consuming it — with a client
//! of its own kind and the initial response (or a continuation token), which gives an
//! *operation*: [`BlockingOperation`] for [`LroPoller`](crate::LroPoller),
//! [`AsyncOperation`] for [`AsyncLroPoller`](crate::AsyncLroPoller). The poller then asks the
//! operation to [`run`](BlockingOperation::run) to its end, reading its status meanwhile. A
//! method initialized for one kind of client can never be driven by the other poller: the types
//! do not fit, so the mistake does not compile; and nothing half-initialized is ever visible.
//!
//! ```compile_fail,E0277
//! use std::sync::Arc;
//! use lro_core::test_util::{ScriptedTransport, json_response, OperationLocationStrategy};
//! use lro_core::{AsyncOperation, HttpClient, InitialResponse, PollingMethod, StrategyPolling, deserialize};
//!
//! let client: Arc<dyn HttpClient> = Arc::new(ScriptedTransport::new());
//! let initial = InitialResponse::new(
//!     ScriptedTransport::request_head("POST", "http://svc/jobs"),
//!     json_response(202, ""),
//! );
//! let method = StrategyPolling::new(OperationLocationStrategy::default());
//! // Initialized with a blocking client...
//! let operation = PollingMethod::initialize(method, client, initial, deserialize::none())?;
//! // ...it is not an async operation: the async poller cannot drive it.
//! fn drive_async<O: AsyncOperation<()>>(_: &O) {}
//! drive_async(&operation);
//! # Ok::<(), lro_core::LroError>(())
//! ```
//!
//! The reverse does not compile either:
//!
//! ```compile_fail,E0277
//! use std::sync::Arc;
//! use lro_core::test_util::{ScriptedTransport, json_response, OperationLocationStrategy};
//! use lro_core::{AsyncHttpClient, AsyncPollingMethod, BlockingOperation, InitialResponse, StrategyPolling, deserialize};
//!
//! let client: Arc<dyn AsyncHttpClient> = Arc::new(ScriptedTransport::new());
//! let initial = InitialResponse::new(
//!     ScriptedTransport::request_head("POST", "http://svc/jobs"),
//!     json_response(202, ""),
//! );
//! let method = StrategyPolling::new(OperationLocationStrategy::default());
//! let operation = AsyncPollingMethod::initialize(method, client, initial, deserialize::none());
//! fn drive_blocking<O: BlockingOperation<()>>(_: &O) {}
//! if let Ok(operation) = &operation {
//!     drive_blocking(operation);
//! }
//! ```
//!
//! Built-in methods are [`StrategyPolling`](crate::StrategyPolling) over a sans-IO
//! [`Strategy`](crate::Strategy) — the way to write a custom method once for both pollers.
//!
//! Differences from Python, all for Rust's sake: `initialize` and `from_continuation_token`
//! return the operation instead of mutating the method (or returning a tuple); operations take
//! `&self` (so a poller reads the status while another thread runs them); `run` receives the
//! time source.

use std::sync::Arc;
use std::time::Duration;

use crate::deserialize::Deserializer;
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::status::Status;
use crate::token::ContinuationToken;
use crate::transport::{
    AsyncHttpClient, AsyncTimer, BoxFuture, HttpClient, Interrupt, Timer, Timestamp,
};

/// What a blocking [`BlockingOperation::run`] receives: the clock, and a wait that the poller can
/// interrupt.
#[derive(Clone, Copy)]
pub struct RunContext<'a> {
    timer: &'a dyn Timer,
    interrupt: &'a Interrupt,
}

impl std::fmt::Debug for RunContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("interrupted", &self.interrupt.is_set())
            .finish_non_exhaustive()
    }
}

impl<'a> RunContext<'a> {
    /// A context over `timer`, stopped by `interrupt`.
    pub fn new(timer: &'a dyn Timer, interrupt: &'a Interrupt) -> Self {
        RunContext { timer, interrupt }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.timer.now()
    }

    /// Waits `duration`. Returns [`LroError::Stopped`] if the poller asked polling to stop
    /// (before or during the wait): return it from `run`.
    pub fn sleep(&self, duration: Duration) -> Result<(), LroError> {
        self.check()?;
        self.timer.sleep(duration, self.interrupt);
        self.check()
    }

    /// [`LroError::Stopped`] if the poller asked polling to stop.
    pub fn check(&self) -> Result<(), LroError> {
        if self.interrupt.is_set() {
            Err(LroError::stopped("polling was stopped before the operation ended"))
        } else {
            Ok(())
        }
    }
}

/// A blocking polling method: azure-core's `PollingMethod` contract, for [`LroPoller`](crate::LroPoller).
///
/// **Prefer a [`Strategy`](crate::Strategy)** (and a [`DelayPolicy`](crate::DelayPolicy)) wrapped
/// in [`StrategyPolling`](crate::StrategyPolling): written once, it works with both pollers, in
/// a few dozen lines (`examples/custom_backoff.rs`). A method that implements this trait itself
/// runs its own loop and gives up what the engine does for every request: the same-origin rule
/// and the refusal of `user:password@` links, the cap and floor on waits, retries of transient
/// faults, signed and trusted continuation tokens. Under the async poller it runs through
/// [`OffThread`](crate::OffThread) (`lro_hyper::off_thread`), on a blocking thread.
pub trait PollingMethod<T>: Send {
    /// The running operation this method becomes once initialized.
    type Operation: BlockingOperation<T> + 'static;

    /// Starts polling the operation that `initial` started. Errors here are returned from the
    /// poller's constructor.
    fn initialize(
        self,
        client: Arc<dyn HttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError>;

    /// Resumes polling the operation saved in `token`, instead of
    /// [`initialize`](PollingMethod::initialize). Default: not supported.
    #[allow(clippy::wrong_self_convention)] // azure-core's name, kept for recognition
    fn from_continuation_token(
        self,
        client: Arc<dyn HttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError>
    where
        Self: Sized,
    {
        let _ = (client, token, deserializer);
        Err(unsupported_token())
    }
}

/// An operation being polled by a blocking method (see [`PollingMethod`]).
///
/// The poller calls [`run`](BlockingOperation::run) on a background thread unless
/// [`finished`](BlockingOperation::finished) is already true, and reads
/// [`status`](BlockingOperation::status) from other threads meanwhile. `run` on a finished
/// operation must return at once with the same outcome.
pub trait BlockingOperation<T>: Send + Sync {
    /// Polls until the operation ends (or `ctx` says to stop).
    fn run(&self, ctx: &RunContext<'_>) -> Result<(), LroError>;

    /// The latest status.
    fn status(&self) -> Status;

    /// Whether polling is over.
    fn finished(&self) -> bool;

    /// The deserialized resource from the latest response.
    fn resource(&self) -> Result<T, LroError>;

    /// How many polls (status polls and final GET) have been answered, for progress and error
    /// reports. Default: 0 (unknown).
    fn polls(&self) -> u32 {
        0
    }

    /// A token to resume the operation later. Default: not supported.
    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        Err(unsupported_token())
    }
}

/// An async polling method: azure-core's `AsyncPollingMethod` contract, for
/// [`AsyncLroPoller`](crate::AsyncLroPoller). The same advice as for [`PollingMethod`] holds:
/// a [`Strategy`](crate::Strategy) keeps the engine's guarantees and serves both pollers.
pub trait AsyncPollingMethod<T>: Send {
    /// The running operation this method becomes once initialized.
    type Operation: AsyncOperation<T> + 'static;

    /// Starts polling the operation that `initial` started.
    fn initialize(
        self,
        client: Arc<dyn AsyncHttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError>;

    /// Resumes polling the operation saved in `token`. Default: not supported.
    #[allow(clippy::wrong_self_convention)] // azure-core's name, kept for recognition
    fn from_continuation_token(
        self,
        client: Arc<dyn AsyncHttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError>
    where
        Self: Sized,
    {
        let _ = (client, token, deserializer);
        Err(unsupported_token())
    }
}

/// An operation being polled by an async method (see [`AsyncPollingMethod`]).
///
/// As [`BlockingOperation`], with an async [`run`](AsyncOperation::run) that sleeps through the
/// [`AsyncTimer`] it is given. Dropping the `run` future stops polling; calling `run` again
/// continues where it stopped.
#[async_trait::async_trait]
pub trait AsyncOperation<T>: Send + Sync {
    /// Polls until the operation ends.
    async fn run(&self, timer: &dyn AsyncTimer) -> Result<(), LroError>;

    /// [`run`](AsyncOperation::run), as a future that owns what it borrows: what
    /// [`AsyncLroPoller`](crate::AsyncLroPoller) keeps and polls. The default wraps `run`; an
    /// operation may override it to save a level of boxed future on every wake-up (the
    /// operations of [`StrategyPolling`](crate::StrategyPolling) do).
    fn run_owned(
        self: Arc<Self>,
        timer: Arc<dyn AsyncTimer>,
    ) -> BoxFuture<'static, Result<(), LroError>>
    where
        Self: Sized + 'static,
    {
        Box::pin(async move { self.run(&*timer).await })
    }

    /// The latest status.
    fn status(&self) -> Status;

    /// Whether polling is over.
    fn finished(&self) -> bool;

    /// The deserialized resource from the latest response.
    fn resource(&self) -> Result<T, LroError>;

    /// How many polls (status polls and final GET) have been answered. Default: 0 (unknown).
    fn polls(&self) -> u32 {
        0
    }

    /// A token to resume the operation later. Default: not supported.
    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        Err(unsupported_token())
    }
}

fn unsupported_token() -> LroError {
    LroError::invalid_token("this polling method does not support continuation tokens")
}

impl<T, O: BlockingOperation<T> + ?Sized> BlockingOperation<T> for Box<O> {
    fn run(&self, ctx: &RunContext<'_>) -> Result<(), LroError> {
        (**self).run(ctx)
    }
    fn status(&self) -> Status {
        (**self).status()
    }
    fn finished(&self) -> bool {
        (**self).finished()
    }
    fn resource(&self) -> Result<T, LroError> {
        (**self).resource()
    }
    fn polls(&self) -> u32 {
        (**self).polls()
    }
    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        (**self).continuation_token()
    }
}

#[async_trait::async_trait]
impl<T, O: AsyncOperation<T> + ?Sized> AsyncOperation<T> for Box<O> {
    async fn run(&self, timer: &dyn AsyncTimer) -> Result<(), LroError> {
        (**self).run(timer).await
    }
    fn status(&self) -> Status {
        (**self).status()
    }
    fn finished(&self) -> bool {
        (**self).finished()
    }
    fn resource(&self) -> Result<T, LroError> {
        (**self).resource()
    }
    fn polls(&self) -> u32 {
        (**self).polls()
    }
    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        (**self).continuation_token()
    }
}
