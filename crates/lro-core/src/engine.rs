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
//! A poll or final GET that fails for a transient reason (connection error, timeout, 408, 429,
//! 5xx) is sent again after a backoff, as the options' [`RetryPolicy`](crate::RetryPolicy) says;
//! a failed attempt changes neither the status nor the latest response.
//!
//! The engine never reads a clock, sleeps or performs I/O: the caller passes the time in and
//! carries out the returned [`Action`]. [`poll`](Engine::poll) does not change the state, so
//! a driver that is dropped halfway (an async poller whose future is dropped) can call it again
//! later and get the same request.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use serde::{Deserialize, Serialize};

use crate::delay::DelayContext;
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::options::PollOptions;
use crate::redact::{HeaderNames, ShownUri};
use crate::retry::RetryPolicy;
use crate::status::{Status, StatusKind};
use crate::strategy::Strategy;
use crate::telemetry::{Finished, Started, Telemetry, WaitReason};
use crate::token::{ContinuationToken, TokenIntegrity, TokenState};
use crate::transport::{Timestamp, TransportError};

const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");

/// What the driver must do next. Returned by [`Engine::poll`].
///
/// Its `Debug` output shows a request's URL without its query and its headers by name only.
#[must_use]
// Returned once per step and consumed at once: boxing the request would cost an allocation per
// poll for nothing.
#[allow(clippy::large_enum_variant)]
// Exhaustive on purpose: a driver must carry out every action, so a new kind of action is a
// breaking change that no driver can miss behind a `_` arm.
#[allow(clippy::exhaustive_enums)]
pub enum Action {
    /// Send this request, then pass the outcome to [`Engine::handle_response`] or
    /// [`Engine::handle_transport_error`].
    SendRequest(Request<Bytes>),
    /// Wait this long, then call [`Engine::poll`] again.
    Wait(Duration),
    /// The operation is over: read [`Engine::outcome`].
    Done,
}

enum Phase {
    Polling,
    /// Boxed: an idle operation is `Polling`, and should not carry a URI's worth of room.
    Final(Box<Uri>),
    Done(Result<(), LroError>),
}

/// Progress kept in continuation tokens.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    polls: u32,
    /// The last status word read, so a resumed poller shows it before its first poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    strategy: Option<serde_json::Value>,
}

/// The next request is due `wait` after `from`. Kept as a pair rather than an instant, so that
/// no wait, however large, can overflow into "now".
#[derive(Debug, Clone, Copy)]
struct Due {
    from: Instant,
    wait: Duration,
}

impl Due {
    /// What is left to wait at `now` (zero once due).
    fn remaining(&self, now: Instant) -> Duration {
        if self.wait.is_zero() {
            return Duration::ZERO;
        }
        self.wait.saturating_sub(now.saturating_duration_since(self.from))
    }
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
///
/// Its `Debug` output shows where the operation stands (status, polls, phase), never a URL or
/// a header value: a strategy's links may carry a signature in their query.
pub struct Engine<S> {
    strategy: S,
    /// Shared: a fleet of operations of one kind need not hold a copy each.
    options: Arc<PollOptions>,
    /// Once polling is under way, only what a continuation token keeps of it.
    initial: InitialResponse,
    /// The response polling ended with (kept once the status is terminal or polling failed):
    /// a poll that leaves the operation running is read, then dropped.
    latest: Option<Box<Response<Bytes>>>,
    status: Status,
    phase: Phase,
    polls: u32,
    started: Option<Instant>,
    next_poll: Option<Due>,
    /// The URI of the last status poll, while the next one follows it without a wait and the
    /// strategy says it polls the same ([`Strategy::polls_uri`]): reused, rather than built
    /// and checked again. Dropped at every wait, so that an idle operation keeps no copy.
    again: Option<Box<Uri>>,
    /// Retries made of the current request.
    retries: u32,
    rng: fastrand::Rng,
    /// Whether this process vouches for the operation's origin: it started the operation, or
    /// resumed it from a verified token or towards an origin named in the policy. Only then
    /// are its tokens signed (a signature must never launder a token from elsewhere).
    vouched: bool,
    /// Why the engine waits for `next_poll` (beside `vouched`: it fills padding, where a field
    /// of `Due` would grow every idle operation by 8 bytes).
    wait_reason: WaitReason,
    /// Spans and metrics (features `tracing`, `metrics`); nothing without them.
    telemetry: Telemetry,
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::SendRequest(request) => f
                .debug_struct("SendRequest")
                .field("method", request.method())
                .field("uri", &ShownUri(request.uri()))
                .field("headers", &HeaderNames(request.headers()))
                .finish_non_exhaustive(),
            Action::Wait(delay) => f.debug_tuple("Wait").field(delay).finish(),
            Action::Done => f.write_str("Done"),
        }
    }
}

