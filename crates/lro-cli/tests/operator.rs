//! Black-box tests of what an operator sees (issue #12): decode errors for bodies that lie about
//! being JSON, the flavour read from the token, advice that names the flag to use, plain HTTP
//! behind an `https://` URL, humantime durations, `-v` logs without secrets, the final line, and
//! `lro mock`'s request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use lro_mock::scripted::{ScriptedServer, Step};
use lro_mock::{MockConfig, MockServer};
use serde_json::Value;
use support::{lro_line, run_line, wait_limited, widget};

const SECRET: &str = "s3cr3t-operator-VALUE";

fn mock() -> MockServer {
    MockServer::start_blocking(MockConfig::builder().build()).expect("start the mock service")
}

fn scripted(steps: Vec<Step>) -> ScriptedServer {
    ScriptedServer::start_blocking(steps).expect("start the scripted server")
}

#[test]
fn a_final_body_declared_json_that_does_not_parse_is_a_decode_error() {
    let server = scripted(vec![
        Step::new("PUT", "/things/t1").status(201).header("Operation-Location", "{base}/ops/1"),
        Step::get("/ops/1").json(r#"{"status": "Succeeded"}"#),
        Step::get("/things/t1").header("content-type", "application/json").body("{\"name\": \"t1"),
    ]);
    let run = run_line(&format!(
        "start --method PUT --url {url} --body '{{}}' --interval 0 --retries 0 --output json",
        url = server.url("/things/t1")
    ));
    let json = run.error("decode");
    assert!(
        json["error"]["message"].as_str().unwrap().contains("declared as JSON"),
        "{}",
        run.describe()
    );
    assert_eq!(json["resource"], Value::Null);
}

#[test]
fn a_final_body_declared_text_stays_a_string_even_when_it_looks_like_json() {
    let server = scripted(vec![
        Step::new("PUT", "/things/t2").status(201).header("Operation-Location", "{base}/ops/2"),
        Step::get("/ops/2").json(r#"{"status": "Succeeded"}"#),
        Step::get("/things/t2").header("content-type", "text/plain").body("{\"a\": 1}"),
    ]);
    let run = run_line(&format!(
        "start --method PUT --url {url} --body '{{}}' --interval 0 --output json",
        url = server.url("/things/t2")
    ));
    assert_eq!(run.outcome("succeeded")["resource"], "{\"a\": 1}", "{}", run.describe());
}

#[test]
fn resume_reads_the_flavour_from_the_token_and_a_wrong_one_is_named() {
    let server = mock();
    let url = widget(&server.base_url(), "flavoured");
    let started = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --header 'x-mock-polls: 40' \
         --interval 10s --timeout 1500ms --output json"
    ));
    let json = started.error("timeout");
    let token = json["continuation_token"].as_str().expect("a token").to_owned();

    let wrong = run_line(&format!("resume --token {token} --flavour base --interval 0"));
    assert_eq!(wrong.code(), Some(1), "{}", wrong.describe());
    assert!(wrong.stderr.contains("made by ARM polling"), "{}", wrong.describe());
    assert!(wrong.stderr.contains("resume with --flavour arm"), "{}", wrong.describe());

    // No --flavour: the token's own (ARM) is used, and the operation finishes.
    let resumed = run_line(&format!("resume --token {token} --interval 0 --output json"));
    let json = resumed.outcome("succeeded");
    assert_eq!(json["resource"]["properties"]["provisioningState"], "Succeeded");
}

#[test]
fn a_poll_refused_for_its_origin_names_the_allow_origin_flag() {
    let server = scripted(vec![
        Step::new("PUT", "/things/t3")
            .status(201)
            .header("Operation-Location", "http://localhost:9/ops/3?sig=x"),
    ]);
    let run = run_line(&format!(
        "start --method PUT --url {url} --body '{{}}' --interval 0",
        url = server.url("/things/t3")
    ));
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.stderr.contains("--allow-origin http://localhost:9"),
        "the advice names the flag and the origin\n{}",
        run.describe()
    );
    assert!(run.stderr.contains("lro resume"), "and how to resume\n{}", run.describe());
}

#[test]
fn an_https_url_aimed_at_a_plain_http_port_says_so_on_both_transports() {
    let server = mock();
    let url = widget(&server.base_url().replace("http://", "https://"), "tls");
    for transport in ["hyper", "blocking"] {
        let run = run_line(&format!(
            "start --method PUT --url {url} --body '{{}}' --retries 0 --transport {transport} \
             --output json"
        ));
        let json = run.error("transport");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("plain HTTP"), "{transport}: {}", run.describe());
        assert!(message.contains("http:// URL"), "{transport}: {}", run.describe());
    }
}

