//! The clients of the CPU benchmark (issue #10): one operation against the status monitor
//! (`PUT /start?polls=N`, `N` zero-wait polls, the final GET), driven by each stack in turn.
//! `lro-bench client KIND` runs one of them in a process of its own and prints what it cost.
//!
//! The raw loops are the controls: what a hand-written loop costs on the same HTTP stack, with
//! the same work per response (read the body, parse the status).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use lro_core::{
    Action, AsyncHttpClient, AsyncLroPoller, AsyncTimer, BoxFuture, Engine, InitialResponse,
    Interrupt, LroPoller, SystemTimer, Timer, Timestamp, deserialize,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_strategies::LroBasePolling;
use serde::Deserialize;

use crate::BenchError;

/// The stacks measured, by their stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A hand-written hyper-util loop on a current-thread runtime (control).
    RawHyperCurrentThread,
    /// The same loop on a multi-thread runtime (control).
    RawHyperMultiThread,
    /// A hand-written ureq loop (control).
    RawUreq,
    /// `AsyncLroPoller` over `HyperClient`, current-thread runtime.
    AsyncPollerCurrentThread,
    /// `AsyncLroPoller` over `HyperClient`, multi-thread runtime.
    AsyncPollerMultiThread,
    /// `LroPoller` over `BlockingClient`.
    BlockingPoller,
    /// The sans-IO engine driven by hand over `HyperClient`, current-thread runtime.
    EngineByHand,
    /// The control's loop over `HyperClient` (lro-hyper) instead of hyper-util: what the
    /// transport costs without the engine.
    TransportHyper,
    /// The control's loop over `BlockingClient` (lro-blocking) instead of ureq.
    TransportBlocking,
}

impl Kind {
    pub(crate) const ALL: [Kind; 9] = [
        Kind::RawHyperCurrentThread,
        Kind::RawHyperMultiThread,
        Kind::RawUreq,
        Kind::AsyncPollerCurrentThread,
        Kind::AsyncPollerMultiThread,
        Kind::BlockingPoller,
        Kind::EngineByHand,
        Kind::TransportHyper,
        Kind::TransportBlocking,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::RawHyperCurrentThread => "raw_hyper_current_thread",
            Kind::RawHyperMultiThread => "raw_hyper_multi_thread",
            Kind::RawUreq => "raw_ureq",
            Kind::AsyncPollerCurrentThread => "async_poller_current_thread",
            Kind::AsyncPollerMultiThread => "async_poller_multi_thread",
            Kind::BlockingPoller => "blocking_poller",
            Kind::EngineByHand => "engine_by_hand_hyper",
            Kind::TransportHyper => "transport_alone_hyper",
            Kind::TransportBlocking => "transport_alone_blocking",
        }
    }

    /// The control this stack is compared with (`None` for a control).
    pub(crate) fn control(self) -> Option<Kind> {
        match self {
            Kind::RawHyperCurrentThread | Kind::RawHyperMultiThread | Kind::RawUreq => None,
            Kind::AsyncPollerCurrentThread | Kind::EngineByHand | Kind::TransportHyper => {
                Some(Kind::RawHyperCurrentThread)
            }
            Kind::AsyncPollerMultiThread => Some(Kind::RawHyperMultiThread),
            Kind::BlockingPoller | Kind::TransportBlocking => Some(Kind::RawUreq),
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the stack waits through a timer of ours (whose calls are counted).
    pub(crate) fn has_timer(self) -> bool {
        matches!(
            self,
            Kind::AsyncPollerCurrentThread | Kind::AsyncPollerMultiThread | Kind::BlockingPoller
        )
    }
}

/// What one measured operation cost the client process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    /// CPU time (user + system) of the whole process during the operation.
    pub(crate) cpu: Duration,
    /// Calls to the poller's timer (`sleep`).
    pub(crate) timer_calls: u64,
    /// Requests the service answered for the operation.
    pub(crate) requests: u64,
}

/// CPU time (user + system) of this process so far.
pub(crate) fn cpu_time() -> Result<Duration, BenchError> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// Runs a warm-up operation, then measures one of `polls` polls; the service counts the
/// requests.
pub(crate) fn measure(kind: Kind, url: &str, polls: u32) -> Result<Cost, BenchError> {
    let stack = Stack::new(kind)?;
    stack.operation(url, warm_up_polls(polls))?;
    stack.counted(url, polls)
}

