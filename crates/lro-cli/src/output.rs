//! What `lro` prints: live progress while polling, and the result at the end (text, or the one
//! JSON object of `--output json`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use lro_core::{ContinuationToken, LroError, PollEvent, StatusKind};
use serde_json::{Value, json};

use crate::Output;
use crate::token_file;

/// Progress while polling, and the token file kept up to date.
pub(crate) struct Progress {
    started: Instant,
    token_file: Option<PathBuf>,
    style: Style,
    state: Mutex<State>,
}

enum Style {
    Quiet,
    Lines,
    Spinner(ProgressBar),
}

#[derive(Default)]
struct State {
    last_status: Option<String>,
    token_error: Option<String>,
    /// Set once the run was interrupted: the token file holds its final token and is not
    /// written again (a blocking poller's thread may still report a poll or two).
    frozen: bool,
}

impl Progress {
    pub(crate) fn new(output: Output, token_file: Option<PathBuf>) -> Self {
        let style = match output {
            Output::Json => Style::Quiet,
            Output::Text | Output::Raw if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::new_spinner();
                if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} · {elapsed}") {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(Duration::from_millis(120));
                Style::Spinner(bar)
            }
            Output::Text | Output::Raw => Style::Lines,
        };
        Progress { started: Instant::now(), token_file, style, state: Mutex::new(State::default()) }
    }

    /// Called after the initial response and after every poll.
    pub(crate) fn update(&self, event: &PollEvent) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.frozen {
            return;
        }
        if let Some(token) = &event.continuation_token {
            self.save(&mut state, token);
        }
        let status = event.status.to_string();
        let polls = format!("{status} · {} polls", event.polls);
        match &self.style {
            Style::Quiet => {}
            // The spinner shows the elapsed time itself, live.
            Style::Spinner(bar) => bar.set_message(polls),
            Style::Lines => {
                if state.last_status.as_deref() != Some(status.as_str()) {
                    eprintln!("status: {polls} · {:.1?}", self.started.elapsed());
                }
            }
        }
        state.last_status = Some(status);
    }

    /// Writes `token` to the token file (if any), then stops writing it: the run was
    /// interrupted. Under the same lock as the updates, so two writes never overlap.
    pub(crate) fn freeze(&self, token: Option<&ContinuationToken>) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(token) = token {
            self.save(&mut state, token);
        }
        state.frozen = true;
    }

    fn save(&self, state: &mut State, token: &ContinuationToken) {
        if let Some(path) = &self.token_file {
            if let Err(e) = token_file::write(path, token) {
                state.token_error =
                    Some(format!("cannot write the token file {}: {e}", path.display()));
            }
        }
    }

    /// A problem writing the token file, if any happened.
    pub(crate) fn token_error(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).token_error.clone()
    }

    pub(crate) fn finish(&self) {
        if let Style::Spinner(bar) = &self.style {
            bar.finish_and_clear();
        }
    }
}

/// The end of a run, in the shape of `--output json`.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) outcome: &'static str,
    pub(crate) status: Option<String>,
    pub(crate) resource: Value,
    pub(crate) error: Option<ErrorReport>,
    pub(crate) polls: u64,
    pub(crate) continuation_token: Option<String>,
    /// The final body as the service sent it (successes only), for `--output raw`.
    pub(crate) body: Option<Bytes>,
}

#[derive(Debug)]
pub(crate) struct ErrorReport {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) http_status: Option<u16>,
}

/// The JSON value of a body: JSON as is, other text as a JSON string, nothing as null.
pub(crate) fn resource_value(body: &Bytes) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

impl Report {
    pub(crate) fn succeeded(status: Option<String>, body: &Bytes, polls: u64) -> Self {
        Report {
            outcome: "succeeded",
            status,
            resource: resource_value(body),
            error: None,
            polls,
            continuation_token: None,
            body: Some(body.clone()),
        }
    }

