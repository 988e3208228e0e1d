//! The store benchmark (issue #13): operations completed per second and store round-trips per
//! poll, with 1 and with 3 `lro worker` processes on one store — SQLite always, PostgreSQL
//! when `LRO_TEST_POSTGRES_URL` names a server (a database is created per run, then dropped).
//!
//! Each run: N ARM operations submitted to a fresh store (through the library, as `lro submit`
//! stores them), then W workers started with `--exit-when-done`; the time is from their start
//! to the last one's exit. Polls are due at once (interval 0) and the budget is high, so the
//! store and the workers are what is measured, not the waits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lro_core::{Engine, InitialResponse, TokenKey};
use lro_hyper::HyperClient;
use lro_mock::{MockConfig, MockServer};
use lro_store::{NewOperation, OperationStore};
use lro_strategies::ArmPolling;
use serde_json::{Value, json};

use crate::{BenchError, Measure};

const KEY: &str = "lro-bench-store-key-0123456789abcdef";

/// The `lro` binary beside this one (xtask builds both), or `LRO_BIN`.
fn lro_bin() -> Result<PathBuf, BenchError> {
    if let Some(path) = std::env::var_os("LRO_BIN") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe()?;
    let path = me.with_file_name(format!("lro{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        return Err(BenchError(format!(
            "{} is missing: build it (cargo build -p lro-cli --bin lro, same profile)",
            path.display()
        )));
    }
    Ok(path)
}

async fn submit_all(
    store: &Arc<dyn OperationStore>,
    base: &str,
    n: usize,
) -> Result<(), BenchError> {
    let client = Arc::new(HyperClient::new()?);
    let key = TokenKey::new(KEY.as_bytes()).map_err(|e| BenchError(e.to_string()))?;
    let spec = json!({"flavour": "arm", "interval_ms": 0, "retries": 3});
    for i in 0..n {
        let url = format!(
            "{base}/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/w{i:05}"
        );
        let request = http::Request::put(&url)
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{}"))?;
        let initial = InitialResponse::send_async(&*client, request)
            .await
            .map_err(|e| BenchError(e.to_string()))?;
        let (strategy, options) = ArmPolling::builder()
            .interval(Duration::ZERO)
            .poll_options(|o| o.token_key(key.clone()))
            .into_parts();
        let engine =
            Engine::start(strategy, options, initial).map_err(|e| BenchError(e.to_string()))?;
        let token = engine.continuation_token().map_err(|e| BenchError(e.to_string()))?;
        let op = NewOperation::new(format!("w{i:05}"), token.into_string(), spec.clone());
        store.submit(op).await.map_err(|e| BenchError(e.to_string()))?;
    }
    Ok(())
}

