//! The embedded store: SQLite (bundled), one file shared by the workers of one machine.
//!
//! Every call is one short transaction on a connection of this process, run on tokio's
//! blocking threads. Several processes may share the file: it is in WAL mode and a writer waits
//! up to 5 s for another one. A claim is a single `UPDATE … RETURNING`, which SQLite runs alone.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use crate::polls_of;
use crate::{
    Checkpoint, Claimed, Completion, Lease, MAX_SPEC_BYTES, MAX_TOKEN_BYTES, NewOperation,
    OperationRecord, OperationState, OperationStore, StoreError, claim_limit, lease_ms,
};

/// The database's clock, in milliseconds since the Unix epoch.
const NOW: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// The schema, one migration per version; `user_version` says how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE lro_operations (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        polls INTEGER NOT NULL DEFAULT 0,
        token TEXT,
        spec TEXT NOT NULL,
        owner TEXT,
        lease_until INTEGER,
        fence INTEGER NOT NULL DEFAULT 0,
        claims INTEGER NOT NULL DEFAULT 0,
        outcome TEXT,
        result BLOB,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX lro_operations_claimable ON lro_operations (state, lease_until);"];

/// An operation store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::database(e)
}

impl SqliteStore {
    /// Opens (creating if need be) the store in the file at `path`; `:memory:` for a private
    /// in-memory store. Runs the migrations it has not run yet.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let mut conn = if path == ":memory:" {
                Connection::open_in_memory()
            } else {
                create_owner_only(&path)?;
                Connection::open(Path::new(&path))
            }
            .map_err(db)?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
            // Switching a new file to WAL takes it whole; another process opening it at the same
            // moment gets "busy" here without the busy handler's wait: wait as it would.
            busy_retry(|| conn.pragma_update(None, "journal_mode", "WAL")).map_err(db)?;
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(db)?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(StoreError::database)??;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(StoreError::database)?
    }
}

/// Creates the database file at `path`, empty and readable by its owner only (0600), if there
/// is none yet: its rows hold continuation tokens (with their query strings) and results.
/// SQLite gives its `-wal` and `-shm` files the database file's mode. An existing file keeps
/// its mode; `file:` URIs and the empty path (a temporary database) are left to SQLite.
#[cfg(unix)]
fn create_owner_only(path: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.is_empty() || path.starts_with("file:") {
        return Ok(());
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::database(e)),
    }
}

#[cfg(not(unix))]
fn create_owner_only(_path: &str) -> Result<(), StoreError> {
    Ok(())
}

/// `f`, again while SQLite says the database is busy, for up to 5 s (as the busy timeout).
fn busy_retry<T>(f: impl Fn() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Runs the migrations not run yet, in one immediate transaction: the version is read inside
/// it, so two processes opening a new file at once migrate it once. A file already migrated is
/// only read: a worker starting while another process writes (or is frozen mid-write, holding
/// SQLite's write lock) still opens the store.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let done: usize =
        conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(db)?;
    if done >= MIGRATIONS.len() {
        return Ok(());
    }
    let tx =
        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db)?;
    let done: usize = tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(db)?;
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(migration).map_err(db)?;
        tx.pragma_update(None, "user_version", version + 1).map_err(db)?;
    }
    tx.commit().map_err(db)
}

/// A claimed row as SQLite gave it back. The table is not `STRICT`: a row written by hand (or
/// by a broken tool) may hold a value of another type, or text that is not UTF-8, in any column.
/// What cannot be read is handed out as missing (an empty token, a `null` spec, no polls), so the
/// claimer ends the operation as an error; a row whose key or fence cannot be read is skipped,
/// as it could not be written back to anyway.
struct ClaimedRow {
    key: String,
    fence: i64,
    token: Option<String>,
    spec: Option<String>,
    polls: i64,
}