#[test]
fn durations_take_units_and_negative_ones_are_refused() {
    let server = mock();
    let url = widget(&server.base_url(), "timed");
    let run = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --interval 20ms --timeout 1m \
         --output json"
    ));
    run.outcome("succeeded");
    for (flag, value, says) in [
        ("--interval", "-5", "negative"),
        ("--timeout", "-2m", "negative"),
        ("--interval", "soon", "not a duration"),
    ] {
        let run = run_line(&format!("start --method PUT --url {url} {flag} {value}"));
        assert_eq!(run.code(), Some(2), "{}", run.describe());
        assert!(run.stderr.contains(says), "{flag} {value}: {}", run.describe());
    }
}

#[test]
fn verbose_logs_show_spans_and_polls_without_secrets() {
    let server = mock();
    let url = format!("{}?sig={SECRET}", widget(&server.base_url(), "logged"));
    let run = run_line(&format!(
        "-vv start --method PUT --url {url} --flavour arm --body '{{}}' --interval 0 \
         --header 'x-api-key: {SECRET}'"
    ));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stderr.contains("lro.operation"), "the operation span\n{}", run.describe());
    assert!(run.stderr.contains("lro.poll"), "poll spans at -vv\n{}", run.describe());
    assert!(run.stderr.contains("http.response.status_code=200"), "{}", run.describe());
    assert!(run.stderr.contains("operation finished"), "{}", run.describe());
    assert!(!run.stderr.contains(SECRET), "a secret in the logs\n{}", run.describe());
    assert!(!run.stdout.contains(SECRET));
}

#[test]
fn the_final_line_gives_the_time_and_a_singular_poll() {
    let server = scripted(vec![
        Step::new("DELETE", "/things/t5").status(202).header("Operation-Location", "{base}/ops/5"),
        Step::get("/ops/5").json(r#"{"status": "Succeeded"}"#),
    ]);
    let run =
        run_line(&format!("start --method DELETE --url {} --interval 0", server.url("/things/t5")));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let last = run.stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.starts_with("succeeded in "), "{}", run.describe());
    assert!(last.contains(" after 1 poll "), "'1 poll', not '1 polls'\n{}", run.describe());
    assert!(!run.stderr.contains('\u{1b}'), "no colour when stderr is not a terminal");
}

/// Runs `lro mock ARGS`, sends one operation through it, stops it, and returns its stderr.
fn mock_stderr(args: &str) -> String {
    let mut child = lro_line(&format!("mock --port 0 {args}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let base = receiver.recv_timeout(Duration::from_secs(5)).expect("the base URL");
    let run = run_line(&format!(
        "start --method PUT --url {} --flavour arm --body '{{}}' --interval 0",
        widget(base.trim(), "served")
    ));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    support::signal(child.id(), "INT");
    if wait_limited(&mut child, Duration::from_secs(5)).is_none() {
        let _ = child.kill();
    }
    reader.join().unwrap()
}

#[test]
fn lro_mock_logs_each_request_unless_quiet() {
    let logged = mock_stderr("");
    assert!(
        logged.lines().any(|l| l.starts_with("PUT /subscriptions/") && l.ends_with("-> 201")),
        "{logged}"
    );
    assert!(logged.lines().any(|l| l.starts_with("GET /") && l.contains("-> 200")), "{logged}");
    let quiet = mock_stderr("--quiet");
    assert!(!quiet.lines().any(|l| l.contains(" -> ")), "{quiet}");
}

#[test]
fn help_documents_the_json_schema_and_resume_headers_apply_to_polls() {
    let help = run_line("--help");
    assert_eq!(help.code(), Some(0), "{}", help.describe());
    for needle in ["schema 1", "elapsed_ms", "continuation_token", "    body  ", "Exit codes"] {
        assert!(help.stdout.contains(needle), "{needle:?} in lro --help\n{}", help.stdout);
    }
    let resume = run_line("resume --help");
    assert!(resume.stdout.contains("sent on every poll"), "{}", resume.stdout);
}

#[test]
fn status_lines_say_when_the_next_poll_comes_and_why() {
    let server = mock();
    let url = widget(&server.base_url(), "paced");
    let run = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{}}' --interval 30ms \
         --header 'x-mock-polls: 2'"
    ));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stderr.contains("next poll in 30ms (interval)"), "{}", run.describe());
    assert!(run.stderr.contains('%'), "the mock's percentComplete\n{}", run.describe());
}
