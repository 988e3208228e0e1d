//! The operations and resources the service keeps: how an operation moves through its phases,
//! what its monitors and its resource show, and the bounded store that holds them.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::config::{Outcome, Progression};
use crate::faults::FaultSpec;
use crate::retry_after::RetryAfter;

/// Request bodies the service keeps (resource properties, job inputs) add up to at most this
/// many bytes; the oldest resources, then operations, are forgotten beyond it.
const MAX_STORED_BYTES: usize = 64 << 20;

/// Where an operation is, as its monitors report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not polled yet, or polled once.
    NotStarted,
    /// Polled more than once, not terminal yet.
    Running,
    /// Terminal.
    Done(Outcome),
}

impl Phase {
    /// The status word as the service spells it.
    fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "NotStarted",
            Self::Running => "Running",
            Self::Done(outcome) => outcome.as_str(),
        }
    }
}

/// What an operation does, with what it needs to answer its `operationResults`.
#[derive(Debug, Clone)]
pub(crate) enum OpKind {
    /// `PUT` of a widget (`resource` is its store key); `created` unless it replaced one.
    Put { resource: String, created: bool },
    /// `PATCH` of a widget.
    Patch { resource: String },
    /// `DELETE` of a widget.
    Delete { resource: String },
    /// `POST .../restart` of the widget with this id and name.
    Restart { resource_id: String, name: String },
    /// `POST /jobs` with this input.
    Job { input: Value },
}

impl OpKind {
    /// The resource whose provisioning state follows this operation.
    fn resource(&self) -> Option<&str> {
        match self {
            Self::Put { resource, .. } | Self::Patch { resource } | Self::Delete { resource } => {
                Some(resource)
            }
            Self::Restart { .. } | Self::Job { .. } => None,
        }
    }

    /// The provisioning state of the resource while this operation runs.
    pub(crate) fn in_progress_word(&self) -> &'static str {
        match self {
            Self::Put { created: true, .. } => "Creating",
            Self::Put { created: false, .. } | Self::Patch { .. } => "Updating",
            Self::Delete { .. } => "Deleting",
            Self::Restart { .. } | Self::Job { .. } => "Running",
        }
    }
}

/// One long-running operation.
#[derive(Debug)]
pub(crate) struct Operation {
    /// The server-generated id.
    pub(crate) id: String,
    /// What it does.
    pub(crate) kind: OpKind,
    /// The terminal status it ends with.
    pub(crate) outcome: Outcome,
    /// When it becomes terminal.
    pub(crate) progression: Progression,
    /// Polls counted so far.
    pub(crate) polls: u32,
    /// When the initial request came (on tokio's clock, for [`Progression::Elapsed`]).
    pub(crate) created: tokio::time::Instant,
    /// `startTime` of its monitors.
    pub(crate) start_time: SystemTime,
    /// `endTime` of its monitors, set when it is first seen terminal.
    pub(crate) end_time: Option<SystemTime>,
    /// The delay hint on its in-progress polls.
    pub(crate) retry_after: RetryAfter,
    /// A spec from `x-mock-faults`, with its own generator.
    pub(crate) faults: Option<(FaultSpec, fastrand::Rng)>,
    /// No monitor header: GETs on the resource are the polls.
    pub(crate) resource_polled: bool,
    /// Its effect on its resource has been applied.
    pub(crate) settled: bool,
    /// The bytes of request body it keeps (a job's input).
    pub(crate) bytes: usize,
}

impl Operation {
    /// The phase now; counts a poll first when `poll` is set.
    fn observe(&mut self, poll: bool) -> Phase {
        if poll {
            self.polls = self.polls.saturating_add(1);
        }
        let done = match self.progression {
            Progression::Polls(polls) => self.polls > polls,
            Progression::Elapsed(elapsed) => self.created.elapsed() >= elapsed,
        };
        if done {
            self.end_time.get_or_insert_with(SystemTime::now);
            Phase::Done(self.outcome)
        } else if self.polls <= 1 {
            Phase::NotStarted
        } else {
            Phase::Running
        }
    }

    /// The `error` object of a `Failed` or `Canceled` operation.
    pub(crate) fn error(&self) -> Option<Value> {
        let (code, message) = match self.outcome {
            Outcome::Succeeded => return None,
            Outcome::Failed => {
                ("MockOperationFailed", "The operation failed (x-mock-outcome: Failed).")
            }
            Outcome::Canceled => {
                ("MockOperationCanceled", "The operation was canceled (x-mock-outcome: Canceled).")
            }
        };
        Some(json!({ "code": code, "message": message }))
    }

