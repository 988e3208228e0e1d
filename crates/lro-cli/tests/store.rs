//! Black-box tests of `lro submit`, `lro worker`, `lro status` and `lro abandon` on a SQLite
//! store: signed tokens only, no credential stored, a wrong key refused, abandon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lro_mock::{MockConfig, MockServer};
use serde_json::Value;
use support::{TempDir, lro, widget};

const KEY: &str = "store-cli-test-key-0123456789abcdef";
const SECRET: &str = "Bearer s3cr3t-store-VALUE";

fn lro_with(args: &[&str], key: Option<&str>) -> (Option<i32>, String, String) {
    let mut command = lro();
    command.args(args).env_remove("LRO_TOKEN_KEY");
    if let Some(key) = key {
        command.env("LRO_TOKEN_KEY", key);
    }
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn submit_worker_status_and_abandon_on_a_sqlite_store() {
    let mock = MockServer::start_blocking(MockConfig::builder().build()).unwrap();
    let dir = TempDir::new("store-cli");
    let store = format!("sqlite:{}", dir.path().join("ops.db").display());
    let submit = |name: &str, key: Option<&str>| {
        let url = widget(&mock.base_url(), name);
        lro_with(
            &[
                "submit",
                "--store",
                &store,
                "--key",
                name,
                "--method",
                "PUT",
                "--url",
                &url,
                "--flavour",
                "arm",
                "--body",
                "{}",
                "--interval",
                "0",
                "--header",
                &format!("Authorization: {SECRET}"),
            ],
            key,
        )
    };
    // No key: refused before anything is sent.
    let (code, _, stderr) = submit("unsigned", None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("signed tokens only"), "{stderr}");
    assert!(mock.log().is_empty(), "nothing was sent");

    for name in ["kept", "dropped"] {
        let (code, stdout, stderr) = submit(name, Some(KEY));
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(stdout.trim(), name);
    }
    let (_, listed, _) =
        lro_with(&["status", "--store", &store, "--output", "json", "--token"], None);
    assert!(!listed.contains("s3cr3t"), "a credential was stored: {listed}");
    // The rows themselves (the spec too, which `lro status` does not show).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rows = runtime.block_on(async { lro_store::open(&store).await.unwrap().list(10).await });
    for row in rows.unwrap() {
        let stored = format!("{} {:?} {}", row.spec, row.token, row.status);
        assert!(!stored.contains("s3cr3t"), "a credential was stored: {stored}");
    }
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed.as_array().unwrap().iter().all(|op| op["state"] == "running"));

    let (code, _, stderr) = lro_with(&["abandon", "--store", &store, "dropped"], None);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, _) = lro_with(&["abandon", "--store", &store, "dropped"], None);
    assert_eq!(code, Some(1), "only a running operation can be abandoned");

    // A worker with another key refuses the token: the operation ends in `error`.
    let wrong = "another-key-entirely-0123456789abcdef";
    let worker = |key: &str| {
        lro_with(
            &[
                "worker",
                "--store",
                &store,
                "--exit-when-done",
                "--idle-wait",
                "20ms",
                "--header",
                &format!("Authorization: {SECRET}"),
                "--output",
                "json",
            ],
            Some(key),
        )
    };
    let (code, stdout, stderr) = worker(wrong);
    assert_eq!(code, Some(0), "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["completed"], 0, "{summary}");
    let (_, kept, _) = lro_with(&["status", "--store", &store, "kept", "--output", "json"], None);
    let kept: Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(kept["state"], "error", "{kept}");
    assert_eq!(kept["outcome"]["error"]["kind"], "invalid_token", "{kept}");
    assert!(mock.log().iter().all(|e| e.method != "GET"), "no poll with a refused token");

    // The right key: the next submission is polled to its end, its resource kept byte-exact.
    let (code, _, stderr) = submit("second", Some(KEY));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) = worker(KEY);
    assert_eq!(code, Some(0), "{stderr}");
    let summary: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["completed"], 1, "{summary}");
    let (_, second, _) =
        lro_with(&["status", "--store", &store, "second", "--output", "json"], None);
    let second: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(second["state"], "succeeded", "{second}");
    assert_eq!(second["resource"]["properties"]["provisioningState"], "Succeeded");
    let (code, table, _) = lro_with(&["status", "--store", &store], None);
    assert_eq!(code, Some(0));
    for (name, state) in [("kept", "error"), ("dropped", "abandoned"), ("second", "succeeded")] {
        assert!(
            table.lines().any(|l| l.starts_with(name) && l.contains(state)),
            "{name} {state}:\n{table}"
        );
    }
}

