//! What `lro` prints at the end of a run: text, the final resource's bytes, or the one JSON
//! object of `--output json`, whose schema is documented here ([`SCHEMA_HELP`], shown by
//! `lro --help`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use lro_core::{BoxError, ContinuationToken, Deserializer, LroError, StatusKind};
use serde_json::{Value, json};

use crate::Output;
use crate::paint::{self, Paint};

/// The version of the `--output json` schema: raised on any change a script could notice.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// The `--output json` schema, for `lro --help` (and the README, which repeats it).
pub(crate) const SCHEMA_HELP: &str = "\
Output of `--output json` (schema 1): one object on stdout.
  schema              1
  outcome             \"succeeded\" | \"failed\" | \"canceled\" (the service said so) | \"error\"
  status              the last status word as the service sent it (\"Failed\" when the initial
                      response could not be used: a bad HTTP status or no way to poll it, as
                      azure-core), or null
  resource            the final resource when outcome is \"succeeded\": JSON as JSON, a body
                      declared as text (or not JSON) as a string, an empty body as null;
                      null for every other outcome
  error               null, or an object:
    kind              bad_status | bad_response | operation_failed | decode | timeout |
                      transport | invalid_token | policy | interrupted
    message           what went wrong, with its causes
    http_status       the HTTP status of the response at fault, or null
    body              the service's error body (JSON, or a string), or null
  polls               GET requests sent after the initial one (the final GET included)
  elapsed_ms          time the run took, in milliseconds (null in `lro batch` lines)
  continuation_token  a token to resume the operation (null once it succeeded)
A final body declared JSON (Content-Type application/json or +json) that does not parse is
a `decode` error.

Exit codes: 0 succeeded; 1 failed, canceled or error (a signal included: the token is saved
and the resume command printed); 2 usage error.";

/// The final resource as the service sent it, and whether its `Content-Type` says text.
#[derive(Debug, Clone)]
pub(crate) struct FinalBody {
    pub(crate) bytes: Bytes,
    text: bool,
}

/// The media type of `response`, lower-case, without parameters.
fn media_type(response: &Response<Bytes>) -> Option<String> {
    let value = response.headers().get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// The final resource's deserializer. With `strict`, a body declared JSON that does not parse
/// is a decode error (`--output raw` is not strict: it hands over the bytes whatever they are).
pub(crate) fn final_body(strict: bool) -> Deserializer<FinalBody> {
    Arc::new(move |response: &Response<Bytes>| {
        let media = media_type(response);
        let bytes = response.body().clone();
        let json =
            media.as_deref().is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        if strict && json && !bytes.iter().all(u8::is_ascii_whitespace) {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                return Err(BoxError::from(format!(
                    "the final resource is declared as JSON ({}) but is not valid JSON: {e}",
                    media.as_deref().unwrap_or_default()
                )));
            }
        }
        let text = media.is_some_and(|m| m.starts_with("text/"));
        Ok(FinalBody { bytes, text })
    })
}

/// The end of a run, in the shape of `--output json`.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) outcome: &'static str,
    pub(crate) status: Option<String>,
    /// The final resource (successes only).
    pub(crate) resource: Value,
    pub(crate) error: Option<ErrorReport>,
    pub(crate) polls: u64,
    /// Set by the command once the run is over.
    pub(crate) elapsed: Option<Duration>,
    pub(crate) continuation_token: Option<String>,
    /// The final body as the service sent it (successes only), for `--output raw`.
    pub(crate) body: Option<Bytes>,
}

