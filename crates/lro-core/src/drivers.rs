//! [`StrategyPolling`]: any sans-IO [`Strategy`] as a [`PollingMethod`] and an
//! [`AsyncPollingMethod`]; [`StrategyOperation`]: the operation it becomes, and the two drivers
//! of the [`Engine`].
//!
//! Each driver is the same short loop: ask the engine what to do, do it (send / sleep), feed
//! the result back. The blocking loop blocks, the async loop awaits; neither looks at a status
//! code or a header.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;

use crate::deserialize::Deserializer;
use crate::engine::{Action, Engine};
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::method::{
    AsyncOperation, AsyncPollingMethod, BlockingOperation, PollingMethod, RunContext,
};
use crate::options::PollOptions;
use crate::status::Status;
use crate::strategy::Strategy;
use crate::telemetry::WaitReason;
use crate::token::ContinuationToken;
use crate::transport::{AsyncHttpClient, AsyncTimer, HttpClient, Timestamp, TransportError};

/// A polling method made of a sans-IO [`Strategy`] and [`PollOptions`]: works with the blocking
/// [`LroPoller`](crate::LroPoller) (given an [`HttpClient`]) and the async
/// [`AsyncLroPoller`](crate::AsyncLroPoller) (given an [`AsyncHttpClient`]).
///
/// One instance drives one operation: initializing it consumes it.
pub struct StrategyPolling<S, T> {
    strategy: S,
    options: PollOptions,
    observer: Option<Observer>,
    _resource: std::marker::PhantomData<fn() -> T>,
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
    /// How far the operation has got, 0 to 100, when the service says so (`percentComplete`).
    pub percent_complete: Option<u8>,
    /// Whether polling is over.
    pub finished: bool,
    /// The wait before the next request and why (the service's `Retry-After`, the interval, a
    /// retry's backoff, throttling); `None` when the next request goes at once, or polling is
    /// over. A display counts it down.
    pub next_wait: Option<(Duration, WaitReason)>,
    /// A token to resume from this point (`None` if one could not be made).
    pub continuation_token: Option<ContinuationToken>,
}

impl PollEvent {
    /// Out of line: made only for an observer.
    #[inline(never)]
    fn of<S: Strategy>(engine: &Engine<S>) -> Self {
        PollEvent {
            status: engine.status().clone(),
            polls: engine.polls(),
            percent_complete: engine.percent_complete(),
            finished: engine.finished(),
            next_wait: engine.next_wait(),
            continuation_token: engine.continuation_token().ok(),
        }
    }
}

impl<S: Strategy, T> StrategyPolling<S, T> {
    /// Polls with `strategy` and default [`PollOptions`] (azure-core's behaviour).
    pub fn new(strategy: S) -> Self {
        Self::with_options(strategy, PollOptions::default())
    }

    /// Polls with `strategy` and `options`.
    pub fn with_options(strategy: S, options: PollOptions) -> Self {
        StrategyPolling { strategy, options, observer: None, _resource: std::marker::PhantomData }
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

    /// The operation, for a client of kind `C`, once the engine has started.
    fn operation<C>(
        self,
        client: C,
        deserializer: Deserializer<T>,
        start: impl FnOnce(S, PollOptions) -> Result<Engine<S>, LroError>,
    ) -> Result<StrategyOperation<S, T, C>, LroError> {
        let engine = start(self.strategy, self.options)?;
        let operation = StrategyOperation {
            engine: Mutex::new(engine),
            client,
            deserializer,
            observer: self.observer,
        };
        operation.notify(operation.event());
        Ok(operation)
    }
}

/// An operation being polled by a [`StrategyPolling`]: the [`Engine`], the client of the
/// poller's kind (`C`), the deserializer. The blocking driver is its [`BlockingOperation`]
/// implementation (for `C = Arc<dyn HttpClient>`), the async one its [`AsyncOperation`]
/// implementation (for `C = Arc<dyn AsyncHttpClient>`).
pub struct StrategyOperation<S, T, C> {
    engine: Mutex<Engine<S>>,
    client: C,
    deserializer: Deserializer<T>,
    observer: Option<Observer>,
}

impl<S: Strategy, T, C> StrategyOperation<S, T, C> {
    /// The latest status.
    pub fn status(&self) -> Status {
        self.lock().status().clone()
    }

    /// Whether polling is over.
    pub fn finished(&self) -> bool {
        self.lock().finished()
    }

