//! The store for many workers: PostgreSQL through tokio-postgres. What users need to know is
//! on [`PostgresStore`] (this module is private).

use std::collections::HashSet;
use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::polls_of;
use crate::{
    Checkpoint, Claimed, Completion, Lease, NewOperation, OperationRecord, OperationState,
    OperationStore, StoreError, claim_limit, lease_ms,
};
use crate::{MAX_SPEC_BYTES, MAX_TOKEN_BYTES};

/// The server's clock, in milliseconds since the Unix epoch, read once per statement: every
/// statement that needs the time starts with this `WITH` and reads `(SELECT ms FROM clock)`.
const CLOCK: &str =
    "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms)";

/// `(SELECT ms FROM clock)`: the statement's time.
const NOW: &str = "(SELECT ms FROM clock)";

/// The schema, one migration per version (version = index + 1), each recorded in
/// `lro_schema_migrations` once it ran. Never edit one that shipped: add another.
const MIGRATIONS: &[&str] = &["CREATE TABLE lro_operations (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'canceled',
            'error', 'abandoned')),
        status TEXT NOT NULL,
        polls BIGINT NOT NULL DEFAULT 0,
        token TEXT,
        spec TEXT NOT NULL,
        owner TEXT,
        lease_until BIGINT,
        fence BIGINT NOT NULL DEFAULT 0,
        claims BIGINT NOT NULL DEFAULT 0,
        outcome TEXT,
        result BYTEA,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    -- The claim's scan: running operations, the ones whose lease ran out longest ago first.
    CREATE INDEX lro_operations_claimable
        ON lro_operations ((COALESCE(lease_until, 0)), created_ms, key) WHERE state = 'running';
    CREATE INDEX lro_operations_created ON lro_operations (created_ms, key);"];

/// The advisory lock held while migrating (any 64-bit number other programs are unlikely to
/// use: "lro_stor" in ASCII).
const MIGRATION_LOCK: i64 = 0x6c72_6f5f_7374_6f72;

/// How long connecting may take when the URL does not say (`connect_timeout=SECONDS`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `pg_stat_activity` shows for the connection when the URL does not say
/// (`application_name=NAME`).
const APPLICATION_NAME: &str = "lro-store";

/// The columns of an [`OperationRecord`], in the order [`record`] reads them.
const RECORD: &str = "key, state, status, polls, owner, fence, claims, token, spec, outcome, \
                      result, created_ms, updated_ms";

/// An operation store in a PostgreSQL database, for many workers on many machines.
///
/// One connection per store, driven by a tokio task; every call is one statement, prepared when
/// connecting, and calls from many tasks are pipelined on the connection (clones share it). A
/// claim is a single `UPDATE` whose rows come from `SELECT … FOR UPDATE SKIP LOCKED`: workers
/// claiming at once never wait for each other and never get the same operation. Times are the
/// server's clock (`clock_timestamp()`, read once per statement), so workers' clocks need not
/// agree.
///
/// The schema is created or migrated when connecting: versioned migrations, recorded in the
/// table `lro_schema_migrations`, run in one transaction under an advisory lock, so any number
/// of workers may connect at once. The tables (`lro_operations`, `lro_schema_migrations`) go in
/// the first schema of the connection's `search_path`; to choose it, add
/// `?options=-c%20search_path%3DNAME` to the URL.
///
/// **No TLS.** The connection is plain TCP or a Unix socket, unencrypted: use a database on a
/// trusted network or on the same machine (`postgres://user@%2Frun%2Fpostgresql/db` for the
/// socket in `/run/postgresql`). A URL asking for TLS (`sslmode=require`) fails to connect.
///
/// When the connection closes (the server restarted, the network failed, an administrator
/// ended it), the calls in flight fail with [`StoreError::Database`], and the next call connects
/// again. As with any lost connection, a write in flight may have been committed: a claim whose
/// answer was lost leaves its operations to be claimed again once the lease runs out. One call
/// connects at a time; calls that waited for an attempt that failed fail too, without trying.
///
/// Written for PostgreSQL 9.6 or newer (`SKIP LOCKED`, `ON CONFLICT`, `to_regclass`); CI runs
/// PostgreSQL 15. Keys, tokens and status words cannot contain NUL characters (PostgreSQL text
/// cannot); specs and outcomes are stored as JSON text, exactly as `serde_json` writes them.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where to connect again once the connection is closed.
    config: Config,
    /// The connection calls use; replaced when it closed.
    current: Mutex<Arc<Connection>>,
    /// Held while connecting again.
    reconnecting: tokio::sync::Mutex<()>,
    /// Attempts to connect again so far.
    attempts: AtomicU64,
}

