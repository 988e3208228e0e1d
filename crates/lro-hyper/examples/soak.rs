//! Soak test: thousands of operations through the async poller on one tokio runtime, against
//! the embedded mock with faults injected into polls (500, 503, 429, connection resets, truncated
//! bodies, slow answers). Every operation must end as the mock was told to end it (success with
//! the right resource, failed, canceled): no wrong result, no error, no panic, no hang; the
//! resident set must stay flat from round to round.
//!
//! ```text
//! cargo run --release -p lro-hyper --example soak -- [--operations N] [--rounds R] [--concurrency C] [--seed S] [--retries N]
//! ```
//!
//! `cargo xtask soak` runs 10,000 operations; `cargo xtask test-all` a reduced run. Prints one
//! line per round and a summary; exits non-zero if any check fails.
//!
//! The mock runs in a child process (this program with `--serve-mock`), so that the resident
//! set measured is the client's alone: the mock's request log and counters grow by design.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lro_core::{AsyncLroPoller, InitialResponse, LroError, RetryPolicy, StatusKind, deserialize};
use lro_hyper::HyperClient;
use lro_mock::{FaultSpec, MockConfig, MockServer};
use lro_strategies::{ArmPolling, LroBasePolling};
use serde_json::Value;

/// The faults injected into every poll, final GET included (not into initial requests, which
/// are not idempotent for POST). `{seed}` is the operation's own seed.
const FAULTS: &str = "500=0.025,503=0.025,429=0.02:ms:20,reset=0.02,malformed=0.01,slow=0.2:15ms";

/// Retries per request (default; `--retries N` changes it). With about 10% of answers faulty, four faults in a row hit one request
/// in 10,000, i.e. a few operations in a 10,000-operation soak with azure-core's 3 retries; six
/// make it about one in 250 soaks of 10,000 (1e-7 per request, ~4 requests per operation).
const RETRIES: u64 = 6;

/// Requests the mock remembers: enough to count the faults of a whole round.
const LOG_CAPACITY: usize = 20_000;

/// No operation may take longer than this: past it, it counts as a hang.
const HANG: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Succeeded,
    Failed,
    Canceled,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    right: u64,
    wrong: u64,
    errors: u64,
    panics: u64,
    hangs: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.right += other.right;
        self.wrong += other.wrong;
        self.errors += other.errors;
        self.panics += other.panics;
        self.hangs += other.hangs;
    }
}

