//! Many workers, one store (issue #13): 1,000 operations on lro-mock with transient faults,
//! three `lro worker` processes, one of them SIGKILLed mid-run. Every operation must complete
//! exactly once with the right result, none may be lost, and no operation may be polled by two
//! workers at once (from the mock's request log).
//!
//! Against SQLite here; against PostgreSQL in `cargo xtask test-all` (the store-postgres step
//! runs the ignored test with `LRO_TEST_POSTGRES_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lro_core::{Engine, InitialResponse, TokenKey};
use lro_hyper::HyperClient;
use lro_mock::{FaultSpec, MockConfig, MockServer};
use lro_store::{NewOperation, OperationState, OperationStore};
use lro_strategies::ArmPolling;
use serde_json::{Value, json};
use support::{TempDir, lro, signal, wait_limited, wait_until, wait_until_every, widget};

const KEY: &str = "distributed-test-key-0123456789abcdef";
const OPERATIONS: usize = 1_000;
const FAULTS: &str = "seed=13,500=0.02,503=0.02,429=0.01:ms:20,reset=0.01";

/// What `lro submit` stores as the spec (`crates/lro-cli/src/store/spec.rs`).
fn spec() -> Value {
    json!({"flavour": "arm", "interval_ms": 20, "retries": 6})
}

/// Submits `n` ARM PUTs (widgets `w0000`…) straight through the library: the same token and
/// spec as `lro submit`, a thousand times faster than a thousand processes.
async fn submit_all(store: &Arc<dyn OperationStore>, base: &str, n: usize) {
    let client = Arc::new(HyperClient::new().unwrap());
    let key = TokenKey::new(KEY.as_bytes()).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, key, store) = (Arc::clone(&client), key.clone(), Arc::clone(store));
        let url = widget(base, &format!("w{i:04}"));
        tasks.spawn(async move {
            let request = http::Request::put(&url)
                .header("content-type", "application/json")
                .body(Bytes::from_static(b"{}"))
                .unwrap();
            let initial = InitialResponse::send_async(&*client, request).await.unwrap();
            let (strategy, options) = ArmPolling::builder()
                .interval(Duration::from_millis(20))
                .poll_options(|o| o.token_key(key))
                .into_parts();
            let engine = Engine::start(strategy, options, initial).unwrap();
            let token = engine.continuation_token().unwrap().into_string();
            let op = NewOperation::new(format!("w{i:04}"), token, spec())
                .status(engine.status().to_string());
            store.submit(op).await.unwrap();
        });
        while tasks.len() >= 32 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// A worker on `store` with a 2 s lease.
fn spawn_worker(store: &str, name: &str) -> Child {
    spawn_worker_with(store, name, "2s", &[])
}