/// One connection: its client, its prepared statements, and why it closed.
struct Connection {
    client: Client,
    statements: Statements,
    /// Why the connection closed, once it did with an error.
    closed: Arc<OnceLock<Arc<tokio_postgres::Error>>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the configuration: it may hold a password.
        f.debug_struct("PostgresStore")
            .field("closed", &self.current().client.is_closed())
            .finish_non_exhaustive()
    }
}

/// Every statement the store runs, prepared once per connection.
struct Statements {
    submit: Statement,
    claim: Statement,
    renew: Statement,
    checkpoint: Statement,
    complete: Statement,
    release: Statement,
    abandon: Statement,
    get: Statement,
    list: Statement,
    running: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let submit = format!(
            "{CLOCK} INSERT INTO lro_operations \
             (key, state, status, token, spec, created_ms, updated_ms) \
             VALUES ($1, 'running', $2, $3, $4, {NOW}, {NOW}) ON CONFLICT (key) DO NOTHING"
        );
        // The CTE with FOR UPDATE runs once (PostgreSQL never inlines a locking CTE): the rows
        // it locked are exactly the rows updated, even when a row changed under the statement.
        let claim = format!(
            "{CLOCK}, picked AS ( \
               SELECT key FROM lro_operations \
               WHERE state = 'running' AND (lease_until IS NULL OR lease_until <= {NOW}) \
               ORDER BY COALESCE(lease_until, 0), created_ms, key \
               LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE lro_operations AS o SET owner = $1, lease_until = {NOW} + $2, \
               fence = o.fence + 1, claims = o.claims + 1, updated_ms = {NOW} \
             FROM picked WHERE o.key = picked.key \
             RETURNING o.key, o.fence, \
               CASE WHEN octet_length(o.token) > {MAX_TOKEN_BYTES} THEN NULL ELSE o.token END, \
               CASE WHEN octet_length(o.spec) > {MAX_SPEC_BYTES} THEN 'null' ELSE o.spec END, \
               o.polls"
        );
        let renew = format!(
            "{CLOCK} UPDATE lro_operations AS o SET lease_until = {NOW} + $1 \
             FROM unnest($2::text[], $3::bigint[]) AS held(key, fence) \
             WHERE o.key = held.key AND o.fence = held.fence AND o.owner = $4 \
               AND o.state = 'running' \
             RETURNING o.key, o.fence"
        );
        let checkpoint = format!(
            "{CLOCK} UPDATE lro_operations SET token = $1, status = $2, polls = $3, \
             updated_ms = {NOW} WHERE key = $4 AND fence = $5 AND state = 'running' \
             AND owner IS NOT NULL"
        );
        let complete = format!(
            "{CLOCK} UPDATE lro_operations SET state = $1, status = $2, polls = $3, \
             outcome = $4, result = $5, token = NULL, owner = NULL, lease_until = NULL, \
             updated_ms = {NOW} WHERE key = $6 AND fence = $7 AND state = 'running' \
             AND owner IS NOT NULL"
        );
        let release = format!(
            "{CLOCK} UPDATE lro_operations SET owner = NULL, lease_until = NULL, \
             updated_ms = {NOW} WHERE key = $1 AND fence = $2 AND state = 'running'"
        );
        let abandon = format!(
            "{CLOCK} UPDATE lro_operations SET state = 'abandoned', owner = NULL, \
             lease_until = NULL, fence = fence + 1, updated_ms = {NOW} \
             WHERE key = $1 AND state = 'running'"
        );
        let get = format!("SELECT {RECORD} FROM lro_operations WHERE key = $1");
        let list = format!("SELECT {RECORD} FROM lro_operations ORDER BY created_ms, key LIMIT $1");
        Ok(Statements {
            submit: client.prepare(&submit).await?,
            claim: client.prepare(&claim).await?,
            renew: client.prepare(&renew).await?,
            checkpoint: client.prepare(&checkpoint).await?,
            complete: client.prepare(&complete).await?,
            release: client.prepare(&release).await?,
            abandon: client.prepare(&abandon).await?,
            get: client.prepare(&get).await?,
            list: client.prepare(&list).await?,
            running: client
                .prepare("SELECT count(*) FROM lro_operations WHERE state = 'running'")
                .await?,
        })
    }
}