struct Args {
    operations: u64,
    rounds: u64,
    concurrency: u64,
    seed: u64,
    retries: u64,
    serve_mock: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        operations: 10_000,
        rounds: 5,
        concurrency: 200,
        seed: 1,
        retries: RETRIES,
        serve_mock: false,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        if flag == "--serve-mock" {
            args.serve_mock = true;
            continue;
        }
        let value = words.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: u64 = value.parse().map_err(|_| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--operations" => args.operations = number,
            "--rounds" => args.rounds = number.max(1),
            "--concurrency" => args.concurrency = number.max(1),
            "--seed" => args.seed = number,
            "--retries" => args.retries = number,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("soak: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("soak: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.serve_mock {
        return match runtime.block_on(serve_mock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("soak mock: {message}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(soak(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("soak: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The child process: serves the mock, prints its URL, and on the line `report` from stdin (or
/// when stdin closes) prints how many requests it answered and the faults among those its log
/// still holds (as `Kind=count` words), and exits.
async fn serve_mock() -> Result<(), String> {
    use std::io::BufRead as _;
    // A bounded store, so that the operations of one round are still there when polled.
    let config = MockConfig::builder().max_operations(20_000).log_capacity(LOG_CAPACITY).build();
    let mock = MockServer::start(config).await.map_err(|e| format!("mock: {e}"))?;
    println!("{}", mock.base_url());
    let mut faults = std::collections::BTreeMap::<String, u64>::new();
    let mut seen = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        let read = tokio::task::block_in_place(|| std::io::stdin().lock().read_line(&mut line));
        let log = mock.log();
        // The log keeps the newest LOG_CAPACITY entries: count what was added since last time.
        let total = usize::try_from(mock.counters().total).unwrap_or(usize::MAX);
        let new = total.saturating_sub(seen).min(log.len());
        for fault in log[log.len() - new..].iter().flat_map(|entry| entry.faults.iter()) {
            *faults.entry(format!("{:?}", fault.kind())).or_default() += 1;
        }
        seen = total;
        if !matches!(read, Ok(n) if n > 0) || line.trim() == "report" {
            let words: Vec<String> = faults.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("requests={total} {}", words.join(" "));
            return Ok(());
        }
    }
}

/// The mock in a child process.
struct Mock {
    child: std::process::Child,
    base_url: String,
}

impl Mock {
    fn start() -> Result<Self, String> {
        use std::io::BufRead as _;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(exe)
            .arg("--serve-mock")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the mock: {e}"))?;
        let stdout = child.stdout.as_mut().ok_or("no stdout")?;
        let mut base_url = String::new();
        std::io::BufReader::new(stdout).read_line(&mut base_url).map_err(|e| e.to_string())?;
        Ok(Mock { child, base_url: base_url.trim().to_owned() })
    }

    /// Asks for the fault counts, and ends the child.
    fn report(mut self) -> Result<String, String> {
        use std::io::{Read as _, Write as _};
        let mut stdin = self.child.stdin.take().ok_or("no stdin")?;
        stdin.write_all(b"report\n").map_err(|e| e.to_string())?;
        drop(stdin);
        let mut text = String::new();
        if let Some(out) = self.child.stdout.as_mut() {
            out.read_to_string(&mut text).map_err(|e| e.to_string())?;
        }
        let _ = self.child.wait();
        Ok(text.trim().to_owned())
    }
}

async fn soak(args: &Args) -> Result<bool, String> {
    let mock = Mock::start()?;
    let client = Arc::new(HyperClient::new().map_err(|e| e.to_string())?);
    let per_round = args.operations.div_ceil(args.rounds);
    let mut total = Counts::default();
    let mut rss = Vec::new();
    let started = std::time::Instant::now();
    for round in 0..args.rounds {
        let first = round * per_round;
        let last = (first + per_round).min(args.operations);
        let counts = run_round(&mock.base_url, &client, first..last, args).await;
        total.add(counts);
        rss.push(resident_kib());
        println!(
            "round {}: operations {first}..{last}: {} right, {} wrong, {} errors, {} panics, {} hangs; RSS {} KiB",
            round + 1,
            counts.right,
            counts.wrong,
            counts.errors,
            counts.panics,
            counts.hangs,
            rss.last().copied().unwrap_or_default()
        );
    }
    let report = mock.report()?;
    println!(
        "soak: {} operations in {:.1?}: {} right, {} wrong, {} errors, {} panics, {} hangs",
        args.operations,
        started.elapsed(),
        total.right,
        total.wrong,
        total.errors,
        total.panics,
        total.hangs,
    );
    println!("soak: the mock's log (its last {LOG_CAPACITY} requests at most): {report}");
    // Each kind of fault must have happened, or the soak proved nothing.
    let every_kind =
        ["InternalServerError", "ServiceUnavailable", "TooManyRequests", "Reset", "Malformed"]
            .iter()
            .all(|kind| {
                report
                    .split(' ')
                    .any(|word| word.starts_with(&format!("{kind}=")) && !word.ends_with("=0"))
            });
    let flat = rss_is_flat(&rss);
    println!("soak: RSS by round (KiB): {rss:?} — {}", if flat { "flat" } else { "GROWING" });
    if !every_kind {
        println!("soak: not every kind of fault was injected");
    }
    let ok = total.right == args.operations
        && total.wrong + total.errors + total.panics + total.hangs == 0
        && flat
        && every_kind;
    println!("soak: {}", if ok { "passed" } else { "FAILED" });
    Ok(ok)
}

/// Flat: after the first round (warm-up: the connection pool, the allocator's arenas), no
/// round's resident set exceeds the second round's by more than 10% + 4 MiB.
fn rss_is_flat(rss: &[u64]) -> bool {
    let Some(&baseline) = rss.get(1) else { return true };
    let allowed = baseline + baseline / 10 + 4 * 1024;
    rss.iter().skip(2).all(|&r| r <= allowed)
}

async fn run_round(
    base: &str,
    client: &Arc<HyperClient>,
    operations: std::ops::Range<u64>,
    args: &Args,
) -> Counts {
    let mut tasks = tokio::task::JoinSet::new();
    let workers = args.concurrency.min(operations.end - operations.start).max(1);
    for worker in 0..workers {
        let (base, client) = (base.to_owned(), Arc::clone(client));
        let mine: Vec<u64> =
            operations.clone().filter(|n| (n - operations.start) % workers == worker).collect();
        let (seed, retries) = (args.seed, u32::try_from(args.retries).unwrap_or(u32::MAX));
        tasks.spawn(async move {
            let mut counts = Counts::default();
            for n in mine {
                let one =
                    tokio::time::timeout(HANG, operation(&base, &client, n, seed, retries)).await;
                match one {
                    Err(_) => counts.hangs += 1,
                    Ok(Ok(())) => counts.right += 1,
                    Ok(Err(Verdict::Wrong(why))) => {
                        eprintln!("operation {n}: wrong: {why}");
                        counts.wrong += 1;
                    }
                    Ok(Err(Verdict::Error(why))) => {
                        if counts.errors < 3 {
                            eprintln!("operation {n}: error: {why}");
                        }
                        counts.errors += 1;
                    }
                }
            }
            counts
        });
    }
    let mut counts = Counts::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(worker) => counts.add(worker),
            Err(e) => {
                eprintln!("a worker panicked: {e}");
                counts.panics += 1;
            }
        }
    }
    counts
}

enum Verdict {
    Wrong(String),
    Error(String),
}

/// One operation: a PUT of an ARM widget or a data-plane POST job, told to end `expect`.
async fn operation(
    base: &str,
    client: &Arc<HyperClient>,
    n: u64,
    seed: u64,
    retries: u32,
) -> Result<(), Verdict> {
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(1_000_003).wrapping_add(n));
    let expect = match rng.u8(0..10) {
        0 => Expect::Failed,
        1 => Expect::Canceled,
        _ => Expect::Succeeded,
    };
    let arm = rng.bool();
    let name = format!("soak-{n}");
    let (method, url) = if arm {
        (
            http::Method::PUT,
            format!(
                "{base}/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/{name}"
            ),
        )
    } else {
        (http::Method::POST, format!("{base}/jobs"))
    };
    let faults = format!("seed={},{FAULTS}", rng.u64(..));
    let _: FaultSpec = faults.parse().map_err(|e| Verdict::Error(format!("fault spec: {e}")))?;
    let outcome = match expect {
        Expect::Succeeded => "Succeeded",
        Expect::Failed => "Failed",
        Expect::Canceled => "Canceled",
    };
    let request = http::Request::builder()
        .method(method)
        .uri(&url)
        .header("content-type", "application/json")
        .header("x-mock-outcome", outcome)
        .header("x-mock-faults", faults)
        .body(Bytes::from(format!(r#"{{"properties":{{"n":{n}}}}}"#)))
        .map_err(|e| Verdict::Error(e.to_string()))?;
    let initial = InitialResponse::send_async(&**client, request)
        .await
        .map_err(|e| Verdict::Error(format!("initial request: {e}")))?;
    let retry = RetryPolicy::builder()
        .max_retries(retries)
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(500))
        .build();
    let interval = Duration::from_millis(10);
    let method = if arm {
        ArmPolling::builder().interval(interval).retry(retry).build()
    } else {
        LroBasePolling::builder().interval(interval).retry(retry).build()
    };
    let poller = AsyncLroPoller::new(
        Arc::clone(client),
        lro_hyper::TokioTimer,
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .map_err(|e| Verdict::Error(format!("poller: {e}")))?;
    let result = poller.await;
    judge(expect, arm, &name, result)
}

fn judge(
    expect: Expect,
    arm: bool,
    name: &str,
    result: Result<Value, LroError>,
) -> Result<(), Verdict> {
    match (expect, result) {
        (Expect::Succeeded, Ok(body)) => {
            let right = if arm {
                body["name"] == name && body["properties"]["provisioningState"] == "Succeeded"
            } else {
                body["status"] == "Succeeded" && body["id"].is_string()
            };
            if right { Ok(()) } else { Err(Verdict::Wrong(format!("resource {body}"))) }
        }
        (Expect::Failed | Expect::Canceled, Err(LroError::OperationFailed(details))) => {
            let kind = details.operation_status().map(|s| s.kind());
            let wanted =
                if expect == Expect::Failed { StatusKind::Failed } else { StatusKind::Canceled };
            if kind == Some(wanted) {
                Ok(())
            } else {
                Err(Verdict::Wrong(format!("ended {kind:?}, expected {expect:?}")))
            }
        }
        (_, Ok(body)) => Err(Verdict::Wrong(format!("succeeded with {body}, expected {expect:?}"))),
        (_, Err(error)) => Err(Verdict::Error(format!("{error} (expected {expect:?})"))),
    }
}

/// This process's resident set (VmRSS), in KiB; 0 where it cannot be read.
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
