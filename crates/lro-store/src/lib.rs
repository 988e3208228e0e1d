//! Durable operation stores: continuation tokens that outlive a process, shared by a fleet of
//! workers.
//!
//! An operation is *submitted* once (its initial request answered, its signed continuation
//! token stored), then *claimed* by one worker at a time under a **lease**: the worker polls it,
//! *checkpoints* every new token, *renews* its lease well before it runs out, and finally
//! *completes* it with its outcome and result. A worker that dies stops renewing; once its lease
//! has run out another worker claims the operation and resumes from the last checkpoint.
//!
//! Every claim gives the lease a new **fence** (a number that only grows). Checkpoints,
//! renewals and completions name the fence they hold and are refused
//! ([`StoreError::LeaseLost`]) once a newer claim exists: a worker that was paused past its
//! lease cannot overwrite what its successor wrote. Lease times are the database's clock, so
//! workers' clocks need not agree.
//!
//! Two implementations: [`SqliteStore`] (embedded, bundled SQLite: one machine, tests) and
//! [`PostgresStore`] (many workers: `FOR UPDATE SKIP LOCKED` claims). [`open`] picks one from a
//! URL (`sqlite:PATH`, `postgres://…`).
//!
//! What is stored: the key, the token (signed by the submitter: a store's rows are untrusted
//! input to a worker, as any token is), the polling settings (`spec`, JSON, no credentials),
//! status, polls, lease, outcome and result. Never a credential: each worker brings its own.

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The most operations one [`OperationStore::claim`] hands out.
pub const MAX_CLAIM: usize = 1_000;

/// A stored token of more bytes than this is not handed out by a claim (the claimer gets an empty
/// token, and ends the operation as an error): lro's own cap on tokens, 16 MiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024 * 1024;

/// A stored spec of more bytes than this is not handed out by a claim (the claimer gets `null`).
pub const MAX_SPEC_BYTES: usize = 64 * 1024;

/// A claimed row as the claimer gets it: a missing token empty, a spec that does not parse
/// `null` (the claimer ends such an operation as an error instead of the claim failing for the
/// whole batch).
pub(crate) fn claimed(
    key: String,
    fence: i64,
    token: Option<String>,
    spec: &str,
    polls: i64,
) -> Claimed {
    Claimed {
        lease: Lease::new(key, fence),
        token: token.unwrap_or_default(),
        spec: serde_json::from_str(spec).unwrap_or(Value::Null),
        polls: polls_of(polls),
    }
}

/// The outcome of a fenced write that changed `rows` rows: none means the fence is stale
/// ([`StoreError::LeaseLost`]), whatever the backend.
pub(crate) fn fenced(rows: u64, lease: &Lease) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::LeaseLost { key: lease.key.clone(), fence: lease.fence });
    }
    Ok(())
}

/// A stored poll count (never negative, at most `u32::MAX`).
pub(crate) fn polls_of(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// Where an operation stands in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OperationState {
    /// Still to be polled (claimed by a worker or waiting for one).
    Running,
    /// It ended: the service said it succeeded.
    Succeeded,
    /// It ended: the service said it failed.
    Failed,
    /// It ended: the service said it was canceled.
    Canceled,
    /// Polling ended with an error (a bad answer, a refused origin, a deadline, ...).
    Error,
    /// Someone stopped tracking it ([`OperationStore::abandon`]); the service may still run it.
    Abandoned,
}

