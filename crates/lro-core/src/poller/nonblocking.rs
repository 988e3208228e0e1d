//! [`AsyncLroPoller`]: the async poller (azure-core's `AsyncLROPoller`), runtime-agnostic.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use super::shared_run::{Run, SharedRun, WaiterId};
use crate::deserialize::Deserializer;
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::method::{AsyncOperation, AsyncPollingMethod};
use crate::status::Status;
use crate::token::ContinuationToken;
use crate::transport::{AsyncHttpClient, AsyncTimer, BoxFuture};

/// Drives a long-running operation from the task that awaits it.
///
/// No thread and no spawned task: polling happens while the poller (or its
/// [`progress`](AsyncLroPoller::progress) stream) is awaited, and pauses when the future is
/// dropped. Awaiting again continues where it stopped. (A blocking method run through
/// [`OffThread`](crate::OffThread) is the exception: its loop runs on a blocking thread until the
/// operation ends or the poller is dropped.) Once the run ended, its outcome is kept: awaiting
/// again returns it.
///
/// The poller may be shared by several tasks (`&self` methods): they all await one run of the
/// polling method, so no request is sent twice and all get the same outcome; whichever of them
/// is polled drives it. A run interrupted by a timeout or a dropped future is not lost: the
/// next `await` (from any task, or the [`progress`](AsyncLroPoller::progress) stream) continues
/// it, the request in flight included.
///
/// ```
/// # async fn example() -> Result<(), lro_core::LroError> {
/// use std::sync::Arc;
/// use lro_core::test_util::{ScriptedTransport, json_response, WithHeader, OperationLocationStrategy};
/// use lro_core::{deserialize, AsyncLroPoller, InitialResponse, StrategyPolling};
///
/// let transport = Arc::new(ScriptedTransport::new());
/// transport.push_get("http://svc/op", json_response(200, r#"{"status":"Succeeded","id":7}"#));
/// let initial = InitialResponse::new(
///     ScriptedTransport::request_head("POST", "http://svc/jobs"),
///     json_response(202, "").with_header("operation-location", "http://svc/op"),
/// );
/// let method = StrategyPolling::new(OperationLocationStrategy::default());
/// let poller = AsyncLroPoller::new(transport.clone(),transport, initial, deserialize::json::<serde_json::Value>(), method)?;
/// let job = poller.await?;
/// assert_eq!(job["id"], 7);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(example()).unwrap();
/// ```
pub struct AsyncLroPoller<T, M>
where
    M: AsyncPollingMethod<T>,
{
    method: Arc<M::Operation>,
    timer: Arc<dyn AsyncTimer>,
    /// The one run of the method, shared by every waiter; started on the first await.
    run: SharedRun,
    _resource: PhantomData<fn() -> T>,
}

impl<T: 'static, M> AsyncLroPoller<T, M>
where
    M: AsyncPollingMethod<T>,
{
    /// Initializes `method` with the initial response. Nothing is sent until the poller is
    /// awaited.
    ///
    /// `client` sends the polls; `timer` tells the time and sleeps on the caller's runtime
    /// (`lro_hyper::TokioTimer` for tokio).
    pub fn new<C>(
        client: Arc<C>,
        timer: impl AsyncTimer + 'static,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
        method: M,
    ) -> Result<Self, LroError>
    where
        C: AsyncHttpClient + 'static,
    {
        let operation = method.initialize(client, initial, deserializer)?;
        Ok(Self::assemble(operation, Arc::new(timer)))
    }

    /// Rebuilds a poller from a continuation token.
    pub fn from_continuation_token<C>(
        method: M,
        token: &ContinuationToken,
        client: Arc<C>,
        timer: impl AsyncTimer + 'static,
        deserializer: Deserializer<T>,
    ) -> Result<Self, LroError>
    where
        C: AsyncHttpClient + 'static,
        M: Sized,
    {
        let operation = method.from_continuation_token(client, token, deserializer)?;
        Ok(Self::assemble(operation, Arc::new(timer)))
    }

    fn assemble(method: M::Operation, timer: Arc<dyn AsyncTimer>) -> Self {
        AsyncLroPoller {
            method: Arc::new(method),
            timer,
            run: SharedRun::default(),
            _resource: PhantomData,
        }
    }

    /// A waiter on the shared run of the method.
    fn shared_run(&self) -> Waiter<'_, T, M> {
        Waiter { poller: self, id: 0 }
    }

    /// The run of the method (made on the first await).
    fn start(&self) -> Run {
        Arc::clone(&self.method).run_owned(Arc::clone(&self.timer))
    }

    /// Polls until the operation ends (at most `timeout`, measured by the timer), then returns
    /// the resource.
    pub async fn result(&self, timeout: Option<Duration>) -> Result<T, LroError> {
        self.wait(timeout).await?;
        self.method.resource().map_err(|e| self.with_token(e))
    }

    /// Polls until the operation ends (at most `timeout`, measured by the timer).
    ///
    /// When `timeout` runs out, polling pauses and [`LroError::Timeout`] is returned with a
    /// continuation token; calling `wait` or `result` again continues.
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<(), LroError> {
        let outcome = match timeout {
            None => self.shared_run().await,
            Some(limit) => {
                match (Race { work: self.shared_run(), deadline: self.timer.sleep(limit) }).await {
                    Some(outcome) => outcome,
                    None => Err(LroError::timeout(
                        format!(
                            "the operation did not finish within {limit:?}; await it again to continue"
                        ),
                        Some(limit),
                        self.method.polls(),
                    )),
                }
            }
        };
        outcome.map_err(|e| self.with_token(e))
    }

    /// Whether polling is over.
    pub fn done(&self) -> bool {
        self.method.finished()
    }

    /// The latest status, as the service spelled it.
    pub fn status(&self) -> Status {
        self.method.status()
    }

    /// The operation the polling method became.
    pub fn polling_method(&self) -> &M::Operation {
        &self.method
    }

    /// A token to resume the operation, here or in another process.
    pub fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        self.method.continuation_token()
    }

    /// A stream of status updates that drives polling: the current status first, then each
    /// change, then the end (or one error). Read the result afterwards with
    /// [`result`](AsyncLroPoller::result), which does not poll again once polling is over.
    pub fn progress(&self) -> Progress<'_, T, M> {
        Progress { run: Some(self.shared_run()), last: None }
    }

    fn with_token(&self, error: LroError) -> LroError {
        error.with_token_from(|| self.method.continuation_token())
    }
}