/// As [`spawn_worker`], with a lease of `lease` and more arguments for `lro`.
fn spawn_worker_with(store: &str, name: &str, lease: &str, more: &[&str]) -> Child {
    lro()
        .env_remove("LRO_LOG") // it would override -vvv
        .args(more)
        .args(["worker", "--store", store, "--exit-when-done", "--lease", lease])
        .args(["--idle-wait", "100ms", "--rate", "500", "--concurrency", "300"])
        .args(["--name", name, "--header", &format!("user-agent: {name}"), "--output", "json"])
        .env("LRO_TOKEN_KEY", KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn output(child: Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Held by each test of this file while it runs: each drives several worker processes with
/// leases of seconds, and two such tests side by side on a 2-core machine starve each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The whole scenario against the store at `url` (created empty by the caller).
fn three_workers_one_killed(url: &str) {
    let _alone = one_at_a_time();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let faults: FaultSpec = FAULTS.parse().unwrap();
    let mock = runtime
        .block_on(MockServer::start(
            MockConfig::builder()
                .faults(faults)
                .progress_after_polls(3)
                .log_capacity(100_000)
                .build(),
        ))
        .unwrap();
    let store: Arc<dyn OperationStore> = Arc::from(runtime.block_on(lro_store::open(url)).unwrap());
    runtime.block_on(submit_all(&store, &mock.base_url(), OPERATIONS));

    let started = Instant::now();
    let mut workers: Vec<Child> = (0..3).map(|i| spawn_worker(url, &format!("w{i}"))).collect();
    // Kill w0 once a quarter of the operations are done.
    loop {
        let running = runtime.block_on(store.running()).unwrap();
        if running <= (OPERATIONS * 3 / 4) as u64 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress: {running} running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = workers.remove(0);
    killed.kill().unwrap(); // SIGKILL
    let _ = killed.wait();
    for worker in &mut workers {
        assert!(
            wait_limited(worker, Duration::from_secs(120)).is_some(),
            "a worker did not finish within 120 s"
        );
    }
    let summaries: Vec<(String, String)> = workers.into_iter().map(output).collect();
    let elapsed = started.elapsed();

    // Every operation completed once, with its own widget as the result.
    let records = runtime.block_on(store.list(10_000)).unwrap();
    assert_eq!(records.len(), OPERATIONS);
    let mut takeovers = 0;
    for record in &records {
        assert_eq!(record.state, OperationState::Succeeded, "{}: {:?}", record.key, record.outcome);
        let resource: Value = serde_json::from_slice(record.result.as_ref().unwrap()).unwrap();
        assert_eq!(resource["name"], record.key.as_str(), "the right result");
        assert_eq!(resource["properties"]["provisioningState"], "Succeeded");
        if record.claims > 1 {
            takeovers += 1;
        }
    }
    assert!(takeovers > 0, "the killed worker held operations that others took over");

    // From the mock's log: one PUT per widget (never re-sent), and each operation's GETs (its
    // polls and its final GET) in turns of one worker at a time, each turn begun by a claim of
    // its own: no more turns than the store counted claims. A worker that polled without its
    // claim, beside the one that held it, would add turns. (Besides w0's, an operation may
    // change hands when a live worker, slowed down on a loaded machine, misses renewing its
    // 2 s lease: the other's claim fences it out, and the store counts that claim too.)
    let log = mock.log();
    let claims: BTreeMap<&str, i64> = records.iter().map(|r| (r.key.as_str(), r.claims)).collect();
    let widget_of = |path: &str| {
        let path = path.split('?').next().unwrap_or_default();
        path.rsplit('/').next().unwrap_or_default().to_owned()
    };
    let mut puts: BTreeMap<String, usize> = BTreeMap::new();
    let mut widget_of_operation: BTreeMap<String, String> = BTreeMap::new();
    let mut turns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in &log {
        if entry.method == "PUT" {
            *puts.entry(entry.path.clone()).or_default() += 1;
            if let Some(op) = &entry.operation_id {
                widget_of_operation.insert(op.clone(), widget_of(&entry.path));
            }
        } else if entry.method == "GET" {
            let widget = match &entry.operation_id {
                Some(op) => widget_of_operation.get(op).cloned().unwrap_or_else(|| op.clone()),
                None => widget_of(&entry.path),
            };
            let agent = entry.user_agent.clone().unwrap_or_default();
            let runs = turns.entry(widget).or_default();
            if runs.last() != Some(&agent) {
                runs.push(agent);
            }
        }
    }
    assert_eq!(puts.len(), OPERATIONS);
    assert!(puts.values().all(|&n| n == 1), "an initial request was sent twice");
    for (widget, runs) in &turns {
        let claimed = claims.get(widget.as_str()).copied();
        assert!(claimed.is_some(), "GETs of {widget}, which is no operation of the store");
        let claimed = claimed.unwrap_or_default();
        assert!(
            i64::try_from(runs.len()).unwrap() <= claimed,
            "{widget} was polled in turns {runs:?} on {claimed} claim(s): two workers at once"
        );
    }
    // The log tells the workers apart (else the check above could not fail).
    assert!(turns.values().any(|runs| runs.len() >= 2), "no takeover seen in the mock's log");
    eprintln!(
        "{OPERATIONS} operations, 3 workers (w0 killed), {takeovers} taken over, in {elapsed:.1?}; \
         survivors: {summaries:?}"
    );
    runtime.block_on(mock.shutdown());
}

#[test]
fn three_workers_on_sqlite_one_killed_complete_every_operation_exactly_once() {
    let dir = TempDir::new("distributed");
    let url = format!("sqlite:{}", dir.path().join("ops.db").display());
    three_workers_one_killed(&url);
}

#[test]
#[ignore = "needs PostgreSQL: run by cargo xtask test-all's store-postgres step (LRO_TEST_POSTGRES_URL)"]
fn three_workers_on_postgres_one_killed_complete_every_operation_exactly_once() {
    let url = std::env::var("LRO_TEST_POSTGRES_URL").expect(
        "LRO_TEST_POSTGRES_URL must name a PostgreSQL database (.ci/run starts one: see \
         .ci/postgres.sh)",
    );
    // A database of its own, dropped at the end.
    let (server, _) = url.rsplit_once('/').expect("postgres://…/database");
    let database = format!("lro_crash_{}", std::process::id());
    let admin = |sql: String| {
        let url = url.clone();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (client, connection) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap();
        });
    };
    // Two calls: DROP DATABASE cannot share a transaction (one batch) with anything.
    admin(format!("DROP DATABASE IF EXISTS {database}"));
    admin(format!("CREATE DATABASE {database}"));
    three_workers_one_killed(&format!("{server}/{database}"));
    admin(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
}

/// A request in a worker's `-vvv` log (a line of its poll span): the operation as the mock's
/// log names it (a status monitor's id, or the path of a final GET), and the request (its poll
/// number, attempt and kind). `None` for other lines.
fn request_of(line: &str) -> Option<(String, String)> {
    let poll = &line[line.find("lro.poll{")?..];
    let field = |name: &str| {
        let at = poll.find(name)? + name.len();
        poll[at..].split([' ', '}']).next()
    };
    let url = field("url.full=")?;
    let operation = match url.split_once("/operations/") {
        Some((_, id)) => id.to_owned(),
        None => url.splitn(4, '/').nth(3).map(|path| format!("/{path}"))?,
    };
    let request =
        format!("{} {} {}", field("lro.poll=")?, field("lro.attempt=")?, field("lro.final_get=")?);
    Some((operation, request))
}

/// The requests of a worker's `-vvv` log lines that it sent (`answered: false`) or saw answered.
fn requests(lines: &[String], answered: bool) -> BTreeSet<(String, String)> {
    let wanted = |l: &&String| match answered {
        false => l.trim_end().ends_with(": new"),
        true => l.contains(": close") && l.contains("status_code="),
    };
    lines.iter().filter(wanted).filter_map(|l| request_of(l)).collect()
}

/// Whether every thread of `pid` is stopped (Linux's `/proc`; elsewhere, after a pause).
fn stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        std::thread::sleep(Duration::from_millis(50));
        return true;
    };
    tasks.map_while(Result::ok).all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the command's closing parenthesis: `T` stopped, `t` traced.
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        matches!(state, Some('T' | 't'))
    })
}