impl<S: Strategy> fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match &self.phase {
            Phase::Polling => "polling",
            Phase::Final(_) => "final request",
            Phase::Done(Ok(())) => "done",
            Phase::Done(Err(error)) => error.kind_name(),
        };
        f.debug_struct("Engine")
            .field("strategy", &self.strategy.name())
            .field("status", &self.status)
            .field("phase", &phase)
            .field("polls", &self.polls)
            .field("retries", &self.retries)
            .field("vouched", &self.vouched)
            .finish_non_exhaustive()
    }
}

impl<S: Strategy> Engine<S> {
    /// Starts an operation from its initial response.
    ///
    /// Errors from the strategy (e.g. a bad initial HTTP status) are returned here, without a
    /// continuation token, as azure-core raises them from the poller's constructor. A
    /// terminal initial status is not an error here: a failure is reported by
    /// [`outcome`](Engine::outcome) once the engine is driven, and a success may still need
    /// its final GET.
    ///
    /// Once the operation is under way the engine keeps only what a continuation token keeps
    /// of the initial exchange ([`InitialResponse::token_parts`]): an operation that finished
    /// in its initial response keeps all of it, as its result.
    ///
    /// `options` may be shared (`Arc<PollOptions>`) by many engines.
    pub fn start(
        strategy: S,
        options: impl Into<Arc<PollOptions>>,
        initial: InitialResponse,
    ) -> Result<Self, LroError> {
        Self::begin(strategy, options.into(), initial, false)
    }

