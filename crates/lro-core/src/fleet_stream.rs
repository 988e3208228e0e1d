//! [`FleetStream`]: the async driver of a [`Fleet`] — one task, any runtime, every operation.
//!
//! The stream sends the fleet's requests through an [`AsyncHttpClient`] (all in flight at once,
//! within the budget), sleeps through an [`AsyncTimer`] until the next due poll, and yields each
//! operation's outcome as it ends. Operations are added through a [`FleetHandle`], also while
//! the stream runs.

use std::collections::VecDeque;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http::Response;

use crate::deserialize::Deserializer;
use crate::engine::Engine;
use crate::error::LroError;
use crate::fleet::{Fleet, FleetAction, FleetOptions, FleetStats, RequestId};
use crate::strategy::Strategy;
use crate::token::ContinuationToken;
use crate::transport::{AsyncHttpClient, AsyncTimer, BoxFuture, TransportError};

/// How often, at most, the checkpoint is refreshed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// An observer of status changes: see [`FleetStream::on_status_change`].
type Observer<K, S> = Box<dyn FnMut(&K, &Engine<S>) + Send>;

type Sent = BoxFuture<'static, (RequestId, Result<Response<Bytes>, TransportError>)>;

/// What a [`FleetHandle`] asks of the stream, applied at its next poll.
enum Command<K, S> {
    Add(K, Box<Engine<S>>, Option<Duration>),
    Remove(K),
    Wake(K),
}

struct Shared<K, S> {
    commands: VecDeque<Command<K, S>>,
    waker: Option<Waker>,
    /// Continuation tokens of every operation, refreshed after each poll of the stream.
    tokens: Vec<(K, ContinuationToken)>,
    /// The fleet's counters as of the stream's latest step.
    stats: FleetStats,
}

/// Adds, removes and wakes operations of a running [`FleetStream`]; cheap to clone.
pub struct FleetHandle<K, S> {
    shared: Arc<Mutex<Shared<K, S>>>,
}

impl<K, S> Clone for FleetHandle<K, S> {
    fn clone(&self) -> Self {
        FleetHandle { shared: Arc::clone(&self.shared) }
    }
}

impl<K, S> fmt::Debug for FleetHandle<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetHandle").finish_non_exhaustive()
    }
}

impl<K: Clone, S> FleetHandle<K, S> {
    fn send(&self, command: Command<K, S>) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.commands.push_back(command);
        if let Some(waker) = shared.waker.take() {
            waker.wake();
        }
    }

    /// Adds an operation (from [`Engine::start`] or [`Engine::resume`]) under `key`, ending at
    /// `deadline` at the latest.
    pub fn add(&self, key: K, engine: Engine<S>, deadline: Option<Duration>) {
        self.send(Command::Add(key, Box::new(engine), deadline));
    }

    /// Stops polling operation `key`; it yields no outcome.
    pub fn remove(&self, key: K) {
        self.send(Command::Remove(key));
    }

    /// Makes operation `key` poll at once (a notification said it changed).
    pub fn wake(&self, key: K) {
        self.send(Command::Wake(key));
    }

    /// The continuation token of every operation, as of the stream's latest step: a checkpoint
    /// of the whole fleet.
    pub fn checkpoint(&self) -> Vec<(K, ContinuationToken)> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).tokens.clone()
    }

    /// The fleet's counters (operations, requests in flight and sent, throttling), as of the
    /// stream's latest step: for progress displays.
    pub fn stats(&self) -> FleetStats {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).stats
    }
}

/// How one operation of a [`FleetStream`] ended.
#[derive(Debug)]
#[non_exhaustive]
pub struct FleetResult<K, T> {
    /// The operation's key.
    pub key: K,
    /// The resource, or the error that ended the operation (with a continuation token).
    pub result: Result<T, LroError>,
    /// The last status, as the service spelled it.
    pub status: crate::status::Status,
    /// How many polls it took (status polls and final GET).
    pub polls: u32,
}

