//! `lro resume` treats a continuation token as untrusted input: credentials go only to an
//! origin named on the command line, or from a token whose signature matches the key. Checked
//! end to end through both transports, with a second server acting as the foreign origin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lro_mock::scripted::{ScriptedServer, Step};
use lro_mock::{MockConfig, MockServer};
use serde_json::Value;
use support::{TempDir, arg, base64, run_line, token_envelope, widget};

const TRANSPORTS: [&str; 2] = ["hyper", "blocking"];

fn mock() -> MockServer {
    MockServer::start_blocking(MockConfig::builder().build()).expect("start the mock service")
}

fn token(json: &Value) -> String {
    json["continuation_token"].as_str().expect("a continuation token").to_owned()
}

/// A foreign origin that answers every poll `Succeeded` and records what it receives.
fn foreign() -> ScriptedServer {
    let steps = vec![
        Step::get("/op").json(r#"{"status": "Succeeded"}"#),
        Step::get("/resource").json(r#"{"name": "foreign"}"#),
    ];
    ScriptedServer::start_blocking(steps).expect("start the foreign server")
}

/// A token of a real operation on `server`, with every URL moved to `foreign`.
fn forged(server: &MockServer, foreign: &ScriptedServer) -> String {
    let url = widget(&server.base_url(), "forged");
    let run = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --header 'x-mock-polls: 100' \
         --interval 0.1 --timeout 1.5 --output json"
    ));
    let original = token(&run.error("timeout"));
    let mut envelope = token_envelope(&original);
    let data = &mut envelope["data"];
    data["request"]["url"] = Value::from(foreign.url("/resource"));
    data["response"]["headers"] = serde_json::json!({"azure-asyncoperation": foreign.url("/op")});
    data.as_object_mut().unwrap().remove("progress");
    base64(envelope.to_string().as_bytes())
}

#[test]
fn a_forged_token_with_credentials_is_refused_before_anything_is_sent() {
    let server = mock();
    for transport in TRANSPORTS {
        let other = foreign();
        let token = forged(&server, &other);
        let run = run_line(&format!(
            "resume --token {token} --flavour arm --transport {transport} --interval 0 \
             --header 'Authorization: Bearer stolen' --output json"
        ));
        let json = run.error("policy");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(&other.base_url()), "names the origin: {}", run.describe());
        assert!(message.contains("--allow-origin"), "names the flag: {}", run.describe());
        assert!(other.requests().is_empty(), "{transport}: the foreign origin was contacted");
        // The text output tells which flag trusts it.
        let text = run_line(&format!(
            "resume --token {token} --transport {transport} --header 'api-key: k'"
        ));
        assert_eq!(text.code(), Some(1));
        assert!(text.stderr.contains("--allow-origin"), "{}", text.describe());
        assert!(!text.stderr.contains("Bearer") && !text.stderr.contains("api-key: k"));
    }
}

#[test]
fn any_header_given_on_the_command_line_is_kept_from_a_forged_tokens_origin() {
    // Names and values that do not look like credentials: a header the user gives may be one
    // all the same (`X-Auth`, a bare JWT), so it is never sent to an origin nobody vouched for.
    let server = mock();
    for transport in TRANSPORTS {
        let other = foreign();
        let token = forged(&server, &other);
        let run = run_line(&format!(
            "resume --token {token} --flavour arm --transport {transport} --interval 0 \
             --header 'X-Auth: s3cret' --output json"
        ));
        run.error("policy");
        assert!(other.requests().is_empty(), "{transport}: the foreign origin was contacted");
    }
}

#[test]
fn a_batch_resumed_from_a_forged_journal_keeps_its_lines_headers_from_the_tokens_origin() {
    let server = mock();
    let other = foreign();
    let token = forged(&server, &other);
    let dir = TempDir::new("batch-forged-journal");
    let ops = dir.join("ops.jsonl");
    let line = serde_json::json!({
        "method": "PUT", "url": widget(&server.base_url(), "j"), "body": {}, "flavour": "arm",
        "headers": {"X-Auth": "s3cret"}, "key": "op-0",
    });
    std::fs::write(&ops, format!("{line}\n")).unwrap();
    let state = dir.join("state.json");
    let journal = serde_json::json!({"key": "op-0", "token": token});
    std::fs::write(dir.join("state.json.started"), format!("{journal}\n")).unwrap();
    let run = run_line(&format!(
        "batch --file '{}' --state-file '{}' --resume --interval 0 --output json",
        arg(&ops),
        arg(&state)
    ));
    assert!(run.stdout.contains("policy"), "{}", run.describe());
    assert!(other.requests().is_empty(), "the foreign origin was contacted");
}

