//! [`LroPoller`]: the blocking poller, polling on a background thread (azure-core's `LROPoller`).

use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::deserialize::Deserializer;
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::method::{BlockingOperation, PollingMethod, RunContext};
use crate::status::Status;
use crate::token::ContinuationToken;
use crate::transport::{HttpClient, Interrupt, Timer};

type Callback<O> = Box<dyn FnOnce(&O) + Send>;

/// Identifies a callback registered with [`LroPoller::add_done_callback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

/// [`LroPoller::remove_done_callback`] was called after the operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operation is complete: its done callbacks have already run")]
#[allow(clippy::exhaustive_structs)] // a marker: it will never carry anything
pub struct AlreadyComplete;

/// Drives a long-running operation on a background thread.
///
/// As azure-core's `LROPoller`: the constructor initializes the polling method and, unless the
/// operation is already finished, hands it to a thread (named `lro-poller`) that runs it. That
/// thread is one an earlier poller left idle, or a new one: a thread whose operation ended
/// waits up to 10 s for the next poller before it exits (at most 16 wait at once), so that
/// operations run one after another do not start a thread each. An operation whose initial
/// response already says it failed is reported as failed (azure-core's sync poller returns it
/// as a success; its async poller raises — this crate follows the async one in both pollers).
/// Waiting, status and callbacks are available from any thread meanwhile.
///
/// Unlike Python, dropping the poller stops polling: the thread is told to stop (a wait in
/// progress ends at once) and sends nothing more. The drop itself never waits: a request
/// already in flight is left to the thread, which finishes it and is then free for another
/// poller. That last response still reaches the polling method (an observer sees it, and it
/// may even end the operation), and done callbacks not yet run then run on that thread, after
/// the drop has returned. `result(Some(timeout))` that runs out returns [`LroError::Timeout`]
/// with a continuation token instead of a partial resource; polling goes on, and a later
/// `result` can still succeed.
///
/// ```
/// use std::sync::Arc;
/// use lro_core::test_util::{ScriptedTransport, json_response, WithHeader, OperationLocationStrategy};
/// use lro_core::{deserialize, InitialResponse, LroPoller, StrategyPolling};
///
/// let transport = Arc::new(ScriptedTransport::new());
/// transport.push_get("http://svc/op", json_response(200, r#"{"status":"Running"}"#));
/// transport.push_get("http://svc/op", json_response(200, r#"{"status":"Succeeded","id":7}"#));
///
/// let initial = InitialResponse::new(
///     ScriptedTransport::request_head("POST", "http://svc/jobs"),
///     json_response(202, "").with_header("operation-location", "http://svc/op"),
/// );
/// let method = StrategyPolling::new(OperationLocationStrategy::default());
/// let poller = LroPoller::new(transport.clone(),transport.clone(), initial, deserialize::json::<serde_json::Value>(), method)?;
/// let job = poller.result(None)?;
/// assert_eq!(job["id"], 7);
/// assert_eq!(transport.sleeps().len(), 1); // 30 s of virtual time, waited instantly
/// # Ok::<(), lro_core::LroError>(())
/// ```
pub struct LroPoller<T, M>
where
    M: PollingMethod<T>,
{
    shared: Arc<Shared<T, M::Operation>>,
}

struct Shared<T, M> {
    method: M,
    _resource: PhantomData<fn() -> T>,
    timer: Arc<dyn Timer>,
    interrupt: Interrupt,
    state: Mutex<Completion<M>>,
    completed: Condvar,
}

struct Completion<M> {
    done: bool,
    error: Option<LroError>,
    callbacks: Vec<(CallbackId, Callback<M>)>,
    next_id: u64,
}

