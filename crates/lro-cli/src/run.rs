//! `lro start` and `lro resume`: build the request or read the token, poll, report.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use lro_core::{BoxFuture, ContinuationToken, LroError};

use crate::drive::{Client, drive, interrupted};
use crate::output::{Report, final_body};
use crate::progress::Progress;
use crate::settings::{Settings, shell_quote};
use crate::{Flavour, Output, ResumeArgs, StartArgs, UsageError, token_file};

pub(crate) fn initial_request(
    args: &StartArgs,
    headers: &http::HeaderMap,
) -> Result<Request<Bytes>, UsageError> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| UsageError(format!("--method {:?} is not an HTTP method", args.method)))?;
    // The URL is not repeated in these messages: its query may hold a signature (SAS).
    let uri: http::Uri = args.url.parse().map_err(|_| {
        UsageError(
            "--url is not a valid URL (spaces and some characters must be percent-encoded)".into(),
        )
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(UsageError("--url must be an absolute http:// or https:// URL".into()));
    }
    refuse_user_info(&uri).map_err(|e| UsageError(format!("--url {e}")))?;
    let body = match (&args.body, &args.body_file) {
        (Some(json), _) => {
            serde_json::from_str::<serde_json::Value>(json)
                .map_err(|e| UsageError(format!("--body is not valid JSON: {e}")))?;
            Bytes::from(json.clone())
        }
        (None, Some(path)) => Bytes::from(
            crate::token_file::read_bytes_bounded(path, lro_core::DEFAULT_MAX_BODY).map_err(
                |e| UsageError(format!("cannot read --body-file {}: {e}", path.display())),
            )?,
        ),
        (None, None) => Bytes::new(),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    request.headers_mut().extend(headers.clone());
    // Like azure-core's pipeline, give every operation a client request id: polls repeat it, and
    // Python azure-core cannot resume a token without one.
    if !request.headers().contains_key("x-ms-client-request-id") {
        let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let id = format!(
            "{}-{}-4{}-a{}-{}",
            &id[0..8],
            &id[8..12],
            &id[13..16],
            &id[17..20],
            &id[20..32]
        );
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers_mut().insert("x-ms-client-request-id", value);
        }
    }
    if !request.body().is_empty() && !request.headers().contains_key(http::header::CONTENT_TYPE) {
        request
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(request)
}

/// `lro start`.
pub(crate) async fn start(args: StartArgs) -> Result<ExitCode, UsageError> {
    let mut signal = interrupted();
    let settings = Settings::new(&args.polling, None)?;
    let request = initial_request(&args, &settings.headers)?;
    if let Some(path) = &args.token_file {
        token_file::clean_stale(path);
    }
    let progress = Arc::new(Progress::new(settings.output, args.token_file.clone()));
    let report = match Client::new(settings.transport) {
        Err(error) => Report::failed(&error, None, 0),
        Ok(client) => {
            let send = client.send_initial(request, &settings.retry);
            let deadline = settings.remaining();
            let sent = tokio::select! {
                sent = within(deadline, send) => sent,
                name = &mut signal => {
                    progress.finish();
                    let report = Report::interrupted(name, None, 0, None);
                    report.print(settings.output, "");
                    return Ok(report.exit_code());
                }
            };
            match sent {
                Err(error) => Report::failed(&error, None, 0),
                Ok(initial) => {
                    let method = settings.method(progress.clone());
                    match client.poller(initial, method, final_body(settings.output != Output::Raw))
                    {
                        Err(error) => Report::failed(&error, None, 0),
                        Ok(poller) => {
                            drive(&poller, &settings, &client, &mut signal, &progress).await
                        }
                    }
                }
            }
        }
    };
    let source = token_source(args.token_file.as_deref(), &report);
    let hint = settings.resume_hint(&args.polling, &source, Some(&args.url));
    Ok(finish(&progress, report, settings.output, &hint))
}

/// `future`, given up with a timeout error once `limit` (if any) runs out.
async fn within<F>(
    limit: Option<std::time::Duration>,
    future: F,
) -> Result<lro_core::InitialResponse, LroError>
where
    F: std::future::Future<Output = Result<lro_core::InitialResponse, LroError>>,
{
    match limit {
        None => future.await,
        Some(limit) => tokio::time::timeout(limit, future).await.unwrap_or_else(|_| {
            Err(LroError::gave_up("the initial request did not finish in time", Some(limit), 0))
        }),
    }
}

/// `lro resume`.
pub(crate) async fn resume(args: ResumeArgs) -> Result<ExitCode, UsageError> {
    let mut signal: BoxFuture<'static, &'static str> = interrupted();
    let settings = Settings::new(&args.polling, args.url.as_deref())?;
    let text = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => {
            let found = token_file::recover(path).map_err(|e| {
                UsageError(format!("cannot read --token-file {}: {e}", path.display()))
            })?;
            for note in &found.notes {
                eprintln!("lro: {note}");
            }
            found.token
        }
        (None, None) => return Err(UsageError("give --token or --token-file".to_owned())),
    };
    let progress = Arc::new(Progress::new(settings.output, args.token_file.clone()));
    let parsed = text.parse::<ContinuationToken>().map_err(LroError::from);
    let mut settings = settings;
    if let (None, Ok(token)) = (args.polling.flavour, &parsed) {
        // The algorithms that made the token, when it says (lro's tokens do).
        settings.flavour = token_flavour(token).unwrap_or(Flavour::Base);
    }
    let report = match (parsed, Client::new(settings.transport)) {
        (Err(error), _) | (_, Err(error)) => Report::failed(&error, None, 0),
        (Ok(token), Ok(client)) => match client.resume(
            &token,
            settings.method(progress.clone()),
            final_body(settings.output != Output::Raw),
        ) {
            Err(error) => Report::failed(&error, None, 0),
            Ok(poller) => drive(&poller, &settings, &client, &mut signal, &progress).await,
        },
    };
    let source = token_source(args.token_file.as_deref(), &report);
    let hint = settings.resume_hint(&args.polling, &source, None);
    Ok(finish(&progress, report, settings.output, &hint))
}

/// The algorithm list that made `token`, when it says (lro's tokens do).
fn token_flavour(token: &ContinuationToken) -> Option<Flavour> {
    match lro_strategies::LroBasePolling::family_of(token)? {
        "arm" => Some(Flavour::Arm),
        _ => Some(Flavour::Base),
    }
}

/// How the resume hint names the token: the token file when there is one, else the token.
fn token_source(token_file: Option<&Path>, report: &Report) -> String {
    match token_file {
        Some(path) => format!("--token-file {}", shell_quote(&path.display().to_string())),
        None => format!("--token {}", report.continuation_token.as_deref().unwrap_or_default()),
    }
}

fn finish(
    progress: &Progress,
    mut report: Report,
    output: crate::Output,
    resume_hint: &str,
) -> ExitCode {
    progress.finish();
    report.elapsed = Some(progress.elapsed());
    if let Some(problem) = progress.token_error() {
        eprintln!("warning: {problem}");
    }
    report.print(output, resume_hint);
    report.exit_code()
}

/// Refuses a URL with user information (`user:password@host`): it authenticates nothing (the
/// transports drop it, or send it on as part of the host), and it would be kept in tokens and
/// stores, and shown. The engine refuses such polling links too.
pub(crate) fn refuse_user_info(uri: &http::Uri) -> Result<(), String> {
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("carries user information (user:password@): give credentials as a header \
                    (--secret-header 'Authorization: …') instead"
            .to_owned());
    }
    Ok(())
}
