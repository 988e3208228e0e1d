//! [`StrategyPolling`]: any sans-IO [`Strategy`] as a [`PollingMethod`] and an
//! [`AsyncPollingMethod`] — the two drivers of the [`Engine`].
//!
//! Each driver is the same short loop: ask the engine what to do, do it (send / sleep), feed
//! the result back. The blocking loop blocks, the async loop awaits; neither looks at a status
//! code or a header.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;

use crate::deserialize::Deserializer;
use crate::engine::{Action, Engine};
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::method::{AsyncPollingMethod, PollingMethod, RunContext};
use crate::options::PollOptions;
use crate::status::{Status, StatusKind};
use crate::strategy::Strategy;
use crate::token::ContinuationToken;
use crate::transport::{AsyncHttpClient, AsyncTimer, HttpClient, Timestamp, TransportError};

/// A polling method made of a sans-IO [`Strategy`] and [`PollOptions`]: works with the blocking
/// [`LroPoller`](crate::LroPoller) (given an [`HttpClient`]) and the async
/// [`AsyncLroPoller`](crate::AsyncLroPoller) (given an [`AsyncHttpClient`] and an
/// [`AsyncTimer`]).
///
/// One instance drives one operation.
pub struct StrategyPolling<S, T> {
    state: Mutex<State<S, T>>,
    observer: Option<Observer>,
}

type Observer = Arc<dyn Fn(&PollEvent) + Send + Sync>;

/// What an observer ([`StrategyPolling::observe`]) is told after the initial response and after
/// every answered poll: enough to show progress and to save a continuation token as it goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PollEvent {
    /// The status after this response.
    pub status: Status,
    /// Polls answered so far (status polls and final GET).
    pub polls: u32,
    /// Whether polling is over.
    pub finished: bool,
    /// A token to resume from this point (`None` if one could not be made).
    pub continuation_token: Option<ContinuationToken>,
}

impl PollEvent {
    fn of<S: Strategy>(engine: &Engine<S>) -> Self {
        PollEvent {
            status: engine.status().clone(),
            polls: engine.polls(),
            finished: engine.finished(),
            continuation_token: engine.continuation_token().ok(),
        }
    }
}

// One per operation, so the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum State<S, T> {
    Configured(S, PollOptions),
    Running { engine: Engine<S>, client: Client, deserializer: Deserializer<T> },
    Vacant,
}

#[derive(Clone)]
enum Client {
    Blocking(Arc<dyn HttpClient>),
    Async(Arc<dyn AsyncHttpClient>),
}

impl<S: Strategy, T> StrategyPolling<S, T> {
    /// Polls with `strategy` and default [`PollOptions`] (azure-core's behaviour).
    pub fn new(strategy: S) -> Self {
        Self::with_options(strategy, PollOptions::default())
    }

    /// Polls with `strategy` and `options`.
    pub fn with_options(strategy: S, options: PollOptions) -> Self {
        StrategyPolling { state: Mutex::new(State::Configured(strategy, options)), observer: None }
    }

