//! [`Fleet`]: many operations driven through one timer queue, under one request budget — the
//! sans-IO scheduler. [`FleetStream`](crate::FleetStream) is its async driver; see
//! `docs/fleet.md`.
//!
//! Every operation is an [`Engine`]; the fleet adds what no single engine can know:
//!
//! - **one queue** of next-poll deadlines (a binary heap): an idle operation costs its engine
//!   and one queue entry — no task, no thread, no future;
//! - **a shared budget**: a token bucket (requests per second, with a burst) and a cap on
//!   requests in flight per origin; due polls over budget wait their turn, oldest due first;
//! - **coordinated throttling**: a 429 or 503 with `Retry-After` on any request to an origin
//!   pauses every poll to that origin until then (bounded by [`FleetOptionsBuilder::max_pause`]);
//! - per-operation deadlines, removal, early wake-up, and continuation tokens of every
//!   operation on demand.
//!
//! Like the engine, the fleet never reads a clock: the driver passes the time in and carries out
//! the returned [`FleetAction`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};

use crate::deadline::deadline_after;
use crate::engine::{Action, Engine};
use crate::error::LroError;
use crate::options::Origin;
use crate::retry::RetryPolicy;
use crate::status::Status;
use crate::strategy::Strategy;
use crate::token::ContinuationToken;
use crate::transport::{Timestamp, TransportError};

/// The shared budget of a [`Fleet`]. Built with [`FleetOptions::builder`].
#[derive(Debug, Clone)]
pub struct FleetOptions {
    rate: f64,
    burst: u32,
    max_in_flight_per_origin: usize,
    max_pause: Duration,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            rate: 100.0,
            burst: 100,
            max_in_flight_per_origin: 32,
            max_pause: crate::options::DEFAULT_MAX_DELAY,
        }
    }
}

impl FleetOptions {
    /// A builder starting from 100 requests per second (burst 100), 32 in flight per origin.
    pub fn builder() -> FleetOptionsBuilder {
        FleetOptionsBuilder { options: FleetOptions::default() }
    }
}

/// Builder of [`FleetOptions`].
#[derive(Debug)]
#[must_use]
pub struct FleetOptionsBuilder {
    options: FleetOptions,
}

impl FleetOptionsBuilder {
    /// Requests per second, over all operations (at least one request per hour).
    pub fn rate(mut self, per_second: f64) -> Self {
        self.options.rate = if per_second.is_finite() && per_second > 1.0 / 3600.0 {
            per_second
        } else {
            1.0 / 3600.0
        };
        self
    }

    /// How many requests may go at once after a quiet spell (at least 1).
    pub fn burst(mut self, burst: u32) -> Self {
        self.options.burst = burst.max(1);
        self
    }

    /// At most this many requests in flight to one origin (at least 1): the connection pool
    /// never needs more connections to a host.
    pub fn max_in_flight_per_origin(mut self, max: usize) -> Self {
        self.options.max_in_flight_per_origin = max.max(1);
        self
    }

    /// The longest pause a throttled origin's `Retry-After` can impose (default 10 minutes).
    pub fn max_pause(mut self, max: Duration) -> Self {
        self.options.max_pause = max;
        self
    }

    /// The options.
    pub fn build(self) -> FleetOptions {
        self.options
    }
}

/// Identifies one request a [`Fleet`] asked to send; hand it back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u64);

/// What the driver of a [`Fleet`] must do next.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per step, consumed at once
#[allow(clippy::exhaustive_enums)] // as `Action`: a driver must carry out every action
pub enum FleetAction<K> {
    /// Send `request` for operation `key`; report the outcome under `id` with
    /// [`Fleet::handle_response`] or [`Fleet::handle_transport_error`].
    Send {
        /// The operation.
        key: K,
        /// The request's id, to report its outcome.
        id: RequestId,
        /// The request.
        request: Request<Bytes>,
    },
    /// Operation `key` is over: its final response, or the error that ended it (with a token).
    Finished {
        /// The operation.
        key: K,
        /// The outcome.
        outcome: Result<Response<Bytes>, LroError>,
        /// Its last status, as the service spelled it.
        status: Status,
        /// How many polls it took (status polls and final GET).
        polls: u32,
    },
    /// Nothing to do before this long (or before a response comes back or an operation is
    /// added or woken).
    Wait(Duration),
    /// Nothing to do until a response comes back or an operation is added or woken.
    Idle,
}

