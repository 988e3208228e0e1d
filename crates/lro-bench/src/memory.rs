//! Heap per idle poller (issue #10): pollers that have had their first answer and wait out a
//! day-long `retry-after-ms`, counted by the global allocator of this process. The service runs
//! in a process of its own, so only the client's heap is counted. Pollers start one after the
//! other, so that they share one pooled connection: what is counted is what each poller
//! retains, not the transport's pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use lro_core::{
    AsyncLroPoller, AsyncTimer, BoxFuture, InitialResponse, Interrupt, LroPoller, SystemTimer,
    Timer, deserialize,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_strategies::LroBasePolling;

use crate::{BenchError, Measure};

/// The target of issue #10 for an idle async poller, bytes.
const TARGET: f64 = 2048.0;

/// The size of the large response header: 60 KB.
const LARGE_HEADER: usize = 60 * 1024;

/// The wait the service asks for, and the longest the pollers accept: no poller may wake up
/// before the heap is counted, however slow the build or the machine. (With 30 s, the debug
/// build's early pollers of ten thousand woke, ended and kept their 60 KB results.)
const IDLE: Duration = Duration::from_secs(24 * 3600);

fn method() -> lro_core::StrategyPolling<LroBasePolling, Bytes> {
    LroBasePolling::builder().interval(Duration::ZERO).poll_options(|o| o.max_delay(IDLE)).build()
}

fn start(url: &str, pad: usize) -> Result<Request<Bytes>, BenchError> {
    let wait = IDLE.as_millis();
    Ok(Request::put(format!("{url}/start?polls=2&retry_after_ms={wait}&pad={pad}"))
        .body(Bytes::new())?)
}

/// Fails unless all `n` pollers are still waiting: an ended one keeps its result, which is not
/// what an idle poller costs.
fn all_idle(n: usize, done: usize) -> Result<(), BenchError> {
    if done == 0 {
        return Ok(());
    }
    Err(BenchError(format!("{done} of {n} pollers had ended when the heap was counted")))
}

/// Runs the memory benchmarks against the service at `url`.
pub(crate) fn run(url: &str, heap: &dyn Fn() -> isize) -> Result<Vec<Measure>, BenchError> {
    let mut measures = Vec::new();
    for (pad, async_name, blocking_name) in [
        (0, "heap_idle_async_poller_small_headers", "heap_idle_blocking_poller_small_headers"),
        (
            LARGE_HEADER,
            "heap_idle_async_poller_60kb_header",
            "heap_idle_blocking_poller_60kb_header",
        ),
    ] {
        // Ten thousand: the pooled connection's read buffer (one for all, a few hundred KB
        // with 60 KB headers) weighed hundreds of bytes per poller over a thousand.
        let bytes = idle_async(url, pad, 10_000, heap)?;
        measures.push(
            Measure::new(async_name, "heap_bytes_per_idle_poller", bytes).at_most("target", TARGET),
        );
        let bytes = idle_blocking(url, pad, 100, heap)?;
        measures.push(
            Measure::new(blocking_name, "heap_bytes_per_idle_poller", bytes)
                .at_most("target", TARGET),
        );
    }
    Ok(measures)
}

#[allow(clippy::cast_precision_loss)] // figures for a report
fn per(total: isize, n: usize) -> f64 {
    total as f64 / n as f64
}