/// The polls of the operation [`measure`] runs to warm up before the measured one of `polls`.
pub(crate) fn warm_up_polls(polls: u32) -> u32 {
    polls.clamp(1, 500)
}

/// One stack, built once (its runtime and its client) and run for operation after operation,
/// as a program keeps its client.
pub(crate) struct Stack {
    runtime: Option<tokio::runtime::Runtime>,
    client: StackClient,
}

#[allow(clippy::large_enum_variant)] // one per stack, built once
enum StackClient {
    RawHyper(RawHyper),
    RawUreq(ureq::Agent),
    AsyncPoller(Arc<HyperClient>, Counting<TokioTimer>),
    BlockingPoller(Arc<lro_blocking::BlockingClient>, Counting<SystemTimer>),
    EngineByHand(HyperClient),
    TransportHyper(HyperClient),
    TransportBlocking(lro_blocking::BlockingClient),
}

impl Stack {
    /// The stack of `kind`, with a runtime of its own where it runs on one.
    pub(crate) fn new(kind: Kind) -> Result<Self, BenchError> {
        let runtime = |multi_thread| runtime(multi_thread).map(Some).map_err(BenchError::from);
        Ok(match kind {
            Kind::RawHyperCurrentThread | Kind::RawHyperMultiThread => {
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<Full<Bytes>>();
                Stack {
                    runtime: runtime(kind == Kind::RawHyperMultiThread)?,
                    client: StackClient::RawHyper(client),
                }
            }
            Kind::RawUreq => {
                let agent: ureq::Agent =
                    ureq::Agent::config_builder().http_status_as_error(false).build().into();
                Stack { runtime: None, client: StackClient::RawUreq(agent) }
            }
            Kind::AsyncPollerCurrentThread | Kind::AsyncPollerMultiThread => Stack {
                runtime: runtime(kind == Kind::AsyncPollerMultiThread)?,
                client: StackClient::AsyncPoller(
                    Arc::new(hyper_client()?),
                    Counting::new(TokioTimer),
                ),
            },
            Kind::BlockingPoller => Stack {
                runtime: None,
                client: StackClient::BlockingPoller(
                    Arc::new(lro_blocking::BlockingClient::new()?),
                    Counting::new(SystemTimer),
                ),
            },
            Kind::EngineByHand => Stack {
                runtime: runtime(false)?,
                client: StackClient::EngineByHand(hyper_client()?),
            },
            Kind::TransportHyper => Stack {
                runtime: runtime(false)?,
                client: StackClient::TransportHyper(hyper_client()?),
            },
            Kind::TransportBlocking => Stack {
                runtime: None,
                client: StackClient::TransportBlocking(lro_blocking::BlockingClient::new()?),
            },
        })
    }

    /// Runs one operation of `polls` polls: the CPU time it cost this process, and the calls
    /// to the poller's timer (the requests are left to [`Stack::counted`]).
    pub(crate) fn operation(&self, url: &str, polls: u32) -> Result<Cost, BenchError> {
        let calls_before = self.timer_calls();
        let before = cpu_time()?;
        match (&self.client, &self.runtime) {
            (StackClient::RawUreq(agent), _) => raw_ureq(agent, url, polls)?,
            (StackClient::BlockingPoller(client, timer), _) => {
                blocking_poller(client, timer, url, polls)?;
            }
            (StackClient::TransportBlocking(client), _) => transport_blocking(client, url, polls)?,
            (client, Some(runtime)) => runtime.block_on(async {
                match client {
                    StackClient::RawHyper(client) => raw_hyper(client, url, polls).await,
                    StackClient::AsyncPoller(client, timer) => {
                        async_poller(client, timer, url, polls).await
                    }
                    StackClient::EngineByHand(client) => engine_by_hand(client, url, polls).await,
                    StackClient::TransportHyper(client) => {
                        transport_hyper(client, url, polls).await
                    }
                    StackClient::RawUreq(_)
                    | StackClient::BlockingPoller(..)
                    | StackClient::TransportBlocking(_) => Ok(()),
                }
            })?,
            (_, None) => return Err(BenchError("an async stack without its runtime".into())),
        }
        let cpu = cpu_time()? - before;
        Ok(Cost { cpu, timer_calls: self.timer_calls() - calls_before, requests: 0 })
    }