/// A connection to PostgreSQL that is closed: the source, when known, says why.
#[derive(Debug)]
struct ConnectionClosed {
    cause: Option<Arc<tokio_postgres::Error>>,
}

impl fmt::Display for ConnectionClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection to PostgreSQL is closed (the next call connects again)")
    }
}

impl Error for ConnectionClosed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|cause| cause as &(dyn Error + 'static))
    }
}

/// [`PostgresStore::connect`] called outside a tokio runtime.
#[derive(Debug)]
struct NoRuntime;

impl fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostgresStore::connect must be called within a tokio runtime")
    }
}

impl Error for NoRuntime {}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://user[:password]@host[:port]/db`,
    /// `postgresql://` too, with libpq's query parameters such as `connect_timeout`,
    /// `application_name` or `options`), and creates or migrates the schema. Must be called
    /// within a tokio runtime with its IO and time drivers enabled (as `#[tokio::main]` makes
    /// it): the connection is driven by a task spawned on it.
    ///
    /// The connection is not encrypted (see [`PostgresStore`]); connecting gives up after 10 s
    /// unless the URL sets `connect_timeout` (seconds).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config: Config = url.parse().map_err(StoreError::database)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        let connection = Connection::open(&config).await?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                config,
                current: Mutex::new(Arc::new(connection)),
                reconnecting: tokio::sync::Mutex::new(()),
                attempts: AtomicU64::new(0),
            }),
        })
    }

    fn current(&self) -> Arc<Connection> {
        Arc::clone(&self.inner.current.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The connection to use: the current one while it is open, else a new one. One task
    /// connects at a time; the tasks that waited for an attempt that failed fail too, rather
    /// than try again one after the other.
    async fn connection(&self) -> Result<Arc<Connection>, StoreError> {
        let current = self.current();
        if !current.client.is_closed() {
            return Ok(current);
        }
        let seen = self.inner.attempts.load(Ordering::Acquire);
        let _one_at_a_time = self.inner.reconnecting.lock().await;
        let current = self.current();
        if !current.client.is_closed() {
            return Ok(current);
        }
        if self.inner.attempts.load(Ordering::Acquire) != seen {
            return Err(current.closed_error());
        }
        self.inner.attempts.fetch_add(1, Ordering::AcqRel);
        let fresh = Arc::new(Connection::open(&self.inner.config).await?);
        *self.inner.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
        Ok(fresh)
    }

    async fn execute(
        &self,
        statement: fn(&Statements) -> &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let connection = self.connection().await?;
        let statement = statement(&connection.statements);
        connection.client.execute(statement, params).await.map_err(|e| connection.error(e))
    }

    async fn query(
        &self,
        statement: fn(&Statements) -> &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let connection = self.connection().await?;
        let statement = statement(&connection.statements);
        connection.client.query(statement, params).await.map_err(|e| connection.error(e))
    }
}

impl Connection {
    /// Connects, migrates, prepares the statements.
    async fn open(config: &Config) -> Result<Self, StoreError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| StoreError::database(NoRuntime))?;
        let (mut client, connection) = config.connect(NoTls).await.map_err(StoreError::database)?;
        let closed: Arc<OnceLock<Arc<tokio_postgres::Error>>> = Arc::new(OnceLock::new());
        let why = Arc::clone(&closed);
        runtime.spawn(async move {
            // Ends when the client is dropped (Ok) or the connection fails (Err). The reason is
            // recorded before the connection is dropped, which fails the client's calls as
            // closed: they find it.
            let mut connection = std::pin::pin!(connection);
            if let Err(error) = connection.as_mut().await {
                let _ = why.set(Arc::new(error));
            }
        });
        let lost = |error: tokio_postgres::Error| closed_or(&closed, error);
        migrate(&mut client).await.map_err(lost)?;
        let statements = Statements::prepare(&client).await.map_err(lost)?;
        Ok(Connection { client, statements, closed })
    }

    /// `error` from a call on this connection, as a [`StoreError`].
    fn error(&self, error: tokio_postgres::Error) -> StoreError {
        closed_or(&self.closed, error)
    }

    /// The error of a call on this connection once it is closed.
    fn closed_error(&self) -> StoreError {
        StoreError::database(ConnectionClosed { cause: self.closed.get().cloned() })
    }
}