    /// How far the operation has got, 0 to 100, when the service says so.
    pub fn percent_complete(&self) -> Option<u8> {
        self.lock().percent_complete()
    }

    /// How many polls (status polls and final GET) have been answered.
    pub fn polls(&self) -> u32 {
        self.lock().polls()
    }

    /// A token to resume the operation.
    pub fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        self.lock().continuation_token()
    }

    /// The response polling ended with (the final one once the operation succeeded); while the
    /// operation runs, the initial one (see [`Engine::latest_response`]).
    pub fn latest_response(&self) -> Response<Bytes> {
        self.lock().latest_response().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Engine<S>> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn event(&self) -> Option<PollEvent> {
        self.observer.as_ref().map(|_| PollEvent::of(&self.lock()))
    }

    fn notify(&self, event: Option<PollEvent>) {
        if let (Some(observer), Some(event)) = (&self.observer, event) {
            observer(&event);
        }
    }

    /// The engine's next action.
    fn next(&self, now: Timestamp) -> Action {
        self.lock().poll(now)
    }

    /// Feeds the result of a request to the engine and asks it for the next action, under one
    /// lock.
    fn answer(&self, now: Timestamp, result: Result<Response<Bytes>, TransportError>) -> Action {
        let (event, action) = {
            let mut engine = self.lock();
            match result {
                Ok(response) => engine.handle_response(now, response),
                Err(error) => engine.handle_transport_error(now, error),
            }
            let event = self.observer.as_ref().map(|_| PollEvent::of(&engine));
            (event, engine.poll(now))
        };
        // Outside the lock: the observer may read the operation's status.
        self.notify(event);
        action
    }

    fn outcome(&self) -> Result<(), LroError> {
        self.lock().outcome().map(|_| ()).map_err(Clone::clone)
    }

    fn deserialize(&self) -> Result<T, LroError> {
        let engine = self.lock();
        (self.deserializer)(engine.latest_response()).map_err(|e| {
            LroError::decode("the deserialization callback failed", Some(e))
                .with_token_from(|| engine.continuation_token())
        })
    }
}

impl<S: Strategy + 'static, T: 'static> PollingMethod<T> for StrategyPolling<S, T> {
    type Operation = StrategyOperation<S, T, Arc<dyn HttpClient>>;

    fn initialize(
        self,
        client: Arc<dyn HttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError> {
        self.operation(client, deserializer, |s, o| Engine::start(s, o, initial))
    }

    fn from_continuation_token(
        self,
        client: Arc<dyn HttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError> {
        self.operation(client, deserializer, |s, o| Engine::resume(s, o, token))
    }
}

impl<S: Strategy, T> BlockingOperation<T> for StrategyOperation<S, T, Arc<dyn HttpClient>> {
    /// The blocking driver.
    fn run(&self, ctx: &RunContext<'_>) -> Result<(), LroError> {
        // The clocks are read once per step: the reading an answer was fed with also decides
        // the next action (nothing waited in between).
        let mut action = self.next(ctx.now());
        loop {
            match action {
                Action::SendRequest(request) => {
                    ctx.check()?;
                    let result = self.client.send(request);
                    action = self.answer(ctx.now(), result);
                }
                Action::Wait(delay) => {
                    ctx.sleep(delay)?;
                    action = self.next(ctx.now());
                }
                Action::Done => return self.outcome(),
            }
        }
    }

    fn status(&self) -> Status {
        StrategyOperation::status(self)
    }

    fn finished(&self) -> bool {
        StrategyOperation::finished(self)
    }

    fn resource(&self) -> Result<T, LroError> {
        self.deserialize()
    }

    fn polls(&self) -> u32 {
        StrategyOperation::polls(self)
    }

    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        StrategyOperation::continuation_token(self)
    }
}

impl<S: Strategy + 'static, T: 'static> AsyncPollingMethod<T> for StrategyPolling<S, T> {
    type Operation = StrategyOperation<S, T, Arc<dyn AsyncHttpClient>>;

