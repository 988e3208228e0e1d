//! [`OffThread`]: a blocking [`PollingMethod`] under the async poller, run on a blocking thread
//! that the runtime supplies ([`BlockingThreads`]; `lro_hyper::TokioBlocking` for tokio).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};

use crate::deserialize::Deserializer;
use crate::error::LroError;
use crate::initial::InitialResponse;
use crate::method::{
    AsyncOperation, AsyncPollingMethod, BlockingOperation, PollingMethod, RunContext,
};
use crate::status::Status;
use crate::token::ContinuationToken;
use crate::transport::{
    AsyncHttpClient, AsyncTimer, BoxFuture, HttpClient, Interrupt, SystemTimer, TransportError,
};

/// The blocking threads of an async runtime: where a blocking polling method runs, and how it
/// sends through the async client from there. A transport crate implements it for its runtime.
pub trait BlockingThreads: Send + Sync + 'static {
    /// Runs `job` on a thread where blocking is allowed; the future ends with its result.
    fn run(
        &self,
        job: Box<dyn FnOnce() -> Result<(), LroError> + Send>,
    ) -> BoxFuture<'static, Result<(), LroError>>;

    /// From such a thread, waits for `request` (an async send) to complete.
    fn block_on(
        &self,
        request: BoxFuture<'_, Result<Response<Bytes>, TransportError>>,
    ) -> Result<Response<Bytes>, TransportError>;
}

/// A blocking [`PollingMethod`] usable with the async poller: its loop runs on a blocking thread
/// of the runtime, and its requests go through the async client.
///
/// Waits use the system clock ([`SystemTimer`]), not the async timer. Dropping the future of
/// [`run`](AsyncOperation::run) stops the loop at its next step (a request in flight finishes
/// first, within the transport's timeout); running again continues where it stopped, once the
/// previous loop has let go (two loops never run at once). Under
/// [`AsyncLroPoller`](crate::AsyncLroPoller), whose run is shared and kept for the next waiter,
/// the loop goes on until the operation ends or the poller is dropped.
///
/// Each operation holds one of the runtime's blocking threads while it runs, waits included:
/// keep the number of such operations well below the runtime's blocking-thread limit (tokio:
/// 512, shared with DNS lookups). The method's `initialize` must not send requests.
///
/// ```no_run
/// # fn example<M: lro_core::PollingMethod<()> + 'static, B: lro_core::BlockingThreads>(method: M, threads: B) {
/// use lro_core::OffThread;
/// let method = OffThread::new(method, threads); // e.g. lro_hyper::off_thread(method)
/// # let _ = method; }
/// ```
#[derive(Debug)]
pub struct OffThread<M, B> {
    method: M,
    threads: Arc<B>,
}

impl<M, B> OffThread<M, B> {
    /// `method`, run on `threads`.
    pub fn new(method: M, threads: B) -> Self {
        OffThread { method, threads: Arc::new(threads) }
    }
}

/// The async client, seen as a blocking one from a blocking thread.
struct Bridge<B> {
    client: Arc<dyn AsyncHttpClient>,
    threads: Arc<B>,
}

impl<B: BlockingThreads> HttpClient for Bridge<B> {
    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        self.threads.block_on(self.client.send(request))
    }
}

impl<T, M, B> AsyncPollingMethod<T> for OffThread<M, B>
where
    T: 'static,
    M: PollingMethod<T>,
    B: BlockingThreads,
{
    type Operation = OffThreadOperation<M::Operation, B>;

    fn initialize(
        self,
        client: Arc<dyn AsyncHttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError> {
        self.bridged(client, |method, bridge| method.initialize(bridge, initial, deserializer))
    }

    fn from_continuation_token(
        self,
        client: Arc<dyn AsyncHttpClient>,
        token: &ContinuationToken,
        deserializer: Deserializer<T>,
    ) -> Result<Self::Operation, LroError> {
        self.bridged(client, |method, bridge| {
            method.from_continuation_token(bridge, token, deserializer)
        })
    }
}

impl<M, B: BlockingThreads> OffThread<M, B> {
    /// The blocking method started by `start` with the async client bridged to it.
    fn bridged<O>(
        self,
        client: Arc<dyn AsyncHttpClient>,
        start: impl FnOnce(M, Arc<dyn HttpClient>) -> Result<O, LroError>,
    ) -> Result<OffThreadOperation<O, B>, LroError> {
        let bridge = Arc::new(Bridge { client, threads: Arc::clone(&self.threads) });
        let operation = start(self.method, bridge)?;
        Ok(OffThreadOperation {
            operation: Arc::new(operation),
            threads: self.threads,
            running: Arc::default(),
        })
    }
}

/// The operation of an [`OffThread`] method.
#[derive(Debug)]
pub struct OffThreadOperation<O, B> {
    operation: Arc<O>,
    threads: Arc<B>,
    /// Held by the loop that runs: a new run waits until the previous one has stopped.
    running: Arc<std::sync::Mutex<()>>,
}

/// Sets the interrupt of a run when its future is dropped, so the blocking loop stops.
struct StopOnDrop(Arc<Interrupt>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

#[async_trait::async_trait]
impl<T, O, B> AsyncOperation<T> for OffThreadOperation<O, B>
where
    O: BlockingOperation<T> + 'static,
    B: BlockingThreads,
{
    async fn run(&self, _timer: &dyn AsyncTimer) -> Result<(), LroError> {
        let interrupt = Arc::new(Interrupt::new());
        let _stop = StopOnDrop(Arc::clone(&interrupt));
        let operation = Arc::clone(&self.operation);
        let running = Arc::clone(&self.running);
        let job = Box::new(move || {
            let _running = running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            operation.run(&RunContext::new(&SystemTimer, &interrupt))
        });
        self.threads.run(job).await
    }

    fn status(&self) -> Status {
        self.operation.status()
    }

    fn finished(&self) -> bool {
        self.operation.finished()
    }

    fn resource(&self) -> Result<T, LroError> {
        self.operation.resource()
    }

    fn polls(&self) -> u32 {
        self.operation.polls()
    }

    fn continuation_token(&self) -> Result<ContinuationToken, LroError> {
        self.operation.continuation_token()
    }
}