impl ClaimedRow {
    fn read(row: &rusqlite::Row<'_>) -> Option<Self> {
        use rusqlite::types::ValueRef;
        let text = |i: usize| match row.get_ref(i) {
            Ok(ValueRef::Text(bytes)) => std::str::from_utf8(bytes).ok().map(str::to_owned),
            _ => None,
        };
        let integer = |i: usize| match row.get_ref(i) {
            Ok(ValueRef::Integer(n)) => Some(n),
            _ => None,
        };
        Some(ClaimedRow {
            key: text(0)?,
            fence: integer(1)?,
            token: text(2),
            spec: text(3),
            polls: integer(4).unwrap_or(0),
        })
    }
}

fn spec_of(text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("spec: {e}")))
}

const RECORD: &str = "key, state, status, polls, owner, fence, claims, token, spec, outcome, \
                      result, created_ms, updated_ms";

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<OperationRecord, StoreError>> {
    let state: String = row.get(1)?;
    let spec: String = row.get(8)?;
    let outcome: Option<String> = row.get(9)?;
    let result: Option<Vec<u8>> = row.get(10)?;
    let key: String = row.get(0)?;
    let status: String = row.get(2)?;
    let polls: i64 = row.get(3)?;
    let owner: Option<String> = row.get(4)?;
    let fence: i64 = row.get(5)?;
    let claims: i64 = row.get(6)?;
    let token: Option<String> = row.get(7)?;
    let created_ms: i64 = row.get(11)?;
    let updated_ms: i64 = row.get(12)?;
    Ok((|| {
        Ok(OperationRecord {
            key,
            state: OperationState::parse(&state)?,
            status,
            polls: polls_of(polls),
            owner,
            fence,
            claims,
            token,
            spec: spec_of(&spec)?,
            outcome: outcome
                .map(|o| serde_json::from_str(&o))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("outcome: {e}")))?,
            result: result.map(Bytes::from),
            created_ms,
            updated_ms,
        })
    })())
}

