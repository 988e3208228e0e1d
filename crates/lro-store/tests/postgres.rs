//! The store behaviour suite against PostgreSQL: the server `LRO_TEST_POSTGRES_URL` names.
//!
//! The tests that need a server are `#[ignore]`d, so a plain `cargo test` passes without one;
//! `cargo xtask test-all` runs them (step `store-postgres`, with `-- --ignored`), and `.ci/run`
//! starts a throwaway server for it. By hand:
//! `.ci/postgres.sh cargo test -p lro-store --test postgres -- --ignored`. Without the variable
//! they fail, saying how to get a server. Each test works in a schema of its own, created for
//! the run and dropped after it, so a shared database works too.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lro_store::{NewOperation, OperationStore, PostgresStore, StoreError};
use serde_json::json;
use tokio_postgres::{Client, NoTls};

const URL_VARIABLE: &str = "LRO_TEST_POSTGRES_URL";

/// The server's URL, or a panic saying how to get one.
fn server_url() -> String {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "\n\n{URL_VARIABLE} is not set: these tests need a PostgreSQL server.\n\
             Run them with a throwaway server (PostgreSQL installed, or installable with apt-get):\n\
             \x20   .ci/postgres.sh cargo test -p lro-store --test postgres -- --ignored\n\
             or point them at a database of yours where they may create schemas:\n\
             \x20   {URL_VARIABLE}=postgres://USER[:PASSWORD]@HOST:PORT/DB \
             cargo test -p lro-store --test postgres -- --ignored\n\
             (`cargo xtask test-all` runs them in its store-postgres step; .ci/run starts a server \
             for it.)\n\n"
        ),
    }
}

/// A schema of its own for one test, on the server: dropped by [`Schema::drop`] (left behind if
/// the test fails, to look at).
struct Schema {
    admin: Client,
    name: String,
    /// The server's URL with `search_path` set to the schema.
    url: String,
}

impl Schema {
    async fn new(tag: &str) -> Schema {
        let base = server_url();
        let (admin, connection) = tokio_postgres::connect(&base, NoTls).await.unwrap_or_else(|e| {
            panic!("cannot connect to the server {URL_VARIABLE} names: {e} ({:?})", e.source())
        });
        tokio::spawn(connection);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("lro_test_{tag}_{}_{nanos}", std::process::id());
        admin.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{name}");
        Schema { admin, name, url }
    }

    /// The schema's URL with more query parameters (`key=value&...`).
    fn url_with(&self, parameters: &str) -> String {
        format!("{}&{parameters}", self.url)
    }

