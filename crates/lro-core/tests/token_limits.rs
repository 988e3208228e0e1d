//! How large a token gets for a real operation, and how much memory decoding a hostile token
//! at the size cap takes (measured as the growth of the peak resident set of a child process).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use lro_core::test_util::{ScriptedTransport, WithHeader, json_response};
use lro_core::{ContinuationToken, Engine, InitialResponse, MAX_TOKEN_LEN, PollOptions};
use support::Monitor;

/// The token of an ARM PUT answered `201` with a resource body of `body_len` bytes of JSON.
fn arm_token(body_len: usize) -> ContinuationToken {
    let filler = "x".repeat(body_len.saturating_sub(200));
    let body = format!(
        r#"{{"id":"/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/big","properties":{{"provisioningState":"Creating","blob":"{filler}"}}}}"#
    );
    arm_engine(&body).continuation_token().unwrap()
}

#[test]
fn the_largest_realistic_token_fits_under_the_cap() {
    // 4 MiB: the size limit of an ARM template, and more than any resource body we know of.
    let token = arm_token(4 * 1024 * 1024);
    let len = token.as_str().len();
    println!("ARM PUT with a 4 MiB resource body: token of {len} bytes ({:.1} MiB)", mib(len));
    assert!(len < MAX_TOKEN_LEN, "{len} bytes do not fit under the {MAX_TOKEN_LEN}-byte cap");
    assert!(len > MAX_TOKEN_LEN / 2, "the cap is not needlessly large ({len} bytes)");
    assert!(token.as_str().parse::<ContinuationToken>().is_ok());
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A token of about `MAX_TOKEN_LEN` bytes whose `data` holds `payload` as `context` and the
/// given response content.
fn hostile(context: &str, content_len: usize) -> String {
    let content = BASE64.encode(vec![b'z'; content_len]);
    let data = format!(
        r#"{{"request":{{"method":"PUT","url":"http://h/r"}},"response":{{"status_code":201,"content":"{content}"}},"context":{context}}}"#
    );
    BASE64.encode(format!(r#"{{"version":1,"data":{data}}}"#))
}

/// JSON arrays of zeros: the cheapest text per parsed value.
fn arrays(len: usize) -> String {
    let inner = format!("[{}0]", "0,".repeat(500));
    let count = len / (inner.len() + 1);
    format!("[{}]", vec![inner; count.max(1)].join(","))
}

/// Budget for the raw envelope: the base64 text is 4/3 of it.
const RAW_BUDGET: usize = MAX_TOKEN_LEN / 4 * 3 - 4096;

#[test]
#[cfg(target_os = "linux")]
fn decoding_a_hostile_token_at_the_cap_takes_a_few_times_its_size() {
    if let Ok(path) = std::env::var("LRO_DECODE_TOKEN_FILE") {
        return decode_and_report(&path);
    }
    let cases = [
        ("JSON arrays in the context", hostile(&arrays(RAW_BUDGET), 0)),
        ("a huge response body", hostile("null", RAW_BUDGET / 4 * 3)),
    ];
    for (what, token) in cases {
        assert!(token.len() <= MAX_TOKEN_LEN, "{what}: {} bytes", token.len());
        assert!(token.len() > MAX_TOKEN_LEN * 9 / 10, "{what}: only {} bytes", token.len());
        let dir = std::env::temp_dir().join(format!("lro-token-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, &token).unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "decoding_a_hostile_token_at_the_cap_takes_a_few_times_its_size"])
            .args(["--nocapture", "--test-threads", "1"])
            .env("LRO_DECODE_TOKEN_FILE", &path)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{what}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let growth: usize = stdout
            .lines()
            .find_map(|line| line.split("peak growth: ").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{what}: no figure in {stdout}"));
        let ratio = growth as f64 / token.len() as f64;
        println!(
            "{what}: token {:.1} MiB, peak grew {:.1} MiB ({ratio:.2}x)",
            mib(token.len()),
            mib(growth)
        );
        assert!(ratio < 4.0, "{what}: decoding took {ratio:.2}x the token's size");
    }
}

/// In the child: read the token, then decode it as a resume would; print the peak RSS growth.
fn decode_and_report(path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let before = peak_rss();
    let token = ContinuationToken::from_string(text);
    let resumed = Engine::resume(Monitor::default(), PollOptions::default(), &token);
    let after = peak_rss();
    drop(resumed);
    println!("\npeak growth: {}", after.saturating_sub(before));
}

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn progress_and_headers_beyond_their_caps_are_refused_not_parsed() {
    let progress = arrays(1024 * 1024);
    let data = format!(
        r#"{{"request":{{"method":"PUT","url":"http://h/r"}},"response":{{"status_code":201}},"progress":{progress}}}"#
    );
    let token =
        ContinuationToken::from_string(BASE64.encode(format!(r#"{{"version":1,"data":{data}}}"#)));
    let error = Engine::resume(Monitor::default(), PollOptions::default(), &token).unwrap_err();
    assert!(error.chain().to_string().contains("progress"), "{error}");
    let _ = Bytes::new();
}

/// An engine on an ARM PUT answered `201` with `body`.
fn arm_engine(body: &str) -> Engine<Monitor> {
    let url = "https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/big?api-version=2024-01-01";
    let initial = InitialResponse::new(
        ScriptedTransport::request_head("PUT", url),
        json_response(201, body)
            .with_header("operation-location", "https://management.azure.com/op/1"),
    );
    Engine::start(Monitor::default(), PollOptions::default(), initial).unwrap()
}

#[test]
fn a_token_is_only_ever_made_if_it_can_be_read_back() {
    // 6 MiB of body: with azure-core's copy of it under `context` the token would pass the cap;
    // without it, it fits, and resumes.
    let body = format!(r#"{{"properties":{{"blob":"{}"}}}}"#, "x".repeat(6 * 1024 * 1024));
    let token = arm_engine(&body).continuation_token().expect("made without the copy");
    assert!(token.as_str().len() <= MAX_TOKEN_LEN);
    let resumed = Engine::resume(Monitor::default(), PollOptions::default(), &token).unwrap();
    assert_eq!(resumed.initial().response().body().len(), body.len(), "the body is kept");
    // 13 MiB of body cannot fit at all: an error now, not a token that fails on resume.
    let body = format!(r#"{{"properties":{{"blob":"{}"}}}}"#, "x".repeat(13 * 1024 * 1024));
    let error = arm_engine(&body).continuation_token().expect_err("too large");
    assert!(chain(&error).contains("can be read back"), "{}", chain(&error));
}

#[test]
fn no_token_is_made_of_progress_a_token_may_not_hold() {
    let mut engine = arm_engine(r#"{"properties":{"provisioningState":"Creating"}}"#);
    let now = lro_core::Timer::now(&lro_core::test_util::ManualClock::new());
    let action = engine.poll(now);
    assert!(
        matches!(action, lro_core::Action::SendRequest(_)),
        "{action:?} {:?}",
        engine.outcome()
    );
    // A hostile service's status word of 70 KB becomes the saved status.
    let status = format!(r#"{{"status":"R{}"}}"#, "x".repeat(70_000));
    engine.handle_response(now, json_response(200, &status));
    let error = engine.continuation_token().expect_err("over the progress cap");
    assert!(chain(&error).contains("progress"), "{}", chain(&error));
}

/// An error and its causes, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}