#[test]
fn worker_timings_out_of_range_are_refused_before_anything_runs() {
    let dir = TempDir::new("store-ranges");
    let store = format!("sqlite:{}", dir.path().join("ops.db").display());
    for (flag, value, said) in [
        ("--idle-wait", "0", "--idle-wait must be from 1ms to 1h"),
        ("--idle-wait", "2h", "--idle-wait must be from 1ms to 1h"),
        ("--lease", "0", "--lease must be from 1s to 24h"),
    ] {
        let (code, _, stderr) =
            lro_with(&["worker", "--store", &store, "--exit-when-done", flag, value], Some(KEY));
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(said), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_worker_never_polls_an_unsigned_token_planted_in_the_store() {
    use lro_core::{Engine, InitialResponse, RequestHead};
    let mock = MockServer::start_blocking(MockConfig::builder().build()).unwrap();
    let dir = TempDir::new("store-unsigned");
    let store = format!("sqlite:{}", dir.path().join("ops.db").display());
    // Whoever can write the database plants an unsigned token naming a URL of their choice
    // (here the mock; in earnest an internal host), for a worker with no credentials to poll.
    let url = widget(&mock.base_url(), "planted");
    let head = RequestHead::new(http::Method::PUT, url.parse().unwrap(), http::HeaderMap::new());
    let mut response = http::Response::new(bytes::Bytes::from_static(
        br#"{"properties":{"provisioningState":"Creating"}}"#,
    ));
    *response.status_mut() = http::StatusCode::CREATED;
    let (strategy, options) = lro_strategies::ArmPolling::builder().into_parts();
    let engine = Engine::start(strategy, options, InitialResponse::new(head, response)).unwrap();
    let token = engine.continuation_token().unwrap().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let db = lro_store::open(&store).await.unwrap();
        let spec = serde_json::json!({"flavour": "arm", "retries": 0});
        db.submit(lro_store::NewOperation::new("planted", token, spec)).await.unwrap();
    });
    let (code, _, stderr) = lro_with(
        &["worker", "--store", &store, "--exit-when-done", "--idle-wait", "20ms"],
        Some(KEY),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(mock.log().is_empty(), "nothing sent for an unsigned token: {:?}", mock.log());
    let (_, planted, _) =
        lro_with(&["status", "--store", &store, "planted", "--output", "json"], None);
    let planted: Value = serde_json::from_str(&planted).unwrap();
    assert_eq!(planted["state"], "error", "{planted}");
    assert_eq!(planted["outcome"]["error"]["kind"], "invalid_token", "{planted}");
}

#[test]
fn a_store_urls_password_is_never_printed() {
    for url in [
        "postgres://lro:s3cr3t-pw@127.0.0.1:1/ops",
        "postgres://lro@127.0.0.1:1/ops?password=s3cr3t-pw",
        "mysql://lro:s3cr3t-pw@127.0.0.1:1/ops",
    ] {
        let (code, stdout, stderr) = lro_with(&["status", "--store", url], None);
        assert_ne!(code, Some(0), "{url}: {stderr}");
        assert!(stderr.contains("cannot open the store"), "{url}: {stderr}");
        assert!(!stderr.contains("s3cr3t-pw") && !stdout.contains("s3cr3t-pw"), "{stderr}");
    }
}