#[async_trait::async_trait]
impl OperationStore for SqliteStore {
    async fn submit(&self, operation: NewOperation) -> Result<(), StoreError> {
        self.run(move |conn| {
            let inserted = conn
                .execute(
                    &format!(
                        "INSERT INTO lro_operations (key, state, status, token, spec, created_ms, \
                         updated_ms) VALUES (?1, 'running', ?2, ?3, ?4, {NOW}, {NOW}) \
                         ON CONFLICT (key) DO NOTHING"
                    ),
                    params![
                        operation.key,
                        operation.status,
                        operation.token,
                        operation.spec.to_string()
                    ],
                )
                .map_err(db)?;
            if inserted == 0 {
                return Err(StoreError::Duplicate(operation.key));
            }
            Ok(())
        })
        .await
    }

    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let worker = worker.to_owned();
        self.run(move |conn| {
            let mut statement = conn
                .prepare_cached(&format!(
                    "UPDATE lro_operations SET owner = ?1, lease_until = {NOW} + ?2, \
                     fence = fence + 1, claims = claims + 1, updated_ms = {NOW} \
                     WHERE key IN (SELECT key FROM lro_operations WHERE state = 'running' \
                       AND (lease_until IS NULL OR lease_until <= {NOW}) \
                       ORDER BY COALESCE(lease_until, 0), created_ms LIMIT ?3) \
                     RETURNING key, fence, \
                       CASE WHEN length(CAST(token AS BLOB)) > {MAX_TOKEN_BYTES} THEN NULL \
                         ELSE token END, \
                       CASE WHEN length(CAST(spec AS BLOB)) > {MAX_SPEC_BYTES} THEN 'null' \
                         ELSE spec END, polls"
                ))
                .map_err(db)?;
            // The whole batch is leased by the statement's first step: a row that cannot be
            // read must not fail the claim, or its good neighbours would stay leased to nobody
            // (and be claimed with it again, and fail again, once the lease runs out).
            let rows = statement
                .query_map(params![worker, lease_ms(lease), claim_limit(max)], |row| {
                    Ok(ClaimedRow::read(row))
                })
                .map_err(db)?;
            let mut claimed = Vec::new();
            for row in rows {
                if let Some(ClaimedRow { key, fence, token, spec, polls }) = row.map_err(db)? {
                    claimed.push(crate::claimed(
                        key,
                        fence,
                        token,
                        spec.as_deref().unwrap_or(""),
                        polls,
                    ));
                }
            }
            Ok(claimed)
        })
        .await
    }

    async fn renew(
        &self,
        worker: &str,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let (worker, leases) = (worker.to_owned(), leases.to_vec());
        self.run(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let mut held = Vec::new();
            {
                let mut statement = tx
                    .prepare_cached(&format!(
                        "UPDATE lro_operations SET lease_until = {NOW} + ?1 \
                         WHERE key = ?2 AND fence = ?3 AND owner = ?4 AND state = 'running'"
                    ))
                    .map_err(db)?;
                for lease_held in leases {
                    let changed = statement
                        .execute(params![lease_ms(lease), lease_held.key, lease_held.fence, worker])
                        .map_err(db)?;
                    if changed == 1 {
                        held.push(lease_held);
                    }
                }
            }
            tx.commit().map_err(db)?;
            Ok(held)
        })
        .await
    }

    async fn checkpoint(&self, lease: &Lease, checkpoint: Checkpoint) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run(move |conn| {
            let changed = conn
                .execute(
                    &format!(
                        "UPDATE lro_operations SET token = ?1, status = ?2, polls = ?3, \
                         updated_ms = {NOW} WHERE key = ?4 AND fence = ?5 \
                         AND state = 'running' AND owner IS NOT NULL"
                    ),
                    params![
                        checkpoint.token,
                        checkpoint.status,
                        i64::from(checkpoint.polls),
                        lease.key,
                        lease.fence
                    ],
                )
                .map_err(db)?;
            crate::fenced(changed as u64, &lease)
        })
        .await
    }

    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run(move |conn| {
            let changed = conn
                .execute(
                    &format!(
                        "UPDATE lro_operations SET state = ?1, status = ?2, polls = ?3, \
                         outcome = ?4, result = ?5, token = NULL, owner = NULL, \
                         lease_until = NULL, updated_ms = {NOW} \
                         WHERE key = ?6 AND fence = ?7 AND state = 'running' \
                         AND owner IS NOT NULL"
                    ),
                    params![
                        completion.state.as_str(),
                        completion.status,
                        i64::from(completion.polls),
                        completion.outcome.to_string(),
                        completion.result.as_deref(),
                        lease.key,
                        lease.fence
                    ],
                )
                .map_err(db)?;
            crate::fenced(changed as u64, &lease)
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run(move |conn| {
            conn.execute(
                &format!(
                    "UPDATE lro_operations SET owner = NULL, lease_until = NULL, \
                     updated_ms = {NOW} WHERE key = ?1 AND fence = ?2 AND state = 'running'"
                ),
                params![lease.key, lease.fence],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn abandon(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run(move |conn| {
            let changed = conn
                .execute(
                    &format!(
                        "UPDATE lro_operations SET state = 'abandoned', owner = NULL, \
                         lease_until = NULL, fence = fence + 1, updated_ms = {NOW} \
                         WHERE key = ?1 AND state = 'running'"
                    ),
                    params![key],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Option<OperationRecord>, StoreError> {
        let key = key.to_owned();
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {RECORD} FROM lro_operations WHERE key = ?1"),
                params![key],
                record,
            )
            .optional()
            .map_err(db)?
            .transpose()
        })
        .await
    }

    async fn running(&self) -> Result<u64, StoreError> {
        self.run(|conn| {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM lro_operations WHERE state = 'running'",
                    [],
                    |row| row.get(0),
                )
                .map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn list(&self, limit: usize) -> Result<Vec<OperationRecord>, StoreError> {
        self.run(move |conn| {
            let mut statement = conn
                .prepare(&format!(
                    "SELECT {RECORD} FROM lro_operations ORDER BY created_ms, key LIMIT ?1"
                ))
                .map_err(db)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = statement.query_map(params![limit], record).map_err(db)?;
            let mut records = Vec::new();
            for row in rows {
                records.push(row.map_err(db)??);
            }
            Ok(records)
        })
        .await
    }
}