    fn begin(
        mut strategy: S,
        options: Arc<PollOptions>,
        initial: InitialResponse,
        resumed: bool,
    ) -> Result<Self, LroError> {
        let word = strategy.start(&initial)?;
        let status = options.vocabulary.status(word);
        let rng = options.retry.rng();
        let telemetry = Telemetry::operation(&Started {
            method: initial.request().method(),
            uri: initial.request().uri(),
            poll_uri: strategy.poll_uri().as_ref(),
            strategy: strategy.name(),
            resumed,
            status: &status,
        });
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
            again: None,
            retries: 0,
            rng,
            vouched: true,
            wait_reason: WaitReason::Interval,
            telemetry,
        };
        if engine.status.is_terminal() {
            engine.on_terminal();
            engine.settled(None);
        }
        // What is kept is copied, never a slice of the transport's buffer (see `owned`).
        engine.initial =
            if engine.finished() { engine.initial.owned() } else { engine.initial.token_parts() };
        Ok(engine)
    }

    /// Resumes an operation from a continuation token.
    ///
    /// The strategy re-reads the token's initial response, then restores its saved progress;
    /// polling continues with an immediate poll. A token written by Python azure-core has no
    /// progress and resumes from the initial response, as it would in Python.
    ///
    /// A token is untrusted input, and it names the origin polls go to. So when the polls would
    /// carry credentials ([`PollOptions::sends_credentials`]), the token's origin must be one
    /// the user vouched for ([`OriginPolicy::vouches_for`](crate::OriginPolicy::vouches_for)),
    /// or the token must carry a valid signature from the configured
    /// [`token_key`](crate::PollOptionsBuilder::token_key); otherwise this fails with
    /// [`LroError::Policy`] before anything is sent. With a key, a token whose signature does
    /// not match is refused whatever the origin.
    pub fn resume(
        strategy: S,
        options: impl Into<Arc<PollOptions>>,
        token: &ContinuationToken,
    ) -> Result<Self, LroError> {
        let options = options.into();
        let (state, integrity): (TokenState, _) = match &options.token_key {
            Some(key) => token.decode_verified(key)?,
            None => (token.decode()?, TokenIntegrity::Unsigned),
        };
        if options.signed_tokens_only && integrity != TokenIntegrity::Verified {
            return Err(LroError::invalid_token(
                "the token is not signed: only tokens signed with the token key are resumed",
            ));
        }
        let initial = state.initial_response()?;
        let origin = initial.request().uri();
        let vouched = integrity == TokenIntegrity::Verified || options.origins.vouches_for(origin);
        if !vouched && options.sends_credentials() {
            let origin = origin_text(origin);
            return Err(LroError::refused_origin(
                format!(
                    "refusing to resume: the token names {origin} and polls would carry \
                     credentials, but nothing vouches for that origin (trust it by name with an \
                     allowed or pinned origin, or resume only tokens signed with your token key)"
                ),
                origin,
            ));
        }
        let mut engine = Engine::begin(strategy, options, initial, true)?;
        engine.vouched = vouched;
        if let Err(error) = engine.restore(state.progress) {
            // Telemetry saw it start: it must see it end too.
            engine.phase = Phase::Done(Err(error.clone()));
            engine.settled(None);
            return Err(error);
        }
        Ok(engine)
    }

    /// Restores the progress a token saved.
    fn restore(&mut self, progress: Option<serde_json::Value>) -> Result<(), LroError> {
        if let Some(saved) = progress {
            let progress: Progress = serde_json::from_value(saved)
                .map_err(|e| LroError::invalid_token(format!("unexpected progress: {e}")))?;
            if let Some(saved) = &progress.strategy {
                self.strategy.restore(saved)?;
            }
            self.polls = progress.polls;
            if let (Some(word), Phase::Polling) = (progress.status, &self.phase) {
                // Shown until the first poll answers; polling decides nothing from it.
                self.status = self.options.vocabulary.status(Arc::<str>::from(word));
            }
        }
        Ok(())
    }

    /// What to do next, given the current time.
    pub fn poll(&mut self, now: Timestamp) -> Action {
        if matches!(self.phase, Phase::Done(_)) {
            return Action::Done;
        }
        self.started.get_or_insert(now.instant);
        let action = self.next_action(now);
        match action {
            Action::SendRequest(_) => {}
            Action::Wait(_) => self.again = None,
            Action::Done => self.settled(Some(now.instant)),
        }
        action
    }

    fn next_action(&mut self, now: Timestamp) -> Action {
        if let Some(due) = self.next_poll {
            let wait = due.remaining(now.instant);
            if !wait.is_zero() {
                return Action::Wait(wait);
            }
        }
        match &self.phase {
            Phase::Done(_) => Action::Done,
            Phase::Final(uri) => {
                let uri = Uri::clone(uri);
                self.request_or_fail(uri)
            }
            Phase::Polling => {
                if let Some(again) = self.again.take() {
                    if self.strategy.polls_uri(&again) {
                        // Checked when it was first built, against the same policy and origin.
                        let request = self.request(Uri::clone(&again));
                        self.again = Some(again);
                        return self.sending(request);
                    }
                }
                self.poll_status()
            }
        }
    }

    /// The next status poll, its URI asked of the strategy.
    fn poll_status(&mut self) -> Action {
        match self.strategy.poll_uri() {
            Some(uri) => {
                // Kept for the next poll if this one followed an answer without a wait (the
                // next is likely to, too) and the strategy can tell it is still the one. Not
                // for the first poll: most services ask for a wait in their first answer.
                let back_to_back = self.next_poll.is_some_and(|due| due.wait.is_zero());
                if back_to_back && self.strategy.polls_uri(&uri) {
                    self.again = Some(Box::new(Uri::clone(&uri)));
                }
                self.request_or_fail(uri)
            }
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

    /// Feeds the response to the request of the last [`Action::SendRequest`].
    ///
    /// A transient status (408, 429, 5xx) within the retry budget schedules the same request
    /// again and changes nothing else. So does a corrupted answer: a poll whose body the
    /// strategy cannot decode, or a final resource labelled JSON that does not parse (when the
    /// budget is spent, or retries are off, such a body is used as it came).
    pub fn handle_response(&mut self, now: Timestamp, response: Response<Bytes>) {
        if matches!(self.phase, Phase::Done(_)) {
            return;
        }
        self.telemetry.answered(response.status(), self.strategy.name());
        self.read_response(now, response);
        self.settled(Some(now.instant));
    }

    // The common answer (a poll that leaves the operation running) takes one straight path
    // through `read_response` and `read_poll_answer`; every rarer case (a transient status, the
    // final GET, a terminal status, an unreadable answer) is a function of its own, so that the
    // common path's code sits on few cache lines (what a zero-wait poll mostly costs).
    fn read_response(&mut self, now: Timestamp, response: Response<Bytes>) {
        let started = *self.started.get_or_insert(now.instant);
        let transient = RetryPolicy::is_transient_status(response.status());
        if transient && self.retry_transient(now, started, &response) {
            return;
        }
        match self.phase {
            Phase::Done(_) => {}
            Phase::Final(_) => self.read_final_answer(now.instant, started, response, transient),
            Phase::Polling => self.read_poll_answer(now, started, response, transient),
        }
    }

    /// A transient status (408, 429, 5xx): whether the request is scheduled again.
    #[cold]
    #[inline(never)]
    fn retry_transient(
        &mut self,
        now: Timestamp,
        started: Instant,
        response: &Response<Bytes>,
    ) -> bool {
        let hint = if RetryPolicy::honours_retry_after(response.status()) {
            self.strategy.retry_after(response, now.wall)
        } else {
            None
        };
        self.retry_later(now.instant, started, hint)
    }

    /// With retries on, an exhausted budget keeps the last known status: the operation may
    /// well still be running. With retries off, azure-core's rule applies (see `fail`).
    fn keeps_status(&self, transient: bool) -> bool {
        transient && self.options.retry.max_retries() > 0
    }

    /// The answer to the final GET.
    #[inline(never)]
    fn read_final_answer(
        &mut self,
        now: Instant,
        started: Instant,
        response: Response<Bytes>,
        transient: bool,
    ) {
        if !transient && corrupt_json(&response) && self.retry_later(now, started, None) {
            return;
        }
        let attempts = std::mem::take(&mut self.retries).saturating_add(1);
        self.polls = self.polls.saturating_add(1);
        let checked = self.strategy.read_final(&response);
        self.latest = Some(Box::new(crate::owned::response(response)));
        match checked {
            Ok(()) => self.phase = Phase::Done(Ok(())),
            Err(error) => {
                let keep_status = self.keeps_status(transient);
                self.fail_after(error.with_attempts(attempts), keep_status);
            }
        }
    }

    /// The answer to a status poll.
    fn read_poll_answer(
        &mut self,
        now: Timestamp,
        started: Instant,
        response: Response<Bytes>,
        transient: bool,
    ) {
        match self.strategy.read_poll(&response) {
            Ok(word) => {
                self.retries = 0;
                self.polls = self.polls.saturating_add(1);
                self.status = self.options.vocabulary.status(word);
                if self.status.is_terminal() {
                    self.polling_ended(response);
                } else {
                    // Read, then dropped: an idle operation keeps no response.
                    let hint = self.strategy.retry_after(&response, now.wall);
                    self.schedule(now.instant, started, hint);
                }
            }
            Err(error) => self.poll_unreadable(now.instant, started, response, transient, error),
        }
    }

    /// A terminal status: the response is kept, and the final GET planned (or polling ends).
    #[cold]
    #[inline(never)]
    fn polling_ended(&mut self, response: Response<Bytes>) {
        self.latest = Some(Box::new(crate::owned::response(response)));
        self.on_terminal();
    }

    /// A poll the strategy could not read: a corrupted answer is retried like a transient one,
    /// any other error ends polling.
    #[cold]
    #[inline(never)]
    fn poll_unreadable(
        &mut self,
        now: Instant,
        started: Instant,
        response: Response<Bytes>,
        transient: bool,
        error: LroError,
    ) {
        if !transient
            && matches!(error, LroError::Decode(_))
            && self.retry_later(now, started, None)
        {
            return;
        }
        let attempts = std::mem::take(&mut self.retries).saturating_add(1);
        self.polls = self.polls.saturating_add(1);
        self.latest = Some(Box::new(crate::owned::response(response)));
        let keep_status = self.keeps_status(transient);
        self.fail_after(error.with_attempts(attempts), keep_status);
    }

    /// Reports that the request of the last [`Action::SendRequest`] failed in the transport.
    ///
    /// Within the retry budget (and the deadline) the request is scheduled again; otherwise the
    /// operation ends with [`LroError::Transport`], carrying a continuation token. The status is
    /// kept either way.
    pub fn handle_transport_error(&mut self, now: Timestamp, error: TransportError) {
        let started = *self.started.get_or_insert(now.instant);
        if matches!(self.phase, Phase::Done(_)) {
            return;
        }
        self.telemetry.transport_failed(&error);
        if !(RetryPolicy::is_transient_error(&error)
            && self.retry_later(now.instant, started, None))
        {
            let attempts = std::mem::take(&mut self.retries).saturating_add(1);
            self.fail(LroError::transport(error).with_attempts(attempts));
        }
        self.settled(Some(now.instant));
    }

    /// Tells telemetry what the last step decided: the next wait, or how the operation ended.
    fn settled(&mut self, now: Option<Instant>) {
        match &self.phase {
            Phase::Done(result) => {
                let elapsed = now.zip(self.started).map(|(n, s)| n.saturating_duration_since(s));
                self.telemetry.finished(&Finished {
                    outcome: result.as_ref().map(|_| ()),
                    status: &self.status,
                    polls: self.polls,
                    elapsed,
                    strategy: self.strategy.name(),
                });
            }
            _ => {
                let (next, percent) = (self.next_wait(), self.percent_complete());
                self.telemetry.settled(&self.status, percent, next);
            }
        }
    }

    /// Schedules another attempt of the current request, if the retry budget and the deadline
    /// allow one. `hint` is the service's `Retry-After`, when it is to be honoured.
    fn retry_later(&mut self, now: Instant, started: Instant, hint: Option<Duration>) -> bool {
        let limits = (self.options.min_delay, self.options.max_delay);
        let Some(delay) = self.options.retry.next_wait(self.retries, hint, limits, &mut self.rng)
        else {
            return false;
        };
        let elapsed = now.saturating_duration_since(started);
        if self.options.max_elapsed.is_some_and(|max| elapsed.saturating_add(delay) > max) {
            return false;
        }
        self.retries = self.retries.saturating_add(1);
        let reason = match hint {
            Some(hint) if !hint.is_zero() => WaitReason::Throttled,
            _ => WaitReason::Backoff,
        };
        self.next_poll = Some(Due { from: now, wait: delay });
        self.wait_reason = reason;
        let attempt = self.retries.saturating_add(1);
        self.telemetry.retrying(reason, delay, attempt, self.strategy.name());
        true
    }

    /// Makes the next status poll due at once, skipping the wait in progress (a notification
    /// said the operation changed). A retry's backoff is skipped too; limits still apply.
    pub fn poll_now(&mut self) {
        if matches!(self.phase, Phase::Polling) {
            self.next_poll = None;
        }
    }

    /// The latest status (the initial one until a poll answered).
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// How far the operation has got, 0 to 100, when the service says so (see
    /// [`Strategy::percent_complete`]).
    pub fn percent_complete(&self) -> Option<u8> {
        self.strategy.percent_complete()
    }

    /// The wait chosen after the last answer (or failure) before the next request, and why:
    /// `None` when a request is due at once or the operation is over.
    pub fn next_wait(&self) -> Option<(Duration, WaitReason)> {
        match self.phase {
            Phase::Done(_) => None,
            _ => self.next_poll.map(|due| (due.wait, self.wait_reason)),
        }
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

    /// The response polling ended with (the final GET's, the terminal poll's, or the one that
    /// failed polling); while the operation runs, the initial one. A poll that leaves the
    /// operation running is read, then dropped: an idle operation keeps no response.
    pub fn latest_response(&self) -> &Response<Bytes> {
        self.latest.as_deref().unwrap_or_else(|| self.initial.response())
    }

    /// The request and response that started the operation: once it is under way, only what a
    /// continuation token keeps of them ([`InitialResponse::token_parts`]).
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

    /// A token to resume this operation, in another process if need be. With a
    /// [`token_key`](crate::PollOptionsBuilder::token_key) it is signed — unless the operation
    /// was resumed from an unsigned token whose origin nobody vouched for: signing that would
    /// turn a token from anywhere into a trusted one.
    pub fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        let progress = Progress {
            polls: self.polls,
            status: Some(self.status.as_str().to_owned()),
            strategy: self.strategy.save(),
        };
        let progress = serde_json::to_value(progress)
            .map_err(|e| LroError::invalid_token(format!("progress is not serializable: {e}")))?;
        // What a token may not hold when read back, it may not hold when written either: the
        // error comes now, not when someone resumes.
        let saved = progress.to_string().len();
        if saved > crate::token::MAX_PROGRESS_LEN {
            return Err(LroError::invalid_token(format!(
                "no token can be made: the operation's progress (its status and links, as the \
                 service sent them) takes {saved} bytes, over the {} a token may hold",
                crate::token::MAX_PROGRESS_LEN
            )));
        }
        let mut state = TokenState::new(&self.initial, Some(progress));
        let seal = |state: &TokenState| match &self.options.token_key {
            Some(key) if self.vouched => ContinuationToken::encode_signed(state, key),
            _ => ContinuationToken::encode(state),
        };
        match seal(&state) {
            // The copy of the initial body kept for Python's sake is the first thing to go.
            Err(_) if !state.context.is_null() => {
                state.context = serde_json::Value::Null;
                Ok(seal(&state)?)
            }
            sealed => Ok(sealed?),
        }
    }

    /// The status is terminal: fail, finish, or go for the final GET.
    fn on_terminal(&mut self) {
        self.again = None; // status polls are over
        if self.status.is_failure() {
            let error = LroError::operation_failed(self.latest_response(), self.status.clone());
            self.fail(error);
            return;
        }
        self.next_poll = None; // the final GET goes at once
        match self.strategy.final_uri(self.latest_response()) {
            Ok(Some(uri)) => self.phase = Phase::Final(Box::new(uri)),
            Ok(None) => self.phase = Phase::Done(Ok(())),
            Err(error) => self.fail(error),
        }
    }

    /// Plans the next poll, or gives up if a limit would be exceeded.
    fn schedule(&mut self, now: Instant, started: Instant, hint: Option<Duration>) {
        let elapsed = now.saturating_duration_since(started);
        if self.options.max_polls.is_some_and(|max| self.polls >= max) {
            self.give_up_polls(elapsed);
            return;
        }
        let ctx = DelayContext::new(self.polls, elapsed, hint);
        let mut delay = match self.options.delay.lock() {
            Ok(mut policy) => policy.next_delay(&ctx),
            // A policy that panicked once: its state is suspect, not its rule.
            Err(poisoned) => poisoned.into_inner().next_delay(&ctx),
        };
        let asked = hint.filter(|hint| !hint.is_zero());
        if asked.is_some() {
            // The service asked for a wait: however small it asked, never poll in a hot loop.
            delay = delay.max(self.options.min_delay);
        }
        let delay = delay.min(self.options.max_delay);
        // The service's wait, if the policy took it (a policy may ignore it, longer or shorter).
        let limits = (self.options.min_delay, self.options.max_delay);
        let reason = match asked {
            Some(asked) if delay == asked.max(limits.0).min(limits.1) => WaitReason::RetryAfter,
            _ => WaitReason::Interval,
        };
        if let Some(max) =
            self.options.max_elapsed.filter(|max| elapsed.saturating_add(delay) > *max)
        {
            self.give_up_elapsed(max, elapsed);
            return;
        }
        self.next_poll = Some(Due { from: now, wait: delay });
        self.wait_reason = reason;
    }

    /// Ends polling: the poll budget is spent.
    #[cold]
    #[inline(never)]
    fn give_up_polls(&mut self, elapsed: Duration) {
        let message =
            format!("gave up after {} polls; the operation may still be running", self.polls);
        self.fail(LroError::gave_up(message, Some(elapsed), self.polls));
    }

    /// Ends polling: the next poll would come after the `max` limit on the elapsed time.
    #[cold]
    #[inline(never)]
    fn give_up_elapsed(&mut self, max: Duration, elapsed: Duration) {
        let message = format!(
            "the next poll would come after the {max:?} limit ({elapsed:?} elapsed, {} polls); \
             the operation may still be running",
            self.polls
        );
        self.fail(LroError::gave_up(message, Some(elapsed), self.polls));
    }

    /// The GET for `uri`, or the end of polling if the URI is not trusted.
    fn request_or_fail(&mut self, uri: Uri) -> Action {
        match self.check_target(&uri) {
            Ok(()) => {
                let request = self.request(uri);
                self.sending(request)
            }
            Err(error) => {
                self.fail(error);
                Action::Done
            }
        }
    }

    /// Sends `request`, telling telemetry.
    fn sending(&mut self, request: Request<Bytes>) -> Action {
        let poll = self.polls.saturating_add(1);
        let attempt = self.retries.saturating_add(1);
        let final_get = matches!(self.phase, Phase::Final(_));
        self.telemetry.sending(request.uri(), poll, attempt, final_get);
        Action::SendRequest(request)
    }

    /// Whether polls may go to `uri`: absolute, with no user information, and on an origin the
    /// policy permits.
    fn check_target(&self, uri: &Uri) -> Result<(), LroError> {
        if uri.scheme().is_none() || uri.authority().is_none() {
            // Whatever the origin policy (`any` included): a relative URL names no host, and a
            // transport that resolved it against some base would send the poll anywhere.
            return Err(LroError::policy(format!(
                "refusing to poll {:?}: it is not an absolute URL",
                uri.path()
            )));
        }
        if crate::redact::has_user_info(uri) {
            // Never a credential we send, and a sign of tampering: refused even on the origin.
            return Err(LroError::policy(format!(
                "refusing to poll a URL on {} that carries user information (user:password@)",
                origin_text(uri)
            )));
        }
        let start = self.initial.request().uri();
        if !self.options.origins.permits(start, uri) {
            let refused = origin_text(uri);
            return Err(LroError::refused_origin(
                format!(
                    "refusing to poll {refused}: it is not on the origin of the initial request \
                     ({}) nor on an allowed origin",
                    origin_text(start)
                ),
                refused,
            ));
        }
        Ok(())
    }

    /// The GET of `uri`, with the options' headers.
    fn request(&self, uri: Uri) -> Request<Bytes> {
        let mut request = Request::new(Bytes::new());
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri;
        let forwards =
            self.options.forward_client_request_id && !self.initial.request().headers().is_empty();
        if self.options.headers.is_some() || forwards {
            self.add_headers(request.headers_mut());
        }
        request
    }

    /// Adds the options' headers to a poll's `headers`, and the initial request's client
    /// request id unless they name one. Out of line: most polls carry none.
    #[inline(never)]
    fn add_headers(&self, headers: &mut HeaderMap) {
        if let Some(extra) = &self.options.headers {
            headers.extend(HeaderMap::clone(extra));
        }
        let initial_headers = self.initial.request().headers();
        if self.options.forward_client_request_id && !initial_headers.is_empty() {
            if let Some(id) = initial_headers.get(&CLIENT_REQUEST_ID) {
                if !headers.contains_key(&CLIENT_REQUEST_ID) {
                    headers.insert(CLIENT_REQUEST_ID, HeaderValue::clone(id));
                }
            }
        }
    }

    /// Ends polling with `error`, attaching a continuation token.
    fn fail(&mut self, error: LroError) {
        self.fail_after(error, false);
    }

    /// As [`fail`](Self::fail); `keep_status` keeps the last known status whatever the error.
    #[cold]
    #[inline(never)]
    fn fail_after(&mut self, error: LroError, keep_status: bool) {
        self.again = None;
        let unusable = matches!(error, LroError::BadStatus(_) | LroError::BadResponse(_))
            // A final GET that policy refuses: the result can never be fetched, so the status
            // must not go on saying `Succeeded`. (A refused poll keeps the status: the operation
            // may be running still.)
            || matches!((&error, &self.phase), (LroError::Policy(_), Phase::Final(_)));
        if unusable && !keep_status {
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

/// Whether `response` says its body is JSON (`application/json`, `…+json`) and it does not parse:
/// a truncated or garbled answer.
fn corrupt_json(response: &Response<Bytes>) -> bool {
    let json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || v.ends_with("+json")
        })
        .unwrap_or(false);
    let body = response.body();
    json && !body.iter().all(u8::is_ascii_whitespace)
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
}

/// `scheme://host[:port]` of `uri`: never its user information or path.
fn origin_text(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.host()) {
        (Some(scheme), Some(host)) => match uri.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        },
        _ => "a relative URL".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_util::{
        OperationLocationStrategy, ScriptedTransport, WithHeader, json_response,
    };

    /// An engine polling with no wait, and its clock's time.
    fn polling() -> (Engine<OperationLocationStrategy>, Timestamp) {
        let initial = InitialResponse::new(
            ScriptedTransport::request_head("POST", "http://svc/widgets"),
            json_response(202, "").with_header("operation-location", "http://svc/op"),
        );
        let options = PollOptions::builder().interval(Duration::ZERO).build();
        let engine = Engine::start(OperationLocationStrategy::default(), options, initial).unwrap();
        (engine, crate::Timer::now(&crate::test_util::ManualClock::new()))
    }

    fn running(engine: &mut Engine<OperationLocationStrategy>, now: Timestamp, times: usize) {
        for _ in 0..times {
            assert!(matches!(engine.poll(now), Action::SendRequest(_)));
            engine.handle_response(now, json_response(200, r#"{"status":"Running"}"#));
        }
    }

    #[test]
    fn a_finished_operation_keeps_no_uri_for_reuse() {
        let (mut engine, now) = polling();
        running(&mut engine, now, 3);
        assert!(engine.again.is_some(), "back-to-back polls reuse their URI");
        assert!(matches!(engine.poll(now), Action::SendRequest(_)));
        engine.handle_response(now, json_response(200, r#"{"status":"Succeeded"}"#));
        assert!(engine.finished());
        assert!(engine.again.is_none());
    }

    #[test]
    fn a_failed_operation_keeps_no_uri_for_reuse() {
        let (mut engine, now) = polling();
        running(&mut engine, now, 3);
        assert!(matches!(engine.poll(now), Action::SendRequest(_)));
        engine.handle_response(now, json_response(200, r#"{"no":"status"}"#));
        assert!(matches!(engine.outcome(), Err(LroError::BadResponse(_))));
        assert!(engine.again.is_none());
    }
}