impl OperationState {
    /// The word stored and shown: `running`, `succeeded`, `failed`, `canceled`, `error`,
    /// `abandoned`.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
            OperationState::Canceled => "canceled",
            OperationState::Error => "error",
            OperationState::Abandoned => "abandoned",
        }
    }

    /// The state a stored word names.
    pub fn parse(word: &str) -> Result<Self, StoreError> {
        Ok(match word {
            "running" => OperationState::Running,
            "succeeded" => OperationState::Succeeded,
            "failed" => OperationState::Failed,
            "canceled" => OperationState::Canceled,
            "error" => OperationState::Error,
            "abandoned" => OperationState::Abandoned,
            other => return Err(StoreError::Corrupt(format!("unknown state {other:?}"))),
        })
    }

    /// Whether the operation is over (anything but [`Running`](Self::Running)).
    pub fn is_final(self) -> bool {
        self != OperationState::Running
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation to store: its initial request was answered, polling is still to do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewOperation {
    /// Unique in the store.
    pub key: String,
    /// The continuation token (signed: workers refuse unsigned ones).
    pub token: String,
    /// How to poll it (algorithms, interval, ...): whatever the worker needs, no credentials.
    pub spec: Value,
    /// The status after the initial response.
    pub status: String,
}

impl NewOperation {
    /// An operation named `key`, to resume from `token`, polled as `spec` says.
    pub fn new(key: impl Into<String>, token: impl Into<String>, spec: Value) -> Self {
        NewOperation { key: key.into(), token: token.into(), spec, status: String::new() }
    }

    /// The status after the initial response.
    #[must_use]
    pub fn status(mut self, status: impl Into<String>) -> Self {
        self.status = status.into();
        self
    }
}

/// A claim on one operation: the key and the fence of the claim. Every write by the holder
/// names it; a newer claim makes it stale.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Lease {
    /// The operation.
    pub key: String,
    /// The claim's number: it grows with every claim of the operation.
    pub fence: i64,
}

impl Lease {
    /// The lease of `key` at `fence`.
    pub fn new(key: impl Into<String>, fence: i64) -> Self {
        Lease { key: key.into(), fence }
    }
}

/// An operation handed to a worker by [`OperationStore::claim`]. A row that cannot be used
/// (no token, a token over [`MAX_TOKEN_BYTES`], a spec over [`MAX_SPEC_BYTES`] or not JSON)
/// is handed out all the same, with an empty token or a `null` spec, so that the claimer ends
/// it as an error rather than every claim failing on it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Claimed {
    /// The claim: name it in every write.
    pub lease: Lease,
    /// The latest checkpointed token (empty if the row has none that can be used).
    pub token: String,
    /// How to poll it (`null` if the row has none that can be used).
    pub spec: Value,
    /// Polls made so far, by every worker.
    pub polls: u32,
}

/// A new continuation token, written by the lease holder after a poll changed it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The token to resume from.
    pub token: String,
    /// The latest status.
    pub status: String,
    /// Polls made so far.
    pub polls: u32,
}

impl Checkpoint {
    /// A checkpoint of `token`, at `status` after `polls` polls.
    pub fn new(token: impl Into<String>, status: impl Into<String>, polls: u32) -> Self {
        Checkpoint { token: token.into(), status: status.into(), polls }
    }
}

/// How an operation ended, written once by the lease holder.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Completion {
    /// Any final state but `Running` and `Abandoned`.
    pub state: OperationState,
    /// The last status word.
    pub status: String,
    /// Polls made in all.
    pub polls: u32,
    /// The outcome as a report (the CLI's `--output json` object).
    pub outcome: Value,
    /// The final resource's bytes, exactly as the service sent them (successes).
    pub result: Option<Bytes>,
}

impl Completion {
    /// An operation that ended in `state`.
    pub fn new(
        state: OperationState,
        status: impl Into<String>,
        polls: u32,
        outcome: Value,
    ) -> Self {
        Completion { state, status: status.into(), polls, outcome, result: None }
    }

    /// With the final resource's bytes.
    #[must_use]
    pub fn result(mut self, result: Bytes) -> Self {
        self.result = Some(result);
        self
    }
}

/// One operation as the store holds it (for `lro status`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OperationRecord {
    /// The key.
    pub key: String,
    /// Where it stands.
    pub state: OperationState,
    /// The last status word.
    pub status: String,
    /// Polls made so far.
    pub polls: u32,
    /// The worker holding it, while a lease runs.
    pub owner: Option<String>,
    /// The fence of the latest claim (0: never claimed).
    pub fence: i64,
    /// How many times it was claimed.
    pub claims: i64,
    /// The latest token (`None` once over).
    pub token: Option<String>,
    /// How to poll it.
    pub spec: Value,
    /// The outcome report, once over.
    pub outcome: Option<Value>,
    /// The final resource, once succeeded.
    pub result: Option<Bytes>,
    /// When it was submitted, in milliseconds since the Unix epoch (the database's clock).
    pub created_ms: i64,
    /// When it last changed, likewise.
    pub updated_ms: i64,
}