    /// How far the operation has got, as ARM's status monitors say it: 100 once done, else
    /// the share of its polls (or of its time) gone by.
    fn percent_complete(&self, phase: Phase) -> u64 {
        if matches!(phase, Phase::Done(_)) {
            return 100;
        }
        let share = match self.progression {
            Progression::Polls(0) => 0.0,
            Progression::Polls(polls) => f64::from(self.polls) / (f64::from(polls) + 1.0),
            Progression::Elapsed(total) if total.is_zero() => 0.0,
            Progression::Elapsed(total) => {
                self.created.elapsed().as_secs_f64() / total.as_secs_f64()
            }
        };
        // Truncated to a whole percentage below 100 (the last step is the terminal status).
        (share.clamp(0.0, 0.99) * 100.0) as u64
    }

    /// The body of the status monitors.
    pub(crate) fn monitor_body(&self, phase: Phase, base: &str) -> Value {
        let mut body = Map::new();
        body.insert("id".into(), self.id.clone().into());
        body.insert("status".into(), phase.as_str().into());
        body.insert("startTime".into(), rfc3339(self.start_time).into());
        body.insert("percentComplete".into(), self.percent_complete(phase).into());
        if let Phase::Done(outcome) = phase {
            if let Some(end) = self.end_time {
                body.insert("endTime".into(), rfc3339(end).into());
            }
            if let Some(error) = self.error() {
                body.insert("error".into(), error);
            }
            if outcome == Outcome::Succeeded && matches!(self.kind, OpKind::Job { .. }) {
                body.insert("resourceLocation".into(), format!("{base}/jobs/{}", self.id).into());
            }
        }
        Value::Object(body)
    }

    /// The job as `GET /jobs/{id}` shows it.
    pub(crate) fn job_body(&self, phase: Phase, input: &Value) -> Value {
        let mut body = json!({ "id": self.id, "status": phase.as_str(), "input": input });
        if phase == Phase::Done(Outcome::Succeeded) {
            body["result"] = json!({ "output": format!("job {} completed", self.id) });
        }
        if let (Phase::Done(_), Some(error)) = (phase, self.error()) {
            body["error"] = error;
        }
        body
    }
}

/// A widget.
#[derive(Debug)]
pub(crate) struct Resource {
    /// Its ARM id, as first written.
    pub(crate) id: String,
    /// Its name.
    pub(crate) name: String,
    /// Its properties, without `provisioningState`.
    pub(crate) properties: Map<String, Value>,
    /// The provisioning state once no operation is pending.
    pub(crate) state: String,
    /// The operation that currently owns its provisioning state.
    pub(crate) pending: Option<String>,
    /// Tells this version apart from earlier ones in the eviction order.
    pub(crate) generation: u64,
    /// The bytes of request body it keeps (its properties).
    pub(crate) bytes: usize,
}

impl Resource {
    /// The resource as `GET` shows it, with this provisioning state.
    pub(crate) fn body(&self, provisioning_state: &str) -> Value {
        let mut properties = self.properties.clone();
        properties.insert("provisioningState".into(), provisioning_state.into());
        json!({
            "id": self.id,
            "name": self.name,
            "type": "Mock.Widgets/widgets",
            "properties": properties,
        })
    }
}

/// The operations and resources, bounded in number and in kept bytes; the oldest are forgotten
/// first.
#[derive(Debug, Default)]
pub(crate) struct Store {
    next_id: u64,
    /// The operations by id.
    pub(crate) operations: HashMap<String, Operation>,
    operation_order: VecDeque<String>,
    /// The resources by key (their lower-cased id).
    pub(crate) resources: HashMap<String, Resource>,
    resource_order: VecDeque<(String, u64)>,
    next_generation: u64,
    stored_bytes: usize,
}

