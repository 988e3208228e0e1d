//! `lro worker`: claim operations from a store, poll them all through one fleet, checkpoint
//! every new token, complete each with its outcome; renew the leases, and stop polling an
//! operation whose lease may have run out.
//!
//! Lease safety: the worker renews its leases every quarter of `--lease`, and stops polling all
//! of them once half a lease has gone by since the last renewal it is sure of (the store is
//! unreachable, or slow). The other half covers a request already on the wire (keep
//! `--lease` above twice the request timeout, 30 s): so no two workers poll one operation at
//! once. The database's clock decides when a lease runs out; fences make a late write harmless.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};

use http::HeaderMap;
use lro_core::{
    AsyncHttpClient, ContinuationToken, Engine, FleetHandle, FleetOptions, FleetResult, LroError,
    Strategy, TokenKey, TransportError, TransportErrorKind,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_store::{
    Checkpoint, Claimed, Completion, Lease, OperationState, OperationStore, StoreError,
};
use serde_json::json;

use super::WorkerArgs;
use super::spec::Spec;
use super::submit::store_error;
use crate::batch::{Operations, next};
use crate::drive::interrupted;
use crate::output::{FinalBody, Report, final_body};
use crate::{Output, UsageError};

/// When the worker last knew its leases to be held, and how many times it gave all of them up
/// (the epoch): shared with [`Guarded`].
#[derive(Debug, Clone, Copy)]
struct LeaseClock {
    renewed: Instant,
    epoch: u64,
}

type Clock = Arc<Mutex<LeaseClock>>;

fn read(clock: &Clock) -> LeaseClock {
    *clock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The worker's transport. A request is refused, or cut off while it waits for its answer, once
/// half a lease has gone by since the leases were last known held; and a request begun before
/// the worker gave its leases up (a new epoch) never goes on after, even if later claims made
/// the clock fresh again. So a process that wakes from a pause, or a request stuck in a queue,
/// never polls an operation another worker holds by now.
struct Guarded {
    inner: HyperClient,
    clock: Clock,
    half_lease: Duration,
}

/// Why [`Guarded`] refused a request.
#[derive(Debug)]
struct LeaseMayHaveExpired;

impl std::fmt::Display for LeaseMayHaveExpired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no lease renewal for half a lease: this worker may no longer hold it")
    }
}

impl std::error::Error for LeaseMayHaveExpired {}

#[async_trait::async_trait]
impl AsyncHttpClient for Guarded {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        let refused = || TransportError::new(TransportErrorKind::Unusable, LeaseMayHaveExpired);
        let begun = read(&self.clock).epoch;
        let mut send = Box::pin(self.inner.send(request));
        loop {
            let clock = read(&self.clock);
            let deadline = clock.renewed.checked_add(self.half_lease).unwrap_or(clock.renewed);
            if clock.epoch != begun {
                return Err(refused());
            }
            if Instant::now() >= deadline {
                // Every request of this epoch is refused from now on.
                let mut shared = self.clock.lock().unwrap_or_else(PoisonError::into_inner);
                if shared.epoch == begun {
                    shared.epoch += 1;
                }
                return Err(refused());
            }
            match tokio::time::timeout_at(deadline.into(), &mut send).await {
                Ok(answer) => return answer,
                Err(_) => continue, // the clock may have moved on: look again
            }
        }
    }
}

/// A checkpoint the fleet asked for: key, token, status, polls.
type Pending = (String, String, String, u32);

/// What one worker did, for its last line.
#[derive(Debug, Default)]
struct Tally {
    completed: u64,
    polls: u64,
    claims: u64,
    round_trips: u64,
    lost: u64,
}

struct Worker {
    store: Arc<dyn OperationStore>,
    name: String,
    headers: HeaderMap,
    /// Origins this worker's operator trusts beyond each token's own (`--allow-origin`).
    origins: Vec<String>,
    key: TokenKey,
    lease: Duration,
    handle: FleetHandle<String, Box<dyn Strategy>>,
    held: HashMap<String, Lease>,
    /// When the leases were last known held (see [`Guarded`]).
    clock: Clock,
    /// The newest token of each operation, not yet written (see [`Worker::flush`]).
    unwritten: HashMap<String, Pending>,
    /// Polls made by earlier holders of each held operation (to count this worker's own).
    earlier_polls: HashMap<String, u32>,
    tally: Tally,
}