/// Counters of a [`Fleet`], for progress displays: see [`Fleet::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetStats {
    /// Operations in the fleet (queued or in flight).
    pub operations: usize,
    /// Requests in flight.
    pub in_flight: usize,
    /// Requests sent since the fleet was made.
    pub requests_sent: u64,
    /// Throttling answers (429 or 503 with `Retry-After`) that paused an origin, since the fleet
    /// was made.
    pub throttled: u64,
    /// Origins paused now by such an answer.
    pub paused_origins: usize,
}

struct Operation<S> {
    engine: Engine<S>,
    deadline: Option<Instant>,
    origin: Option<Arc<Origin>>,
    /// The request in flight, if any.
    in_flight: Option<NonZeroU64>,
    /// Woken while a request was in flight: poll at once after its answer.
    woken: bool,
    /// The generation of its current queue entry (entries of other generations are stale).
    generation: u64,
    /// When its current queue entry is due.
    due: Instant,
    /// The generation whose deadline entry is queued (see [`Fleet::park`]).
    deadline_entry: Option<NonZeroU64>,
}

/// A request on the wire: the operation it belongs to (`None` once removed) and its origin,
/// whose in-flight slot it holds until its outcome is reported.
struct InFlight<K> {
    key: Option<K>,
    origin: Option<Arc<Origin>>,
}

/// An operation that ended, waiting to be reported.
struct Ended<K> {
    key: K,
    outcome: Result<Response<Bytes>, LroError>,
    status: Status,
    polls: u32,
}

impl<K> From<Ended<K>> for FleetAction<K> {
    fn from(ended: Ended<K>) -> Self {
        let Ended { key, outcome, status, polls } = ended;
        FleetAction::Finished { key, outcome, status, polls }
    }
}

/// One queue entry: (due, generation, key) — oldest due first, then first queued. The
/// generation numbers the operation's queueings fleet-wide, so it orders entries too; an
/// entry whose generation is not its operation's current one is stale.
type Entry<K> = Reverse<(Instant, u64, K)>;

/// Many operations, one queue, one budget: the sans-IO scheduler (see the module docs).
pub struct Fleet<K, S> {
    options: FleetOptions,
    /// Boxed: the map's spare room then costs a pointer per slot, not an operation.
    operations: HashMap<K, Box<Operation<S>>>,
    queue: BinaryHeap<Entry<K>>,
    /// Orders queue entries, and numbers their generations, fleet-wide.
    next_seq: u64,
    next_request: u64,
    requests: HashMap<u64, InFlight<K>>,
    tokens: f64,
    refilled: Option<Instant>,
    in_flight: HashMap<Arc<Origin>, usize>,
    paused_until: HashMap<Arc<Origin>, Instant>,
    /// Due polls of origins that were paused or full, set aside (each origin's own heap) so
    /// that a blocked origin costs nothing per step; they go back to the queue as its slots
    /// free up or its pause ends.
    parked: HashMap<Arc<Origin>, BinaryHeap<Entry<K>>>,
    /// One copy of each origin, shared by its operations (dropped with the last of them).
    origins: HashSet<Arc<Origin>>,
    finished: Vec<Ended<K>>,
    requests_sent: u64,
    throttled: u64,
}

