//! `lro start` and `lro resume`: build the method from the options, poll, report.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use lro_core::{
    AsyncHttpClient, AsyncLroPoller, AsyncTimer, BoxFuture, ContinuationToken, InitialResponse,
    LroError, OriginPolicy, RetryPolicy, StrategyPolling, Timestamp, TransportError, deserialize,
};
use lro_hyper::HyperClient;
use lro_strategies::{ArmPolling, FinalStateVia, LroBasePolling};

use crate::output::{Progress, Report};
use crate::{Flavour, PollingArgs, ResumeArgs, StartArgs, UsageError, token_file};

/// The transport, counting the requests sent after the initial one.
struct Counting {
    inner: HyperClient,
    polls: AtomicU64,
}

#[async_trait::async_trait]
impl AsyncHttpClient for Counting {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, TransportError> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.send(request).await
    }
}

impl AsyncTimer for Counting {
    fn now(&self) -> Timestamp {
        self.inner.now()
    }
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.inner.sleep(duration)
    }
}

/// The polling options, checked.
struct Settings {
    headers: http::HeaderMap,
    flavour: Flavour,
    final_state_via: Option<FinalStateVia>,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    retry: RetryPolicy,
    origins: OriginPolicy,
    output: crate::Output,
}

fn seconds(value: Option<f64>, name: &str) -> Result<Option<Duration>, UsageError> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                UsageError(format!("--{name} must be a number of seconds, 0 or more (got {s})"))
            })
        })
        .transpose()
}

impl Settings {
    fn new(args: &PollingArgs) -> Result<Self, UsageError> {
        let final_state_via = args
            .final_state_via
            .as_deref()
            .map(|v| v.parse::<FinalStateVia>().map_err(|e| UsageError(e.to_string())))
            .transpose()?;
        let mut origins = OriginPolicy::same_origin();
        for url in &args.allow_origin {
            origins = origins.allow(url).ok_or_else(|| {
                UsageError(format!("--allow-origin {url:?} is not an absolute http(s) URL"))
            })?;
        }
        let timeout = seconds(args.timeout, "timeout")?;
        Ok(Settings {
            headers: parse_headers(&args.headers)?,
            flavour: args.flavour,
            final_state_via,
            interval: seconds(args.interval, "interval")?,
            timeout,
            // A deadline too far away to represent is no deadline at all.
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
            retry: RetryPolicy::builder().max_retries(args.retries).build(),
            origins,
            output: args.output,
        })
    }

    fn method(
        &self,
        progress: Arc<Progress>,
    ) -> StrategyPolling<lro_strategies::LroBasePolling, Bytes> {
        let mut builder = match self.flavour {
            Flavour::Base => LroBasePolling::builder(),
            Flavour::Arm => ArmPolling::builder(),
        };
        if let Some(via) = self.final_state_via {
            builder = builder.final_state_via(via);
        }
        if let Some(interval) = self.interval {
            builder = builder.interval(interval);
        }
        for (name, value) in &self.headers {
            // Headers about the initial request's body make no sense on a GET.
            if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
                builder = builder.header(name.clone(), value.clone());
            }
        }
        let origins = self.origins.clone();
        builder
            .retry(self.retry.clone())
            .poll_options(|o| o.origins(origins))
            .build()
            .observe(move |event| progress.update(event))
    }

    /// The `lro resume` command that continues with these options.
    fn resume_hint(&self, args: &PollingArgs, token: &str) -> String {
        let mut hint = format!("lro resume {token}");
        if self.flavour == Flavour::Arm {
            hint.push_str(" --flavour arm");
        }
        if let Some(via) = self.final_state_via {
            hint.push_str(&format!(" --final-state-via {via}"));
        }
        if let Some(interval) = args.interval {
            hint.push_str(&format!(" --interval {interval}"));
        }
        if args.retries != lro_core::DEFAULT_MAX_RETRIES {
            hint.push_str(&format!(" --retries {}", args.retries));
        }
        for origin in &args.allow_origin {
            hint.push_str(&format!(" --allow-origin {}", shell_quote(origin)));
        }
        for (name, value) in &self.headers {
            if name == http::header::CONTENT_TYPE || name == http::header::CONTENT_LENGTH {
                continue;
            }
            // Never print a credential: the hint then needs it filled in again.
            let secret =
                matches!(name.as_str(), "authorization" | "proxy-authorization" | "cookie")
                    || name.as_str().contains("key")
                    || name.as_str().contains("token");
            let value = if secret { "…" } else { value.to_str().unwrap_or("…") };
            hint.push_str(&format!(" --header {}", shell_quote(&format!("{name}: {value}"))));
        }
        hint
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// `word` as one word for a POSIX shell: as it is when it is plain, else in single quotes.
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn client() -> Result<Arc<Counting>, LroError> {
    let inner = HyperClient::new().map_err(|e| {
        LroError::transport(TransportError::new(lro_core::TransportErrorKind::Connect, e))
    })?;
    Ok(Arc::new(Counting { inner, polls: AtomicU64::new(0) }))
}

fn parse_headers(headers: &[String]) -> Result<http::HeaderMap, UsageError> {
    let mut map = http::HeaderMap::new();
    for header in headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            UsageError(format!("--header {header:?} must look like 'Name: value'"))
        })?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| UsageError(format!("--header {header:?}: invalid header name")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| UsageError(format!("--header {header:?}: invalid header value")))?;
        map.append(name, value);
    }
    Ok(map)
}