impl Store {
    /// A fresh operation id.
    pub(crate) fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next_id)
    }

    /// Adds an operation, then forgets the oldest ones beyond the bounds.
    pub(crate) fn insert_operation(&mut self, operation: Operation, max: usize) {
        self.stored_bytes += operation.bytes;
        self.operation_order.push_back(operation.id.clone());
        self.operations.insert(operation.id.clone(), operation);
        while self.operations.len() > max {
            let Some(oldest) = self.operation_order.pop_front() else { break };
            self.evict_operation(&oldest);
        }
        self.enforce_byte_budget();
    }

    /// Forgets an operation, settling it first.
    fn evict_operation(&mut self, id: &str) {
        self.settle(id);
        if let Some(operation) = self.operations.remove(id) {
            self.stored_bytes = self.stored_bytes.saturating_sub(operation.bytes);
        }
    }

    /// Adds or replaces a resource, then forgets the oldest ones beyond the bounds.
    pub(crate) fn upsert_resource(&mut self, key: &str, resource: Resource, max: usize) {
        self.stored_bytes += resource.bytes;
        if let Some(old) = self.resources.insert(key.to_owned(), resource) {
            self.stored_bytes = self.stored_bytes.saturating_sub(old.bytes);
        }
        let generation = self.resources.get(key).map_or(0, |resource| resource.generation);
        self.resource_order.push_back((key.to_owned(), generation));
        while self.resources.len() > max {
            if !self.evict_oldest_resource() {
                break;
            }
        }
        if self.resource_order.len() > 2 * max + 16 {
            let resources = &self.resources;
            self.resource_order.retain(|(key, generation)| {
                resources.get(key).is_some_and(|resource| resource.generation == *generation)
            });
        }
        self.enforce_byte_budget();
    }

    /// Forgets a resource.
    fn remove_resource(&mut self, key: &str) {
        if let Some(resource) = self.resources.remove(key) {
            self.stored_bytes = self.stored_bytes.saturating_sub(resource.bytes);
        }
    }

    /// Forgets the oldest resource still stored; false if there is none.
    fn evict_oldest_resource(&mut self) -> bool {
        while let Some((key, generation)) = self.resource_order.pop_front() {
            if self.resources.get(&key).is_some_and(|resource| resource.generation == generation) {
                self.remove_resource(&key);
                return true;
            }
        }
        false
    }

    /// Forgets resources, then operations, oldest first, until the kept bytes fit
    /// [`MAX_STORED_BYTES`].
    fn enforce_byte_budget(&mut self) {
        while self.stored_bytes > MAX_STORED_BYTES {
            if self.evict_oldest_resource() {
                continue;
            }
            let Some(oldest) = self.operation_order.pop_front() else { break };
            self.evict_operation(&oldest);
        }
    }

    /// A fresh resource generation.
    pub(crate) fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// The operation's phase (counting a poll when `poll`), applying its effect on its
    /// resource once it is done. `None` if the operation is unknown.
    pub(crate) fn observe(&mut self, id: &str, poll: bool) -> Option<Phase> {
        let phase = self.operations.get_mut(id)?.observe(poll);
        if matches!(phase, Phase::Done(_)) {
            self.settle(id);
        }
        Some(phase)
    }

    /// Applies a finished (or evicted) operation's effect on its resource, once.
    fn settle(&mut self, id: &str) {
        let Some(operation) = self.operations.get_mut(id) else { return };
        if operation.settled {
            return;
        }
        operation.settled = true;
        let outcome = operation.outcome;
        let kind = operation.kind.clone();
        let Some(key) = kind.resource() else { return };
        let Some(resource) = self.resources.get_mut(key) else { return };
        if resource.pending.as_deref() != Some(id) {
            return; // a later operation took the resource over
        }
        resource.pending = None;
        if matches!(kind, OpKind::Delete { .. }) && outcome == Outcome::Succeeded {
            self.remove_resource(key);
        } else {
            resource.state = outcome.as_str().to_owned();
        }
    }
}

/// `time` as RFC 3339 with milliseconds (`2026-05-07T12:34:56.789Z`), as Azure services write
/// `startTime` and `endTime`. Times before 1970 read as 1970.
fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time.max(UNIX_EPOCH)).to_string()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::config::MockConfig;
    use crate::control::Control;
    use crate::service::{State, lock};

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.123Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_778_155_200); // 2026-05-07T12:00:00Z
        assert_eq!(rfc3339(later), "2026-05-07T12:00:00.000Z");
    }

    #[test]
    fn eviction_keeps_the_newest() {
        let config = MockConfig::builder().max_operations(3).build();
        let state = State::new(config, SocketAddr::from(([127, 0, 0, 1], 1)));
        for _ in 0..5 {
            let control = Control {
                outcome: Outcome::Succeeded,
                progression: Progression::Polls(1),
                retry_after: RetryAfter::None,
                headers: None,
                faults: None,
            };
            assert!(state.start_job(control, Value::Null).is_ok());
        }
        let store = lock(&state.store);
        assert_eq!(store.operations.len(), 3);
        assert_eq!(store.operation_order.len(), 3);
        assert!(!store.operations.contains_key("00000000-0000-4000-8000-000000000001"));
        assert!(store.operations.contains_key("00000000-0000-4000-8000-000000000005"));
    }
}