/// `lro worker`.
pub(crate) async fn worker(args: WorkerArgs) -> Result<ExitCode, UsageError> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(UsageError(format!("--rate must be a positive number (got {})", args.rate)));
    }
    if args.lease < Duration::from_secs(1) || args.lease > Duration::from_secs(24 * 3600) {
        return Err(UsageError("--lease must be from 1s to 24h".to_owned()));
    }
    if args.idle_wait < Duration::from_millis(1) || args.idle_wait > Duration::from_secs(3600) {
        return Err(UsageError("--idle-wait must be from 1ms to 1h".to_owned()));
    }
    let key = crate::settings::token_key(args.token_key_file.as_deref())?.ok_or_else(|| {
        UsageError(
            "a store holds signed tokens only: give the submitters' key with --token-key-file or \
             LRO_TOKEN_KEY"
                .to_owned(),
        )
    })?;
    for url in &args.allow_origin {
        lro_core::OriginPolicy::same_origin()
            .allow(url)
            .ok_or_else(|| UsageError(format!("--allow-origin {url:?} is not an absolute URL")))?;
    }
    let mut headers = crate::settings::parse_headers(&args.headers, false)?;
    headers.extend(crate::settings::parse_headers(&args.secret_headers, true)?);
    let store: Arc<dyn OperationStore> =
        Arc::from(lro_store::open(&args.store).await.map_err(|e| store_error(&args.store, &e))?);
    let clock: Clock = Arc::new(Mutex::new(LeaseClock { renewed: Instant::now(), epoch: 0 }));
    let client = Arc::new(Guarded {
        inner: HyperClient::builder()
            .pool_max_idle_per_host(args.max_in_flight)
            .max_connections_per_host(Some(args.max_in_flight))
            .build()
            .map_err(|e| UsageError(e.to_string()))?,
        clock: Arc::clone(&clock),
        half_lease: args.lease / 2,
    });
    let options = FleetOptions::builder()
        .rate(args.rate)
        .burst(u32::try_from(args.max_in_flight).unwrap_or(u32::MAX))
        .max_in_flight_per_origin(args.max_in_flight)
        .build();
    let (fleet, handle) = Operations::new(client, TokioTimer, final_body(true), options);
    let (sender, mut checkpoints) = tokio::sync::mpsc::unbounded_channel::<Pending>();
    let mut fleet = fleet.on_poll(move |key, engine| {
        if let Ok(token) = engine.continuation_token() {
            let status = engine.status().to_string();
            let _ = sender.send((key.clone(), token.into_string(), status, engine.polls()));
        }
    });
    let name = args.name.clone().unwrap_or_else(default_name);
    let mut worker = Worker {
        store,
        name,
        headers,
        origins: args.allow_origin.clone(),
        key,
        lease: args.lease,
        handle,
        held: HashMap::new(),
        clock,
        earlier_polls: HashMap::new(),
        unwritten: HashMap::new(),
        tally: Tally::default(),
    };
    let started = Instant::now();
    let mut signal = interrupted();
    let mut claim_tick = tokio::time::interval(args.idle_wait);
    claim_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew_tick = tokio::time::interval(args.lease / 4);
    renew_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if args.output == Output::Text {
        eprintln!("worker {} on {}", worker.name, lro_store::redacted_url(&args.store));
    }
    let mut stopped_by = None;
    loop {
        tokio::select! {
            // In this order: renewals (never behind a stream of completions; a process that
            // wakes from a pause learns which leases it lost before it polls, and the
            // transport's guard covers a store too slow to say), a signal, the tokens to
            // checkpoint (so that their queue drains), the operations that ended, claims.
            biased;
            _ = renew_tick.tick() => worker.renew().await,
            name = &mut signal => {
                stopped_by = Some(name);
                break;
            }
            Some(pending) = checkpoints.recv() => {
                // Only the newest token of each operation is worth a round-trip.
                worker.unwritten.insert(pending.0.clone(), pending);
                while let Ok(more) = checkpoints.try_recv() {
                    worker.unwritten.insert(more.0.clone(), more);
                }
                worker.flush().await;
            }
            () = std::future::ready(()), if !worker.unwritten.is_empty() => worker.flush().await,
            ended = next(&mut fleet), if !worker.held.is_empty() => {
                if let Some(ended) = ended {
                    worker.complete(ended).await;
                }
            }
            _ = claim_tick.tick() => {
                if worker.held.len() < args.concurrency {
                    worker.claim(args.concurrency - worker.held.len()).await;
                }
                if args.exit_when_done && worker.held.is_empty() && worker.nothing_left().await {
                    break;
                }
            }
        }
        worker.expire_unrenewed();
    }
    // Requests in flight end with the fleet: only then may others poll what this one held.
    drop(fleet);
    if let Some(name) = stopped_by {
        eprintln!("worker {}: {name}: giving the leases back", worker.name);
        worker.release_all().await;
    }
    let tally = &worker.tally;
    let per_poll = tally.round_trips as f64 / tally.polls.max(1) as f64;
    let summary = json!({
        "worker": worker.name,
        "completed": tally.completed,
        "polls": tally.polls,
        "claims": tally.claims,
        "leases_lost": tally.lost,
        "store_round_trips": tally.round_trips,
        "round_trips_per_poll": per_poll,
        "seconds": started.elapsed().as_secs_f64(),
    });
    match args.output {
        Output::Json => println!("{summary}"),
        _ => eprintln!(
            "worker {}: {} operations completed, {} polls, {} store round-trips ({per_poll:.2} \
             per poll), {} leases lost, in {}",
            worker.name,
            tally.completed,
            tally.polls,
            tally.round_trips,
            tally.lost,
            crate::paint::duration(started.elapsed())
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// A store call that takes longer than this is given up (a quarter of the lease, so that a
/// hung connection cannot stall renewals past the guard).
fn store_timeout(lease: Duration) -> Duration {
    lease / 4
}

impl Worker {
    /// `call`, given up after [`store_timeout`] with a database error.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = store_timeout(self.lease);
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(StoreError::Database(Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the store did not answer within {limit:?}"),
            ))))
        })
    }

    fn set_renewed(&self, at: Instant) {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner).renewed = at;
    }

    fn last_renewed(&self) -> Instant {
        read(&self.clock).renewed
    }

    /// Gives every lease up in this process: requests begun before are refused from now on.
    fn new_epoch(&self) {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner).epoch += 1;
    }

    async fn claim(&mut self, room: usize) {
        let sent = Instant::now();
        self.tally.round_trips += 1;
        let claimed = match self.timed(self.store.claim(&self.name, room, self.lease)).await {
            Ok(claimed) => claimed,
            Err(e) => {
                eprintln!("warning: claiming failed: {}", lro_core::ErrorChain::new(&e));
                return;
            }
        };
        if self.held.is_empty() {
            // Nothing was held: the renewal clock starts with these leases (taken before the
            // claim was sent: the database's lease began no earlier).
            self.set_renewed(sent);
        }
        for claimed in claimed {
            self.tally.claims += 1;
            let lease = claimed.lease.clone();
            match self.engine(&claimed) {
                Ok(engine) => {
                    self.handle.add(lease.key.clone(), engine, None);
                    self.earlier_polls.insert(lease.key.clone(), claimed.polls);
                    self.held.insert(lease.key.clone(), lease);
                }
                Err(error) => {
                    // A token or spec that cannot be polled: record why, once.
                    let report = Report::failed(&error, None, u64::from(claimed.polls));
                    let completion =
                        Completion::new(OperationState::Error, "", claimed.polls, report.to_json());
                    self.tally.round_trips += 1;
                    if let Err(e) = self.timed(self.store.complete(&lease, completion)).await {
                        eprintln!("warning: {}: {}", lease.key, lro_core::ErrorChain::new(&e));
                    }
                }
            }
        }
    }

    fn engine(&self, claimed: &Claimed) -> Result<Engine<Box<dyn Strategy>>, LroError> {
        let spec: Spec = serde_json::from_value(claimed.spec.clone())
            .map_err(|e| LroError::invalid_token(format!("the stored spec: {e}")))?;
        let (strategy, options) =
            spec.polling(&self.headers, &self.origins, &self.key).map_err(LroError::policy)?;
        let token: ContinuationToken = claimed.token.parse()?;
        // The token must carry the key's signature (the spec's options ask for signed tokens
        // only): a store row is untrusted input.
        Engine::resume(strategy, Arc::new(options), &token)
    }

    /// Writes unwritten tokens for at most an eighth of the lease, then gives the loop back (a
    /// renewal must never wait behind a long batch); the rest are written on the next turns.
    async fn flush(&mut self) {
        let started = Instant::now();
        while started.elapsed() < self.lease / 8 {
            let Some(key) = self.unwritten.keys().next().cloned() else { return };
            if let Some(pending) = self.unwritten.remove(&key) {
                self.checkpoint(pending).await;
            }
        }
    }

    async fn checkpoint(&mut self, (key, token, status, polls): Pending) {
        let Some(lease) = self.held.get(&key) else { return }; // over, or lost
        self.tally.round_trips += 1;
        let checkpoint = Checkpoint::new(token, status, polls);
        match self.timed(self.store.checkpoint(lease, checkpoint)).await {
            Ok(()) => {}
            Err(StoreError::LeaseLost { .. }) => self.lose(&key),
            Err(e) => eprintln!("warning: checkpoint of {key}: {}", lro_core::ErrorChain::new(&e)),
        }
    }

    async fn complete(&mut self, ended: FleetResult<String, FinalBody>) {
        if let Err(error) = &ended.result {
            if lro_core::find_cause::<LeaseMayHaveExpired>(error).is_some() {
                // Refused by the guard, not ended: whoever holds the lease now goes on.
                self.lose(&ended.key);
                return;
            }
        }
        let Some(lease) = self.held.remove(&ended.key) else { return };
        let earlier = self.earlier_polls.remove(&ended.key).unwrap_or(0);
        self.tally.polls += u64::from(ended.polls.saturating_sub(earlier));
        let status = ended.status.to_string();
        let report = match &ended.result {
            Ok(body) => Report::succeeded(Some(status.clone()), body, u64::from(ended.polls)),
            Err(error) => Report::failed(error, Some(status.clone()), u64::from(ended.polls)),
        };
        // The report's outcome words are the store's state words.
        let state = OperationState::parse(report.outcome).unwrap_or(OperationState::Error);
        let mut completion = Completion::new(state, status, ended.polls, report.to_json());
        if let Ok(body) = &ended.result {
            completion = completion.result(body.bytes.clone());
        }
        self.tally.round_trips += 1;
        match self.timed(self.store.complete(&lease, completion)).await {
            Ok(()) => self.tally.completed += 1,
            Err(StoreError::LeaseLost { .. }) => self.tally.lost += 1,
            Err(e) => {
                eprintln!("warning: completing {}: {}", lease.key, lro_core::ErrorChain::new(&e))
            }
        }
    }

    async fn renew(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let leases: Vec<Lease> = self.held.values().cloned().collect();
        let sent = Instant::now();
        self.tally.round_trips += 1;
        match self.timed(self.store.renew(&self.name, &leases, self.lease)).await {
            Ok(kept) => {
                self.set_renewed(sent);
                let kept: std::collections::HashSet<&str> =
                    kept.iter().map(|l| l.key.as_str()).collect();
                let lost: Vec<String> = leases
                    .iter()
                    .filter(|l| !kept.contains(l.key.as_str()))
                    .map(|l| l.key.clone())
                    .collect();
                for key in lost {
                    self.lose(&key);
                }
            }
            Err(e) => {
                eprintln!("warning: renewing leases failed: {}", lro_core::ErrorChain::new(&e))
            }
        }
    }

    /// Stops polling everything once half a lease went by without a sure renewal.
    fn expire_unrenewed(&mut self) {
        let since = self.last_renewed().elapsed();
        if self.held.is_empty() || since < self.lease / 2 {
            return;
        }
        eprintln!(
            "warning: no lease renewal for {}: stopping {} operations (another worker will \
             take them over)",
            crate::paint::duration(since),
            self.held.len()
        );
        self.new_epoch();
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in keys {
            self.lose(&key);
        }
    }

    fn lose(&mut self, key: &str) {
        self.earlier_polls.remove(key);
        self.unwritten.remove(key);
        if self.held.remove(key).is_some() {
            self.handle.remove(key.to_owned());
            self.tally.lost += 1;
        }
    }

    async fn release_all(&mut self) {
        self.earlier_polls.clear();
        self.unwritten.clear();
        let held: Vec<Lease> = self.held.drain().map(|(_, lease)| lease).collect();
        for lease in held {
            self.tally.round_trips += 1;
            let _ = self.timed(self.store.release(&lease)).await;
        }
    }

    async fn nothing_left(&mut self) -> bool {
        self.tally.round_trips += 1;
        matches!(self.timed(self.store.running()).await, Ok(0))
    }
}
