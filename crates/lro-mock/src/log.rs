//! The request log and counters of a [`MockServer`](crate::MockServer).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use http::Version;
use http::request::Parts;

use crate::faults::Fault;

/// Counter maps keep at most this many distinct keys; later keys are counted under
/// [`Counters::OTHER`].
const MAX_COUNTER_KEYS: usize = 10_000;
/// Longer `x-ms-client-request-id` values are cut to this many bytes in the log.
const MAX_REQUEST_ID_LEN: usize = 256;

/// One request as the mock service saw it. Credentials are never stored: only whether an
/// `Authorization` header was present.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogEntry {
    /// The method, e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/operations/…?api-version=2024-01-01`.
    pub path: String,
    /// The HTTP version of the request.
    pub version: Version,
    /// The names of all request headers, lower-case, in the order received.
    pub header_names: Vec<String>,
    /// The value of `x-ms-client-request-id`, if any (cut to 256 bytes).
    pub client_request_id: Option<String>,
    /// Whether an `Authorization` header was present (its value is never stored).
    pub authorization: bool,
    /// The `User-Agent` header's value, if any (cut to 256 bytes): tells apart the clients of
    /// one operation (the workers of a store, say).
    pub user_agent: Option<String>,
    /// The operation the request created or polled, if any.
    pub operation_id: Option<String>,
    /// The response status, or `None` when the connection was reset instead.
    pub status: Option<u16>,
    /// The faults injected into the response.
    pub faults: Vec<Fault>,
}

impl LogEntry {
    pub(crate) fn new(parts: &Parts) -> Self {
        let header = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok());
        Self {
            method: parts.method.as_str().to_owned(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            version: parts.version,
            header_names: parts.headers.keys().map(|name| name.as_str().to_owned()).collect(),
            client_request_id: header("x-ms-client-request-id")
                .map(|id| truncate(id, MAX_REQUEST_ID_LEN)),
            authorization: parts.headers.contains_key(http::header::AUTHORIZATION),
            user_agent: header("user-agent").map(|agent| truncate(agent, MAX_REQUEST_ID_LEN)),
            operation_id: None,
            status: None,
            faults: Vec::new(),
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Request counts since the server started (they are not reduced when the log drops entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// All requests.
    pub total: u64,
    /// Requests per operation id (creation and polls).
    pub by_operation: BTreeMap<String, u64>,
    /// Requests per path (without the query).
    pub by_path: BTreeMap<String, u64>,
    /// Requests per method.
    pub by_method: BTreeMap<String, u64>,
}

impl Counters {
    /// The key under which requests are counted once a map holds 10 000 distinct keys.
    pub const OTHER: &'static str = "(other)";

    /// Requests that created or polled this operation.
    pub fn operation(&self, id: &str) -> u64 {
        self.by_operation.get(id).copied().unwrap_or(0)
    }

    /// Requests to this path (without the query).
    pub fn path(&self, path: &str) -> u64 {
        self.by_path.get(path).copied().unwrap_or(0)
    }

    /// Requests with this method.
    pub fn method(&self, method: &str) -> u64 {
        self.by_method.get(method).copied().unwrap_or(0)
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    if let Some(count) = map.get_mut(key) {
        *count += 1;
    } else if map.len() < MAX_COUNTER_KEYS {
        map.insert(key.to_owned(), 1);
    } else {
        *map.entry(Counters::OTHER.to_owned()).or_insert(0) += 1;
    }
}

#[derive(Debug)]
struct Inner {
    entries: VecDeque<LogEntry>,
    counters: Counters,
}

/// The bounded, thread-safe log.
#[derive(Debug)]
pub(crate) struct RequestLog {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl RequestLog {
    pub(crate) fn new(capacity: usize) -> Self {
        let inner = Inner { entries: VecDeque::new(), counters: Counters::default() };
        Self { capacity, inner: Mutex::new(inner) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record(&self, entry: LogEntry) {
        let mut inner = self.lock();
        let counters = &mut inner.counters;
        counters.total += 1;
        bump(&mut counters.by_method, &entry.method);
        let path = entry.path.split('?').next().unwrap_or_default();
        bump(&mut counters.by_path, path);
        if let Some(id) = &entry.operation_id {
            bump(&mut counters.by_operation, id);
        }
        if self.capacity == 0 {
            return;
        }
        while inner.entries.len() >= self.capacity {
            inner.entries.pop_front();
        }
        inner.entries.push_back(entry);
    }

    pub(crate) fn entries(&self) -> Vec<LogEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    pub(crate) fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }
}