/// A store failed, or refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The lease is no longer held: it ran out and the operation was claimed again, or it was
    /// abandoned. Stop polling the operation; its new holder goes on.
    #[error("lease lost on {key} (fence {fence}): another claim or an abandon came after it")]
    LeaseLost {
        /// The operation.
        key: String,
        /// The stale fence.
        fence: i64,
    },
    /// [`submit`](OperationStore::submit) of a key that is already stored.
    #[error("an operation with key {0:?} is already stored")]
    Duplicate(String),
    /// A row that cannot be read back (a state or a spec that does not parse).
    #[error("corrupt store row: {0}")]
    Corrupt(String),
    /// A store URL that names no known store.
    #[error("unsupported store URL {0:?}: use sqlite:PATH or postgres://...")]
    BadUrl(String),
    /// The database said no.
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StoreError {
    pub(crate) fn database(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// A durable store of operations, shared by workers. Implementations are safe to call from
/// many tasks and processes at once.
#[async_trait::async_trait]
pub trait OperationStore: Send + Sync {
    /// Stores a new operation, ready to be claimed. Fails with
    /// [`Duplicate`](StoreError::Duplicate) if the key is taken.
    async fn submit(&self, operation: NewOperation) -> Result<(), StoreError>;

    /// Claims up to `max` running operations that no live lease holds (never claimed, or their
    /// lease ran out), for `worker`, for `lease` from now (the database's clock; a zero lease
    /// runs out at once; at most 30 days). Each gets a new fence. Operations whose lease ran out longest ago come
    /// first.
    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Extends `leases` held by `worker` to `lease` from now. Returns the ones still held;
    /// the others were lost (claimed again, abandoned, or over).
    async fn renew(
        &self,
        worker: &str,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<Lease>, StoreError>;

    /// Records a new token. [`LeaseLost`](StoreError::LeaseLost) if `lease` is stale.
    async fn checkpoint(&self, lease: &Lease, checkpoint: Checkpoint) -> Result<(), StoreError>;

    /// Records how the operation ended, and drops its token and lease.
    /// [`LeaseLost`](StoreError::LeaseLost) if `lease` is stale.
    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<(), StoreError>;

    /// Gives a lease back without completing (a worker shutting down): the operation can be
    /// claimed again at once. A stale lease is ignored.
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// Stops tracking a running operation: its state becomes `abandoned` and its holder loses
    /// its lease. `false` if it was not running. The service is not told.
    async fn abandon(&self, key: &str) -> Result<bool, StoreError>;

    /// One operation.
    async fn get(&self, key: &str) -> Result<Option<OperationRecord>, StoreError>;

    /// Every operation, oldest first, at most `limit`.
    async fn list(&self, limit: usize) -> Result<Vec<OperationRecord>, StoreError>;

    /// How many operations are still running (claimed or not): a worker told to exit when the
    /// work is done waits for this to reach 0, since a dead worker's operations come back.
    async fn running(&self) -> Result<u64, StoreError> {
        let all = self.list(usize::MAX).await?;
        Ok(all.iter().filter(|op| op.state == OperationState::Running).count() as u64)
    }
}

/// Opens the store a URL names: `sqlite:PATH` (created if missing; `sqlite::memory:` for a
/// private in-memory one) or `postgres://user@host:port/db` (`postgresql://` too). The schema
/// is created or migrated on opening.
pub async fn open(url: &str) -> Result<Box<dyn OperationStore>, StoreError> {
    #[cfg(feature = "sqlite")]
    if let Some(path) = url.strip_prefix("sqlite:") {
        return Ok(Box::new(SqliteStore::open(path).await?));
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(PostgresStore::connect(url).await?));
    }
    Err(StoreError::BadUrl(redacted_url(url)))
}

/// `url` fit to print: a password in it (`postgres://user:PASSWORD@host`, `?password=...`,
/// `password='...'` in a `key=value` connection string) replaced by `***`. Store URLs are the
/// only way to give a database password, and they end up in messages and logs.
///
/// What is hidden is what tokio-postgres would read as a password (the user-info runs to the
/// first `@` anywhere in the string; query keys are percent-decoded) and what a URL parser
/// or libpq would: a string read two ways hides both readings. Query and `key=value` keys
/// with `pass`, `secret` or `token` in them have their values hidden.
///
/// ```
/// assert_eq!(
///     lro_store::redacted_url("postgres://lro:s3cr3t@db/ops?password=x&sslmode=disable"),
///     "postgres://lro:***@db/ops?password=***&sslmode=disable"
/// );
/// assert_eq!(lro_store::redacted_url("postgres://lro:pa/ss@db/ops"), "postgres://lro:***@db/ops");
/// assert_eq!(lro_store::redacted_url("host=db password='a b'"), "host=db password=***");
/// assert_eq!(lro_store::redacted_url("sqlite:ops.db"), "sqlite:ops.db");
/// ```
#[must_use]
pub fn redacted_url(url: &str) -> String {
    let mut secrets = Vec::new();
    match url_authority_start(url) {
        Some(start) => {
            hide_as_tokio_postgres_reads(url, start, &mut secrets);
            hide_as_a_url_parser_reads(url, start, &mut secrets);
        }
        // Not a URL: tokio-postgres and libpq read `key=value` pairs. (A string that starts
        // with `scheme://` is no such list: its first key, `scheme://...`, is unknown to both.)
        None => hide_key_value_passwords(url, &mut secrets),
    }
    secrets.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<std::ops::Range<usize>> = Vec::with_capacity(secrets.len());
    for secret in secrets {
        match merged.last_mut() {
            Some(last) if secret.start <= last.end => last.end = last.end.max(secret.end),
            _ => merged.push(secret),
        }
    }
    let mut shown = String::with_capacity(url.len());
    let mut pos = 0;
    for secret in merged {
        shown.push_str(url.get(pos..secret.start).unwrap_or_default());
        shown.push_str("***");
        pos = secret.end;
    }
    shown.push_str(url.get(pos..).unwrap_or_default());
    shown
}

/// Where the part after `scheme://` starts, if `url` starts with a URL scheme.
fn url_authority_start(url: &str) -> Option<usize> {
    let (scheme, _) = url.split_once("://")?;
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    is_scheme.then_some(scheme.len() + "://".len())
}

/// Whether a query or `key=value` key names a secret (tokio-postgres knows `password`; hide
/// more rather than less).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token"].iter().any(|word| key.contains(word))
}

/// `s` percent-decoded, as tokio-postgres decodes query keys (invalid UTF-8 replaced).
fn percent_decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The byte ranges of `url` tokio-postgres 0.7 reads as a password: its URL parser takes the
/// user-info up to the first `@` anywhere (a `/`, `?` or `#` before it does not end it), the
/// password after the first `:` in it, then the host up to `/` or `?`, the database up to
/// `?`, and `key=value` pairs split at `&` with percent-decoded keys (`#` is nothing special).
fn hide_as_tokio_postgres_reads(
    url: &str,
    start: usize,
    secrets: &mut Vec<std::ops::Range<usize>>,
) {
    let after = |pos: usize, end: &[char]| url.get(pos..).and_then(|rest| rest.find(end));
    let mut pos = start;
    if let Some(at) = after(start, &['@']) {
        if let Some(colon) = after(start, &[':']).filter(|&colon| colon < at) {
            secrets.push(start + colon + 1..start + at);
        }
        pos = start + at + 1;
    }
    pos = after(pos, &['/', '?']).map_or(url.len(), |end| pos + end);
    if url.get(pos..).is_some_and(|rest| rest.starts_with('/')) {
        pos = after(pos, &['?']).map_or(url.len(), |end| pos + end);
    }
    if !url.get(pos..).is_some_and(|rest| rest.starts_with('?')) {
        return;
    }
    pos += 1;
    while pos < url.len() {
        let Some(eq) = after(pos, &['=']) else {
            return;
        };
        let key = url.get(pos..pos + eq).unwrap_or_default();
        let value = pos + eq + 1;
        let end = after(value, &['&']).map_or(url.len(), |end| value + end);
        if is_secret_key(&percent_decoded(key)) {
            secrets.push(value..end);
        }
        pos = end + 1;
    }
}

/// The byte ranges of `url` a URL parser (or libpq) reads as a password: the authority ends at
/// the first `/`, `?` or `#`, its user-info at its last `@`; the query runs from `?` to `#`.
/// A piece of the query with no `=` right after a secret is taken as more of it (`&` in a
/// password left unencoded).
fn hide_as_a_url_parser_reads(url: &str, start: usize, secrets: &mut Vec<std::ops::Range<usize>>) {
    let rest = url.get(start..).unwrap_or_default();
    let authority_end = start + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = url.get(start..authority_end).unwrap_or_default();
    if let Some(at) = authority.rfind('@') {
        if let Some(colon) = authority.get(..at).and_then(|user| user.find(':')) {
            secrets.push(start + colon + 1..start + at);
        }
    }
    let path = url.get(authority_end..).unwrap_or_default();
    let Some(question) = path.find(['?', '#']).filter(|&i| path[i..].starts_with('?')) else {
        return;
    };
    let query_start = authority_end + question + 1;
    let query = url.get(query_start..).unwrap_or_default();
    let query = &query[..query.find('#').unwrap_or(query.len())];
    let mut pos = query_start;
    let mut in_secret = false;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((key, _)) => {
                in_secret = is_secret_key(&percent_decoded(key));
                if in_secret {
                    secrets.push(pos + key.len() + 1..pos + pair.len());
                }
            }
            None if in_secret => secrets.push(pos..pos + pair.len()),
            None => {}
        }
        pos += pair.len() + 1;
    }
}