#[derive(Debug)]
pub(crate) struct ErrorReport {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) http_status: Option<u16>,
    /// The service's error body.
    pub(crate) body: Value,
    /// The origin a policy refused to send a request to (not in the JSON: the message names it).
    pub(crate) refused_origin: Option<String>,
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
    pub(crate) fn succeeded(status: Option<String>, body: &FinalBody, polls: u64) -> Self {
        let resource = if body.text {
            Value::String(String::from_utf8_lossy(&body.bytes).into_owned())
        } else {
            resource_value(&body.bytes)
        };
        Report {
            outcome: "succeeded",
            status,
            resource,
            error: None,
            polls,
            elapsed: None,
            continuation_token: None,
            body: Some(body.bytes.clone()),
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
        let error_body =
            error.response().map_or(Value::Null, |details| resource_value(details.body()));
        // As azure-core: an initial response that cannot be used marks the operation failed.
        let status = match (status, error) {
            (None, LroError::BadStatus(_) | LroError::BadResponse(_)) => Some("Failed".to_owned()),
            (status, _) => status,
        };
        let kind = match error.kind_name() {
            // The CLI's schema has no word for a stopped poller; it can only be a policy here.
            "stopped" => "policy",
            other => other,
        };
        let error_report = ErrorReport {
            kind,
            message: error.chain().to_string(),
            http_status: error.response().map(|r| r.status_code().as_u16()),
            body: error_body,
            refused_origin: match error {
                LroError::Policy(policy) => policy.origin().map(str::to_owned),
                _ => None,
            },
        };
        let mut error_report = error_report;
        if let Some(origin) = &error_report.refused_origin {
            // Scripts read the message too: it names the flag that vouches for the origin.
            error_report.message.push_str(&format!(
                "; to trust it, add --allow-origin {}",
                crate::settings::shell_quote(origin)
            ));
        }
        Report {
            outcome,
            status,
            resource: Value::Null,
            error: Some(error_report),
            polls,
            elapsed: None,
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
            error: Some(ErrorReport {
                kind: "interrupted",
                message,
                http_status: None,
                body: Value::Null,
                refused_origin: None,
            }),
            polls,
            elapsed: None,
            continuation_token: token.map(ContinuationToken::into_string),
            body: None,
        }
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        if self.outcome == "succeeded" { ExitCode::SUCCESS } else { ExitCode::from(1) }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "schema": SCHEMA_VERSION,
            "outcome": self.outcome,
            "status": self.status,
            "resource": self.resource,
            "error": self.error.as_ref().map(|e| json!({
                "kind": e.kind,
                "message": e.message,
                "http_status": e.http_status,
                "body": e.body,
            })),
            "polls": self.polls,
            "elapsed_ms": self.elapsed.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
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
        let paint = Paint::stderr();
        let status = paint::printable(self.status.as_deref().unwrap_or("none"));
        let took = match self.elapsed {
            Some(elapsed) => format!(" in {}", paint::duration(elapsed)),
            None => String::new(),
        };
        let polls = paint::polls(self.polls);
        let Some(error) = &self.error else {
            let done = paint.good("succeeded");
            eprintln!("{done}{took} after {polls} {}", paint.dim(&format!("(status {status})")));
            if !self.resource.is_null() {
                println!("{}", serde_json::to_string_pretty(&self.resource).unwrap_or_default());
            }
            return;
        };
        let outcome = paint.bad(self.outcome);
        eprintln!("{outcome}{took} after {polls}: {}", paint::printable_long(&error.message));
        if !error.body.is_null() {
            // JSON text escapes control characters; a string body is shown as JSON too.
            eprintln!("the service said: {}", paint::printable_long(&error.body.to_string()));
        }
        let advice = match (self.outcome, error.kind) {
            ("error", "policy") if error.refused_origin.is_some() => {
                let origin = error.refused_origin.as_deref().unwrap_or_default();
                let flag = format!("--allow-origin {}", crate::settings::shell_quote(origin));
                match self.continuation_token {
                    Some(_) => format!(
                        "if you trust {origin} with this operation's requests, resume with: \
                         {resume_hint} {flag}"
                    ),
                    None => {
                        format!("if you trust {origin} with this operation's requests, add {flag}")
                    }
                }
            }
            ("error", "invalid_token") if error.message.contains("made by ARM polling") => {
                "resume with --flavour arm (or leave --flavour out: lro reads it from the token)"
                    .to_owned()
            }
            ("error", "invalid_token") if error.message.contains("made by base polling") => {
                "resume with --flavour base (or leave --flavour out: lro reads it from the token)"
                    .to_owned()
            }
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