/// `n` idle `AsyncLroPoller`s, each awaited by a task of its own.
fn idle_async(
    url: &str,
    pad: usize,
    n: usize,
    heap: &dyn Fn() -> isize,
) -> Result<f64, BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = Arc::new(HyperClient::new().map_err(|e| BenchError(e.to_string()))?);
        // Warm-up: the pooled connection (its buffers grown to the responses' headers), the
        // runtime's timer wheel, first-use allocations.
        let warm = Request::put(format!("{url}/start?polls=1&pad={pad}")).body(Bytes::new())?;
        let initial = InitialResponse::send_async(&*client, warm).await?;
        AsyncLroPoller::new(
            Arc::clone(&client),
            TokioTimer,
            initial,
            deserialize::bytes(),
            method(),
        )?
        .result(None)
        .await?;
        let mut pollers = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        WAITS.store(0, Ordering::SeqCst);
        let before = heap();
        for _ in 0..n {
            let initial = InitialResponse::send_async(&*client, start(url, pad)?).await?;
            let poller = Arc::new(AsyncLroPoller::new(
                Arc::clone(&client),
                CountingTimer,
                initial,
                deserialize::bytes(),
                method(),
            )?);
            let waiter = Arc::clone(&poller);
            tasks.push(tokio::spawn(async move { waiter.result(None).await }));
            while poller.polling_method().polls() == 0 {
                tokio::task::yield_now().await;
            }
            pollers.push(poller);
        }
        // Every poller has its first answer; each task may still be taking it in. (The tasks run
        // on this thread: when this one runs, each of them has yielded.)
        let started = Instant::now();
        while !all_waiting(n, started)? {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let idle = heap() - before;
        // A task that ended outside the engine (a panic) counts as ended too.
        let ended = pollers.iter().zip(&tasks).filter(|(p, t)| p.done() || t.is_finished());
        all_idle(n, ended.count())?;
        for task in &tasks {
            task.abort();
        }
        Ok(per(idle, n))
    })
}

/// The system's time (the runtime's, for an async poller), counting the idle waits begun (the
/// service's day). A poller waits only once it has taken its answer in (the response dropped):
/// `n` idle waits begun mean `n` idle pollers, however slowly their threads or tasks run on a
/// loaded machine. Zero-sized, like `SystemTimer` and `TokioTimer`, so that the pollers weigh
/// what they weigh with them: the count is in [`WAITS`].
struct CountingTimer;

/// The idle waits [`CountingTimer`]s began (one measurement at a time).
static WAITS: AtomicUsize = AtomicUsize::new(0);

/// Counts a wait of `duration` if it is the idle one: a retry's backoff (after a transport
/// error, a 5xx, a 429) comes while the poller is not idle yet.
fn count(duration: Duration) {
    if duration >= IDLE / 2 {
        WAITS.fetch_add(1, Ordering::SeqCst);
    }
}

impl Timer for CountingTimer {
    fn sleep(&self, duration: Duration, interrupt: &Interrupt) {
        count(duration);
        SystemTimer.sleep(duration, interrupt);
    }
}

impl AsyncTimer for CountingTimer {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        // Counted once the future (and whatever it holds) exists.
        let sleep = TokioTimer.sleep(duration);
        count(duration);
        sleep
    }
}

/// Whether all `n` pollers have begun their idle wait; an error once a minute has gone by since
/// `started` without it.
fn all_waiting(n: usize, started: Instant) -> Result<bool, BenchError> {
    let waiting = WAITS.load(Ordering::SeqCst);
    if waiting < n && started.elapsed() > Duration::from_secs(60) {
        return Err(BenchError(format!("{waiting} of {n} pollers began their wait in a minute")));
    }
    Ok(waiting >= n)
}

/// `n` idle `LroPoller`s (a polling thread each).
fn idle_blocking(
    url: &str,
    pad: usize,
    n: usize,
    heap: &dyn Fn() -> isize,
) -> Result<f64, BenchError> {
    let client = Arc::new(lro_blocking::BlockingClient::new()?);
    let warm = Request::put(format!("{url}/start?polls=1&pad={pad}")).body(Bytes::new())?;
    let initial = InitialResponse::send(&*client, warm)?;
    LroPoller::new(Arc::clone(&client), SystemTimer, initial, deserialize::bytes(), method())?
        .result(None)?;
    let mut pollers = Vec::with_capacity(n);
    WAITS.store(0, Ordering::SeqCst);
    let before = heap();
    for _ in 0..n {
        let initial = InitialResponse::send(&*client, start(url, pad)?)?;
        let poller = LroPoller::new(
            Arc::clone(&client),
            CountingTimer,
            initial,
            deserialize::bytes(),
            method(),
        )?;
        while poller.polling_method().polls() == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
        pollers.push(poller);
    }
    // Every poller has its first answer; each thread may still be taking it in.
    let started = Instant::now();
    while !all_waiting(n, started)? {
        std::thread::sleep(Duration::from_millis(1));
    }
    let idle = heap() - before;
    all_idle(n, pollers.iter().filter(|p| p.done()).count())?;
    drop(pollers);
    Ok(per(idle, n))
}
