//! The two ways `lro` talks to a service — hyper with the async poller, or ureq with the
//! blocking poller on its own thread — behind one interface, and the run itself: poll to the
//! end, a deadline, or a signal (SIGINT/SIGTERM), whichever comes first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use lro_blocking::BlockingClient;
use lro_core::{
    AsyncHttpClient, AsyncLroPoller, BoxFuture, ContinuationToken, Deserializer, HttpClient,
    InitialResponse, LroError, LroPoller, RetryPolicy, Status, StrategyPolling, TransportError,
    TransportErrorKind,
};
use lro_hyper::HyperClient;
use lro_strategies::LroBasePolling;

use crate::Transport;
use crate::output::{FinalBody, Report};
use crate::progress::Progress;
use crate::settings::Settings;

type Method = StrategyPolling<LroBasePolling, FinalBody>;

/// A transport that counts the requests sent through it (the polls; the initial request goes
/// around it).
pub(crate) struct Counting<C> {
    inner: C,
    sent: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl AsyncHttpClient for Counting<HyperClient> {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.send(request).await
    }
}

impl HttpClient for Counting<BlockingClient> {
    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.send(request)
    }
}

/// The HTTP stack chosen with `--transport`.
pub(crate) enum Client {
    Hyper(Arc<Counting<HyperClient>>),
    Blocking(Arc<Counting<BlockingClient>>),
}

/// A running operation, on either poller.
pub(crate) enum Poller {
    Async(AsyncLroPoller<FinalBody, Method>),
    Blocking(Arc<LroPoller<FinalBody, Method>>),
}

fn build_error(error: impl std::error::Error + Send + Sync + 'static) -> LroError {
    LroError::transport(TransportError::new(TransportErrorKind::Connect, error))
}

impl Client {
    pub(crate) fn new(transport: Transport) -> Result<Self, LroError> {
        let sent = Arc::new(AtomicU64::new(0));
        Ok(match transport {
            Transport::Hyper => {
                let inner = HyperClient::new().map_err(build_error)?;
                Client::Hyper(Arc::new(Counting { inner, sent }))
            }
            Transport::Blocking => {
                let inner = BlockingClient::new().map_err(build_error)?;
                Client::Blocking(Arc::new(Counting { inner, sent }))
            }
        })
    }

    /// GET requests sent so far after the initial one.
    pub(crate) fn polls(&self) -> u64 {
        match self {
            Client::Hyper(c) => c.sent.load(Ordering::Relaxed),
            Client::Blocking(c) => c.sent.load(Ordering::Relaxed),
        }
    }

    /// Sends the initial request, retrying it as `retry` allows (idempotent methods only).
    pub(crate) async fn send_initial(
        &self,
        request: Request<Bytes>,
        retry: &RetryPolicy,
    ) -> Result<InitialResponse, LroError> {
        match self {
            Client::Hyper(c) => {
                let timer = lro_hyper::TokioTimer;
                InitialResponse::send_async_with_retry(&c.inner, &timer, request, retry).await
            }
            Client::Blocking(c) => {
                let (client, retry) = (Arc::clone(c), retry.clone());
                tokio::task::spawn_blocking(move || {
                    let timer = lro_core::SystemTimer;
                    InitialResponse::send_with_retry(&client.inner, &timer, request, &retry)
                })
                .await
                .unwrap_or_else(|e| {
                    Err(LroError::stopped(format!("the request thread failed: {e}")))
                })
            }
        }
    }

    /// Starts polling the operation `initial` began.
    pub(crate) fn poller(
        &self,
        initial: InitialResponse,
        method: Method,
        deserializer: Deserializer<FinalBody>,
    ) -> Result<Poller, LroError> {
        Ok(match self {
            Client::Hyper(c) => Poller::Async(AsyncLroPoller::new(
                Arc::clone(c),
                lro_hyper::TokioTimer,
                initial,
                deserializer.clone(),
                method,
            )?),
            Client::Blocking(c) => Poller::Blocking(Arc::new(LroPoller::new(
                Arc::clone(c),
                lro_core::SystemTimer,
                initial,
                deserializer.clone(),
                method,
            )?)),
        })
    }

    /// Resumes polling from `token`.
    pub(crate) fn resume(
        &self,
        token: &ContinuationToken,
        method: Method,
        deserializer: Deserializer<FinalBody>,
    ) -> Result<Poller, LroError> {
        Ok(match self {
            Client::Hyper(c) => Poller::Async(AsyncLroPoller::from_continuation_token(
                method,
                token,
                Arc::clone(c),
                lro_hyper::TokioTimer,
                deserializer.clone(),
            )?),
            Client::Blocking(c) => Poller::Blocking(Arc::new(LroPoller::from_continuation_token(
                method,
                token,
                Arc::clone(c),
                lro_core::SystemTimer,
                deserializer.clone(),
            )?)),
        })
    }
}

impl Poller {
    fn status(&self) -> Status {
        match self {
            Poller::Async(p) => p.status(),
            Poller::Blocking(p) => p.status(),
        }
    }

    fn continuation_token(&self) -> Option<ContinuationToken> {
        match self {
            Poller::Async(p) => p.continuation_token().ok(),
            Poller::Blocking(p) => p.continuation_token().ok(),
        }
    }

    async fn result(&self, timeout: Option<Duration>) -> Result<FinalBody, LroError> {
        match self {
            Poller::Async(p) => p.result(timeout).await,
            Poller::Blocking(p) => {
                let poller = Arc::clone(p);
                tokio::task::spawn_blocking(move || poller.result(timeout)).await.unwrap_or_else(
                    |e| Err(LroError::stopped(format!("the polling thread failed: {e}"))),
                )
            }
        }
    }
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM), with the signal's name.
/// On unix the handlers are installed when this is called, so call it before starting work;
/// elsewhere Ctrl-C is listened for from the first poll on.
pub(crate) fn interrupted() -> BoxFuture<'static, &'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => Box::pin(async move {
                tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                }
            }),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("warning: cannot listen for SIGINT and SIGTERM: {e}");
                Box::pin(std::future::pending())
            }
        }
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        })
    }
}

/// Polls `poller` to its end, the deadline, or `signal`, and reports how it went.
pub(crate) async fn drive(
    poller: &Poller,
    settings: &Settings,
    client: &Client,
    signal: &mut BoxFuture<'static, &'static str>,
    progress: &Progress,
) -> Report {
    let result = tokio::select! {
        result = poller.result(settings.remaining()) => result,
        name = signal => {
            let token = poller.continuation_token();
            // The latest token, once more, and no write after it (a blocking poller's thread
            // may still finish a poll before the process exits).
            progress.freeze(token.as_ref());
            let status = Some(poller.status().to_string());
            return Report::interrupted(name, status, client.polls(), token);
        }
    };
    let status = Some(poller.status().to_string());
    let polls = client.polls();
    match result {
        Ok(body) => Report::succeeded(status, &body, polls),
        Err(error @ LroError::Timeout(_)) => {
            let mut report = Report::failed(&error, status, polls);
            if let (Some(limit), Some(details)) = (settings.timeout, report.error.as_mut()) {
                details.message = format!(
                    "the operation did not finish within --timeout {limit:?}; it is still running on the service"
                );
            }
            report
        }
        Err(error) => Report::failed(&error, status, polls),
    }
}