    /// As [`Stack::operation`], with the requests the service answered for it.
    pub(crate) fn counted(&self, url: &str, polls: u32) -> Result<Cost, BenchError> {
        let before = crate::monitor::requests(url)?;
        let mut cost = self.operation(url, polls)?;
        cost.requests = crate::monitor::requests(url)?.saturating_sub(before);
        Ok(cost)
    }

    fn timer_calls(&self) -> u64 {
        match &self.client {
            StackClient::AsyncPoller(_, timer) => timer.calls(),
            StackClient::BlockingPoller(_, timer) => timer.calls(),
            _ => 0,
        }
    }
}

fn runtime(multi_thread: bool) -> std::io::Result<tokio::runtime::Runtime> {
    if multi_thread {
        // Two workers whatever the affinity: the same for the control and for the poller.
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    }
}

fn hyper_client() -> Result<HyperClient, BenchError> {
    HyperClient::new().map_err(|e| BenchError(e.to_string()))
}

fn start_url(url: &str, polls: u32) -> String {
    format!("{url}/start?polls={polls}")
}

/// The status document of the monitor.
#[derive(Deserialize)]
struct StatusBody<'a> {
    status: &'a str,
}

fn finished(body: &[u8]) -> Result<bool, BenchError> {
    let status: StatusBody<'_> = serde_json::from_slice(body)?;
    match status.status {
        "Succeeded" => Ok(true),
        "Running" | "InProgress" | "NotStarted" => Ok(false),
        other => Err(BenchError(format!("the operation ended {other}"))),
    }
}