/// `error` as a [`StoreError::Database`]; a closed connection says why it closed, when known.
fn closed_or(
    closed: &OnceLock<Arc<tokio_postgres::Error>>,
    error: tokio_postgres::Error,
) -> StoreError {
    if error.is_closed() {
        StoreError::database(ConnectionClosed { cause: closed.get().cloned() })
    } else {
        StoreError::database(error)
    }
}

/// The migrations recorded in the schema, or `None` when it has no migrations table yet.
async fn applied(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Option<Vec<i32>>, tokio_postgres::Error> {
    // Checked rather than `CREATE TABLE IF NOT EXISTS`: a role without the right to create
    // tables can still use a schema that is up to date.
    let exists: bool = client
        .query_one("SELECT to_regclass('lro_schema_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    let rows = client.query("SELECT version FROM lro_schema_migrations", &[]).await?;
    rows.iter().map(|row| row.try_get::<_, i32>(0)).collect::<Result<_, _>>().map(Some)
}

/// Runs the migrations not recorded yet, in one transaction, holding [`MIGRATION_LOCK`]: workers
/// connecting at once wait for the first one, then find nothing left to do. A schema already up
/// to date is only read, without the lock: a connection (re)opening while another process holds
/// it (frozen mid-migration, say) is not held up.
async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let all =
        |applied: &[i32]| (1..).zip(MIGRATIONS).all(|(version, _)| applied.contains(&version));
    if applied(client).await?.is_some_and(|applied| all(&applied)) {
        return Ok(());
    }
    // The lock is the session's, taken before the transaction begins: PostgreSQL refreshes a
    // session's view of the catalog when a transaction begins, not when an advisory lock is
    // granted, and the lookup above may have seen the schema before the previous holder
    // migrated it.
    client.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).await?;
    let migrated = migrate_locked(client).await;
    let unlock = format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})");
    let unlocked = client.batch_execute(&unlock).await;
    migrated?;
    unlocked
}

/// [`migrate`]'s transaction, [`MIGRATION_LOCK`] held.
async fn migrate_locked(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    let applied = applied(&transaction).await?;
    if applied.is_none() {
        transaction
            .batch_execute(
                "CREATE TABLE lro_schema_migrations (
                    version INTEGER PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )",
            )
            .await?;
    }
    let applied = applied.unwrap_or_default();
    for (version, migration) in (1..).zip(MIGRATIONS) {
        if applied.contains(&version) {
            continue;
        }
        transaction.batch_execute(migration).await?;
        transaction
            .execute("INSERT INTO lro_schema_migrations (version) VALUES ($1)", &[&version])
            .await?;
    }
    transaction.commit().await
}