/// Freezes `child` (SIGSTOP) at a moment it holds no write lock on the SQLite file at `db`.
/// A process frozen in the middle of a write keeps every other writer of that file out until it
/// runs again (docs/distributed.md): SQLite's own limit, not the lease protocol this test pins.
/// Checked by taking that lock itself (and letting it go at once). A worker polling 20
/// operations held it at 5 of 300 freezes at random moments; then the other
/// worker cannot claim anything (and before 2026-12-05, could not even open the store).
fn freeze_outside_a_write(child: &Child, db: &std::path::Path) {
    for _ in 0..100 {
        assert!(signal(child.id(), "STOP"), "kill -STOP");
        assert!(wait_until(Duration::from_secs(5), || stopped(child.id())), "the worker stopped");
        let probe = rusqlite::Connection::open(db).unwrap();
        probe.busy_timeout(Duration::ZERO).unwrap();
        if probe.execute_batch("BEGIN IMMEDIATE; ROLLBACK").is_ok() {
            return;
        }
        assert!(signal(child.id(), "CONT"), "kill -CONT");
        std::thread::sleep(Duration::from_millis(7));
    }
    panic!("the worker held the write lock at each of 100 freezes");
}

/// Wakes and kills the processes it names if the test panics, so that a failed run leaves no
/// frozen worker behind (holding the database, its pipes, its port). A process is taken off the
/// list before it is reaped, since its pid may then name another process.
struct KillOnPanic(Vec<u32>);

impl Drop for KillOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &pid in &self.0 {
                signal(pid, "CONT");
                signal(pid, "KILL");
            }
        }
    }
}