/// The byte ranges of a libpq `key=value` connection string (`host=db password='a b'`) that
/// are passwords, read as tokio-postgres reads it: keys and values apart by whitespace, values
/// plain or in `'…'`, `\` escaping the next character. A quoted value with no end hides
/// everything after its key.
fn hide_key_value_passwords(s: &str, secrets: &mut Vec<std::ops::Range<usize>>) {
    let mut chars = s.char_indices().peekable();
    let here = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        chars.peek().map_or(s.len(), |&(i, _)| i)
    };
    loop {
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let key_start = here(&mut chars);
        while chars.next_if(|&(_, c)| !c.is_whitespace() && c != '=').is_some() {}
        let key = s.get(key_start..here(&mut chars)).unwrap_or_default();
        if key.is_empty() {
            return;
        }
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|&(_, c)| c == '=').is_none() {
            return;
        }
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let value_start = here(&mut chars);
        let quoted = chars.next_if(|&(_, c)| c == '\'').is_some();
        let mut terminated = !quoted;
        while let Some((_, c)) = chars.next_if(|&(_, c)| quoted || !c.is_whitespace()) {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' if quoted => {
                    terminated = true;
                    break;
                }
                _ => {}
            }
        }
        let value_end = if terminated { here(&mut chars) } else { s.len() };
        if is_secret_key(key) {
            secrets.push(value_start..value_end);
        }
        if !terminated {
            return;
        }
    }
}

/// `lease` in whole milliseconds, for the database. A zero lease runs out at once (tests).
pub(crate) fn lease_ms(lease: Duration) -> i64 {
    // At most 30 days: the database adds it to its clock, which must not overflow.
    const MAX_LEASE_MS: i64 = 30 * 24 * 3600 * 1000;
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).min(MAX_LEASE_MS)
}

/// `max` as a row count: at least 1, at most [`MAX_CLAIM`].
pub(crate) fn claim_limit(max: usize) -> i64 {
    i64::try_from(max.clamp(1, MAX_CLAIM)).unwrap_or(1)
}