impl<T: Send + 'static, M> IntoFuture for AsyncLroPoller<T, M>
where
    M: AsyncPollingMethod<T> + 'static,
{
    type Output = Result<T, LroError>;
    type IntoFuture = BoxFuture<'static, Result<T, LroError>>;

    /// As [`result(None)`](AsyncLroPoller::result). The poller is consumed, so no other waiter
    /// can be left: the run is awaited directly, without the sharing `result` goes through
    /// (two locks and a waker check on every wake-up).
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let outcome = match self.run.take(|| self.start()) {
                Ok(run) => run.await,
                Err(ended) => ended,
            };
            outcome.map_err(|e| self.with_token(e))?;
            self.method.resource().map_err(|e| self.with_token(e))
        })
    }
}

/// Builds an [`AsyncLroPoller`] and awaits its result: the seed's convenience.
pub async fn async_poller<T, M, C>(
    client: Arc<C>,
    timer: impl AsyncTimer + 'static,
    initial: InitialResponse,
    deserializer: Deserializer<T>,
    method: M,
) -> Result<T, LroError>
where
    T: Send + 'static,
    M: AsyncPollingMethod<T> + 'static,
    C: AsyncHttpClient + 'static,
{
    AsyncLroPoller::new(client, timer, initial, deserializer, method)?.await
}

/// Status updates of an operation, from [`AsyncLroPoller::progress`].
pub struct Progress<'a, T, M>
where
    M: AsyncPollingMethod<T>,
{
    run: Option<Waiter<'a, T, M>>,
    last: Option<Status>,
}

impl<T: 'static, M: AsyncPollingMethod<T>> Progress<'_, T, M> {
    fn changed(&mut self, method: &M::Operation) -> Option<Status> {
        let status = method.status();
        if self.last.as_ref() == Some(&status) {
            return None;
        }
        self.last = Some(status.clone());
        Some(status)
    }
}

impl<T: 'static, M: AsyncPollingMethod<T>> Stream for Progress<'_, T, M> {
    type Item = Result<Status, LroError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(run) = this.run.as_mut() else {
            return Poll::Ready(None);
        };
        let poller = run.poller;
        if this.last.is_none() {
            return Poll::Ready(this.changed(&poller.method).map(Ok));
        }
        match Pin::new(run).poll(cx) {
            Poll::Ready(Ok(())) => {
                this.run = None;
                Poll::Ready(this.changed(&poller.method).map(Ok))
            }
            Poll::Ready(Err(error)) => {
                this.run = None;
                Poll::Ready(Some(Err(poller.with_token(error))))
            }
            Poll::Pending => match this.changed(&poller.method) {
                Some(status) => Poll::Ready(Some(Ok(status))),
                None => Poll::Pending,
            },
        }
    }
}

impl<T, M> fmt::Debug for Progress<'_, T, M>
where
    M: AsyncPollingMethod<T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("last", &self.last)
            .field("running", &self.run.is_some())
            .finish()
    }
}

impl<T, M> fmt::Debug for AsyncLroPoller<T, M>
where
    M: AsyncPollingMethod<T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncLroPoller")
            .field("status", &self.method.status())
            .field("done", &self.method.finished())
            .finish_non_exhaustive()
    }
}

/// One waiter on the poller's shared run: drives it when polled, and gets its outcome.
struct Waiter<'a, T, M>
where
    M: AsyncPollingMethod<T>,
{
    poller: &'a AsyncLroPoller<T, M>,
    id: WaiterId,
}

impl<T: 'static, M: AsyncPollingMethod<T>> Future for Waiter<'_, T, M> {
    type Output = Result<(), LroError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let poller = this.poller;
        poller.run.poll(&mut this.id, cx, || poller.start())
    }
}

impl<T, M: AsyncPollingMethod<T>> Drop for Waiter<'_, T, M> {
    fn drop(&mut self) {
        self.poller.run.leave(self.id);
    }
}

/// Polls `work` first, then `deadline`; `None` if the deadline came first.
struct Race<W> {
    work: W,
    deadline: BoxFuture<'static, ()>,
}

impl<W: Future + Unpin> Future for Race<W> {
    type Output = Option<W::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(output) = Pin::new(&mut self.work).poll(cx) {
            return Poll::Ready(Some(output));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