    pub(crate) fn failed(error: &LroError, status: Option<String>, polls: u64) -> Self {
        let outcome = match error {
            LroError::OperationFailed(details) => {
                match details.operation_status().map(|s| s.kind()) {
                    Some(StatusKind::Canceled) => "canceled",
                    _ => "failed",
                }
            }
            _ => "error",
        };
        // The service's own words (an error body) are the most useful thing to show.
        let resource =
            error.response().map_or(Value::Null, |details| resource_value(details.body()));
        let kind = match error.kind_name() {
            // The CLI's schema has no word for a stopped poller; it can only be a policy here.
            "stopped" => "policy",
            other => other,
        };
        let error_report = ErrorReport {
            kind,
            message: error.chain().to_string(),
            http_status: error.response().map(|r| r.status_code().as_u16()),
        };
        Report {
            outcome,
            status,
            resource,
            error: Some(error_report),
            polls,
            continuation_token: error.continuation_token().map(ToString::to_string),
            body: None,
        }
    }

    /// Polling stopped because the process was asked to (`signal`): the operation itself goes
    /// on, and `token` (if the service had answered) resumes it.
    pub(crate) fn interrupted(
        signal: &str,
        status: Option<String>,
        polls: u64,
        token: Option<ContinuationToken>,
    ) -> Self {
        let message = match &token {
            Some(_) => format!(
                "interrupted by {signal}: polling stopped; the operation goes on on the service"
            ),
            None => format!(
                "interrupted by {signal} before the service answered the initial request; it may \
                 or may not have reached the service"
            ),
        };
        Report {
            outcome: "error",
            status,
            resource: Value::Null,
            error: Some(ErrorReport { kind: "interrupted", message, http_status: None }),
            polls,
            continuation_token: token.map(ContinuationToken::into_string),
            body: None,
        }
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        if self.outcome == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "outcome": self.outcome,
            "status": self.status,
            "resource": self.resource,
            "error": self.error.as_ref().map(|e| json!({
                "kind": e.kind,
                "message": e.message,
                "http_status": e.http_status,
            })),
            "polls": self.polls,
            "continuation_token": self.continuation_token,
        })
    }

    /// Prints the report: JSON on stdout, or text (result on stdout, explanations on stderr).
    pub(crate) fn print(&self, output: Output, resume_hint: &str) {
        if output == Output::Json {
            println!("{}", self.to_json());
            return;
        }
        if let (Output::Raw, Some(body)) = (output, &self.body) {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(body).and_then(|()| stdout.flush()).is_err() {
                eprintln!("warning: could not write the resource to stdout");
            }
            return;
        }
        let status = self.status.as_deref().unwrap_or("none");
        let Some(error) = &self.error else {
            eprintln!("succeeded: status {status} after {} polls", self.polls);
            if !self.resource.is_null() {
                println!("{}", serde_json::to_string_pretty(&self.resource).unwrap_or_default());
            }
            return;
        };
        eprintln!("{}: {}", self.outcome, error.message);
        if !self.resource.is_null() {
            eprintln!("the service said: {}", self.resource);
        }
        let advice = match (self.outcome, error.kind) {
            ("error", _) if self.continuation_token.is_some() => {
                format!("resume with: {resume_hint}")
            }
            ("error", "transport") => {
                "check the URL and that the service is reachable, then run the command again"
                    .to_owned()
            }
            ("error", "interrupted") => {
                "check whether the service received the request before sending it again".to_owned()
            }
            ("error", "policy") => "a policy refused to go on: to trust another origin, name it \
                 with --allow-origin (or, on resume, --url), or sign tokens with --token-key-file"
                .to_owned(),
            ("error", "invalid_token") => {
                "check the token: it must come from lro or from Python azure-core 1.38 or later"
                    .to_owned()
            }
            ("error", _) => {
                "the service refused the request; fix it and run the command again".to_owned()
            }
            _ => "the operation ended on the service side; nothing to resume".to_owned(),
        };
        eprintln!("{advice}");
    }
}