    /// Calls `observer` after the initial response and after every answered poll, from the
    /// thread or task that polls. The CLI uses it to save the continuation token as it goes.
    ///
    /// ```
    /// use lro_core::{StrategyPolling, test_util::OperationLocationStrategy};
    ///
    /// let method = StrategyPolling::<_, ()>::new(OperationLocationStrategy::default())
    ///     .observe(|event| eprintln!("{} after {} polls", event.status, event.polls));
    /// # let _ = method;
    /// ```
    #[must_use]
    pub fn observe(mut self, observer: impl Fn(&PollEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    fn notify(&self, event: Option<PollEvent>) {
        if let (Some(observer), Some(event)) = (&self.observer, event) {
            observer(&event);
        }
    }

    /// The latest status; `NotStarted` before initialization.
    pub fn status(&self) -> Status {
        match &*self.lock() {
            State::Running { engine, .. } => engine.status().clone(),
            _ => Status::new("NotStarted", StatusKind::InProgress),
        }
    }

    /// Whether polling is over.
    pub fn finished(&self) -> bool {
        matches!(&*self.lock(), State::Running { engine, .. } if engine.finished())
    }

    /// How many polls (status polls and final GET) have been answered.
    pub fn polls(&self) -> u32 {
        match &*self.lock() {
            State::Running { engine, .. } => engine.polls(),
            _ => 0,
        }
    }

    /// A token to resume the operation.
    pub fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        match &*self.lock() {
            State::Running { engine, .. } => engine.continuation_token(),
            _ => Err(not_initialized()),
        }
    }

    /// The latest response (the final one once the operation succeeded).
    pub fn latest_response(&self) -> Option<Response<Bytes>> {
        match &*self.lock() {
            State::Running { engine, .. } => Some(engine.latest_response().clone()),
            _ => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<S, T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn setup(
        &mut self,
        client: Client,
        deserializer: Deserializer<T>,
        start: impl FnOnce(S, PollOptions) -> Result<Engine<S>, LroError>,
    ) -> Result<(), LroError> {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let State::Configured(strategy, options) = std::mem::replace(state, State::Vacant) else {
            return Err(LroError::policy(
                "this polling method was already initialized; use a new one per operation",
            ));
        };
        let engine = start(strategy, options)?;
        let event = self.observer.as_ref().map(|_| PollEvent::of(&engine));
        *state = State::Running { engine, client, deserializer };
        self.notify(event);
        Ok(())
    }

    /// The engine's next action, and the client to carry it out with.
    fn next(&self, now: Timestamp) -> Result<(Action, Client), LroError> {
        match &mut *self.lock() {
            State::Running { engine, client, .. } => Ok((engine.poll(now), client.clone())),
            _ => Err(not_initialized()),
        }
    }

    fn feed(&self, now: Timestamp, result: Result<Response<Bytes>, TransportError>) {
        let event = match &mut *self.lock() {
            State::Running { engine, .. } => {
                match result {
                    Ok(response) => engine.handle_response(now, response),
                    Err(error) => engine.handle_transport_error(now, error),
                }
                self.observer.as_ref().map(|_| PollEvent::of(engine))
            }
            _ => None,
        };
        // Outside the lock: the observer may read the method's status.
        self.notify(event);
    }

    fn outcome(&self) -> Result<(), LroError> {
        match &*self.lock() {
            State::Running { engine, .. } => engine.outcome().map(|_| ()).map_err(Clone::clone),
            _ => Err(not_initialized()),
        }
    }

    fn deserialize(&self) -> Result<T, LroError> {
        let guard = self.lock();
        let State::Running { engine, deserializer, .. } = &*guard else {
            return Err(not_initialized());
        };
        deserializer(engine.latest_response()).map_err(|e| {
            let error = LroError::decode("the deserialization callback failed", Some(e));
            match engine.continuation_token() {
                Ok(token) => error.with_continuation_token(token),
                Err(_) => error,
            }
        })
    }
}

fn not_initialized() -> LroError {
    LroError::policy("the polling method was not initialized")
}

fn wrong_client() -> LroError {
    LroError::policy("the polling method was initialized with the other kind of client")
}

impl<S: Strategy, T> PollingMethod<T> for StrategyPolling<S, T> {
    fn initialize(
        &mut self,
        client: Arc<dyn HttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        self.setup(Client::Blocking(client), deserializer, |s, o| Engine::start(s, o, initial))
    }

    /// The blocking driver.
    fn run(&self, ctx: &RunContext<'_>) -> Result<(), LroError> {
        loop {
            match self.next(ctx.now())? {
                (Action::SendRequest(request), Client::Blocking(client)) => {
                    ctx.check()?;
                    let result = client.send(request);
                    self.feed(ctx.now(), result);
                }
                (Action::SendRequest(_), Client::Async(_)) => return Err(wrong_client()),
                (Action::Wait(delay), _) => ctx.sleep(delay)?,
                (Action::Done, _) => return self.outcome(),
            }
        }
    }

    fn status(&self) -> Status {
        StrategyPolling::status(self)
    }

    fn finished(&self) -> bool {
        StrategyPolling::finished(self)
    }

    fn resource(&self) -> Result<T, LroError> {
        self.deserialize()
    }

    fn polls(&self) -> u32 {
        StrategyPolling::polls(self)
    }

    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        StrategyPolling::continuation_token(self)
    }

    fn from_continuation_token(
        &mut self,
        client: Arc<dyn HttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        self.setup(Client::Blocking(client), deserializer, |s, o| Engine::resume(s, o, token))
    }
}

#[async_trait::async_trait]
impl<S: Strategy, T> AsyncPollingMethod<T> for StrategyPolling<S, T> {
    fn initialize(
        &mut self,
        client: Arc<dyn AsyncHttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        self.setup(Client::Async(client), deserializer, |s, o| Engine::start(s, o, initial))
    }

    /// The async driver.
    async fn run(&self, timer: &dyn AsyncTimer) -> Result<(), LroError> {
        let mut sent = false;
        loop {
            match self.next(timer.now())? {
                (Action::SendRequest(request), Client::Async(client)) => {
                    // Let the runtime run other tasks (and a surrounding timeout fire) between
                    // requests, even when the transport answers without ever being pending.
                    if std::mem::replace(&mut sent, true) {
                        YieldOnce::default().await;
                    }
                    let result = client.send(request).await;
                    self.feed(timer.now(), result);
                }
                (Action::SendRequest(_), Client::Blocking(_)) => return Err(wrong_client()),
                (Action::Wait(delay), _) => timer.sleep(delay).await,
                (Action::Done, _) => return self.outcome(),
            }
        }
    }

    fn status(&self) -> Status {
        StrategyPolling::status(self)
    }

    fn finished(&self) -> bool {
        StrategyPolling::finished(self)
    }

    fn resource(&self) -> Result<T, LroError> {
        self.deserialize()
    }

    fn polls(&self) -> u32 {
        StrategyPolling::polls(self)
    }

    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        StrategyPolling::continuation_token(self)
    }

    fn from_continuation_token(
        &mut self,
        client: Arc<dyn AsyncHttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        self.setup(Client::Async(client), deserializer, |s, o| Engine::resume(s, o, token))
    }
}

impl<S: Strategy, T> fmt::Debug for StrategyPolling<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &*state {
            State::Configured(strategy, _) => f
                .debug_struct("StrategyPolling")
                .field("strategy", strategy)
                .field("state", &"configured")
                .finish(),
            State::Running { engine, .. } => f
                .debug_struct("StrategyPolling")
                .field("strategy", engine.strategy())
                .field("status", engine.status())
                .field("finished", &engine.finished())
                .finish(),
            State::Vacant => f.write_str("StrategyPolling(vacant)"),
        }
    }
}

/// A future that is pending once (waking itself at once), then ready: a yield to the runtime.
#[derive(Debug, Default)]
pub(crate) struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