impl<K, S> fmt::Debug for Fleet<K, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("operations", &self.operations.len())
            .field("queued", &self.queue.len())
            .field("in_flight", &self.requests.len())
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash + Ord, S: Strategy> Fleet<K, S> {
    /// An empty fleet with this budget.
    pub fn new(options: FleetOptions) -> Self {
        let tokens = f64::from(options.burst);
        Fleet {
            options,
            operations: HashMap::new(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            next_request: 1,
            requests: HashMap::new(),
            tokens,
            refilled: None,
            in_flight: HashMap::new(),
            paused_until: HashMap::new(),
            parked: HashMap::new(),
            origins: HashSet::new(),
            finished: Vec::new(),
            requests_sent: 0,
            throttled: 0,
        }
    }

    /// Adds an operation (from [`Engine::start`] or [`Engine::resume`]), due at once, ending at
    /// `deadline` at the latest. An operation already under `key` is replaced (as by
    /// [`remove`](Self::remove)).
    pub fn add(&mut self, now: Timestamp, key: K, engine: Engine<S>, deadline: Option<Duration>) {
        let _ = self.remove(&key);
        let origin = Origin::of(engine.initial().request().uri()).map(|o| self.intern(o));
        let deadline = deadline.and_then(|d| now.instant.checked_add(d));
        let operation = Operation {
            engine,
            deadline,
            origin,
            in_flight: None,
            woken: false,
            generation: 0,
            due: now.instant,
            deadline_entry: None,
        };
        self.operations.insert(key.clone(), Box::new(operation));
        self.enqueue(&key, now.instant);
    }

    /// The fleet's shared copy of `origin`.
    fn intern(&mut self, origin: Origin) -> Arc<Origin> {
        if let Some(shared) = self.origins.get(&origin) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(origin);
        self.origins.insert(Arc::clone(&shared));
        shared
    }

    /// Removes operation `key` from the fleet's map.
    fn take(&mut self, key: &K) -> Option<Box<Operation<S>>> {
        let mut operation = self.operations.remove(key)?;
        self.forget(operation.origin.take());
        Some(operation)
    }

    /// Forgets the shared copy of an operation's origin when nothing else holds it (a request
    /// in flight or a pause still does; the copy then stays, one per origin).
    fn forget(&mut self, origin: Option<Arc<Origin>>) {
        // Held by the set and by `origin` alone: no operation, request or map uses it.
        if let Some(origin) = origin.filter(|o| Arc::strong_count(o) == 2) {
            self.origins.remove(&*origin);
        }
    }

    /// Removes an operation: polling stops. A request of it still in flight keeps its origin's
    /// slot until its outcome is reported, and that outcome is then ignored.
    pub fn remove(&mut self, key: &K) -> Option<Engine<S>> {
        let operation = self.take(key)?;
        if let Some(request) = operation.in_flight.and_then(|id| self.requests.get_mut(&id.get())) {
            request.key = None;
        }
        Some(operation.engine)
    }

    /// Makes operation `key` poll at once (a notification said it changed) — or, if a request
    /// of it is in flight, right after its answer. Returns whether there is such an operation.
    pub fn wake(&mut self, now: Timestamp, key: &K) -> bool {
        let Some(operation) = self.operations.get_mut(key) else { return false };
        if operation.in_flight.is_some() {
            operation.woken = true;
        } else {
            operation.engine.poll_now();
            // An entry already due (queued or set aside) serves: no entry per notification.
            if operation.due > now.instant {
                self.enqueue(key, now.instant);
            }
        }
        true
    }

    /// How many operations are in the fleet (queued or in flight).
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether the fleet has no operation.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// How many requests are in flight (those of removed operations included).
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// A continuation token for every operation, to checkpoint the whole fleet.
    pub fn continuation_tokens(&self) -> Vec<(K, Result<ContinuationToken, LroError>)> {
        self.operations
            .iter()
            .map(|(key, op)| (key.clone(), op.engine.continuation_token()))
            .collect()
    }

    /// Counters for progress displays, as of `now`: cheap (no walk over the operations).
    pub fn stats(&self, now: Timestamp) -> FleetStats {
        FleetStats {
            operations: self.operations.len(),
            in_flight: self.requests.len(),
            requests_sent: self.requests_sent,
            throttled: self.throttled,
            paused_origins: self
                .paused_until
                .values()
                .filter(|until| **until > now.instant)
                .count(),
        }
    }

    /// The operation under `key`, for status and progress displays.
    pub fn engine(&self, key: &K) -> Option<&Engine<S>> {
        self.operations.get(key).map(|op| &op.engine)
    }

    /// What to do next, given the current time.
    pub fn poll(&mut self, now: Timestamp) -> FleetAction<K> {
        if let Some(ended) = self.finished.pop() {
            return ended.into();
        }
        self.refill(now.instant);
        // Pauses that are over: an origin's entry (and its shared copy) need not outlive them.
        self.paused_until.retain(|_, until| *until > now.instant);
        self.unpark(now.instant);
        let mut held_back: Vec<Entry<K>> = Vec::new();
        // What can end the wait if nothing is sent now.
        let mut next_due: Option<Instant> = None;
        let mut budget_blocked = false;
        let mut action = None;
        while let Some(Reverse((due, generation, key))) = self.queue.pop() {
            let current = self
                .operations
                .get(&key)
                .is_some_and(|op| op.generation == generation && op.in_flight.is_none());
            if !current {
                continue; // removed, queued again since, or its request is on the wire
            }
            if due > now.instant {
                next_due = Some(due);
                held_back.push(Reverse((due, generation, key)));
                break;
            }
            if let Some(done) = self.expire(now, &key) {
                action = Some(done);
                break;
            }
            if self.origin_blocked(&key, now.instant) {
                // Its origin is paused or full: others go first; it keeps its place among the
                // origin's own polls.
                self.park(Reverse((due, generation, key)));
                continue;
            }
            if self.tokens < 1.0 - TOKEN_EPSILON {
                budget_blocked = true;
                held_back.push(Reverse((due, generation, key)));
                break;
            }
            if let Some(done @ (FleetAction::Send { .. } | FleetAction::Finished { .. })) =
                self.step(now, key)
            {
                action = Some(done);
                break;
            }
        }
        self.queue.extend(held_back);
        if let Some(action) = action {
            return action;
        }
        // A pause that holds polls back ends the wait; a full origin frees up on a response.
        let pause_ends = (self.parked.keys())
            .filter_map(|origin| self.paused_until.get(origin).filter(|u| **u > now.instant))
            .min()
            .copied();
        self.next_wait(now.instant, next_due, budget_blocked, pause_ends)
    }

    /// Sets a due poll of a blocked origin aside. An operation with a deadline also keeps an
    /// entry in the queue at its deadline, so that it still ends on time.
    fn park(&mut self, entry: Entry<K>) {
        let Reverse((due, generation, key)) = entry;
        let Some(operation) = self.operations.get_mut(&key) else { return };
        let Some(origin) = operation.origin.clone() else { return };
        if let Some(deadline) = operation.deadline.filter(|deadline| *deadline > due) {
            let entry = NonZeroU64::new(generation.wrapping_add(1));
            if operation.deadline_entry != entry {
                operation.deadline_entry = entry;
                self.queue.push(Reverse((deadline, generation, key.clone())));
            }
        }
        self.parked.entry(origin).or_default().push(Reverse((due, generation, key)));
    }

    /// Puts back into the queue as many set-aside polls of each origin as it has free slots
    /// (none while it is paused), oldest first.
    fn unpark(&mut self, now: Instant) {
        let Fleet { parked, queue, paused_until, in_flight, options, operations, .. } = self;
        parked.retain(|origin, entries| {
            let mut free = room(origin, now, paused_until, in_flight, options);
            while free > 0 {
                let Some(entry) = entries.pop() else { break };
                // A stale entry (removed, woken, expired) is dropped here and takes no slot.
                let Reverse((_, generation, key)) = &entry;
                if operations.get(key).is_some_and(|op| op.generation == *generation) {
                    queue.push(entry);
                    free -= 1;
                }
            }
            !entries.is_empty()
        });
    }

    /// Feeds the response to request `id`. Returns the operation's key if this response changed
    /// its status and it goes on (read it, and its new continuation token, with
    /// [`engine`](Self::engine)); an operation that ended is reported by [`FleetAction::Finished`].
    pub fn handle_response(
        &mut self,
        now: Timestamp,
        id: RequestId,
        response: Response<Bytes>,
    ) -> Option<K> {
        let (key, changed) = self.answer(now, id, response)?;
        changed.then_some(key)
    }

    /// As [`handle_response`](Self::handle_response), telling more: for an answered poll (one
    /// that counted, not a failed attempt to be retried) of an operation that goes on, its key
    /// and whether its status changed. Its continuation token changed either way: a store
    /// that keeps every token checkpoints on each of these.
    pub fn answer(
        &mut self,
        now: Timestamp,
        id: RequestId,
        response: Response<Bytes>,
    ) -> Option<(K, bool)> {
        let key = self.settle(id)?;
        let status = response.status();
        if RetryPolicy::honours_retry_after(status) {
            let origin = self.operations.get(&key).and_then(|op| op.origin.clone());
            if let (Some(hint), Some(origin)) =
                (crate::delay::retry_after(response.headers(), now.wall), origin)
            {
                // The whole origin is throttled, not this operation alone.
                let pause = hint.min(self.options.max_pause);
                let until = crate::deadline::deadline_after(now.instant, pause);
                self.throttled = self.throttled.saturating_add(1);
                crate::telemetry::origin_paused(&*origin, pause);
                let entry = self.paused_until.entry(origin).or_insert(until);
                *entry = (*entry).max(until);
            }
        }
        let (mut changed, mut counted) = (false, false);
        if let Some(operation) = self.operations.get_mut(&key) {
            let (before, polls) = (operation.engine.status().clone(), operation.engine.polls());
            operation.engine.handle_response(now, response);
            changed = *operation.engine.status() != before;
            counted = operation.engine.polls() != polls;
        }
        self.after_step(now, &key);
        (counted && self.operations.contains_key(&key)).then_some((key, changed))
    }

    /// Reports that request `id` failed in the transport.
    pub fn handle_transport_error(&mut self, now: Timestamp, id: RequestId, error: TransportError) {
        let Some(key) = self.settle(id) else { return };
        if let Some(operation) = self.operations.get_mut(&key) {
            operation.engine.handle_transport_error(now, error);
        }
        self.after_step(now, &key);
    }

    /// Ends request `id`: frees its origin's slot; the operation it belongs to, if still there.
    fn settle(&mut self, id: RequestId) -> Option<K> {
        let request = self.requests.remove(&id.0)?;
        self.release(request.origin.as_ref());
        let Some(key) = request.key else {
            // Its operation was removed while this request was out: its origin may be unused now.
            self.forget(request.origin);
            return None;
        };
        let operation = self.operations.get_mut(&key)?;
        if operation.in_flight.map(NonZeroU64::get) != Some(id.0) {
            return None;
        }
        operation.in_flight = None;
        Some(key)
    }

    fn enqueue(&mut self, key: &K, due: Instant) {
        let Some(operation) = self.operations.get_mut(key) else { return };
        // A deadline before the next poll is when the operation must be looked at.
        let due = operation.deadline.map_or(due, |deadline| due.min(deadline));
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        operation.generation = seq;
        operation.due = due;
        self.queue.push(Reverse((due, seq, key.clone())));
    }

    /// After a response: queue the next poll, or record the end.
    fn after_step(&mut self, now: Timestamp, key: &K) {
        let Some(operation) = self.operations.get_mut(key) else { return };
        if std::mem::take(&mut operation.woken) {
            operation.engine.poll_now();
        }
        match operation.engine.poll(now) {
            Action::Done => self.finish(key),
            Action::Wait(wait) => self.enqueue(key, deadline_after(now.instant, wait)),
            Action::SendRequest(_) => self.enqueue(key, now.instant),
        }
    }

    /// The operation's next action, now that it is due and within budget; `None` if it only
    /// had to be queued again.
    fn step(&mut self, now: Timestamp, key: K) -> Option<FleetAction<K>> {
        let operation = self.operations.get_mut(&key)?;
        match operation.engine.poll(now) {
            Action::SendRequest(request) => {
                let id = self.next_request;
                // Never 0: the operation marks its request with a `NonZeroU64` (8 bytes, not 16).
                self.next_request = self.next_request.checked_add(1).unwrap_or(1);
                operation.in_flight = NonZeroU64::new(id);
                let origin = operation.origin.clone();
                self.tokens -= 1.0;
                self.requests_sent = self.requests_sent.saturating_add(1);
                if let Some(origin) = &origin {
                    *self.in_flight.entry(origin.clone()).or_default() += 1;
                }
                self.requests.insert(id, InFlight { key: Some(key.clone()), origin });
                Some(FleetAction::Send { key, id: RequestId(id), request })
            }
            Action::Wait(wait) => {
                self.enqueue(&key, deadline_after(now.instant, wait));
                None
            }
            Action::Done => {
                self.finish(&key);
                self.finished.pop().map(FleetAction::from)
            }
        }
    }

    /// Ends an operation whose deadline has passed.
    fn expire(&mut self, now: Timestamp, key: &K) -> Option<FleetAction<K>> {
        let operation = self.operations.get(key)?;
        if operation.deadline.is_none_or(|deadline| now.instant < deadline) {
            return None;
        }
        let operation = self.take(key)?;
        let error = LroError::gave_up(
            "the operation's deadline in the fleet passed; it may still be running",
            None,
            operation.engine.polls(),
        );
        let error = match operation.engine.continuation_token() {
            Ok(token) => error.with_continuation_token(token),
            Err(_) => error,
        };
        let status = operation.engine.status().clone();
        let polls = operation.engine.polls();
        Some(FleetAction::Finished { key: key.clone(), outcome: Err(error), status, polls })
    }

    fn finish(&mut self, key: &K) {
        if let Some(operation) = self.take(key) {
            let outcome = operation.engine.outcome().cloned().map_err(Clone::clone);
            let status = operation.engine.status().clone();
            let polls = operation.engine.polls();
            self.finished.push(Ended { key: key.clone(), outcome, status, polls });
        }
    }

    /// Whether `key`'s origin cannot take a request now: paused, or at its in-flight cap.
    fn origin_blocked(&self, key: &K, now: Instant) -> bool {
        let Some(origin) = self.operations.get(key).and_then(|op| op.origin.as_ref()) else {
            return false;
        };
        room(origin, now, &self.paused_until, &self.in_flight, &self.options) == 0
    }

    fn release(&mut self, origin: Option<&Arc<Origin>>) {
        let Some(origin) = origin else { return };
        if let Some(count) = self.in_flight.get_mut(origin) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.in_flight.remove(origin);
            }
        }
    }

    fn refill(&mut self, now: Instant) {
        let last = *self.refilled.get_or_insert(now);
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.options.rate).min(f64::from(self.options.burst));
        self.refilled = Some(now);
    }

    /// How long until something can happen when nothing can be sent now: the next poll that is
    /// not due yet, the next token (when the budget held a due poll back), the end of a pause
    /// that held one back. A full origin frees up only when a response comes back: idle.
    fn next_wait(
        &self,
        now: Instant,
        next_due: Option<Instant>,
        budget_blocked: bool,
        pause_ends: Option<Instant>,
    ) -> FleetAction<K> {
        let token = budget_blocked.then(|| {
            // At least a microsecond: float rounding must not make "almost a token" idle.
            let wait = Duration::from_secs_f64((1.0 - self.tokens).max(0.0) / self.options.rate);
            crate::deadline::deadline_after(now, wait.max(Duration::from_micros(1)))
        });
        [next_due, token, pause_ends].into_iter().flatten().min().map_or(FleetAction::Idle, |at| {
            FleetAction::Wait(at.saturating_duration_since(now).max(Duration::from_micros(1)))
        })
    }
}

/// How many more requests `origin` may take now: none while paused, else its free slots.
fn room(
    origin: &Origin,
    now: Instant,
    paused_until: &HashMap<Arc<Origin>, Instant>,
    in_flight: &HashMap<Arc<Origin>, usize>,
    options: &FleetOptions,
) -> usize {
    if paused_until.get(origin).is_some_and(|until| *until > now) {
        return 0;
    }
    let busy = in_flight.get(origin).copied().unwrap_or(0);
    options.max_in_flight_per_origin.saturating_sub(busy)
}

/// Rounding slack of the token bucket's float arithmetic.
const TOKEN_EPSILON: f64 = 1e-9;
