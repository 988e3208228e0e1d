//! `lro batch`: many operations at once, through one fleet under one budget, with a state file
//! to resume after a kill.
//!
//! Each line of `--file` is one operation: `{"method", "url", "headers"?, "body"?, "flavour"?,
//! "final_state_via"?, "key"?}` (`key` defaults to the line number). `--state-file` holds, after
//! every finished operation and every few seconds, a token for each operation still running and
//! the report of each one done; `--resume` continues from it (give the same `--file`: it says
//! how to poll and which origins to trust).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use futures_core::Stream;
use http::{HeaderName, HeaderValue, Method, Request};
use lro_core::{
    ContinuationToken, Engine, FleetHandle, FleetOptions, FleetResult, FleetStream,
    InitialResponse, LroError, OriginPolicy, PollOptions, RetryPolicy, Strategy,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_strategies::FinalStateVia;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::batch_display::Display;
use crate::output::{FinalBody, Report};
use crate::{Output, UsageError, token_file};

/// Arguments of `lro batch`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BatchArgs {
    /// The operations, one JSON object per line.
    #[arg(long, value_name = "F")]
    file: PathBuf,
    /// Requests per second over all operations.
    #[arg(long, value_name = "N", default_value_t = 50.0)]
    rate: f64,
    /// Requests in flight to one host at most.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_in_flight: usize,
    /// Time between polls when the service sends no Retry-After: seconds (5, 0.5) or a
    /// duration (5s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "5", allow_hyphen_values = true,
          value_parser = crate::settings::parse_duration)]
    interval: Duration,
    /// Retries of a transient fault, per request.
    #[arg(long, value_name = "N", default_value_t = lro_core::DEFAULT_MAX_RETRIES)]
    retries: u32,
    /// Keep the state of the batch in this file (atomically), to resume it after a kill.
    #[arg(long, value_name = "F")]
    state_file: Option<PathBuf>,
    /// Continue the batch saved in --state-file instead of starting it.
    #[arg(long, requires = "state_file")]
    resume: bool,
    /// What to print: progress lines and a summary, or one JSON object per operation and a
    /// summary object last.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// One line of the operations file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    flavour: Option<String>,
    #[serde(default)]
    final_state_via: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// The state file.
#[derive(Debug, Default, serde::Serialize, Deserialize)]
struct State {
    /// Operations still running: key → continuation token.
    pending: BTreeMap<String, String>,
    /// Operations done: key → their report.
    done: BTreeMap<String, Value>,
}

/// The fleet of `lro batch` and `lro worker`.
pub(crate) type Operations = FleetStream<String, Box<dyn Strategy>, FinalBody>;

