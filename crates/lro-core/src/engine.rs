//! The sans-IO poll engine: the one place where the polling loop's logic lives.
//!
//! ```text
//!            start / resume
//!                  │  strategy.start(initial)
//!                  ▼
//!   ┌──────────► Polling ───── status terminal, failed ───────────► Done(Err)
//!   │  not yet     │  poll(now) → Wait(d) until the next poll is due
//!   │  terminal    │  poll(now) → SendRequest(GET poll_uri)
//!   └──────────────┤  handle_response → strategy.read_poll → status
//!                  │
//!                  │ status terminal, succeeded: strategy.final_uri(latest)
//!                  ├──────────── None ─────────────────────────────► Done(Ok)
//!                  ▼ Some(uri)
//!               Final ── poll(now) → SendRequest(GET uri)
//!                  │     handle_response → strategy.read_final ────► Done(Ok / Err)
//!                  ▼
//!     any transport error, strategy error or exhausted limit ──────► Done(Err)
//! ```
//!
//! The engine never reads a clock, sleeps or performs I/O: the caller passes the time in and
//! carries out the returned [`Action`]. [`poll`](Engine::poll) does not change the state, so
//! a driver that is dropped halfway (an async poller whose future is dropped) can call it again
//! later and get the same request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri};
use serde::{Deserialize, Serialize};

use crate::delay::DelayContext;
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::options::PollOptions;
use crate::status::{Status, StatusKind};
use crate::strategy::Strategy;
use crate::token::{ContinuationToken, TokenState};
use crate::transport::{Timestamp, TransportError};

const CLIENT_REQUEST_ID: &str = "x-ms-client-request-id";

/// What the driver must do next. Returned by [`Engine::poll`].
#[must_use]
#[derive(Debug)]
// Returned once per step and consumed at once: boxing the request would cost an allocation per
// poll for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Send this request, then pass the outcome to [`Engine::handle_response`] or
    /// [`Engine::handle_transport_error`].
    SendRequest(Request<Bytes>),
    /// Wait this long, then call [`Engine::poll`] again.
    Wait(Duration),
    /// The operation is over: read [`Engine::outcome`].
    Done,
}

#[derive(Debug)]
enum Phase {
    Polling,
    Final(Uri),
    Done(Result<(), LroError>),
}

/// Progress kept in continuation tokens.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    polls: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strategy: Option<serde_json::Value>,
}

/// The sans-IO state machine of one long-running operation.
///
/// Drive it with a loop such as this one (the blocking driver of `StrategyPolling` is this
/// loop, plus locking):
///
/// ```
/// use lro_core::{Action, Engine, HttpClient, LroError, PollOptions, Strategy, Timer, Interrupt};
///
/// fn drive<S: Strategy>(
///     engine: &mut Engine<S>,
///     client: &dyn HttpClient,
///     timer: &dyn Timer,
/// ) -> Result<(), LroError> {
///     let interrupt = Interrupt::new();
///     loop {
///         match engine.poll(timer.now()) {
///             Action::SendRequest(request) => match client.send(request) {
///                 Ok(response) => engine.handle_response(timer.now(), response),
///                 Err(error) => engine.handle_transport_error(timer.now(), error),
///             },
///             Action::Wait(delay) => timer.sleep(delay, &interrupt),
///             Action::Done => return engine.outcome().map(|_| ()).map_err(Clone::clone),
///         }
///     }
/// }
/// # let _ = drive::<Box<dyn Strategy>>;
/// ```
#[derive(Debug)]
pub struct Engine<S> {
    strategy: S,
    options: PollOptions,
    initial: InitialResponse,
    latest: Option<Response<Bytes>>,
    status: Status,
    phase: Phase,
    polls: u32,
    started: Option<Instant>,
    next_poll: Option<Instant>,
}

