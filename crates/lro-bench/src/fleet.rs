//! The fleet benchmark (issue #9): `n` operations on one current-thread runtime, one
//! `FleetStream`, against the loopback server. Each operation polls twice: `Running` with a
//! `retry-after-ms` wait, then `Succeeded`; so 2 requests per operation is the minimum.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use http::{HeaderMap, Method, Response};
use lro_core::{Engine, FleetOptions, FleetStream, InitialResponse, RequestHead, deserialize};
use lro_hyper::{HyperClient, TokioTimer};
use lro_strategies::LroBasePolling;

use crate::server;
use crate::{BenchError, Measure};

/// In-flight requests (and so connections) per origin.
pub(crate) const CAP: usize = 64;

/// The fleet's budget, requests per second: below what client and server manage together on
/// loopback (about 41,000 a second on the 2-core machine: see `docs/performance.md`), so that
/// the second polls, which come due at this pace, are under budget and their lateness is the
/// scheduler's own.
pub(crate) const RATE: f64 = 20_000.0;

/// Runs the benchmark with `n` operations that wait `wait` between their two polls, under a
/// budget of `rate` requests per second.
pub(crate) fn run(
    n: usize,
    wait: Duration,
    rate: f64,
    heap: &dyn Fn() -> isize,
) -> Result<Vec<Measure>, BenchError> {
    let server = server::start(n, wait)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = Arc::new(
        HyperClient::builder()
            .pool_max_idle_per_host(CAP)
            .max_connections_per_host(Some(CAP))
            .build()
            .map_err(|e| BenchError(e.to_string()))?,
    );
    let options = FleetOptions::builder()
        .rate(rate)
        .burst(u32::try_from(CAP).unwrap_or(u32::MAX))
        .max_in_flight_per_origin(CAP)
        .build();
    let running = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&running);
    let (fleet, handle) = FleetStream::<usize, LroBasePolling, Bytes>::new(
        client,
        TokioTimer,
        deserialize::bytes(),
        options,
    );
    let mut fleet = fleet.on_status_change(move |_, _| {
        seen.fetch_add(1, Ordering::Relaxed);
    });
    let origin = format!("http://{}", server.addr);
    // One kind of operation: one strategy to clone and one set of options for all.
    let (prototype, options) = LroBasePolling::builder().into_parts();
    let options = Arc::new(options);
    let before = heap();
    for key in 0..n {
        let initial = InitialResponse::new(
            RequestHead::new(Method::POST, format!("{origin}/jobs").parse()?, HeaderMap::new()),
            Response::builder()
                .status(202)
                .header("operation-location", format!("{origin}/op/{key}"))
                .body(Bytes::new())?,
        );
        let engine = Engine::start(prototype.clone(), Arc::clone(&options), initial)?;
        handle.add(key, engine, None);
    }
    let started = Instant::now();
    let mut idle_heap = None;
    let (mut ok, mut ended) = (0_usize, 0_usize);
    runtime.block_on(async {
        loop {
            let next = std::future::poll_fn(|cx| {
                let next = std::pin::Pin::new(&mut fleet).poll_next(cx);
                // Every operation has had its first answer and waits: the idle fleet. (Taken
                // only while none has ended: an ended one would no longer count.)
                if idle_heap.is_none()
                    && running.load(Ordering::Relaxed) == n
                    && handle.stats().in_flight == 0
                {
                    idle_heap = Some((heap(), ended));
                }
                next
            })
            .await;
            let Some(result) = next else { break };
            ended += 1;
            ok += usize::from(result.result.is_ok());
        }
    });
    let elapsed = started.elapsed();
    if ended != n || ok != n {
        return Err(BenchError(format!("{ok} of {n} operations succeeded ({ended} ended)")));
    }
    let counters = &server.counters;
    // The invariants fail the run (CI's quick run included); the other figures are reported.
    let sent = counters.requests.load(Ordering::SeqCst);
    let peak = counters.peak_open.load(Ordering::SeqCst);
    if sent != 2 * n as u64 {
        return Err(BenchError(format!(
            "{sent} requests for {n} operations: 2 each is the minimum"
        )));
    }
    if peak > CAP {
        return Err(BenchError(format!("{peak} connections open at once, over the cap of {CAP}")));
    }
    let mut lateness = counters.lateness.lock().unwrap_or_else(PoisonError::into_inner).clone();
    lateness.sort_unstable();
    let p99 = lateness.get(lateness.len().saturating_mul(99) / 100).copied().unwrap_or_default();
    #[allow(clippy::cast_precision_loss)] // figures for a report
    let per = |x: f64| x / n as f64;
    let idle = match idle_heap {
        Some((idle, 0)) => idle,
        Some((_, ended)) => {
            return Err(BenchError(format!(
                "{ended} operations had ended before the last first answer: make the wait longer \
                 than it takes to send the first polls ({n} at {rate} a second)"
            )));
        }
        None => return Err(BenchError("the fleet was never idle".into())),
    };
    #[allow(clippy::cast_precision_loss)]
    let requests = counters.requests.load(Ordering::SeqCst) as f64;
    #[allow(clippy::cast_precision_loss)]
    let measures = vec![
        Measure::new("fleet_operations_completed", "operations", n as f64),
        Measure::new(
            "fleet_heap_per_idle_operation",
            "heap_bytes_per_idle_operation",
            per(idle.saturating_sub(before) as f64),
        ),
        Measure::new("fleet_p99_poll_lateness", "p99_lateness_ms", p99.as_secs_f64() * 1e3),
        Measure::new("fleet_requests_per_operation", "requests_per_operation", per(requests))
            .against("minimum_allowed_by_retry_after", 2.0),
        Measure::new(
            "fleet_peak_open_connections",
            "connections",
            counters.peak_open.load(Ordering::SeqCst) as f64,
        )
        .against("per_origin_cap", CAP as f64),
        Measure::new("fleet_wall_seconds", "seconds", elapsed.as_secs_f64()),
    ];
    Ok(measures)
}