/// `lro batch`.
pub(crate) async fn batch(args: BatchArgs) -> Result<ExitCode, UsageError> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(UsageError(format!("--rate must be a positive number (got {})", args.rate)));
    }
    let lines = read_lines(&args)?;
    let state = match (&args.state_file, args.resume) {
        (Some(path), true) => read_state(path, &lines)?,
        _ => State::default(),
    };
    let mut journal = match &args.state_file {
        Some(path) => Some(Journal::create(path, !args.resume).map_err(|e| {
            UsageError(format!("cannot write beside --state-file {}: {e}", path.display()))
        })?),
        None => None,
    };
    let client = Arc::new(
        HyperClient::builder()
            .pool_max_idle_per_host(args.max_in_flight)
            // Initial requests and polls together: never more connections to a host.
            .max_connections_per_host(Some(args.max_in_flight))
            .build()
            .map_err(|e| UsageError(e.to_string()))?,
    );
    let options = FleetOptions::builder()
        .rate(args.rate)
        .burst(u32::try_from(args.max_in_flight).unwrap_or(u32::MAX))
        .max_in_flight_per_origin(args.max_in_flight)
        .build();
    let (fleet, handle) =
        Operations::new(client.clone(), TokioTimer, crate::output::final_body(true), options);
    let mut fleet = fleet.with_checkpoints();
    // Tokens of the operations as they are added: the first checkpoint, before any poll.
    let mut pending = BTreeMap::new();
    let mut done = state.done.clone();
    let total = lines.len();
    // Resumed operations first (no request needed), then the initial requests, up to
    // --max-in-flight of them at a time.
    let mut to_start = Vec::new();
    for (key, line) in &lines {
        if done.contains_key(key) {
            continue;
        }
        match state.pending.get(key) {
            Some(token) => {
                admit(key, resume_one(line, token, &args), &handle, &mut pending, &mut done)
            }
            None => to_start.push((key.clone(), line.clone())),
        }
    }
    let shared = Arc::new(args.clone());
    let mut starting = tokio::task::JoinSet::new();
    let mut queue = to_start.into_iter();
    loop {
        while starting.len() < args.max_in_flight.max(1) {
            let Some((key, line)) = queue.next() else { break };
            let (client, shared) = (Arc::clone(&client), Arc::clone(&shared));
            starting.spawn(async move { (key, start_one(&client, &line, &shared).await) });
        }
        match starting.join_next().await {
            None => break,
            Some(Ok((key, engine))) => {
                admit(&key, engine, &handle, &mut pending, &mut done);
                // Recorded at once: a kill now must not start this operation again on resume.
                if let (Some(journal), Some(token)) = (journal.as_mut(), pending.get(&key)) {
                    journal.record(&key, token);
                }
            }
            Some(Err(e)) => eprintln!("warning: an initial request failed to run: {e}"),
        }
    }
    let running: Vec<String> = pending.keys().cloned().collect();
    write_state(&args, pending, &done);
    if let Some(journal) = journal.take() {
        journal.finish(); // the state file now holds every operation started
    }
    let started = Instant::now();
    let mut last_save = Instant::now();
    let mut display = Display::new(total, done.len(), args.output == Output::Text);
    for key in &running {
        display.running(key);
    }
    if args.output == Output::Json {
        for report in done.values() {
            println!("{report}");
        }
    }
    // The display refreshes as operations end, and at least twice a second.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ended = next(&mut fleet) => {
                let Some(ended) = ended else { break };
                let report = report_of(ended);
                if args.output == Output::Json {
                    println!("{report}");
                }
                let key = report["key"].as_str().unwrap_or_default().to_owned();
                display.ended(&key);
                done.insert(key, report);
                if last_save.elapsed() >= Duration::from_secs(2) || done.len() == total {
                    save(&args, &handle, &done);
                    last_save = Instant::now();
                }
            }
            _ = tick.tick() => {}
        }
        display.refresh(&done, handle.stats());
    }
    save(&args, &handle, &done);
    display.finish();
    let failed = crate::batch_display::failed(&done);
    let summary = json!({
        "summary": {
            "operations": total,
            "succeeded": total.saturating_sub(failed),
            "failed": failed,
            "seconds": started.elapsed().as_secs_f64(),
        }
    });
    match args.output {
        Output::Json => println!("{summary}"),
        _ => eprintln!("{}", display.final_line(&done)),
    }
    Ok(if failed == 0 && done.len() == total { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Adds a started (or resumed) operation to the fleet, or records why it could not start.
fn admit(
    key: &str,
    engine: Result<Engine<Box<dyn Strategy>>, LroError>,
    handle: &FleetHandle<String, Box<dyn Strategy>>,
    pending: &mut BTreeMap<String, String>,
    done: &mut BTreeMap<String, Value>,
) {
    match engine {
        Ok(engine) => {
            if let Ok(token) = engine.continuation_token() {
                pending.insert(key.to_owned(), token.into_string());
            }
            handle.add(key.to_owned(), engine, None);
        }
        Err(error) => {
            done.insert(key.to_owned(), keyed(key, &Report::failed(&error, None, 0)));
        }
    }
}

/// The next operation of `fleet` that ended.
pub(crate) async fn next(fleet: &mut Operations) -> Option<FleetResult<String, FinalBody>> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *fleet).poll_next(cx)).await
}