/// Drives a [`Fleet`]: a [`Stream`] of [`FleetResult`]s in completion order. It ends when no
/// operation is left; operations added later through a [`FleetHandle`] need a new poll of the
/// stream (keep polling it while you add).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lro_core::LroError> {
/// use std::sync::Arc;
/// use lro_core::test_util::{ScriptedTransport, json_response, WithHeader, OperationLocationStrategy};
/// use futures_core::Stream as _;
/// use lro_core::{deserialize, Engine, FleetOptions, FleetStream, InitialResponse, PollOptions};
///
/// // A scripted service with virtual time; any AsyncHttpClient and AsyncTimer will do.
/// let transport = Arc::new(ScriptedTransport::new());
/// let (mut fleet, handle) = FleetStream::<u32, OperationLocationStrategy, serde_json::Value>::new(
///     transport.clone(),
///     transport.clone(),
///     deserialize::json(),
///     FleetOptions::builder().rate(10.0).max_in_flight_per_origin(4).build(),
/// );
/// for n in 0..3 {
///     let monitor = format!("http://svc/op/{n}");
///     transport.push_get(&monitor, json_response(200, &format!(r#"{{"status":"Succeeded","n":{n}}}"#)));
///     let initial = InitialResponse::new(
///         ScriptedTransport::request_head("POST", "http://svc/jobs"),
///         json_response(202, "").with_header("operation-location", &monitor),
///     );
///     let engine = Engine::start(OperationLocationStrategy::default(), PollOptions::default(), initial)?;
///     handle.add(n, engine, None);
/// }
/// let mut ended = Vec::new();
/// while let Some(result) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut fleet).poll_next(cx)).await {
///     ended.push((result.key, result.result?["n"].as_u64()));
/// }
/// ended.sort();
/// assert_eq!(ended, [(0, Some(0)), (1, Some(1)), (2, Some(2))]);
/// # Ok(()) }
/// ```
pub struct FleetStream<K, S, T> {
    fleet: Fleet<K, S>,
    client: Arc<dyn AsyncHttpClient>,
    timer: Arc<dyn AsyncTimer>,
    deserializer: Deserializer<T>,
    in_flight: FuturesUnordered<Sent>,
    sleep: Option<BoxFuture<'static, ()>>,
    shared: Arc<Mutex<Shared<K, S>>>,
    checkpoints: bool,
    /// When the checkpoint was last refreshed.
    checkpointed: Option<std::time::Instant>,
    on_status_change: Option<Observer<K, S>>,
    on_poll: Option<Observer<K, S>>,
}

impl<K, S, T> fmt::Debug for FleetStream<K, S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetStream")
            .field("fleet", &self.fleet)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl<K, S, T> FleetStream<K, S, T>
where
    K: Clone + Eq + Hash + Ord + Send + 'static,
    S: Strategy,
{
    /// A stream over no operation yet, with this budget; add operations with the handle.
    pub fn new(
        client: Arc<dyn AsyncHttpClient>,
        timer: impl AsyncTimer + 'static,
        deserializer: Deserializer<T>,
        options: FleetOptions,
    ) -> (Self, FleetHandle<K, S>) {
        let shared = Arc::new(Mutex::new(Shared {
            commands: VecDeque::new(),
            waker: None,
            tokens: Vec::new(),
            stats: FleetStats::default(),
        }));
        let stream = FleetStream {
            fleet: Fleet::new(options),
            client,
            timer: Arc::new(timer),
            deserializer,
            in_flight: FuturesUnordered::new(),
            sleep: None,
            shared: Arc::clone(&shared),
            checkpoints: false,
            checkpointed: None,
            on_status_change: None,
            on_poll: None,
        };
        (stream, FleetHandle { shared })
    }

    /// Keeps [`FleetHandle::checkpoint`] up to date: refreshed at most once a second, and
    /// whenever an operation ends (it costs a token per operation; off by default).
    #[must_use]
    pub fn with_checkpoints(mut self) -> Self {
        self.checkpoints = true;
        self
    }

    /// Calls `observer` whenever a poll changes an operation's status and the operation goes
    /// on: with its key and engine, whose [`status`](Engine::status) and
    /// [`continuation_token`](Engine::continuation_token) it may read — for progress displays,
    /// and to persist a token as the operation moves on. Operations that end are yielded by the
    /// stream instead.
    ///
    /// The observer runs inside the stream's poll: keep it short.
    #[must_use]
    pub fn on_status_change(
        mut self,
        observer: impl FnMut(&K, &Engine<S>) + Send + 'static,
    ) -> Self {
        self.on_status_change = Some(Box::new(observer));
        self
    }

    /// Calls `observer` after every answered poll of an operation that goes on (whether or not
    /// its status changed; a failed attempt that will be retried does not count): its
    /// continuation token moved on. For stores that checkpoint every token. Runs inside the
    /// stream's poll, after any [`on_status_change`](Self::on_status_change) observer: keep it
    /// short.
    #[must_use]
    pub fn on_poll(mut self, observer: impl FnMut(&K, &Engine<S>) + Send + 'static) -> Self {
        self.on_poll = Some(Box::new(observer));
        self
    }

    fn apply_commands(&mut self, cx: &Context<'_>) {
        let commands = {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            shared.waker = Some(cx.waker().clone());
            std::mem::take(&mut shared.commands)
        };
        if !commands.is_empty() {
            self.sleep = None; // the next due time may have changed
        }
        let now = self.timer.now();
        for command in commands {
            match command {
                Command::Add(key, engine, deadline) => self.fleet.add(now, key, *engine, deadline),
                Command::Remove(key) => {
                    let _ = self.fleet.remove(&key);
                }
                Command::Wake(key) => {
                    let _ = self.fleet.wake(now, &key);
                }
            }
        }
    }

    /// Makes the fleet's counters visible to [`FleetHandle::stats`].
    fn publish_stats(&self) {
        let stats = self.fleet.stats(self.timer.now());
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).stats = stats;
    }

    fn outcome(&self, outcome: Result<Response<Bytes>, LroError>) -> Result<T, LroError> {
        let response = outcome?;
        (self.deserializer)(&response)
            .map_err(|e| LroError::decode("the deserialization callback failed", Some(e)))
    }
}

