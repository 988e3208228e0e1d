//! Interrupted runs: SIGINT/SIGTERM save the token and print the resume command; SIGKILL at
//! any moment leaves the token file either absent (before the first response) or complete, and
//! resuming ends with the same resource as an uninterrupted run.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use lro_core::ContinuationToken;
use lro_mock::{MockConfig, MockServer};
use serde_json::Value;
use support::{TempDir, arg, lro_line, run_line, signal, wait_limited, wait_until, widget};

fn mock() -> MockServer {
    MockServer::start_blocking(MockConfig::builder().build()).expect("start the mock service")
}

fn spawn_piped(line: &str) -> Child {
    lro_line(line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn output(child: Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

#[test]
fn sigterm_and_sigint_save_the_token_and_the_run_can_be_resumed() {
    let server = mock();
    for (transport, sig, output_flag) in
        [("hyper", "TERM", "json"), ("blocking", "INT", "json"), ("hyper", "INT", "text")]
    {
        let dir = TempDir::new("signal");
        let file = dir.join("op.token");
        let url = widget(&server.base_url(), &format!("sig-{transport}-{sig}"));
        let mut child = spawn_piped(&format!(
            "start --method PUT --url {url} --flavour arm --body '{{}}' --header 'x-mock-polls: 40' \
             --interval 0.05 --transport {transport} --token-file '{}' --output {output_flag}",
            arg(&file)
        ));
        assert!(wait_until(Duration::from_secs(5), || file.exists()), "the token file appears");
        assert!(child.try_wait().unwrap().is_none(), "still polling when signalled");
        assert!(signal(child.id(), sig), "kill -{sig}");
        assert!(wait_limited(&mut child, Duration::from_secs(10)).is_some(), "it stops");
        let (code, stdout, stderr) = output(child);
        assert_eq!(code, Some(1), "{stdout}\n{stderr}");
        if output_flag == "json" {
            let json: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
            assert_eq!(json["outcome"], "error");
            assert_eq!(json["error"]["kind"], "interrupted", "{json}");
            assert!(json["continuation_token"].is_string());
        } else {
            assert!(stderr.contains(&format!("interrupted by SIG{sig}")), "{stderr}");
            assert!(stderr.contains("lro resume --token-file"), "the resume command: {stderr}");
        }
        let token = std::fs::read_to_string(&file).unwrap();
        token.trim().parse::<ContinuationToken>().expect("a complete token");
        let resumed = run_line(&format!(
            "resume --token-file '{}' --flavour arm --interval 0 --transport {transport} --output json",
            arg(&file)
        ));
        resumed.outcome("succeeded");
    }
}

#[test]
fn a_signal_before_the_service_answers_leaves_no_token_and_says_so() {
    // A server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/things/1", listener.local_addr().unwrap());
    let dir = TempDir::new("early-signal");
    let file = dir.join("op.token");
    let mut child = spawn_piped(&format!(
        "start --method PUT --url {url} --body '{{}}' --token-file '{}' --output json",
        arg(&file)
    ));
    let (_stream, _) = listener.accept().unwrap(); // the initial request is on its way
    assert!(signal(child.id(), "TERM"), "kill -TERM");
    assert!(wait_limited(&mut child, Duration::from_secs(10)).is_some(), "it stops");
    let (code, stdout, _) = output(child);
    assert_eq!(code, Some(1));
    let json: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(json["error"]["kind"], "interrupted");
    assert!(json["continuation_token"].is_null());
    assert!(!file.exists(), "no token before the first response");
}

/// SIGKILL at twenty moments spread over the operation (chosen by how many requests the mock
/// has answered, not by wall-clock sleeps), then resume: the token file is always absent or
/// complete, and the resource is the one an uninterrupted run gets.
#[test]
fn sigkill_at_any_moment_then_resume_gives_the_uninterrupted_result() {
    let server = mock();
    let polls = 12;
    // The resource's bytes exactly as the service sent them (`--output raw`).
    let uninterrupted = run_line(&format!(
        "start --method PUT --url {url} --flavour arm --body '{{\"size\":3}}' \
         --header 'x-mock-polls: {polls}' --interval 0 --output raw",
        url = widget(&server.base_url(), "crash")
    ));
    assert_eq!(uninterrupted.code(), Some(0), "{}", uninterrupted.describe());
    let reference = uninterrupted.stdout.clone();
    assert!(reference.contains("\"provisioningState\":\"Succeeded\""), "{reference}");
    let mut kills = 0;
    let mut paths = [0u32; 3]; // resumed from the file, recovered from a temporary file, restarted
    for round in 0..24u32 {
        let dir = TempDir::new("crash");
        let file = dir.join("op.token");
        let url = widget(&server.base_url(), "crash");
        let before = server.log().len();
        let mut child = lro_line(&format!(
            "start --method PUT --url {url} --flavour arm --body '{{\"size\":3}}' \
             --header 'x-mock-polls: {polls}' --interval 0.02 --token-file '{}' --output json",
            arg(&file)
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        // Kill once the mock has seen `round % (polls + 2)` requests of this run: before the
        // PUT, between polls, around the final GET.
        let target = before + (round as usize % (polls + 2));
        wait_until(Duration::from_secs(5), || server.log().len() >= target);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let _ = child.wait();
        if file.exists() {
            let text = std::fs::read_to_string(&file).unwrap();
            text.trim().parse::<ContinuationToken>().unwrap_or_else(|e| {
                panic!("round {round}: the token file is not a complete token: {e}")
            });
        }
        let resume =
            format!("resume --token-file '{}' --flavour arm --interval 0 --output raw", arg(&file));
        let restart = format!(
            "start --method PUT --url {url} --flavour arm --body '{{\"size\":3}}' \
             --header 'x-mock-polls: {polls}' --interval 0 --token-file '{}' --output raw",
            arg(&file)
        );
        let temporary = dir.names().iter().any(|n| n.contains(".tmp-"));
        let result = match (file.exists(), temporary) {
            (true, _) => {
                paths[0] += 1;
                run_line(&resume)
            }
            // The rename never happened: resume recovers a complete temporary file, or says
            // there is nothing to resume (a usage error), and the run starts again.
            (false, true) => match run_line(&resume) {
                run if run.code() == Some(2) => {
                    paths[2] += 1;
                    run_line(&restart)
                }
                run => {
                    paths[1] += 1;
                    run
                }
            },
            // Killed before the first response: nothing to resume; start again.
            (false, false) => {
                paths[2] += 1;
                run_line(&restart)
            }
        };
        assert_eq!(result.code(), Some(0), "round {round}\n{}", result.describe());
        assert_eq!(
            result.stdout,
            reference,
            "round {round}: not byte-identical\n{}",
            result.describe()
        );
        // A resume must continue the killed run's operation, never start another.
        let puts = server.log()[before..].iter().filter(|e| e.method == "PUT").count();
        if result.args.first().map(String::as_str) == Some("resume") {
            assert_eq!(puts, 1, "round {round}: the resume sent a PUT of its own");
        }
        let leftovers: Vec<String> =
            dir.names().into_iter().filter(|n| n.contains(".tmp-")).collect();
        assert!(leftovers.is_empty(), "round {round}: temporary files remain: {leftovers:?}");
    }
    println!(
        "{kills} kills: {} resumed from the token file, {} recovered from a temporary file, {} \
         started again",
        paths[0], paths[1], paths[2]
    );
    assert!(kills >= 20, "only {kills} runs were killed mid-way");
    assert!(paths[0] >= 10, "most kills come after the first response: {paths:?}");
}
