//! Helpers for the black-box tests of the `lro` binary: running it with a bounded wait, reading
//! its one JSON object, checking the `--output json` schema, temporary directories, raw HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use lro_mock::LogEntry;
use serde_json::Value;

/// No single `lro` run of these tests may take longer than this.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(10);

/// The `lro` binary under test.
pub(crate) fn lro() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lro"))
}

/// `/subscriptions/…/widgets/{name}` on `base`.
pub(crate) fn widget(base: &str, name: &str) -> String {
    format!("{base}/subscriptions/sub-1/resourceGroups/rg-1/providers/Mock.Widgets/widgets/{name}")
}

/// What one run of `lro` did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) args: Vec<String>,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

impl Run {
    /// The exit code (`None` if killed by a signal).
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The one JSON object on stdout (the whole of stdout, but for blanks), schema-checked.
    pub(crate) fn json(&self) -> Value {
        let value: Value = serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("stdout is not exactly one JSON value ({e}):\n{}", self.describe())
        });
        assert_schema(&value, self);
        value
    }

    /// The JSON result, checked to have this outcome and the exit code that goes with it.
    pub(crate) fn outcome(&self, outcome: &str) -> Value {
        let json = self.json();
        assert_eq!(json["outcome"], outcome, "{}", self.describe());
        let code = if outcome == "succeeded" { 0 } else { 1 };
        assert_eq!(self.code(), Some(code), "exit code for {outcome}\n{}", self.describe());
        json
    }

    /// The error of a JSON result that ended with `outcome "error"` and this error kind.
    pub(crate) fn error(&self, kind: &str) -> Value {
        let json = self.outcome("error");
        assert_eq!(json["error"]["kind"], kind, "{}", self.describe());
        json
    }

    /// The run, for assertion messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "lro {}\nexit: {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.status,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `lro args…` to its end (at most [`RUN_LIMIT`]), with stdin closed.
pub(crate) fn run<S: AsRef<str>>(args: &[S]) -> Run {
    run_limited(args, RUN_LIMIT)
}

/// Runs `lro` with the words of a command line (see [`shell_words`]), like [`run`]: `line` is
/// what follows `lro` in a shell, e.g. `start --url {url} --header 'x-mock-polls: 2'`.
pub(crate) fn run_line(line: &str) -> Run {
    run(&shell_words(line))
}

/// The `lro` command with the words of a command line (see [`shell_words`]) as its arguments.
pub(crate) fn lro_line(line: &str) -> Command {
    let mut command = lro();
    command.args(shell_words(line));
    command
}

/// Starts `lro` with the words of a command line (see [`lro_line`]) and leaves it running, with
/// stdin, stdout and stderr all null.
pub(crate) fn spawn_line(line: &str) -> Child {
    lro_line(line).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// Splits a command line the way a POSIX shell splits words with single quotes: white space
/// (newlines too) separates words, except between single quotes, which are removed; `''` is an
/// empty word. Nothing else is special (so a word cannot hold a single quote). Enough for the
/// hints, which quote header values, and for the tests' own command lines, which quote values
/// with spaces (paths too: `'{path}'`).
pub(crate) fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Runs `lro args…` to its end, killing it and failing the test after `limit`.
pub(crate) fn run_limited<S: AsRef<str>>(args: &[S], limit: Duration) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let started = Instant::now();
    let mut child = lro()
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the lro binary");
    let stdout = reader(child.stdout.take().expect("stdout is piped"));
    let stderr = reader(child.stderr.take().expect("stderr is piped"));
    let status = wait_limited(&mut child, limit);
    let elapsed = started.elapsed();
    let run = Run {
        args,
        status: status.unwrap_or_else(|| child.wait().expect("wait for the killed child")),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        elapsed,
    };
    if status.is_none() {
        panic!("lro did not finish within {limit:?}; killed it\n{}", run.describe());
    }
    run
}