    async fn drop(self) {
        self.admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by cargo xtask test-all's store-postgres step (LRO_TEST_POSTGRES_URL)"]
async fn postgres_passes_the_store_suite() {
    let schema = Schema::new("suite").await;
    let started = Instant::now();
    let store: Arc<dyn OperationStore> =
        Arc::new(PostgresStore::connect(&schema.url).await.unwrap());
    let connected = started.elapsed();
    support::suite(Arc::clone(&store), "").await;
    eprintln!(
        "postgres suite: connected and migrated in {connected:?}, suite in {:?}",
        started.elapsed() - connected
    );
    let tables: i64 = schema
        .admin
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&schema.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 2, "lro_operations and lro_schema_migrations, in the test's schema only");
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by cargo xtask test-all's store-postgres step (LRO_TEST_POSTGRES_URL)"]
async fn stores_connecting_at_once_all_migrate_once_and_share_one_store() {
    let schema = Schema::new("migrate").await;
    // Two PostgresStores and six through lro_store::open (both URL schemes), all at once on a
    // schema that has no table yet.
    let mut connecting = tokio::task::JoinSet::new();
    for index in 0..8 {
        let url = if index % 2 == 1 {
            schema.url.replacen("postgres://", "postgresql://", 1)
        } else {
            schema.url.clone()
        };
        connecting.spawn(async move {
            let store: Arc<dyn OperationStore> = if index < 2 {
                Arc::new(PostgresStore::connect(&url).await?)
            } else {
                Arc::from(lro_store::open(&url).await?)
            };
            Ok::<_, StoreError>(store)
        });
    }
    let mut stores = Vec::new();
    while let Some(connected) = connecting.join_next().await {
        stores.push(connected.unwrap().unwrap_or_else(|e| panic!("{e}: {:?}", e.source())));
    }
    let versions: Vec<i32> = schema
        .admin
        .query(
            &format!("SELECT version FROM {}.lro_schema_migrations ORDER BY version", schema.name),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [1], "every migration recorded once");

    // The suite through one store, then again (other keys) through another: one shared store.
    support::suite(Arc::clone(&stores[0]), "one-").await;
    support::suite(Arc::clone(&stores[7]), "two-").await;
    let seen = stores[3].list(10_000).await.unwrap();
    assert!(seen.iter().any(|op| op.key == "one-c") && seen.iter().any(|op| op.key == "two-c"));
    stores[5].submit(NewOperation::new("late", "t", json!(null))).await.unwrap();
    assert!(stores[6].get("late").await.unwrap().is_some());
    drop(stores);
    schema.drop().await;
}

/// The store's migration lock (`MIGRATION_LOCK` in `src/postgres.rs`; the test below shows it
/// is the one a migration waits for).
const MIGRATION_LOCK: i64 = 0x6c72_6f5f_7374_6f72;

/// Another session holds the migration lock (a worker frozen while it migrates, say): a store
/// opening on a schema that is up to date does not wait for it; one that must migrate does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by cargo xtask test-all's store-postgres step (LRO_TEST_POSTGRES_URL)"]
async fn an_up_to_date_schema_opens_while_another_session_holds_the_migration_lock() {
    let (migrated, fresh) = (Schema::new("lockfree").await, Schema::new("lockwait").await);
    drop(lro_store::open(&migrated.url).await.unwrap());
    let (mut holder, connection) = tokio_postgres::connect(&server_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let holding = holder.transaction().await.unwrap();
    holding
        .batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await
        .unwrap();
    let opened = tokio::time::timeout(Duration::from_secs(4), lro_store::open(&migrated.url)).await;
    let store = opened.expect("opened without waiting for the lock").unwrap();
    assert_eq!(store.running().await.unwrap(), 0);
    // The lock is the migration's: a schema to migrate waits for it.
    let waiting = tokio::spawn({
        let url = fresh.url.clone();
        async move { lro_store::open(&url).await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a migration waits for the lock");
    holding.rollback().await.unwrap();
    waiting.await.unwrap().unwrap();
    drop(store);
    migrated.drop().await;
    fresh.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by cargo xtask test-all's store-postgres step (LRO_TEST_POSTGRES_URL)"]
async fn workers_on_connections_of_their_own_never_claim_an_operation_twice() {
    // The suite's concurrent claims share one connection (so the server runs them one after
    // the other); here each worker has its own, as workers on different machines would.
    let schema = Schema::new("skip").await;
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(Arc::new(PostgresStore::connect(&schema.url).await.unwrap()));
    }
    let keys: Vec<String> = (0..500).map(|i| format!("op-{i:03}")).collect();
    for key in &keys {
        stores[0].submit(NewOperation::new(key.as_str(), "t", json!({}))).await.unwrap();
    }
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (worker, store) in stores.iter().enumerate() {
        let store = Arc::clone(store);
        workers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.claim(&format!("w{worker}"), 5, Duration::from_secs(600)).await;
                let got = got.unwrap();
                if got.is_empty() {
                    return mine;
                }
                assert!(got.iter().all(|claimed| claimed.lease.fence == 1));
                mine.extend(got.into_iter().map(|claimed| claimed.lease.key));
            }
        });
    }
    let mut seen = std::collections::HashSet::new();
    let mut per_worker = Vec::new();
    while let Some(claimed) = workers.join_next().await {
        let claimed = claimed.unwrap();
        per_worker.push(claimed.len());
        for key in claimed {
            assert!(seen.insert(key.clone()), "{key} was handed out twice");
        }
    }
    assert_eq!(seen.len(), keys.len(), "every operation handed out");
    eprintln!("8 connections claimed 500 operations in {:?}: {per_worker:?}", started.elapsed());
    drop(stores);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by cargo xtask test-all's store-postgres step (LRO_TEST_POSTGRES_URL)"]
async fn claims_hand_out_never_claimed_operations_then_the_longest_expired_first() {
    let schema = Schema::new("order").await;
    let store = PostgresStore::connect(&schema.url).await.unwrap();
    for key in ["x1", "x2", "x3"] {
        store.submit(NewOperation::new(key, "t", json!({}))).await.unwrap();
    }
    let mut order = Vec::new();
    for lease in [Duration::ZERO, Duration::ZERO, Duration::ZERO] {
        let claimed = store.claim("w", 1, lease).await.unwrap();
        order.extend(claimed.into_iter().map(|claimed| claimed.lease.key));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(order, ["x1", "x2", "x3"], "never claimed ones first, oldest first");
    order.clear();
    for _ in 0..3 {
        let claimed = store.claim("w", 1, Duration::from_secs(600)).await.unwrap();
        order.extend(claimed.into_iter().map(|claimed| claimed.lease.key));
    }
    assert_eq!(order, ["x1", "x2", "x3"], "the lease that ran out longest ago first");
    assert!(store.claim("w", 10, Duration::from_secs(600)).await.unwrap().is_empty());
    let record = store.get("x1").await.unwrap().unwrap();
    assert_eq!((record.fence, record.claims), (2, 2));
    assert_eq!(store.running().await.unwrap(), 3, "claimed or not");
    assert!(store.abandon("x2").await.unwrap());
    assert_eq!(store.running().await.unwrap(), 2);
    drop(store);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by cargo xtask test-all's store-postgres step (LRO_TEST_POSTGRES_URL)"]
async fn a_connection_the_server_ends_fails_a_call_or_two_then_the_store_connects_again() {
    let schema = Schema::new("ended").await;
    let application = format!("{}_app", schema.name);
    let store =
        PostgresStore::connect(&schema.url_with(&format!("application_name={application}")))
            .await
            .unwrap();
    store.submit(NewOperation::new("k", "t", json!({}))).await.unwrap();
    let end_it = format!(
        "SELECT count(pg_terminate_backend(pid))::bigint FROM pg_stat_activity \
         WHERE application_name = '{application}'"
    );
    let terminated: i64 = schema.admin.query_one(&end_it, &[]).await.unwrap().get(0);
    assert_eq!(terminated, 1, "the store's one connection");
    // The first call may be answered by the server's goodbye, or sent before the store saw the
    // connection close; then a call connects again.
    let mut failures = Vec::new();
    let record = loop {
        let outcome = tokio::time::timeout(Duration::from_secs(10), store.get("k"))
            .await
            .expect("no hang on a closed connection");
        match outcome {
            Ok(record) => break record,
            Err(error) => {
                assert!(matches!(error, StoreError::Database(_)), "{error:?}");
                let chain = causes(&error);
                assert!(
                    chain.iter().any(|cause| cause.contains("connection to PostgreSQL is closed")
                        || cause.contains("terminating connection")),
                    "{chain:?}"
                );
                failures.push(chain);
                assert!(failures.len() < 3, "still failing: {failures:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(record.expect("stored").key, "k");
    let connections: i64 = schema
        .admin
        .query_one(
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application}'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(connections, 1, "one new connection");
    drop(store);
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run by cargo xtask test-all's store-postgres step (LRO_TEST_POSTGRES_URL)"]
async fn while_the_server_is_unreachable_calls_fail_at_once_and_the_store_recovers_when_it_is_back()
{
    let schema = Schema::new("unreachable").await;
    // The store reaches the server through a proxy of the test's, which can go away.
    let config: tokio_postgres::Config = server_url().parse().unwrap();
    let target = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(tokio_postgres::config::Host::Tcp(host)), port) => {
            (host.clone(), port.copied().unwrap_or(5432))
        }
        _ => panic!("{URL_VARIABLE} must name a server reached over TCP for this test"),
    };
    let proxy = Proxy::start(0, target.clone()).await;
    let url = format!(
        "postgres://{}{}@127.0.0.1:{}/{}?options=-c%20search_path%3D{}",
        encode(config.get_user().unwrap_or("postgres")),
        config.get_password().map_or(String::new(), |p| format!(":{}", encode_bytes(p))),
        proxy.port,
        encode(config.get_dbname().unwrap_or("postgres")),
        schema.name
    );
    let store = PostgresStore::connect(&url).await.unwrap();
    store.submit(NewOperation::new("k", "t", json!({}))).await.unwrap();
    let port = proxy.port;
    proxy.stop().await;
    for _ in 0..3 {
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), store.get("k"))
            .await
            .expect("no hang while the server is unreachable");
        let error = outcome.expect_err("unreachable");
        assert!(matches!(error, StoreError::Database(_)), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
    let claimed = store.claim("w", 10, Duration::from_secs(60)).await;
    assert!(matches!(claimed, Err(StoreError::Database(_))), "{claimed:?}");
    let proxy = Proxy::start(port, target).await;
    let record = store.get("k").await.expect("connected again").expect("stored");
    assert_eq!(record.token.as_deref(), Some("t"));
    assert_eq!(store.claim("w", 10, Duration::from_secs(60)).await.unwrap().len(), 1);
    drop(store);
    proxy.stop().await;
    schema.drop().await;
}

/// `error`'s sources, outermost first.
fn causes(error: &StoreError) -> Vec<String> {
    let mut chain = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    chain
}

/// A TCP proxy on 127.0.0.1 to the server: stopping it closes every connection through it and
/// refuses new ones.
struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// On `port` (0: any free one), to `target`.
    async fn start(port: u16, target: (String, u16)) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    let server = tokio::net::TcpStream::connect((target.0.as_str(), target.1));
                    if let Ok(mut outbound) = server.await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { port, task }
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// `text` percent-encoded for a URL's user, password or database.
fn encode(text: &str) -> String {
    encode_bytes(text.as_bytes())
}

fn encode_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_server_that_refuses_the_connection_is_a_database_error() {
    // Nothing listens on port 1: refused at once, no server needed.
    for url in ["postgres://lro@127.0.0.1:1/lro", "postgresql://lro@127.0.0.1:1/lro"] {
        let error = lro_store::open(url).await.err().expect("refused");
        assert!(matches!(error, StoreError::Database(_)), "{url}: {error:?}");
    }
    let error = PostgresStore::connect("postgres://lro@127.0.0.1:1/lro?sslmode=nonsense")
        .await
        .expect_err("a bad URL");
    assert!(matches!(error, StoreError::Database(_)), "{error:?}");
}
