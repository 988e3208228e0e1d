//! The polling-method contracts of azure-core, in Rust: [`PollingMethod`] and
//! [`AsyncPollingMethod`].
//!
//! A poller owns a polling method and asks it to [`run`](PollingMethod::run) the operation to
//! its end. Built-in methods are [`StrategyPolling`](crate::StrategyPolling) over a sans-IO
//! [`Strategy`](crate::Strategy); users may implement these traits directly.
//!
//! Differences from Python, all for Rust's sake: methods take `&self` (so a poller can read the
//! status while another thread runs the method — implementations use interior mutability);
//! `run` receives the time source; and `from_continuation_token` initializes the method in place
//! instead of returning a tuple.

use std::sync::Arc;
use std::time::Duration;

use crate::deserialize::Deserializer;
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::status::Status;
use crate::token::ContinuationToken;
use crate::transport::{AsyncHttpClient, AsyncTimer, HttpClient, Interrupt, Timer, Timestamp};

/// What a blocking [`PollingMethod::run`] receives: the clock, and a wait that the poller can
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

/// A blocking polling method: azure-core's `PollingMethod` contract.
///
/// **Prefer a [`Strategy`](crate::Strategy)** (and a [`DelayPolicy`](crate::DelayPolicy)) wrapped
/// in [`StrategyPolling`](crate::StrategyPolling): written once, it works with both pollers, in
/// a few dozen lines (`examples/custom_backoff.rs`). A method that implements this trait itself
/// runs its own loop and gives up what the engine does for every request: the same-origin rule
/// and the refusal of `user:password@` links, the cap and floor on waits, retries of transient
/// faults, signed and trusted continuation tokens, the status and poll count the pollers report.
/// It must also be written again for the async poller ([`AsyncPollingMethod`]).
///
/// The poller calls [`initialize`](PollingMethod::initialize) (or
/// [`from_continuation_token`](PollingMethod::from_continuation_token)) once, then
/// [`run`](PollingMethod::run) on a background thread unless [`finished`](PollingMethod::finished)
/// is already true, and reads [`status`](PollingMethod::status) from other threads meanwhile.
/// `run` on a finished method must return at once with the same outcome.
///
pub trait PollingMethod<T>: Send + Sync {
    /// Prepares to poll the operation that `initial` started. Errors here are returned from
    /// the poller's constructor.
    fn initialize(
        &mut self,
        client: Arc<dyn HttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError>;

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

    /// Prepares to poll the operation saved in `token`, instead of
    /// [`initialize`](PollingMethod::initialize). Default: not supported.
    #[allow(clippy::wrong_self_convention)] // azure-core's name, kept for recognition
    fn from_continuation_token(
        &mut self,
        client: Arc<dyn HttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        let _ = (client, token, deserializer);
        Err(unsupported_token())
    }
}

/// An async polling method: azure-core's `AsyncPollingMethod` contract. The same advice as for
/// [`PollingMethod`] holds: a [`Strategy`](crate::Strategy) keeps the engine's guarantees and
/// serves both pollers.
///
/// As [`PollingMethod`], with an async [`run`](AsyncPollingMethod::run) that sleeps through the
/// [`AsyncTimer`] it is given. Dropping the `run` future stops polling; calling `run` again
/// continues where it stopped.
#[async_trait::async_trait]
pub trait AsyncPollingMethod<T>: Send + Sync {
    /// Prepares to poll the operation that `initial` started.
    fn initialize(
        &mut self,
        client: Arc<dyn AsyncHttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError>;

    /// Polls until the operation ends.
    async fn run(&self, timer: &dyn AsyncTimer) -> Result<(), LroError>;

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

    /// Prepares to poll the operation saved in `token`. Default: not supported.
    #[allow(clippy::wrong_self_convention)] // azure-core's name, kept for recognition
    fn from_continuation_token(
        &mut self,
        client: Arc<dyn AsyncHttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        let _ = (client, token, deserializer);
        Err(unsupported_token())
    }
}

fn unsupported_token() -> LroError {
    LroError::invalid_token("this polling method does not support continuation tokens")
}

impl<T, M: PollingMethod<T> + ?Sized> PollingMethod<T> for Box<M> {
    fn initialize(
        &mut self,
        client: Arc<dyn HttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        (**self).initialize(client, initial, deserializer)
    }
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
    fn from_continuation_token(
        &mut self,
        client: Arc<dyn HttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        (**self).from_continuation_token(client, token, deserializer)
    }
}

#[async_trait::async_trait]
impl<T, M: AsyncPollingMethod<T> + ?Sized> AsyncPollingMethod<T> for Box<M> {
    fn initialize(
        &mut self,
        client: Arc<dyn AsyncHttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        (**self).initialize(client, initial, deserializer)
    }
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
    fn from_continuation_token(
        &mut self,
        client: Arc<dyn AsyncHttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        (**self).from_continuation_token(client, token, deserializer)
    }
}
