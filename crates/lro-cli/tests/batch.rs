//! `lro batch`: many operations under one budget, JSON lines, exit codes, a state file that
//! survives a kill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::time::Duration;

use lro_mock::{MockConfig, MockServer};
use serde_json::Value;
use support::{TempDir, arg, lro_line, run_line, wait_limited, wait_until, widget};

fn mock() -> MockServer {
    MockServer::start_blocking(MockConfig::builder().build()).expect("start the mock service")
}

/// An operations file: `n` ARM PUTs, those in `failing` told to fail.
fn ops_file(
    dir: &TempDir,
    server: &MockServer,
    n: usize,
    failing: &[usize],
    polls: u32,
) -> std::path::PathBuf {
    let path = dir.join("ops.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    for i in 0..n {
        let outcome = if failing.contains(&i) { "Failed" } else { "Succeeded" };
        let line = serde_json::json!({
            "method": "PUT",
            "url": widget(&server.base_url(), &format!("batch-{i}")),
            "headers": {"x-mock-outcome": outcome, "x-mock-polls": polls.to_string()},
            "body": {"properties": {"i": i}},
            "flavour": "arm",
            "key": format!("op-{i}"),
        });
        writeln!(file, "{line}").unwrap();
    }
    path
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
}

#[test]
fn a_batch_prints_one_object_per_operation_then_a_summary_and_fails_if_one_failed() {
    let server = mock();
    let dir = TempDir::new("batch");
    let file = ops_file(&dir, &server, 30, &[3, 17], 2);
    let run = run_line(&format!(
        "batch --file '{}' --rate 500 --max-in-flight 8 --interval 0.01 --output json",
        arg(&file)
    ));
    assert_eq!(run.code(), Some(1), "two operations failed\n{}", run.describe());
    let objects = json_lines(&run.stdout);
    assert_eq!(objects.len(), 31, "{}", run.describe());
    let summary = &objects[30]["summary"];
    assert_eq!(summary["operations"], 30);
    assert_eq!(summary["failed"], 2);
    for object in &objects[..30] {
        let key = object["key"].as_str().unwrap();
        let expected = if key == "op-3" || key == "op-17" { "failed" } else { "succeeded" };
        assert_eq!(object["outcome"], expected, "{object}");
        if expected == "succeeded" {
            assert_eq!(object["resource"]["properties"]["provisioningState"], "Succeeded");
        }
    }
    let puts = server.log().iter().filter(|e| e.method == "PUT").count();
    assert_eq!(puts, 30);

    let all_good = ops_file(&dir, &server, 10, &[], 1);
    let run = run_line(&format!("batch --file '{}' --interval 0.01", arg(&all_good)));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert!(run.stderr.contains("10 of 10 done (10 succeeded, 0 failed)"), "{}", run.describe());
}

#[test]
fn a_line_with_an_unknown_flavour_is_refused_and_starts_nothing() {
    let server = mock();
    let dir = TempDir::new("flavour");
    let path = dir.join("ops.jsonl");
    let line = serde_json::json!({
        "method": "PUT",
        "url": widget(&server.base_url(), "typo"),
        "flavour": "amr",
        "key": "typo",
    });
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let run = run_line(&format!("batch --file '{}' --interval 0.01 --output json", arg(&path)));
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(run.stdout.contains("unknown flavour \\\"amr\\\""), "{}", run.describe());
    assert_eq!(server.log().iter().filter(|e| e.method == "PUT").count(), 0, "nothing was sent");
}

#[test]
fn a_killed_batch_resumes_from_its_state_file_without_starting_anything_twice() {
    let server = mock();
    let dir = TempDir::new("batch-kill");
    let file = ops_file(&dir, &server, 20, &[], 40);
    let state = dir.join("state.json");
    let line = format!(
        "batch --file '{}' --interval 0.05 --state-file '{}' --output json",
        arg(&file),
        arg(&state)
    );
    let mut child = lro_line(&line).stdout(std::process::Stdio::null()).spawn().unwrap();
    assert!(wait_until(Duration::from_secs(10), || state.exists()), "the state file appears");
    assert!(wait_until(Duration::from_secs(10), || {
        server.log().iter().filter(|e| e.method == "GET").count() > 40
    }));
    child.kill().unwrap();
    wait_limited(&mut child, Duration::from_secs(5)).expect("killed");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(!saved["pending"].as_object().unwrap().is_empty(), "operations were still running");

    let resume = format!(
        "batch --file '{}' --interval 0.01 --rate 1000 --state-file '{}' --output json --resume",
        arg(&file),
        arg(&state)
    );
    let run = run_line(&resume);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let objects = json_lines(&run.stdout);
    assert_eq!(objects.last().unwrap()["summary"]["succeeded"], 20, "{}", run.describe());
    let puts = server.log().iter().filter(|e| e.method == "PUT").count();
    assert_eq!(puts, 20, "no operation was started twice");
}