impl<S: Strategy> Engine<S> {
    /// Starts an operation from its initial response.
    ///
    /// Errors from the strategy (e.g. a bad initial HTTP status) are returned here, without a
    /// continuation token, as azure-core raises them from the poller's constructor. A
    /// terminal initial status is not an error here: a failure is reported by
    /// [`outcome`](Engine::outcome) once the engine is driven, and a success may still need
    /// its final GET.
    pub fn start(
        mut strategy: S,
        options: PollOptions,
        initial: InitialResponse,
    ) -> Result<Self, LroError> {
        let word = strategy.start(&initial)?;
        let status = options.vocabulary.status(word);
        let mut engine = Engine {
            strategy,
            options,
            initial,
            latest: None,
            status,
            phase: Phase::Polling,
            polls: 0,
            started: None,
            next_poll: None,
        };
        if engine.status.is_terminal() {
            engine.on_terminal();
        }
        Ok(engine)
    }

    /// Resumes an operation from a continuation token.
    ///
    /// The strategy re-reads the token's initial response, then restores its saved progress;
    /// polling continues with an immediate poll. A token written by Python azure-core has no
    /// progress and resumes from the initial response, as it would in Python.
    pub fn resume(
        strategy: S,
        options: PollOptions,
        token: &ContinuationToken,
    ) -> Result<Self, LroError> {
        let state: TokenState = token.decode()?;
        let initial = state.initial_response()?;
        let mut engine = Engine::start(strategy, options, initial)?;
        if let Some(saved) = state.progress {
            let progress: Progress = serde_json::from_value(saved)
                .map_err(|e| LroError::invalid_token(format!("unexpected progress: {e}")))?;
            if let Some(saved) = &progress.strategy {
                engine.strategy.restore(saved)?;
            }
            engine.polls = progress.polls;
        }
        Ok(engine)
    }

    /// What to do next, given the current time.
    pub fn poll(&mut self, now: Timestamp) -> Action {
        match &self.phase {
            Phase::Done(_) => Action::Done,
            Phase::Final(uri) => {
                let uri = uri.clone();
                self.request_or_fail(uri)
            }
            Phase::Polling => {
                self.started.get_or_insert(now.instant);
                if let Some(due) = self.next_poll {
                    let wait = due.saturating_duration_since(now.instant);
                    if !wait.is_zero() {
                        return Action::Wait(wait);
                    }
                }
                match self.strategy.poll_uri() {
                    Some(uri) => self.request_or_fail(uri),
                    None => {
                        let error = LroError::bad_response(
                            self.latest_response(),
                            "unable to find status link for polling",
                        );
                        self.fail(error);
                        Action::Done
                    }
                }
            }
        }
    }

    /// Feeds the response to the request of the last [`Action::SendRequest`].
    pub fn handle_response(&mut self, now: Timestamp, response: Response<Bytes>) {
        let started = *self.started.get_or_insert(now.instant);
        match self.phase {
            Phase::Done(_) => {}
            Phase::Final(_) => {
                self.polls = self.polls.saturating_add(1);
                let checked = self.strategy.read_final(&response);
                self.latest = Some(response);
                match checked {
                    Ok(()) => self.phase = Phase::Done(Ok(())),
                    Err(error) => self.fail(error),
                }
            }
            Phase::Polling => {
                self.polls = self.polls.saturating_add(1);
                let read = self.strategy.read_poll(&response);
                let hint = self.strategy.retry_after(&response, now.wall);
                self.latest = Some(response);
                match read {
                    Err(error) => self.fail(error),
                    Ok(word) => {
                        self.status = self.options.vocabulary.status(word);
                        if self.status.is_terminal() {
                            self.on_terminal();
                        } else {
                            self.schedule(now.instant, started, hint);
                        }
                    }
                }
            }
        }
    }

    /// Reports that the request of the last [`Action::SendRequest`] failed in the transport.
    /// The operation ends with [`LroError::Transport`], carrying a continuation token.
    pub fn handle_transport_error(&mut self, now: Timestamp, error: TransportError) {
        let _ = now;
        if !matches!(self.phase, Phase::Done(_)) {
            self.fail(LroError::transport(error));
        }
    }

    /// The latest status (the initial one until a poll answered).
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Whether the operation is over ([`poll`](Engine::poll) returns [`Action::Done`]).
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    /// Once finished: the response that holds the result, or the error that ended polling.
    /// Before that: `Ok` with the latest response.
    pub fn outcome(&self) -> Result<&Response<Bytes>, &LroError> {
        match &self.phase {
            Phase::Done(Err(error)) => Err(error),
            _ => Ok(self.latest_response()),
        }
    }