fn initial_request(
    args: &StartArgs,
    headers: &http::HeaderMap,
) -> Result<Request<Bytes>, UsageError> {
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| UsageError(format!("--method {:?} is not an HTTP method", args.method)))?;
    let uri: http::Uri = args
        .url
        .parse()
        .map_err(|_| UsageError(format!("--url {:?} is not a valid URL", args.url)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(UsageError(format!(
            "--url {:?} must be an absolute http:// or https:// URL",
            args.url
        )));
    }
    let body =
        match (&args.body, &args.body_file) {
            (Some(json), _) => {
                serde_json::from_str::<serde_json::Value>(json)
                    .map_err(|e| UsageError(format!("--body is not valid JSON: {e}")))?;
                Bytes::from(json.clone())
            }
            (None, Some(path)) => Bytes::from(std::fs::read(path).map_err(|e| {
                UsageError(format!("cannot read --body-file {}: {e}", path.display()))
            })?),
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
    let settings = Settings::new(&args.polling)?;
    let request = initial_request(&args, &settings.headers)?;
    let progress = Arc::new(Progress::new(settings.output, args.token_file.clone()));
    let report = match client() {
        Err(error) => Report::failed(&error, None, 0),
        Ok(client) => {
            let send = InitialResponse::send_async_with_retry(
                &client.inner,
                &client.inner,
                request,
                &settings.retry,
            );
            let sent = match settings.remaining() {
                None => send.await,
                Some(limit) => tokio::time::timeout(limit, send).await.unwrap_or_else(|_| {
                    Err(LroError::timeout(
                        "the initial request did not finish in time",
                        Some(limit),
                        0,
                    ))
                }),
            };
            match sent {
                Err(error) => Report::failed(&error, None, 0),
                Ok(initial) => {
                    let method = settings.method(progress.clone());
                    match AsyncLroPoller::new(client.clone(), initial, deserialize::bytes(), method)
                    {
                        Err(error) => Report::failed(&error, None, 0),
                        Ok(poller) => drive(&poller, &settings, &client).await,
                    }
                }
            }
        }
    };
    let hint =
        settings.resume_hint(&args.polling, &token_source(args.token_file.as_deref(), &report));
    Ok(finish(&progress, report, settings.output, &hint))
}

/// `lro resume`.
pub(crate) async fn resume(args: ResumeArgs) -> Result<ExitCode, UsageError> {
    let settings = Settings::new(&args.polling)?;
    let text = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => token_file::read(path)
            .map_err(|e| UsageError(format!("cannot read --token-file {}: {e}", path.display())))?,
        (None, None) => return Err(UsageError("give --token or --token-file".to_owned())),
    };
    let progress = Arc::new(Progress::new(settings.output, args.token_file.clone()));
    let report = match (text.parse::<ContinuationToken>(), client()) {
        (Err(error), _) | (_, Err(error)) => Report::failed(&error, None, 0),
        (Ok(token), Ok(client)) => {
            let method = settings.method(progress.clone());
            match AsyncLroPoller::from_continuation_token(
                method,
                &token,
                client.clone(),
                deserialize::bytes(),
            ) {
                Err(error) => Report::failed(&error, None, 0),
                Ok(poller) => drive(&poller, &settings, &client).await,
            }
        }
    };
    let hint =
        settings.resume_hint(&args.polling, &token_source(args.token_file.as_deref(), &report));
    Ok(finish(&progress, report, settings.output, &hint))
}

/// How the resume hint names the token: the token file when there is one, else the token.
fn token_source(token_file: Option<&std::path::Path>, report: &Report) -> String {
    match token_file {
        Some(path) => format!("--token-file {}", shell_quote(&path.display().to_string())),
        None => format!("--token {}", report.continuation_token.as_deref().unwrap_or_default()),
    }
}

type Poller = AsyncLroPoller<Bytes, StrategyPolling<lro_strategies::LroBasePolling, Bytes>>;

async fn drive(poller: &Poller, settings: &Settings, client: &Counting) -> Report {
    let result = poller.result(settings.remaining()).await;
    let status = Some(poller.status().to_string());
    let polls = client.polls.load(Ordering::Relaxed);
    match result {
        Ok(body) => Report::succeeded(status, &body, polls),
        Err(error @ LroError::Timeout(_)) => {
            let mut report = Report::failed(&error, status, polls);
            if let (Some(limit), Some(details)) = (settings.timeout, report.error.as_mut()) {
                details.message = format!(
                    "the operation did not finish within --timeout {:?}; it is still running on the service",
                    limit
                );
            }
            report
        }
        Err(error) => Report::failed(&error, status, polls),
    }
}

fn finish(
    progress: &Progress,
    report: Report,
    output: crate::Output,
    resume_hint: &str,
) -> ExitCode {
    progress.finish();
    if let Some(problem) = progress.token_error() {
        eprintln!("warning: {problem}");
    }
    report.print(output, resume_hint);
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn hint_words_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(shell_quote("/tmp/op.token"), "/tmp/op.token");
        assert_eq!(shell_quote("/tmp/with space/op.token"), "'/tmp/with space/op.token'");
        assert_eq!(shell_quote("x-mock-polls: 20"), "'x-mock-polls: 20'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