#[test]
fn a_worker_paused_past_its_lease_never_polls_again_after_another_took_over() {
    let _alone = one_at_a_time();
    let dir = TempDir::new("paused");
    let db = dir.path().join("ops.db");
    let url = format!("sqlite:{}", db.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mock = runtime
        .block_on(MockServer::start(MockConfig::builder().progress_after_polls(60).build()))
        .unwrap();
    let store: Arc<dyn OperationStore> =
        Arc::from(runtime.block_on(lro_store::open(&url)).unwrap());
    runtime.block_on(submit_all(&store, &mock.base_url(), 20));
    // Held by `name` (or, with `or_ended`, already ended: a completion clears the owner, and on
    // a loaded machine w1 may finish some operations before it has claimed the last of w0's).
    let held_by = |name: &str, or_ended: bool| {
        let records = runtime.block_on(store.list(100)).unwrap();
        let ended = |r: &&lro_store::OperationRecord| r.state != OperationState::Running;
        records.iter().filter(|r| r.owner.as_deref() == Some(name) || or_ended && ended(r)).count()
    };
    // w0 logs a line as it sends each request (-vvv), read here as it comes.
    let mut paused = spawn_worker_with(&url, "w0", "2s", &["-vvv"]);
    let mut reaper = KillOnPanic(vec![paused.id()]);
    let log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let (log, stderr) = (Arc::clone(&log), paused.stderr.take().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        })
    };
    // Each check reads the store, or w0's whole log: every 20 ms is often enough.
    let (limit, every) = (Duration::from_secs(20), Duration::from_millis(20));
    assert!(wait_until_every(limit, every, || held_by("w0", false) == 20), "w0 claimed all");
    // It polls each operation at least once, and sees the answer, before it is frozen.
    let polled_all = || {
        let answered = requests(&log.lock().unwrap(), true);
        answered.iter().map(|(operation, _)| operation).collect::<BTreeSet<_>>().len() >= 20
    };
    assert!(wait_until_every(limit, every, polled_all), "w0 polled every operation");
    freeze_outside_a_write(&paused, &db);
    // A long lease for w1: on a loaded machine, a w1 slow to renew must not hand operations
    // back to the awakened w0 (which would then rightly complete some).
    let mut other = spawn_worker_with(&url, "w1", "60s", &[]);
    reaper.0.push(other.id());
    // w0's leases (2 s) run out; w1 takes every operation over and polls.
    if !wait_until_every(limit, every, || held_by("w1", true) == 20) {
        let _ = other.kill();
        reaper.0.pop(); // w1's, reaped just below: its pid may be another process's after
        let (_, stderr) = output(other);
        panic!("w1 did not take every operation over in 20 s; its stderr:\n{stderr}");
    }
    std::thread::sleep(Duration::from_millis(300));
    // All w0 wrote before it was frozen has been read by now (seconds ago): what comes after
    // this mark, it wrote after waking up.
    let mark = log.lock().unwrap().len();
    assert!(signal(paused.id(), "CONT"), "kill -CONT");
    let w1_finished = wait_limited(&mut other, Duration::from_secs(60)).is_some();
    let w0_exited = wait_limited(&mut paused, Duration::from_secs(20)).is_some();
    // Both have exited or been killed: no signal is needed any more, and a reaped pid may name
    // another process.
    reaper.0.clear();
    assert!(w1_finished, "w1 finished");
    assert!(w0_exited, "w0 exited");
    let (w0, _) = output(paused);
    reader.join().unwrap();
    let log = log.lock().unwrap();
    // What w0 had sent and not yet seen answered when it was frozen, per operation: the only
    // requests of w0 that may reach the service after it wakes.
    let before = &log[..mark];
    let (sent, answered) = (requests(before, false), requests(before, true));
    assert!(sent.intersection(&answered).count() >= 20, "w0's log shows its requests and answers");
    let mut in_flight: BTreeMap<String, usize> = BTreeMap::new();
    for (operation, _) in sent.difference(&answered) {
        *in_flight.entry(operation.clone()).or_default() += 1;
    }
    let w0: Value = serde_json::from_str(&w0).unwrap();
    assert_eq!(w0["completed"], 0, "{w0}");
    assert_eq!(w0["leases_lost"], 20, "{w0}");
    let mut agents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut late: BTreeMap<String, usize> = BTreeMap::new();
    for entry in mock.log().iter().filter(|e| e.method == "GET") {
        let op = entry.operation_id.clone().unwrap_or_else(|| entry.path.clone());
        let agent = entry.user_agent.clone().unwrap_or_default();
        let runs = agents.entry(op.clone()).or_default();
        if agent == "w0" && runs.iter().any(|a| a == "w1") {
            *late.entry(op).or_default() += 1;
        }
        if runs.last() != Some(&agent) {
            runs.push(agent);
        }
    }
    // w0 starts nothing after it wakes. The one thing no process can call back is a request it
    // had sent when it was frozen, not yet written: once it runs again, it may reach the
    // service after w1's first poll — no more than w0 had in flight for that operation.
    for (op, runs) in &agents {
        // A status monitor: w0, then w1; a widget's final GET: w1 alone.
        let (late, allowed) = (late.get(op).copied().unwrap_or(0), in_flight.get(op).copied());
        let fine = (runs == &["w0", "w1"] || runs == &["w1"] || runs == &["w0", "w1", "w0", "w1"])
            && late <= allowed.unwrap_or(0);
        assert!(
            fine,
            "{op} was polled by {runs:?} ({late} late, {allowed:?} in flight at the freeze): w0 \
             polled after waking up"
        );
    }
    let taken_over = agents.values().filter(|runs| runs.starts_with(&["w0".into(), "w1".into()]));
    assert!(taken_over.count() >= 20, "{agents:?}");
    let records = runtime.block_on(store.list(100)).unwrap();
    assert!(records.iter().all(|r| r.state == OperationState::Succeeded));
    runtime.block_on(mock.shutdown());
}