    /// The latest response: the final GET's, the last poll's, or the initial one.
    pub fn latest_response(&self) -> &Response<Bytes> {
        self.latest.as_ref().unwrap_or_else(|| self.initial.response())
    }

    /// The request and response that started the operation.
    pub fn initial(&self) -> &InitialResponse {
        &self.initial
    }

    /// How many polls (status polls and final GET) have been answered.
    pub fn polls(&self) -> u32 {
        self.polls
    }

    /// The strategy, for inspection.
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// A token to resume this operation, in another process if need be.
    pub fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        let progress = Progress { polls: self.polls, strategy: self.strategy.save() };
        let progress = serde_json::to_value(progress)
            .map_err(|e| LroError::invalid_token(format!("progress is not serializable: {e}")))?;
        ContinuationToken::encode(&TokenState::new(&self.initial, Some(progress)))
    }

    /// The status is terminal: fail, finish, or go for the final GET.
    fn on_terminal(&mut self) {
        if self.status.is_failure() {
            let error = LroError::operation_failed(self.latest_response(), self.status.clone());
            self.fail(error);
            return;
        }
        match self.strategy.final_uri(self.latest_response()) {
            Ok(Some(uri)) => self.phase = Phase::Final(uri),
            Ok(None) => self.phase = Phase::Done(Ok(())),
            Err(error) => self.fail(error),
        }
    }

    /// Plans the next poll, or gives up if a limit would be exceeded.
    fn schedule(&mut self, now: Instant, started: Instant, hint: Option<Duration>) {
        let elapsed = now.saturating_duration_since(started);
        if let Some(max) = self.options.max_polls {
            if self.polls >= max {
                let message = format!(
                    "gave up after {} polls; the operation may still be running",
                    self.polls
                );
                self.fail(LroError::timeout(message, Some(elapsed), self.polls));
                return;
            }
        }
        let ctx = DelayContext::new(self.polls, elapsed, hint);
        let delay = self.options.delay.next_delay(&ctx).min(self.options.max_delay);
        if let Some(max) = self.options.max_elapsed {
            if elapsed.saturating_add(delay) > max {
                let message = format!(
                    "the next poll would come after the {max:?} limit ({:?} elapsed, {} polls); \
                     the operation may still be running",
                    elapsed, self.polls
                );
                self.fail(LroError::timeout(message, Some(elapsed), self.polls));
                return;
            }
        }
        self.next_poll = Some(now.checked_add(delay).unwrap_or(now));
    }

    /// The GET for `uri`, or the end of polling if the URI is not trusted.
    fn request_or_fail(&mut self, uri: Uri) -> Action {
        match self.build_request(uri) {
            Ok(request) => Action::SendRequest(request),
            Err(error) => {
                self.fail(error);
                Action::Done
            }
        }
    }

    fn build_request(&self, uri: Uri) -> Result<Request<Bytes>, LroError> {
        let start = self.initial.request().uri();
        if !self.options.origins.permits(start, &uri) {
            return Err(LroError::policy(format!(
                "refusing to poll {}: it is not on the origin of the initial request ({}) nor \
                 on an allowed origin",
                origin_text(&uri),
                origin_text(start)
            )));
        }
        let mut request = Request::new(Bytes::new());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.extend(self.options.headers.clone());
        if self.options.forward_client_request_id && !headers.contains_key(CLIENT_REQUEST_ID) {
            if let Some(id) = self.initial.request().headers().get(CLIENT_REQUEST_ID) {
                headers.insert(CLIENT_REQUEST_ID, HeaderValue::clone(id));
            }
        }
        Ok(request)
    }

    /// Ends polling with `error`, attaching a continuation token.
    fn fail(&mut self, error: LroError) {
        if matches!(error, LroError::BadStatus(_) | LroError::BadResponse(_)) {
            // As azure-core: a response that cannot be used marks the operation failed.
            self.status = Status::new(Arc::<str>::from("Failed"), StatusKind::Failed);
        }
        let error = match self.continuation_token() {
            Ok(token) => error.with_continuation_token(token),
            Err(_) => error,
        };
        self.phase = Phase::Done(Err(error));
    }
}

fn origin_text(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => format!("the relative URL {uri:?}"),
    }
}