    fn initialize(
        self,
        client: Arc<dyn AsyncHttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError> {
        self.operation(client, deserializer, |s, o| Engine::start(s, o, initial))
    }

    fn from_continuation_token(
        self,
        client: Arc<dyn AsyncHttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError> {
        self.operation(client, deserializer, |s, o| Engine::resume(s, o, token))
    }
}

#[async_trait::async_trait]
impl<S: Strategy, T> AsyncOperation<T> for StrategyOperation<S, T, Arc<dyn AsyncHttpClient>> {
    /// The async driver, a hand-written future (`Drive`).
    async fn run(&self, timer: &dyn AsyncTimer) -> Result<(), LroError> {
        Drive::new(self, timer).await
    }

    /// The async driver in the poller's one box.
    fn run_owned(
        self: Arc<Self>,
        timer: Arc<dyn AsyncTimer>,
    ) -> crate::transport::BoxFuture<'static, Result<(), LroError>>
    where
        Self: Sized + 'static,
    {
        Box::pin(async move { Drive::new(&self, &*timer).await })
    }

    fn status(&self) -> Status {
        StrategyOperation::status(self)
    }

    fn finished(&self) -> bool {
        StrategyOperation::finished(self)
    }

    fn resource(&self) -> Result<T, LroError> {
        self.deserialize()
    }

    fn polls(&self) -> u32 {
        StrategyOperation::polls(self)
    }

    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        StrategyOperation::continuation_token(self)
    }
}

impl<S: Strategy, T> fmt::Debug for StrategyPolling<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StrategyPolling").field("strategy", &self.strategy).finish_non_exhaustive()
    }
}

impl<S: Strategy, T, C> fmt::Debug for StrategyOperation<S, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let engine = self.lock();
        f.debug_struct("StrategyOperation")
            .field("strategy", engine.strategy())
            .field("status", engine.status())
            .field("finished", &engine.finished())
            .finish_non_exhaustive()
    }
}

/// The async driver: the blocking loop's steps as a future. As there, the clocks are read once
/// per step: the reading an answer was fed with also decides the next action (nothing waited in
/// between). The action is turned at once into what to await: neither the reading nor a
/// request (a few hundred bytes) is kept while pending, where it would be part of every waiting
/// poller's state.
///
/// A request or sleep that ends without ever being pending (a transport or timer that answers
/// at once) is followed by a yield to the runtime: other tasks (and a surrounding timeout) still
/// run between requests, and a progress stream sees each status before the next poll. Work that
/// waited has yielded already: no further yield, which would cost a wake-up each time.
///
/// Written by hand rather than as an `async fn`: one level of future between the poller and
/// the transport's, with no state machine of its own around each await.
struct Drive<'a, S, T> {
    operation: &'a StrategyOperation<S, T, Arc<dyn AsyncHttpClient>>,
    timer: &'a dyn AsyncTimer,
    next: Next<'a>,
    /// Whether the request or sleep under way was ever pending.
    waited: bool,
}

/// What the async driver does next.
enum Next<'a> {
    /// Ask the engine for its next action.
    Ask,
    Send(crate::transport::BoxFuture<'a, Result<Response<Bytes>, TransportError>>),
    Sleep(crate::transport::BoxFuture<'a, ()>),
    Done,
}

impl<'a, S: Strategy, T> Drive<'a, S, T> {
    fn new(
        operation: &'a StrategyOperation<S, T, Arc<dyn AsyncHttpClient>>,
        timer: &'a dyn AsyncTimer,
    ) -> Self {
        Drive { operation, timer, next: Next::Ask, waited: false }
    }

    /// The engine's `action`, as what to await.
    fn plan(&self, action: Action) -> Next<'a> {
        match action {
            Action::SendRequest(request) => Next::Send(self.operation.client.send(request)),
            Action::Wait(delay) => Next::Sleep(self.timer.sleep(delay)),
            Action::Done => Next::Done,
        }
    }
}

impl<S: Strategy, T> Future for Drive<'_, S, T> {
    type Output = Result<(), LroError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.next {
                Next::Ask => {
                    let action = this.operation.next(this.timer.now());
                    this.next = this.plan(action);
                }
                Next::Send(sending) => {
                    let Poll::Ready(result) = sending.as_mut().poll(cx) else {
                        this.waited = true;
                        return Poll::Pending;
                    };
                    let action = this.operation.answer(this.timer.now(), result);
                    this.next = this.plan(action);
                    if !std::mem::take(&mut this.waited) {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Next::Sleep(sleeping) => {
                    if sleeping.as_mut().poll(cx).is_pending() {
                        this.waited = true;
                        return Poll::Pending;
                    }
                    this.next = Next::Ask;
                    if !std::mem::take(&mut this.waited) {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Next::Done => return Poll::Ready(this.operation.outcome()),
            }
        }
    }
}
