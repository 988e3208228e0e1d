//! The tour that `cargo xtask demo` runs: every kind of operation against the embedded mock
//! service, through both pollers and the `lro` CLI. Exits non-zero if any result is wrong.
//!
//! Run it with `cargo xtask demo` (which builds the `lro` binary first and passes its path in
//! `LRO_BIN`).
#![allow(missing_debug_implementations, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use lro_blocking::BlockingClient;
use lro_core::{AsyncLroPoller, InitialResponse, LroError, LroPoller, deserialize};
use lro_hyper::HyperClient;
use lro_mock::{MockConfig, MockServer};
use lro_strategies::{ArmPolling, FinalStateVia, LroBasePolling};
use serde_json::Value;

const WIDGETS: &str = "/subscriptions/demo/resourceGroups/rg/providers/Mock.Widgets/widgets";

struct Tour {
    base: String,
    failures: Vec<String>,
    started: Instant,
}

impl Tour {
    fn step(&self, title: &str) {
        // The tour clock: when this section starts, counted from the start of the tour.
        println!("\n── {title} (starts {:.2?} into the tour)", self.started.elapsed());
    }

    fn check(&mut self, what: &str, ok: bool) {
        println!("   {} {what}", if ok { "✔" } else { "✘" });
        if !ok {
            self.failures.push(what.to_owned());
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn request(method: &str, url: &str, body: &str, headers: &[(&str, &str)]) -> Request<Bytes> {
    let mut builder =
        Request::builder().method(method).uri(url).header("x-ms-client-request-id", "demo-1");
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Bytes::from(body.to_owned())).unwrap()
}

async fn async_put(tour: &mut Tour, client: &Arc<HyperClient>) {
    tour.step("PUT a widget (ARM, Azure-AsyncOperation) through the async poller over hyper");
    let url = tour.url(&format!("{WIDGETS}/w1"));
    let initial = InitialResponse::send_async(
        &**client,
        request("PUT", &url, r#"{"properties":{"size":3}}"#, &[]),
    )
    .await
    .unwrap();
    println!(
        "   initial: {} with Azure-AsyncOperation {:?}",
        initial.response().status(),
        initial.response().headers().get("azure-asyncoperation")
    );
    let method = ArmPolling::builder().interval(Duration::from_millis(50)).build();
    let poller = AsyncLroPoller::new(
        client.clone(),
        lro_hyper::TokioTimer,
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    let widget = poller.await;
    match &widget {
        Ok(w) => println!("   result: {w}"),
        Err(e) => println!("   error: {e}"),
    }
    let state = widget
        .as_ref()
        .ok()
        .and_then(|w| w["properties"]["provisioningState"].as_str().map(str::to_owned));
    tour.check(
        "the widget came back with provisioningState Succeeded",
        state.as_deref() == Some("Succeeded"),
    );
}

fn blocking_delete(tour: &mut Tour, client: &Arc<BlockingClient>) {
    tour.step("DELETE the widget (Location) through the blocking poller over ureq");
    let url = tour.url(&format!("{WIDGETS}/w1"));
    let initial = InitialResponse::send(&**client, request("DELETE", &url, "", &[])).unwrap();
    println!(
        "   initial: {} with Location {:?}",
        initial.response().status(),
        initial.response().headers().get("location")
    );
    let method = LroBasePolling::builder().interval(Duration::from_millis(50)).build();
    let poller =
        LroPoller::new(client.clone(), lro_core::SystemTimer, initial, deserialize::none(), method)
            .unwrap();
    let done = poller.result(Some(Duration::from_secs(20)));
    println!("   status: {}", poller.status());
    tour.check("the delete finished", done.is_ok());
}

async fn post_job(tour: &mut Tour, client: &Arc<HyperClient>) {
    tour.step("POST a job (Operation-Location, final-state-via operation-location)");
    let initial = InitialResponse::send_async(
        &**client,
        request("POST", &tour.url("/jobs"), r#"{"input":"demo"}"#, &[]),
    )
    .await
    .unwrap();
    let method = LroBasePolling::builder()
        .interval(Duration::from_millis(50))
        .final_state_via(FinalStateVia::OperationLocation)
        .build();
    let poller = AsyncLroPoller::new(
        client.clone(),
        lro_hyper::TokioTimer,
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    let monitor = poller.await;
    match &monitor {
        Ok(m) => println!("   the status monitor is the result: {m}"),
        Err(e) => println!("   error: {e}"),
    }
    tour.check("the job succeeded", monitor.as_ref().is_ok_and(|m| m["status"] == "Succeeded"));
}

async fn failing(tour: &mut Tour, client: &Arc<HyperClient>) {
    tour.step("an operation that fails on the service side");
    let url = tour.url(&format!("{WIDGETS}/broken"));
    let initial = InitialResponse::send_async(
        &**client,
        request("PUT", &url, "{}", &[("x-mock-outcome", "Failed")]),
    )
    .await
    .unwrap();
    let method = ArmPolling::builder().interval(Duration::from_millis(50)).build();
    let poller = AsyncLroPoller::new(
        client.clone(),
        lro_hyper::TokioTimer,
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    match poller.await {
        Ok(_) => tour.check("the operation failed", false),
        Err(error) => {
            println!("   error: {}", error.chain());
            let token = error.continuation_token().map(ToString::to_string).unwrap_or_default();
            println!("   continuation token: {}…", token.chars().take(48).collect::<String>());
            tour.check(
                "it is reported as OperationFailed",
                matches!(error, LroError::OperationFailed(_)),
            );
            tour.check("the error carries a continuation token", !token.is_empty());
        }
    }
}

async fn interrupted(tour: &mut Tour, client: &Arc<HyperClient>) {
    tour.step("an operation interrupted by a timeout, then resumed from its token");
    let url = tour.url(&format!("{WIDGETS}/slow"));
    let initial = InitialResponse::send_async(
        &**client,
        request("PUT", &url, "{}", &[("x-mock-polls", "6")]),
    )
    .await
    .unwrap();
    let method = ArmPolling::builder().interval(Duration::from_millis(100)).build();
    let poller = AsyncLroPoller::new(
        client.clone(),
        lro_hyper::TokioTimer,
        initial,
        deserialize::json::<Value>(),
        method,
    )
    .unwrap();
    let token = match poller.result(Some(Duration::from_millis(250))).await {
        Err(LroError::Timeout(t)) => {
            println!(
                "   timed out after {:?}, status {}",
                t.elapsed().unwrap_or_default(),
                poller.status()
            );
            poller.continuation_token().unwrap()
        }
        other => {
            println!("   unexpected: {other:?}");
            tour.check("the first wait timed out", false);
            return;
        }
    };
    drop(poller);
    println!("   (the poller is gone; a new one resumes from the token alone)");
    let method = ArmPolling::builder().interval(Duration::from_millis(100)).build();
    let resumed = AsyncLroPoller::from_continuation_token(
        method,
        &token,
        client.clone(),
        lro_hyper::TokioTimer,
        deserialize::json::<Value>(),
    )
    .unwrap();
    let widget = resumed.await;
    tour.check(
        "the resumed operation finished",
        widget.is_ok_and(|w| w["properties"]["provisioningState"] == "Succeeded"),
    );
}

fn cli(tour: &mut Tour) {
    tour.step("the lro CLI, with progress");
    let Ok(lro) = std::env::var("LRO_BIN") else {
        tour.check("LRO_BIN names the lro binary (run through cargo xtask demo)", false);
        return;
    };
    let url = tour.url(&format!("{WIDGETS}/from-cli"));
    println!("   $ lro start --method PUT --url {url} --flavour arm --interval 0.05 --output json");
    let output = Command::new(&lro)
        .args([
            "start",
            "--method",
            "PUT",
            "--url",
            &url,
            "--flavour",
            "arm",
            "--interval",
            "0.05",
            "--body",
            "{}",
        ])
        .args(["--output", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("   {}", stdout.trim());
    let report: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    tour.check(
        "exit code 0 and outcome succeeded",
        output.status.success() && report["outcome"] == "succeeded",
    );
    println!(
        "   $ lro start --method POST --url {}/jobs --interval 0.05   (text output)",
        tour.base
    );
    let status = Command::new(&lro)
        .args([
            "start",
            "--method",
            "POST",
            "--url",
            &tour.url("/jobs"),
            "--interval",
            "0.05",
            "--body",
            "{}",
        ])
        .status()
        .unwrap();
    tour.check("the text run succeeded", status.success());
}

/// `lro batch`: a hundred operations under one budget, with 429s that pause the whole origin.
fn batch(tour: &mut Tour, server: &MockServer) {
    tour.step("lro batch: 100 operations, one budget, a 429 pauses the whole origin");
    let Ok(lro) = std::env::var("LRO_BIN") else {
        tour.check("LRO_BIN names the lro binary (run through cargo xtask demo)", false);
        return;
    };
    let dir = std::env::temp_dir().join(format!("lro-demo-batch-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("ops.jsonl");
    let lines: Vec<String> = (0..100)
        .map(|i| {
            serde_json::json!({
                "method": "PUT",
                "url": tour.url(&format!("{WIDGETS}/batch-{i}")),
                "headers": {"x-mock-faults": format!("seed={i},429=0.02:ms:200")},
                "body": {"properties": {"i": i}},
                "flavour": "arm",
            })
            .to_string()
        })
        .collect();
    let _ = std::fs::write(&file, lines.join("\n"));
    let before = server.log().len();
    println!("   $ lro batch --file ops.jsonl --rate 400 --max-in-flight 16 --interval 0.02");
    let status = Command::new(&lro)
        .args(["batch", "--file"])
        .arg(&file)
        .args(["--rate", "400", "--max-in-flight", "16", "--interval", "0.02"])
        .status()
        .unwrap();
    let log = server.log();
    let throttled = log[before.min(log.len())..].iter().filter(|e| e.status == Some(429)).count();
    println!(
        "   the mock answered {throttled} polls with 429 (retry-after-ms: 200): each paused every \
         poll to the origin, not just its own"
    );
    tour.check("every operation of the batch succeeded", status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let server = runtime
        .block_on(MockServer::start(MockConfig::builder().build()))
        .expect("the mock service starts");
    println!("mock LRO service at {}", server.base_url());
    let mut tour = Tour { base: server.base_url(), failures: Vec::new(), started: Instant::now() };
    let hyper = Arc::new(HyperClient::new().unwrap());
    let blocking = Arc::new(BlockingClient::new().unwrap());
    runtime.block_on(async_put(&mut tour, &hyper));
    blocking_delete(&mut tour, &blocking);
    runtime.block_on(post_job(&mut tour, &hyper));
    runtime.block_on(failing(&mut tour, &hyper));
    runtime.block_on(interrupted(&mut tour, &hyper));
    cli(&mut tour);
    batch(&mut tour, &server);
    drop(server);
    println!(
        "\n{} checks failed; the tour took {:.1?}",
        tour.failures.len(),
        tour.started.elapsed()
    );
    if tour.failures.is_empty() {
        println!("demo: all good");
        ExitCode::SUCCESS
    } else {
        for failure in &tour.failures {
            println!("FAILED: {failure}");
        }
        ExitCode::from(1)
    }
}