#[test]
fn an_origin_named_on_the_command_line_is_trusted() {
    let server = mock();
    for (transport, flag) in [("hyper", "--allow-origin"), ("blocking", "--url")] {
        let other = foreign();
        let token = forged(&server, &other);
        let run = run_line(&format!(
            "resume --token {token} --flavour arm --transport {transport} --interval 0 \
             --header 'Authorization: Bearer ok' {flag} {} --output json",
            other.url("/resource")
        ));
        run.outcome("succeeded");
        let seen = other.requests();
        assert!(!seen.is_empty(), "{transport}: polled the vouched origin");
    }
}

#[test]
fn without_credentials_a_token_resumes_wherever_it_points_as_in_azure_core() {
    let server = mock();
    let other = foreign();
    let token = forged(&server, &other);
    run_line(&format!("resume --token {token} --flavour arm --interval 0 --output json"))
        .outcome("succeeded");
}

#[test]
fn signed_tokens_are_trusted_and_altered_ones_refused() {
    let server = mock();
    let dir = TempDir::new("signed");
    let key = dir.join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    for transport in TRANSPORTS {
        let url = widget(&server.base_url(), &format!("signed-{transport}"));
        let run = run_line(&format!(
            "start --method PUT --url {url} --flavour arm --body '{{}}' --header 'x-mock-polls: 100' \
             --header 'Authorization: Bearer t' --interval 0.1 --timeout 1.5 --transport {transport} \
             --token-key-file '{}' --output json",
            arg(&key)
        ));
        let token = token(&run.error("timeout"));
        assert!(token_envelope(&token)["mac"].is_string(), "the token is signed");
        // Trusted without naming the origin: the signature vouches for it.
        let resumed = run_line(&format!(
            "resume --token {token} --flavour arm --interval 0 --transport {transport} \
             --header 'Authorization: Bearer t' --token-key-file '{}' --output json",
            arg(&key)
        ));
        resumed.outcome("succeeded");

        // Any change breaks the signature, whatever the origin.
        let mut envelope = token_envelope(&token);
        envelope["data"]["request"]["method"] = Value::from("PATCH");
        let altered = base64(envelope.to_string().as_bytes());
        let refused = run_line(&format!(
            "resume --token {altered} --flavour arm --interval 0 --transport {transport} \
             --token-key-file '{}' --output json",
            arg(&key)
        ));
        refused.error("invalid_token");
    }
}

#[test]
fn the_token_key_may_come_from_the_environment_and_must_be_long_enough() {
    let short = support::lro_line("resume --token x --output json")
        .env("LRO_TOKEN_KEY", "short")
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&short.stderr).contains("LRO_TOKEN_KEY"));
}

#[test]
fn a_start_with_credentials_prints_a_resume_command_that_vouches_for_its_origin() {
    let server = mock();
    let url = widget(&server.base_url(), "hinted");
    let run = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --header 'x-mock-polls: 100' \
         --header 'Authorization: Bearer t' --interval 0.1 --timeout 1.5"
    ));
    assert_eq!(run.code(), Some(1));
    let hint = run.stderr.lines().find(|l| l.contains("lro resume")).expect("a resume hint");
    assert!(hint.contains(&format!("--allow-origin {}", server.base_url())), "{hint}");
    assert!(!hint.contains("Bearer t"), "{hint}");
}

#[test]
#[cfg(target_os = "linux")]
fn an_endless_token_file_is_refused_without_being_read_whole() {
    let run = run_line("resume --token-file /dev/zero --output json");
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stderr.contains("larger than"), "{}", run.describe());
    assert!(run.elapsed < std::time::Duration::from_secs(5), "{}", run.describe());
}