fn json_of(what: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A row of [`RECORD`] columns.
fn record(row: &Row) -> Result<OperationRecord, StoreError> {
    let db = StoreError::database;
    let state: String = row.try_get(1).map_err(db)?;
    let spec: String = row.try_get(8).map_err(db)?;
    let outcome: Option<String> = row.try_get(9).map_err(db)?;
    let result: Option<Vec<u8>> = row.try_get(10).map_err(db)?;
    Ok(OperationRecord {
        key: row.try_get(0).map_err(db)?,
        state: OperationState::parse(&state)?,
        status: row.try_get(2).map_err(db)?,
        polls: polls_of(row.try_get(3).map_err(db)?),
        owner: row.try_get(4).map_err(db)?,
        fence: row.try_get(5).map_err(db)?,
        claims: row.try_get(6).map_err(db)?,
        token: row.try_get(7).map_err(db)?,
        spec: json_of("spec", &spec)?,
        outcome: outcome.map(|o| json_of("outcome", &o)).transpose()?,
        result: result.map(Bytes::from),
        created_ms: row.try_get(11).map_err(db)?,
        updated_ms: row.try_get(12).map_err(db)?,
    })
}

#[async_trait::async_trait]
impl OperationStore for PostgresStore {
    async fn submit(&self, operation: NewOperation) -> Result<(), StoreError> {
        let spec = operation.spec.to_string();
        let inserted = self
            .execute(|s| &s.submit, &[&operation.key, &operation.status, &operation.token, &spec])
            .await?;
        if inserted == 0 {
            return Err(StoreError::Duplicate(operation.key));
        }
        Ok(())
    }

    async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let rows =
            self.query(|s| &s.claim, &[&worker, &lease_ms(lease), &claim_limit(max)]).await?;
        let db = StoreError::database;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0).map_err(db)?;
            let fence: i64 = row.try_get(1).map_err(db)?;
            let token: Option<String> = row.try_get(2).map_err(db)?;
            let spec: String = row.try_get(3).map_err(db)?;
            let polls: i64 = row.try_get(4).map_err(db)?;
            claimed.push(crate::claimed(key, fence, token, &spec, polls));
        }
        Ok(claimed)
    }

    async fn renew(
        &self,
        worker: &str,
        leases: &[Lease],
        lease: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = leases.iter().map(|held| held.key.as_str()).collect();
        let fences: Vec<i64> = leases.iter().map(|held| held.fence).collect();
        // One statement for all the leases: the keys it returns are the ones still held.
        let rows = self.query(|s| &s.renew, &[&lease_ms(lease), &keys, &fences, &worker]).await?;
        let mut renewed = HashSet::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0).map_err(StoreError::database)?;
            let fence: i64 = row.try_get(1).map_err(StoreError::database)?;
            renewed.insert(Lease::new(key, fence));
        }
        // In the order asked.
        Ok(leases.iter().filter(|held| renewed.contains(*held)).cloned().collect())
    }

    async fn checkpoint(&self, lease: &Lease, checkpoint: Checkpoint) -> Result<(), StoreError> {
        let changed = self
            .execute(
                |s| &s.checkpoint,
                &[
                    &checkpoint.token,
                    &checkpoint.status,
                    &i64::from(checkpoint.polls),
                    &lease.key,
                    &lease.fence,
                ],
            )
            .await?;
        crate::fenced(changed, lease)
    }

    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<(), StoreError> {
        let outcome = completion.outcome.to_string();
        let changed = self
            .execute(
                |s| &s.complete,
                &[
                    &completion.state.as_str(),
                    &completion.status,
                    &i64::from(completion.polls),
                    &outcome,
                    &completion.result.as_deref(),
                    &lease.key,
                    &lease.fence,
                ],
            )
            .await?;
        crate::fenced(changed, lease)
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.execute(|s| &s.release, &[&lease.key, &lease.fence]).await?;
        Ok(())
    }

    async fn abandon(&self, key: &str) -> Result<bool, StoreError> {
        let changed = self.execute(|s| &s.abandon, &[&key]).await?;
        Ok(changed == 1)
    }

    async fn get(&self, key: &str) -> Result<Option<OperationRecord>, StoreError> {
        let rows = self.query(|s| &s.get, &[&key]).await?;
        rows.first().map(record).transpose()
    }

    async fn list(&self, limit: usize) -> Result<Vec<OperationRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.query(|s| &s.list, &[&limit]).await?;
        rows.iter().map(record).collect()
    }

    async fn running(&self) -> Result<u64, StoreError> {
        let rows = self.query(|s| &s.running, &[]).await?;
        let count: i64 = match rows.first() {
            Some(row) => row.try_get(0).map_err(StoreError::database)?,
            None => 0,
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