/// One run: `n` operations, `workers` workers, on the store at `url`. Returns (operations per
/// second, store round-trips per poll).
fn run_once(
    runtime: &tokio::runtime::Runtime,
    base: &str,
    url: &str,
    n: usize,
    workers: usize,
) -> Result<(f64, f64), BenchError> {
    let store: Arc<dyn OperationStore> =
        Arc::from(runtime.block_on(lro_store::open(url)).map_err(|e| BenchError(e.to_string()))?);
    runtime.block_on(submit_all(&store, base, n))?;
    let lro = lro_bin()?;
    let started = Instant::now();
    let children: Vec<_> = (0..workers)
        .map(|i| {
            Command::new(&lro)
                .args(["worker", "--store", url, "--exit-when-done", "--output", "json"])
                .args(["--idle-wait", "20ms", "--rate", "100000", "--concurrency", "500"])
                .args(["--max-in-flight", "64", "--name", &format!("bench-{i}")])
                .env("LRO_TOKEN_KEY", KEY)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut round_trips = 0.0;
    let mut polls = 0.0;
    for child in children {
        let output = child.wait_with_output()?;
        let summary: Value = serde_json::from_slice(&output.stdout)?;
        round_trips += summary["store_round_trips"].as_f64().unwrap_or(0.0);
        polls += summary["polls"].as_f64().unwrap_or(0.0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let left = runtime.block_on(store.running()).map_err(|e| BenchError(e.to_string()))?;
    if left != 0 {
        return Err(BenchError(format!("{left} operations were left running")));
    }
    #[allow(clippy::cast_precision_loss)]
    Ok((n as f64 / elapsed, round_trips / polls.max(1.0)))
}

/// A fresh PostgreSQL database on the server of `url`, its URL, and how to drop it.
fn postgres_database(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    name: &str,
) -> Result<String, BenchError> {
    let (server, _) = url.rsplit_once('/').ok_or_else(|| BenchError("postgres://…/db".into()))?;
    // Two calls: DROP DATABASE cannot share a transaction (one batch) with anything.
    admin(runtime, url, &format!("DROP DATABASE IF EXISTS {name}"))?;
    admin(runtime, url, &format!("CREATE DATABASE {name}"))?;
    Ok(format!("{server}/{name}"))
}

fn admin(runtime: &tokio::runtime::Runtime, url: &str, sql: &str) -> Result<(), BenchError> {
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(sql).await?;
        Ok::<(), tokio_postgres::Error>(())
    })?;
    Ok(())
}

/// The store benchmark: figures for SQLite, and for PostgreSQL when a server is named.
pub(crate) fn run(quick: bool) -> Result<Vec<Measure>, BenchError> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mock = runtime
        .block_on(MockServer::start(
            MockConfig::builder().progress_after_polls(3).log_capacity(0).build(),
        ))
        .map_err(|e| BenchError(e.to_string()))?;
    let base = mock.base_url();
    let n = if quick { 100 } else { 2_000 };
    let dir = std::env::temp_dir().join(format!("lro-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut measures = Vec::new();
    let mut figures = |kind: &str, one: (f64, f64), three: (f64, f64)| {
        let name = |what: &str| -> &'static str {
            Box::leak(format!("store_{kind}_{what}").into_boxed_str())
        };
        measures.push(Measure::new(
            name("1_worker_ops_per_second"),
            "operations_per_second",
            one.0,
        ));
        measures.push(
            Measure::new(name("3_workers_ops_per_second"), "operations_per_second", three.0)
                .against(name("1_worker_ops_per_second"), one.0),
        );
        measures.push(Measure::new(
            name("1_worker_round_trips_per_poll"),
            "store_round_trips_per_poll",
            one.1,
        ));
        measures.push(Measure::new(
            name("3_workers_round_trips_per_poll"),
            "store_round_trips_per_poll",
            three.1,
        ));
    };
    let sqlite = |workers: usize| {
        let path = dir.join(format!("ops-{workers}.db"));
        let _ = std::fs::remove_file(&path);
        run_once(&runtime, &base, &format!("sqlite:{}", path.display()), n, workers)
    };
    let (one, three) = (sqlite(1)?, sqlite(3)?);
    figures("sqlite", one, three);
    let postgres_url = std::env::var("LRO_TEST_POSTGRES_URL").ok();
    if postgres_url.is_none() {
        // Said, not silent: the table will have no store_postgres_* rows.
        eprintln!("lro-bench: store: no PostgreSQL figures (LRO_TEST_POSTGRES_URL is not set)");
    }
    if let Some(url) = postgres_url {
        let postgres = |workers: usize| -> Result<(f64, f64), BenchError> {
            let name = format!("lro_bench_{}_{workers}", std::process::id());
            let db = postgres_database(&runtime, &url, &name)?;
            let result = run_once(&runtime, &base, &db, n, workers);
            admin(&runtime, &url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
            result
        };
        let (one, three) = (postgres(1)?, postgres(3)?);
        figures("postgres", one, three);
    }
    let _ = std::fs::remove_dir_all(&dir);
    runtime.block_on(mock.shutdown());
    Ok(measures)
}