fn reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` at most `limit`; kills it and returns `None` when the time is up.
pub(crate) fn wait_limited(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return None;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Sends the signal `name` (`INT`, `TERM`, `STOP`, `CONT`, `KILL`) to the process `pid` with
/// `kill`; whether it was sent.
pub(crate) fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks `what` every few milliseconds until it holds, for at most `limit`.
pub(crate) fn wait_until(limit: Duration, what: impl FnMut() -> bool) -> bool {
    wait_until_every(limit, Duration::from_millis(2), what)
}

/// As [`wait_until`], checking every `period` (for a check that costs the machine something).
pub(crate) fn wait_until_every(
    limit: Duration,
    period: Duration,
    mut what: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if what() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(period);
    }
}

const OUTCOMES: [&str; 4] = ["succeeded", "failed", "canceled", "error"];
const KINDS: [&str; 9] = [
    "interrupted",
    "operation_failed",
    "bad_status",
    "bad_response",
    "decode",
    "timeout",
    "transport",
    "invalid_token",
    "policy",
];

/// The `--output json` schema (version 1, `lro --help`): exactly these keys, each of the right
/// type, and consistent.
pub(crate) fn assert_schema(value: &Value, run: &Run) {
    let ctx = || run.describe();
    let object = value.as_object().unwrap_or_else(|| panic!("not a JSON object\n{}", ctx()));
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "schema",
        "outcome",
        "status",
        "resource",
        "error",
        "polls",
        "elapsed_ms",
        "continuation_token",
    ]
    .into();
    assert_eq!(keys, expected, "the eight keys, no more, no fewer\n{}", ctx());
    assert_eq!(value["schema"], 1, "schema version 1\n{}", ctx());
    assert!(value["elapsed_ms"].is_u64(), "elapsed_ms is a whole number\n{}", ctx());

    let outcome = value["outcome"].as_str().unwrap_or_else(|| panic!("outcome\n{}", ctx()));
    assert!(OUTCOMES.contains(&outcome), "outcome {outcome:?}\n{}", ctx());
    if outcome != "succeeded" {
        assert!(value["resource"].is_null(), "a resource only on success\n{}", ctx());
    }
    assert!(
        value["status"].is_null() || value["status"].is_string(),
        "status is a string or null\n{}",
        ctx()
    );
    assert!(value["polls"].is_u64(), "polls is a non-negative integer\n{}", ctx());
    assert!(
        value["continuation_token"].is_null()
            || value["continuation_token"].as_str().is_some_and(|t| !t.is_empty()),
        "continuation_token is a non-empty string or null\n{}",
        ctx()
    );
    match &value["error"] {
        Value::Null => {
            assert_eq!(outcome, "succeeded", "error is null only on success\n{}", ctx());
        }
        Value::Object(error) => {
            assert_ne!(outcome, "succeeded", "no error on success\n{}", ctx());
            let keys: BTreeSet<&str> = error.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["kind", "message", "http_status", "body"].into(),
                "error has kind, message, http_status, body\n{}",
                ctx()
            );
            let kind = error["kind"].as_str().unwrap_or_else(|| panic!("error.kind\n{}", ctx()));
            assert!(KINDS.contains(&kind), "error.kind {kind:?}\n{}", ctx());
            assert!(
                error["message"].as_str().is_some_and(|m| !m.trim().is_empty()),
                "error.message is a non-empty string\n{}",
                ctx()
            );
            assert!(
                error["http_status"].is_null()
                    || error["http_status"].as_u64().is_some_and(|s| (100..=999).contains(&s)),
                "error.http_status is an HTTP status or null\n{}",
                ctx()
            );
            if kind == "operation_failed" {
                assert!(
                    outcome == "failed" || outcome == "canceled",
                    "operation_failed goes with failed / canceled\n{}",
                    ctx()
                );
            } else {
                assert_eq!(outcome, "error", "other kinds go with outcome error\n{}", ctx());
            }
        }
        _ => panic!("error is an object or null\n{}", ctx()),
    }
}

/// The GETs the mock saw after the first (initial) request.
pub(crate) fn gets_after_initial(log: &[LogEntry]) -> usize {
    log.iter().skip(1).filter(|entry| entry.method == "GET").count()
}

/// A fresh, empty directory under the system temporary directory, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("lro-cli-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names of the files in the directory, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("read the temporary directory")
            .map(|entry| entry.expect("directory entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A path as a `&str` for the command line.
pub(crate) fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The decoded envelope of a continuation token: `{"version": 1, "data": {...}}`.
pub(crate) fn token_envelope(token: &str) -> Value {
    let raw = unbase64(token.trim())
        .unwrap_or_else(|| panic!("the token is not standard base64: {token:?}"));
    serde_json::from_slice(&raw).expect("the token holds JSON")
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` if it is not that.
pub(crate) fn unbase64(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let padding = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 {
            return None;
        }
        let mut n = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            let value =
                if i >= 4 - padding { 0 } else { BASE64.iter().position(|&c| c == b)? as u32 };
            n |= value << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..4 - padding]);
    }
    Some(out)
}

/// A raw HTTP/1.1 answer.
#[derive(Debug)]
pub(crate) struct RawAnswer {
    pub(crate) status: u16,
    /// Header names as sent (the mock sends them lower-case), with their values.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl RawAnswer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request over a fresh HTTP/1.1 connection (`Connection: close`), without `lro`.
pub(crate) fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawAnswer {
    let mut stream = TcpStream::connect(addr).expect("connect to the mock");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("content-type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send the request");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("read the answer");
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("end of the head");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    RawAnswer { status, headers, body }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = std::str::from_utf8(&bytes[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&bytes[start..start + size]);
        bytes = &bytes[start + size + 2..];
    }
}

#[test]
fn base64_round_trips() {
    for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
        let encoded = base64(text.as_bytes());
        assert_eq!(unbase64(&encoded).as_deref(), Some(text.as_bytes()), "{encoded}");
    }
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(b"fooba"), "Zm9vYmE=");
    assert_eq!(base64(b"foob"), "Zm9vYg==");
    assert_eq!(unbase64("not base64!"), None);
}