/// The state file, and the journal of operations started after it was written (a kill during
/// the start phase), keeping only the keys of `lines`.
fn read_state(path: &std::path::Path, lines: &[(String, Line)]) -> Result<State, UsageError> {
    let mut state = match token_file::read_bounded(path, 256 * 1024 * 1024) {
        Ok(text) => serde_json::from_str::<State>(&text).map_err(|e| {
            UsageError(format!("--state-file {} is not a batch state: {e}", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => {
            return Err(UsageError(format!("cannot read --state-file {}: {e}", path.display())));
        }
    };
    let journal = Journal::path(path);
    let found = journal.exists() || path.exists();
    if !found {
        return Err(UsageError(format!(
            "--resume: there is no {} (nor its journal of started operations)",
            path.display()
        )));
    }
    // Read as bytes: a line torn in the middle of a character must not hide the lines before.
    let text = match token_file::read_bytes_bounded(&journal, 256 * 1024 * 1024) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(UsageError(format!(
                "--resume: cannot read the journal {}: {e}",
                journal.display()
            )));
        }
    };
    if let Some(text) = text {
        for line in text.lines() {
            // A torn last line (killed mid-write) is skipped: that operation had not been
            // recorded yet.
            let Ok(entry) = serde_json::from_str::<Value>(line) else { continue };
            if let (Some(key), Some(token)) = (entry["key"].as_str(), entry["token"].as_str()) {
                if !state.done.contains_key(key) {
                    state.pending.entry(key.to_owned()).or_insert_with(|| token.to_owned());
                }
            }
        }
    }
    let keys: HashSet<&str> = lines.iter().map(|(key, _)| key.as_str()).collect();
    state.pending.retain(|key, _| keys.contains(key.as_str()));
    state.done.retain(|key, _| keys.contains(key.as_str()));
    Ok(state)
}

/// `F.started`: one line per operation started, appended and synced as each initial request
/// is answered, until the state file holds them all.
struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

impl Journal {
    fn path(state: &std::path::Path) -> PathBuf {
        let mut name = state.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".started");
        state.with_file_name(name)
    }

    /// Opens the journal; a `fresh` batch starts it empty (a resumed one keeps its lines).
    fn create(state: &std::path::Path, fresh: bool) -> std::io::Result<Self> {
        let path = Self::path(state);
        if fresh {
            let _ = std::fs::remove_file(&path);
        }
        // Never written through a link planted under its name (the state file's directory may
        // be shared): an existing journal must be a file, and a new one is made anew.
        let mut options = std::fs::OpenOptions::new();
        match std::fs::symlink_metadata(&path) {
            Ok(found) if !found.file_type().is_file() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} is not a regular file", path.display()),
                ));
            }
            Ok(_) => options.append(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                token_file::private(options.append(true).create_new(true))
            }
            Err(e) => return Err(e),
        };
        let file = options.open(&path)?;
        Ok(Journal { path, file })
    }

    fn record(&mut self, key: &str, token: &str) {
        use std::io::Write as _;
        let line = format!("{}\n", json!({"key": key, "token": token}));
        if self.file.write_all(line.as_bytes()).and_then(|()| self.file.sync_data()).is_err() {
            eprintln!("warning: cannot record a started operation in {}", self.path.display());
        }
    }

    fn finish(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_lines(args: &BatchArgs) -> Result<Vec<(String, Line)>, UsageError> {
    let text = token_file::read_bounded(&args.file, 256 * 1024 * 1024)
        .map_err(|e| UsageError(format!("cannot read --file {}: {e}", args.file.display())))?;
    let mut lines = Vec::new();
    let mut keys = HashSet::new();
    for (index, raw) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line: Line = serde_json::from_str(raw)
            .map_err(|e| UsageError(format!("--file line {}: {e}", index + 1)))?;
        if let Ok(uri) = line.url.parse::<http::Uri>() {
            crate::run::refuse_user_info(&uri)
                .map_err(|e| UsageError(format!("--file line {}: the url {e}", index + 1)))?;
        }
        let key = line.key.clone().unwrap_or_else(|| (index + 1).to_string());
        if !keys.insert(key.clone()) {
            return Err(UsageError(format!(
                "--file line {}: the key {key:?} is used twice",
                index + 1
            )));
        }
        lines.push((key, line));
    }
    Ok(lines)
}