type RawHyper = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// The monitor's URL from the initial response (both controls read it alike).
fn monitor_url(headers: &http::HeaderMap) -> Result<String, BenchError> {
    headers
        .get("operation-location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| BenchError("no Operation-Location".into()))
}

/// The control loop on hyper: PUT, poll Operation-Location until `Succeeded`, GET the result.
async fn raw_hyper(client: &RawHyper, url: &str, polls: u32) -> Result<(), BenchError> {
    let start = start_url(url, polls);
    let request = Request::put(&start).body(Full::new(Bytes::new()))?;
    let response = client.request(request).await?;
    let monitor = monitor_url(response.headers())?;
    response.into_body().collect().await?;
    loop {
        let request = Request::get(&monitor).body(Full::new(Bytes::new()))?;
        let body = client.request(request).await?.into_body().collect().await?.to_bytes();
        if finished(&body)? {
            break;
        }
    }
    let request = Request::get(&start).body(Full::new(Bytes::new()))?;
    client.request(request).await?.into_body().collect().await?;
    Ok(())
}

/// The control loop on ureq.
fn raw_ureq(agent: &ureq::Agent, url: &str, polls: u32) -> Result<(), BenchError> {
    let start = start_url(url, polls);
    let mut response = agent.put(&start).send_empty()?;
    let monitor = monitor_url(response.headers())?;
    response.body_mut().read_to_vec()?;
    loop {
        let body = agent.get(&monitor).call()?.body_mut().read_to_vec()?;
        if finished(&body)? {
            break;
        }
    }
    agent.get(&start).call()?.body_mut().read_to_vec()?;
    Ok(())
}

fn method() -> lro_core::StrategyPolling<LroBasePolling, Bytes> {
    LroBasePolling::builder().interval(Duration::ZERO).build()
}

async fn async_poller(
    client: &Arc<HyperClient>,
    timer: &Counting<TokioTimer>,
    url: &str,
    polls: u32,
) -> Result<(), BenchError> {
    let request = Request::put(start_url(url, polls)).body(Bytes::new())?;
    let initial = InitialResponse::send_async(&**client, request).await?;
    // Awaited as the README shows (`AsyncLroPoller::new(..)?.await`).
    let poller = AsyncLroPoller::new(
        Arc::clone(client),
        timer.clone(),
        initial,
        deserialize::bytes(),
        method(),
    )?;
    poller.await?;
    Ok(())
}

fn blocking_poller(
    client: &Arc<lro_blocking::BlockingClient>,
    timer: &Counting<SystemTimer>,
    url: &str,
    polls: u32,
) -> Result<(), BenchError> {
    let request = Request::put(start_url(url, polls)).body(Bytes::new())?;
    let initial = InitialResponse::send(&**client, request)?;
    let poller =
        LroPoller::new(Arc::clone(client), timer.clone(), initial, deserialize::bytes(), method())?;
    poller.result(None)?;
    Ok(())
}

/// The engine in a hand-written loop over our hyper transport: the poller's cost taken away.
async fn engine_by_hand(client: &HyperClient, url: &str, polls: u32) -> Result<(), BenchError> {
    let request = Request::put(start_url(url, polls)).body(Bytes::new())?;
    let initial = InitialResponse::send_async(client, request).await?;
    let (strategy, options) = LroBasePolling::builder().interval(Duration::ZERO).into_parts();
    let mut engine = Engine::start(strategy, options, initial)?;
    loop {
        match engine.poll(TokioTimer.now()) {
            Action::SendRequest(request) => match client.send(request).await {
                Ok(response) => engine.handle_response(TokioTimer.now(), response),
                Err(error) => engine.handle_transport_error(TokioTimer.now(), error),
            },
            Action::Wait(delay) => tokio::time::sleep(delay).await,
            Action::Done => break,
        }
    }
    engine.outcome().map_err(|e| BenchError(e.chain().to_string()))?;
    Ok(())
}

/// The control's loop over lro-hyper's transport: what `HyperClient` costs beyond hyper-util.
async fn transport_hyper(client: &HyperClient, url: &str, polls: u32) -> Result<(), BenchError> {
    let start = start_url(url, polls);
    let response = client.send(Request::put(&start).body(Bytes::new())?).await?;
    let monitor = monitor_url(response.headers())?;
    loop {
        let response = client.send(Request::get(&monitor).body(Bytes::new())?).await?;
        if finished(response.body())? {
            break;
        }
    }
    client.send(Request::get(&start).body(Bytes::new())?).await?;
    Ok(())
}

/// The control's loop over lro-blocking's transport: what `BlockingClient` costs beyond ureq.
fn transport_blocking(
    client: &lro_blocking::BlockingClient,
    url: &str,
    polls: u32,
) -> Result<(), BenchError> {
    use lro_core::HttpClient;
    let start = start_url(url, polls);
    let response = client.send(Request::put(&start).body(Bytes::new())?)?;
    let monitor = monitor_url(response.headers())?;
    loop {
        let response = client.send(Request::get(&monitor).body(Bytes::new())?)?;
        if finished(response.body())? {
            break;
        }
    }
    client.send(Request::get(&start).body(Bytes::new())?)?;
    Ok(())
}

/// A timer that counts its sleeps.
#[derive(Debug, Clone)]
pub(crate) struct Counting<T> {
    inner: T,
    calls: Arc<AtomicU64>,
}

impl<T> Counting<T> {
    pub(crate) fn new(inner: T) -> Self {
        Counting { inner, calls: Arc::new(AtomicU64::new(0)) }
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl<T: Timer> Timer for Counting<T> {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration, interrupt: &Interrupt) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.sleep(duration, interrupt);
    }
}

impl<T: AsyncTimer> AsyncTimer for Counting<T> {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.sleep(duration)
    }
}

/// An `AsyncLroPoller` operation whose service asks for waits: `polls` polls, each `Running`
/// answer with `retry-after-ms: wait_ms`. Runs in this process; the service counts requests.
pub(crate) fn with_retry_after(url: &str, polls: u32, wait_ms: u64) -> Result<Cost, BenchError> {
    let runtime = runtime(false)?;
    runtime.block_on(async {
        let client = Arc::new(hyper_client()?);
        let timer = Counting::new(TokioTimer);
        let before = crate::monitor::requests(url)?;
        let started = cpu_time()?;
        let request = Request::put(format!("{url}/start?polls={polls}&retry_after_ms={wait_ms}"))
            .body(Bytes::new())?;
        let initial = InitialResponse::send_async(&*client, request).await?;
        AsyncLroPoller::new(
            Arc::clone(&client),
            timer.clone(),
            initial,
            deserialize::bytes(),
            method(),
        )?
        .result(None)
        .await?;
        let cpu = cpu_time()? - started;
        let requests = crate::monitor::requests(url)? - before;
        Ok(Cost { cpu, timer_calls: timer.calls(), requests })
    })
}