#[test]
fn a_batch_killed_while_starting_its_operations_starts_no_journaled_one_twice() {
    let server = mock();
    let dir = TempDir::new("batch-start-kill");
    let path = dir.join("ops.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    for i in 0..20 {
        // Every initial request is answered after 100 ms: the start phase lasts about a second.
        let line = serde_json::json!({
            "method": "PUT",
            "url": widget(&server.base_url(), &format!("slow-{i}")),
            "headers": {"x-mock-faults": "slow=1:100ms,initial=true", "x-mock-polls": "1"},
            "body": {},
            "flavour": "arm",
        });
        writeln!(file, "{line}").unwrap();
    }
    let state = dir.join("state.json");
    let journal = dir.join("state.json.started");
    let line = format!(
        "batch --file '{}' --max-in-flight 2 --interval 0.01 --rate 1000 --state-file '{}' --output json",
        arg(&path),
        arg(&state)
    );
    let mut child = lro_line(&line).stdout(std::process::Stdio::null()).spawn().unwrap();
    let recorded =
        |p: &std::path::Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    assert!(wait_until(Duration::from_secs(10), || recorded(&journal) >= 4), "operations started");
    child.kill().unwrap();
    wait_limited(&mut child, Duration::from_secs(5)).expect("killed");
    assert!(!state.exists(), "killed before the state file was written (the test needs it)");
    // The operations the journal holds (their keys are their line numbers, 1 to 20).
    let journaled: Vec<usize> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["key"].as_str()?.parse::<usize>().ok())
        .collect();
    assert!(journaled.len() >= 4);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&journal).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the journal is its owner's alone: mode {mode:o}");
    }

    let run = run_line(&format!("{line} --resume"));
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    let log = server.log();
    let puts_of = |i: usize| {
        let path = format!("/slow-{i}");
        log.iter().filter(|e| e.method == "PUT" && e.path.ends_with(&path)).count()
    };
    for i in 0..20 {
        let puts = puts_of(i);
        if journaled.contains(&(i + 1)) {
            assert_eq!(puts, 1, "operation {} was journaled: never started again", i + 1);
        } else {
            assert!(puts >= 1, "operation {} was started", i + 1);
        }
    }
    // Only a request in flight at the kill (answered, not yet journaled) may go out again: at
    // most --max-in-flight of them (docs/fleet.md).
    let puts = log.iter().filter(|e| e.method == "PUT").count();
    assert!(puts <= 20 + 2, "{puts} PUTs for 20 operations");
    assert!(!journal.exists(), "the journal is gone once the state file holds everything");
}

#[cfg(unix)]
#[test]
fn a_journal_that_never_ends_is_refused_on_resume_not_read_forever() {
    let server = mock();
    let dir = TempDir::new("batch-endless-journal");
    let path = dir.join("ops.jsonl");
    let line = serde_json::json!({
        "method": "PUT", "url": widget(&server.base_url(), "j"), "body": {}, "flavour": "arm",
    });
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let state = dir.join("state.json");
    std::os::unix::fs::symlink("/dev/zero", dir.join("state.json.started")).unwrap();
    let run = run_line(&format!(
        "batch --file '{}' --state-file '{}' --resume --output json",
        arg(&path),
        arg(&state)
    ));
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stderr.contains("cannot read the journal"), "{}", run.describe());
    assert!(server.log().is_empty(), "nothing started");
}

#[cfg(unix)]
#[test]
fn a_journal_planted_as_a_link_is_never_written_through() {
    let server = mock();
    let dir = TempDir::new("batch-linked-journal");
    let path = dir.join("ops.jsonl");
    let line = serde_json::json!({
        "method": "PUT", "url": widget(&server.base_url(), "l"), "body": {}, "flavour": "arm",
    });
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let state = dir.join("state.json");
    let elsewhere = dir.join("elsewhere");
    std::fs::write(&elsewhere, "").unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("state.json.started")).unwrap();
    let run = run_line(&format!(
        "batch --file '{}' --state-file '{}' --resume --interval 0 --output json",
        arg(&path),
        arg(&state)
    ));
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stderr.contains("not a regular file"), "{}", run.describe());
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "", "written through the link");
    assert!(server.log().is_empty(), "nothing started");
}

#[test]
fn a_line_whose_url_carries_user_information_is_refused_and_starts_nothing() {
    let server = mock();
    let dir = TempDir::new("batch-userinfo");
    let path = dir.join("ops.jsonl");
    let url = widget(&server.base_url(), "u").replace("http://", "http://u:s3cr3t-pw@");
    let line = serde_json::json!({"method": "PUT", "url": url, "body": {}, "flavour": "arm"});
    std::fs::write(&path, format!("{line}\n")).unwrap();
    let run = run_line(&format!("batch --file '{}' --output json", arg(&path)));
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(run.stderr.contains("user information"), "{}", run.describe());
    assert!(!run.stderr.contains("s3cr3t-pw"), "{}", run.describe());
    assert!(server.log().is_empty(), "nothing started");
}
