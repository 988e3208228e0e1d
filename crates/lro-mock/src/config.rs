//! [`MockConfig`] and the small value types the control headers also use.

use std::str::FromStr;
use std::time::Duration;

use crate::faults::FaultSpec;
use crate::retry_after::RetryAfter;

/// How an operation moves from `NotStarted` to its terminal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progression {
    /// The first `n` polls of the operation's monitor answer an in-progress status (`NotStarted`
    /// for the first one, `Running` after that); poll `n + 1` and every later one answer the
    /// terminal status. `Polls(0)`: the first poll is already terminal.
    Polls(u32),
    /// The operation is terminal once this much time has passed since the initial request. The
    /// first poll before that answers `NotStarted`, later ones `Running`.
    Elapsed(Duration),
}

/// The terminal status an operation ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Outcome {
    /// `Succeeded`.
    #[default]
    Succeeded,
    /// `Failed`, with an `error` object.
    Failed,
    /// `Canceled`, with an `error` object.
    Canceled,
}

impl Outcome {
    /// The status word as the service spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }
}

/// Parses `Succeeded`, `Failed` or `Canceled` (any case).
impl FromStr for Outcome {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "canceled" => Ok(Self::Canceled),
            _ => Err(format!("expected Succeeded, Failed or Canceled, got {text:?}")),
        }
    }
}

/// Which polling headers an initial response carries (the `x-mock-final-state` header).
///
/// The *monitor* header is `Azure-AsyncOperation: {base}/operations/{id}` on the ARM routes
/// and `Operation-Location: {base}/jobs/operations/{id}` on `POST /jobs`; the *location*
/// header is `Location: {base}/operationResults/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitialHeaders {
    /// Only `Location` (`location`).
    Location,
    /// Only the monitor header (`azure-async-operation`, also spelled `operation-location` or
    /// `monitor`).
    Monitor,
    /// Both (`both`).
    Both,
    /// Neither, so clients poll the resource itself (ARM body polling; `none`). Only `PUT` and
    /// `PATCH` honour it: the other routes use their default.
    Neither,
}

impl InitialHeaders {
    pub(crate) fn location(self) -> bool {
        matches!(self, Self::Location | Self::Both)
    }

    pub(crate) fn monitor(self) -> bool {
        matches!(self, Self::Monitor | Self::Both)
    }
}

/// Parses the `x-mock-final-state` values (any case).
impl FromStr for InitialHeaders {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "location" => Ok(Self::Location),
            "azure-async-operation" | "operation-location" | "monitor" => Ok(Self::Monitor),
            "both" => Ok(Self::Both),
            "none" => Ok(Self::Neither),
            _ => Err(format!(
                "expected location, azure-async-operation, operation-location, both or none, \
                 got {text:?}"
            )),
        }
    }
}

/// How a [`MockServer`](crate::MockServer) behaves. Build one with [`MockConfig::builder`];
/// [`MockConfig::default`] is an ephemeral port, operations finishing after two polls, no
/// `Retry-After`, no faults.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub(crate) port: u16,
    pub(crate) progression: Progression,
    pub(crate) retry_after: RetryAfter,
    pub(crate) initial_headers: Option<InitialHeaders>,
    pub(crate) faults: FaultSpec,
    pub(crate) max_operations: usize,
    pub(crate) log_capacity: usize,
    pub(crate) max_request_body: usize,
    pub(crate) on_request: Option<OnRequest>,
}

/// A function told of every request the service answered ([`MockConfigBuilder::on_request`]).
#[derive(Clone)]
pub(crate) struct OnRequest(pub(crate) std::sync::Arc<dyn Fn(&crate::LogEntry) + Send + Sync>);

impl std::fmt::Debug for OnRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnRequest(..)")
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            port: 0,
            progression: Progression::Polls(2),
            retry_after: RetryAfter::None,
            initial_headers: None,
            faults: FaultSpec::default(),
            max_operations: 10_000,
            log_capacity: 10_000,
            max_request_body: 1024 * 1024,
            on_request: None,
        }
    }
}

impl MockConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> MockConfigBuilder {
        MockConfigBuilder { config: Self::default() }
    }

    /// The port to bind (0 = ephemeral).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How operations progress unless the initial request says otherwise.
    pub fn progression(&self) -> Progression {
        self.progression
    }

    /// The default delay hint.
    pub fn retry_after(&self) -> RetryAfter {
        self.retry_after
    }

    /// The server-wide fault injection.
    pub fn faults(&self) -> &FaultSpec {
        &self.faults
    }
}

/// Builds a [`MockConfig`].
#[derive(Debug, Clone)]
pub struct MockConfigBuilder {
    config: MockConfig,
}

impl MockConfigBuilder {
    /// Binds this port on 127.0.0.1 (default 0: the system picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }

    /// Operations answer `polls` in-progress polls, then their terminal status (default 2).
    pub fn progress_after_polls(mut self, polls: u32) -> Self {
        self.config.progression = Progression::Polls(polls);
        self
    }

    /// Operations become terminal this long after their initial request, however often they
    /// are polled.
    pub fn progress_after(mut self, elapsed: Duration) -> Self {
        self.config.progression = Progression::Elapsed(elapsed);
        self
    }

    /// The delay hint on initial responses and in-progress polls (default none).
    pub fn retry_after(mut self, retry_after: RetryAfter) -> Self {
        self.config.retry_after = retry_after;
        self
    }

    /// Which polling headers initial responses carry, for every route (default: each route's
    /// own, see the crate documentation). `x-mock-final-state` still overrides it.
    pub fn initial_headers(mut self, headers: InitialHeaders) -> Self {
        self.config.initial_headers = Some(headers);
        self
    }

    /// Server-wide fault injection (default none). `x-mock-faults` on an initial request
    /// replaces it for that operation.
    pub fn faults(mut self, faults: FaultSpec) -> Self {
        self.config.faults = faults;
        self
    }

    /// At most this many operations, and this many resources, are kept; the oldest are
    /// forgotten first (default 10 000, at least 1).
    pub fn max_operations(mut self, max: usize) -> Self {
        self.config.max_operations = max.max(1);
        self
    }

    /// Calls `f` with every request the service answered (or reset), as the log records it:
    /// `lro mock` prints them. Called on the service's tasks: keep it quick.
    pub fn on_request(mut self, f: impl Fn(&crate::LogEntry) + Send + Sync + 'static) -> Self {
        self.config.on_request = Some(OnRequest(std::sync::Arc::new(f)));
        self
    }

    /// The request log keeps this many entries, dropping the oldest (default 10 000).
    pub fn log_capacity(mut self, capacity: usize) -> Self {
        self.config.log_capacity = capacity;
        self
    }

    /// Request bodies above this many bytes are refused with 413 (default 1 MiB).
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.config.max_request_body = bytes;
        self
    }

    /// The configuration.
    pub fn build(self) -> MockConfig {
        self.config
    }
}