impl<T: 'static, M> LroPoller<T, M>
where
    M: PollingMethod<T>,
{
    /// Initializes `method` with the initial response and starts polling.
    ///
    /// `client` sends the polls; `timer` tells the time and waits (the system clock:
    /// [`SystemTimer`](crate::SystemTimer); tests use a manual clock). Errors from
    /// initialization (e.g. an unexpected initial status) are returned here.
    pub fn new<C>(
        client: Arc<C>,
        timer: impl Timer + 'static,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
        method: M,
    ) -> Result<Self, LroError>
    where
        C: HttpClient + 'static,
    {
        let operation = method.initialize(client, initial, deserializer)?;
        Ok(Self::launch(operation, Arc::new(timer)))
    }

    /// Rebuilds a poller from a continuation token and resumes polling.
    pub fn from_continuation_token<C>(
        method: M,
        token: &ContinuationToken,
        client: Arc<C>,
        timer: impl Timer + 'static,
        deserializer: Deserializer<T>,
    ) -> Result<Self, LroError>
    where
        C: HttpClient + 'static,
        M: Sized,
    {
        let operation = method.from_continuation_token(client, token, deserializer)?;
        Ok(Self::launch(operation, Arc::new(timer)))
    }

    fn launch(method: M::Operation, timer: Arc<dyn Timer>) -> Self {
        let finished = method.finished();
        let shared = Arc::new(Shared {
            method,
            _resource: PhantomData,
            timer,
            interrupt: Interrupt::new(),
            state: Mutex::new(Completion {
                done: false,
                error: None,
                callbacks: Vec::new(),
                next_id: 0,
            }),
            completed: Condvar::new(),
        });
        if finished {
            // Nothing to send: `run` returns at once with the outcome (an operation that
            // failed in its initial response fails here, as in azure-core's async poller).
            shared.poll_to_completion();
        } else {
            let worker = Arc::clone(&shared);
            let job = Box::new(move || worker.poll_to_completion());
            if let Err(e) = super::threads::POLLING_THREADS.run(job) {
                shared.complete(Some(LroError::stopped(format!(
                    "could not start the polling thread: {e}"
                ))));
            }
        }
        LroPoller { shared }
    }

    /// Waits for the operation to end (at most `timeout` of real time), then returns the
    /// resource.
    pub fn result(&self, timeout: Option<Duration>) -> Result<T, LroError> {
        self.wait(timeout)?;
        self.shared.method.resource().map_err(|e| self.shared.with_token(e))
    }

    /// Waits for the operation to end (at most `timeout` of real time).
    ///
    /// Returns the error that ended polling, if any (every call returns it again), or
    /// [`LroError::Timeout`] with a continuation token if `timeout` ran out first.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<(), LroError> {
        let state = self.shared.lock();
        let state = match timeout {
            None => self
                .shared
                .completed
                .wait_while(state, |s| !s.done)
                .unwrap_or_else(PoisonError::into_inner),
            Some(timeout) => {
                self.shared
                    .completed
                    .wait_timeout_while(state, timeout, |s| !s.done)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
        if !state.done {
            drop(state);
            let limit = timeout.unwrap_or_default();
            let message =
                format!("the operation did not finish within {limit:?}; it is still being polled");
            let polls = self.shared.method.polls();
            return Err(self.shared.with_token(LroError::timeout(message, timeout, polls)));
        }
        match &state.error {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Whether polling is over.
    pub fn done(&self) -> bool {
        self.shared.lock().done
    }

    /// The latest status, as the service spelled it.
    pub fn status(&self) -> Status {
        self.shared.method.status()
    }

    /// The operation the polling method became (safe to use while polling runs: its methods
    /// take `&self`).
    pub fn polling_method(&self) -> &M::Operation {
        &self.shared.method
    }

    /// A token to resume the operation, here or in another process.
    pub fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        self.shared.method.continuation_token()
    }

    /// Calls `callback` with the polling method once polling is over (at once, on this thread,
    /// if it already is; otherwise on the polling thread). Callbacks run even when polling
    /// failed; a panicking callback does not stop the others.
    pub fn add_done_callback(
        &self,
        callback: impl FnOnce(&M::Operation) + Send + 'static,
    ) -> CallbackId {
        let mut state = self.shared.lock();
        let id = CallbackId(state.next_id);
        state.next_id = state.next_id.wrapping_add(1);
        if state.done {
            drop(state);
            run_callback(&self.shared.method, Box::new(callback));
        } else {
            state.callbacks.push((id, Box::new(callback)));
        }
        id
    }

    /// Removes a callback that has not run yet. Returns whether it was registered (removing an
    /// unknown id is not an error), or [`AlreadyComplete`] once polling is over.
    pub fn remove_done_callback(&self, id: CallbackId) -> Result<bool, AlreadyComplete> {
        let mut state = self.shared.lock();
        if state.done {
            return Err(AlreadyComplete);
        }
        let before = state.callbacks.len();
        state.callbacks.retain(|(registered, _)| *registered != id);
        Ok(state.callbacks.len() != before)
    }
}

impl<T, M: BlockingOperation<T>> Shared<T, M> {
    fn lock(&self) -> MutexGuard<'_, Completion<M>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn poll_to_completion(&self) {
        let ctx = RunContext::new(&*self.timer, &self.interrupt);
        let error = match catch_unwind(AssertUnwindSafe(|| self.method.run(&ctx))) {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(self.with_token(error)),
            Err(panic) => Some(self.with_token(super::panicked(&*panic))),
        };
        self.complete(error);
    }

    fn complete(&self, error: Option<LroError>) {
        let callbacks = {
            let mut state = self.lock();
            state.done = true;
            state.error = error;
            std::mem::take(&mut state.callbacks)
        };
        self.completed.notify_all();
        for (_, callback) in callbacks {
            run_callback(&self.method, callback);
        }
    }

    fn with_token(&self, error: LroError) -> LroError {
        error.with_token_from(|| self.method.continuation_token())
    }
}

fn run_callback<M>(method: &M, callback: Callback<M>) {
    // A panicking callback must not poison the poller or skip the other callbacks.
    let _ = catch_unwind(AssertUnwindSafe(|| callback(method)));
}

impl<T, M> Drop for LroPoller<T, M>
where
    M: PollingMethod<T>,
{
    fn drop(&mut self) {
        // Stop the polling, but never wait for its thread: it may be inside a request that takes
        // up to the transport's timeout. It holds its own reference to the shared state, sends
        // nothing after this, and is done once its current step is over (running any done
        // callbacks).
        self.shared.interrupt.set();
    }
}

impl<T: 'static, M> fmt::Debug for LroPoller<T, M>
where
    M: PollingMethod<T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LroPoller")
            .field("status", &self.status())
            .field("done", &self.done())
            .finish_non_exhaustive()
    }
}