/// The polling options of one line; `vouch` trusts the line's own URL (on resume).
fn poll_options(
    line: &Line,
    args: &BatchArgs,
    vouch: bool,
) -> Result<(Box<dyn Strategy>, PollOptions), LroError> {
    let flavour = match line.flavour.as_deref() {
        Some(name) => crate::Flavour::named(name).map_err(LroError::policy)?,
        None => crate::Flavour::Base,
    };
    let mut builder = flavour.builder();
    if let Some(via) = &line.final_state_via {
        let via: FinalStateVia = via
            .parse()
            .map_err(|e: lro_strategies::UnknownFinalStateVia| LroError::policy(e.to_string()))?;
        builder = builder.final_state_via(via);
    }
    for (name, value) in &line.headers {
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        else {
            return Err(LroError::policy(format!("the header {name:?} is not valid")));
        };
        builder = builder.header(name, value);
    }
    let interval = args.interval;
    let retry = RetryPolicy::builder().max_retries(args.retries).build();
    let origins = if vouch {
        // The operations file names this URL: the user vouches for its origin.
        OriginPolicy::same_origin().allow(&line.url).unwrap_or_default()
    } else {
        OriginPolicy::same_origin()
    };
    // A line's headers may be credentials, whatever they look like: a token from the
    // journal polls an origin nobody vouched for only when there are none.
    let sends_headers = !line.headers.is_empty();
    let (strategy, options) = builder
        .interval(interval)
        .retry(retry)
        .poll_options(|o| o.origins(origins).client_sends_credentials(sends_headers))
        .into_parts();
    Ok((Box::new(strategy), options))
}

async fn start_one(
    client: &HyperClient,
    line: &Line,
    args: &BatchArgs,
) -> Result<Engine<Box<dyn Strategy>>, LroError> {
    let method = Method::from_bytes(line.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| LroError::policy(format!("{:?} is not an HTTP method", line.method)))?;
    let body = line.body.as_ref().map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let mut request = Request::builder().method(method).uri(&line.url);
    for (name, value) in &line.headers {
        request = request.header(name, value);
    }
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let request =
        request.body(body).map_err(|e| LroError::policy(format!("invalid request: {e}")))?;
    // Read before anything is sent: a line that cannot be polled (an unknown flavour, a bad
    // header) starts nothing.
    let (strategy, options) = poll_options(line, args, false)?;
    let retry = RetryPolicy::builder().max_retries(args.retries).build();
    let initial =
        InitialResponse::send_async_with_retry(client, &TokioTimer, request, &retry).await?;
    Engine::start(strategy, options, initial)
}

fn resume_one(
    line: &Line,
    token: &str,
    args: &BatchArgs,
) -> Result<Engine<Box<dyn Strategy>>, LroError> {
    let token: ContinuationToken = token.parse()?;
    let (strategy, options) = poll_options(line, args, true)?;
    Engine::resume(strategy, options, &token)
}

fn keyed(key: &str, report: &Report) -> Value {
    let mut value = report.to_json();
    value["key"] = Value::from(key);
    value
}

fn report_of(ended: FleetResult<String, FinalBody>) -> Value {
    let status = Some(ended.status.to_string());
    let polls = u64::from(ended.polls);
    let report = match &ended.result {
        Ok(body) => Report::succeeded(status, body, polls),
        Err(error) => Report::failed(error, status, polls),
    };
    keyed(&ended.key, &report)
}

fn save(
    args: &BatchArgs,
    handle: &FleetHandle<String, Box<dyn Strategy>>,
    done: &BTreeMap<String, Value>,
) {
    let pending = handle
        .checkpoint()
        .into_iter()
        .filter(|(key, _)| !done.contains_key(key))
        .map(|(key, token)| (key, token.into_string()))
        .collect();
    write_state(args, pending, done);
}

fn write_state(
    args: &BatchArgs,
    pending: BTreeMap<String, String>,
    done: &BTreeMap<String, Value>,
) {
    let Some(path) = &args.state_file else { return };
    let state = State { pending, done: done.clone() };
    let text = serde_json::to_string(&state).unwrap_or_default();
    if let Err(e) = token_file::write_text(path, &text) {
        eprintln!("warning: cannot write --state-file {}: {e}", path.display());
    }
}