impl<K, S, T> Stream for FleetStream<K, S, T>
where
    K: Clone + Eq + Hash + Ord + Send + Unpin + 'static,
    S: Strategy + Unpin,
{
    type Item = FleetResult<K, T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.apply_commands(cx);
        loop {
            let now = this.timer.now();
            match this.fleet.poll(now) {
                FleetAction::Send { id, request, .. } => {
                    let client = Arc::clone(&this.client);
                    this.in_flight.push(Box::pin(async move { (id, client.send(request).await) }));
                    continue;
                }
                FleetAction::Finished { key, outcome, status, polls } => {
                    this.checkpointed = None; // the next checkpoint must not list it
                    this.publish_stats();
                    let result = this.outcome(outcome);
                    return Poll::Ready(Some(FleetResult { key, result, status, polls }));
                }
                FleetAction::Wait(wait) => {
                    if this.sleep.is_none() {
                        this.sleep = Some(this.timer.sleep(wait));
                    }
                }
                FleetAction::Idle => this.sleep = None,
            }
            // Responses first: each one may make more work due.
            if let Poll::Ready(Some((id, result))) = this.in_flight.poll_next_unpin(cx) {
                let now = this.timer.now();
                match result {
                    Ok(response) => {
                        if let Some((key, changed)) = this.fleet.answer(now, id, response) {
                            if let Some(engine) = this.fleet.engine(&key) {
                                if let (true, Some(observer)) =
                                    (changed, &mut this.on_status_change)
                                {
                                    observer(&key, engine);
                                }
                                if let Some(observer) = &mut this.on_poll {
                                    observer(&key, engine);
                                }
                            }
                        }
                    }
                    Err(error) => this.fleet.handle_transport_error(now, id, error),
                }
                this.sleep = None; // the next due time may have changed
                continue;
            }
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_ready() {
                    this.sleep = None;
                    continue;
                }
            }
            break;
        }
        this.publish_stats();
        let now = this.timer.now().instant;
        let stale = this
            .checkpointed
            .is_none_or(|at| now.saturating_duration_since(at) >= CHECKPOINT_EVERY);
        if this.checkpoints && stale {
            this.checkpointed = Some(now);
            let tokens = this
                .fleet
                .continuation_tokens()
                .into_iter()
                .filter_map(|(key, token)| token.ok().map(|token| (key, token)))
                .collect();
            this.shared.lock().unwrap_or_else(PoisonError::into_inner).tokens = tokens;
        }
        if this.fleet.is_empty() && this.in_flight.is_empty() {
            let pending =
                !this.shared.lock().unwrap_or_else(PoisonError::into_inner).commands.is_empty();
            if !pending {
                return Poll::Ready(None);
            }
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
