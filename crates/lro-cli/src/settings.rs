//! The polling options of `lro start` and `lro resume`, checked: headers (credentials marked),
//! strategy, retries, trusted origins, token key; and the resume command that repeats them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use lro_core::{OriginPolicy, RetryPolicy, StrategyPolling, TokenKey, is_credential};
use lro_strategies::{FinalStateVia, LroBasePolling};

use crate::output::FinalBody;
use crate::progress::Progress;
use crate::{Flavour, PollingArgs, Transport, UsageError};

/// The environment variable that may hold the token key instead of `--token-key-file`.
pub(crate) const TOKEN_KEY_VARIABLE: &str = "LRO_TOKEN_KEY";

/// The polling options, checked.
pub(crate) struct Settings {
    pub(crate) headers: HeaderMap,
    pub(crate) flavour: Flavour,
    pub(crate) final_state_via: Option<FinalStateVia>,
    pub(crate) interval: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    deadline: Option<Instant>,
    pub(crate) retry: RetryPolicy,
    origins: OriginPolicy,
    /// Origins named on the command line (`--allow-origin`, `--url` on resume), for the hint.
    vouched: Vec<String>,
    token_key: Option<TokenKey>,
    pub(crate) transport: Transport,
    pub(crate) output: crate::Output,
}

/// A duration on the command line: seconds (`30`, `0.5`) or humantime (`30s`, `2m`, `1h 30m`,
/// `250ms`). Negative, infinite and unparsable values are refused with an example.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXAMPLES: &str = "give seconds (30, 0.5) or a duration (30s, 2m, 1h)";
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("{text:?} is negative: {EXAMPLES}, 0 or more"));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{text:?} is not a usable number of seconds: {EXAMPLES}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}): {EXAMPLES}"))
}

impl Settings {
    /// The settings of `args`; `vouched_url` is a URL named on the command line whose origin
    /// is trusted too (`--url` of `lro resume`).
    pub(crate) fn new(args: &PollingArgs, vouched_url: Option<&str>) -> Result<Self, UsageError> {
        let final_state_via = args
            .final_state_via
            .as_deref()
            .map(|v| v.parse::<FinalStateVia>().map_err(|e| UsageError(e.to_string())))
            .transpose()?;
        let mut origins = OriginPolicy::same_origin();
        let mut vouched = Vec::new();
        for (flag, url) in args
            .allow_origin
            .iter()
            .map(|u| ("--allow-origin", u.as_str()))
            .chain(vouched_url.map(|u| ("--url", u)))
        {
            origins = origins.allow(url).ok_or_else(|| {
                UsageError(format!("{flag} {url:?} is not an absolute http(s) URL"))
            })?;
            // Only the origin goes into the hint: a URL may carry secrets (userinfo, SAS).
            vouched.push(origin_of(url));
        }
        let timeout = args.timeout;
        let mut headers = parse_headers(&args.headers, false)?;
        headers.extend(parse_headers(&args.secret_headers, true)?);
        Ok(Settings {
            headers,
            flavour: args.flavour.unwrap_or(Flavour::Base),
            final_state_via,
            interval: args.interval,
            timeout,
            // A deadline too far away to represent is no deadline at all.
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
            retry: RetryPolicy::builder().max_retries(args.retries).build(),
            origins,
            vouched,
            token_key: token_key(args.token_key_file.as_deref())?,
            transport: args.transport,
            output: args.output,
        })
    }

    /// The polling method these settings describe, reporting to `progress`.
    pub(crate) fn method(
        &self,
        progress: Arc<Progress>,
    ) -> StrategyPolling<LroBasePolling, FinalBody> {
        let mut builder = self.flavour.builder();
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
        let key = self.token_key.clone();
        let sends_headers = self.sends_headers();
        builder
            .retry(self.retry.clone())
            .poll_options(|options| {
                // Any header given on the command line may be a credential, whatever it looks
                // like (`X-Auth`, a bare JWT): a token's origin must be vouched for to get it.
                let options = options.origins(origins).client_sends_credentials(sends_headers);
                match key {
                    Some(key) => options.token_key(key),
                    None => options,
                }
            })
            .build()
            .observe(move |event| progress.update(event))
    }

    /// The `lro resume` command that continues with these options. `token` names the token
    /// (`--token-file F` or `--token T`); `start_url` is the initial URL of `lro start`, whose
    /// origin the hint vouches for when credentials are sent and tokens are not signed.
    pub(crate) fn resume_hint(
        &self,
        args: &PollingArgs,
        token: &str,
        start_url: Option<&str>,
    ) -> String {
        let mut hint = format!("lro resume {token}");
        if self.flavour == Flavour::Arm {
            hint.push_str(" --flavour arm");
        }
        if let Some(via) = self.final_state_via {
            hint.push_str(&format!(" --final-state-via {via}"));
        }
        if let Some(interval) = args.interval {
            hint.push_str(&format!(" --interval {}", humantime::format_duration(interval)));
        }
        if args.retries != lro_core::DEFAULT_MAX_RETRIES {
            hint.push_str(&format!(" --retries {}", args.retries));
        }
        if args.transport != Transport::Hyper {
            hint.push_str(" --transport blocking");
        }
        let mut vouched = self.vouched.clone();
        if let (Some(url), true, None) = (start_url, self.sends_headers(), &self.token_key) {
            let origin = origin_of(url);
            if !vouched.contains(&origin) {
                vouched.push(origin);
            }
        }
        for origin in &vouched {
            hint.push_str(&format!(" --allow-origin {}", shell_quote(origin)));
        }
        if let Some(path) = &args.token_key_file {
            hint.push_str(&format!(
                " --token-key-file {}",
                shell_quote(&path.display().to_string())
            ));
        }
        for (name, value) in &self.headers {
            if name == http::header::CONTENT_TYPE || name == http::header::CONTENT_LENGTH {
                continue;
            }
            // Never print a credential: the hint then needs it filled in again.
            let (flag, value) = if value.is_sensitive() {
                ("--secret-header", "…")
            } else {
                ("--header", value.to_str().unwrap_or("…"))
            };
            hint.push_str(&format!(" {flag} {}", shell_quote(&format!("{name}: {value}"))));
        }
        hint
    }

    /// Whether polls carry headers given on the command line (other than the initial request's
    /// `Content-Type` and `Content-Length`, which they leave out).
    fn sends_headers(&self) -> bool {
        self.headers
            .keys()
            .any(|name| name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH)
    }

    /// The token key (`--token-key-file`, `LRO_TOKEN_KEY`), if one was given.
    pub(crate) fn token_key(&self) -> Option<&TokenKey> {
        self.token_key.as_ref()
    }

    /// Time left before `--timeout` runs out.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// `scheme://host[:port]` of `url`, or `url` itself if it does not parse.
fn origin_of(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => {
                let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host_port}")
            }
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// The token key from `--token-key-file`, or else from `LRO_TOKEN_KEY`.
pub(crate) fn token_key(file: Option<&Path>) -> Result<Option<TokenKey>, UsageError> {
    let (secret, source) = match file {
        Some(path) => {
            let secret = crate::token_file::read_bounded(path, 4096).map_err(|e| {
                UsageError(format!("cannot read --token-key-file {}: {e}", path.display()))
            })?;
            (secret, format!("--token-key-file {}", path.display()))
        }
        None => match std::env::var(TOKEN_KEY_VARIABLE) {
            Ok(secret) if !secret.trim().is_empty() => (secret, TOKEN_KEY_VARIABLE.to_owned()),
            _ => return Ok(None),
        },
    };
    TokenKey::new(secret.trim().as_bytes())
        .map(Some)
        .map_err(|e| UsageError(format!("{source}: {e}")))
}

/// `--header` (or `--secret-header` when `secret`) values as a header map; credentials are
/// marked sensitive, so that polls treat them as such and nothing prints them.
pub(crate) fn parse_headers(headers: &[String], secret: bool) -> Result<HeaderMap, UsageError> {
    let flag = if secret { "--secret-header" } else { "--header" };
    let mut map = HeaderMap::new();
    // A malformed argument is not repeated: it may be a secret given without its name.
    for (n, header) in headers.iter().enumerate() {
        let nth = n.saturating_add(1);
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| UsageError(format!("{flag} #{nth} must look like 'Name: value'")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| UsageError(format!("{flag} #{nth}: the header name is not valid")))?;
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| UsageError(format!("{flag} {name}: the value is not valid")))?;
        if secret || is_credential(&name, &value) {
            value.set_sensitive(true);
        }
        map.append(name, value);
    }
    Ok(map)
}

/// `word` as one word for a POSIX shell: as it is when it is plain, else in single quotes.
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_words_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(shell_quote("/tmp/op.token"), "/tmp/op.token");
        assert_eq!(shell_quote("/tmp/with space/op.token"), "'/tmp/with space/op.token'");
        assert_eq!(shell_quote("x-mock-polls: 20"), "'x-mock-polls: 20'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn credentials_are_marked_sensitive_and_others_are_not() {
        let headers = [
            "Authorization: Bearer x".to_owned(),
            "x-api-token: t".to_owned(),
            "Ocp-Apim-Subscription-Key: k".to_owned(),
            "x-tenant: contoso".to_owned(),
        ];
        let map = parse_headers(&headers, false).unwrap_or_default();
        let sensitive: Vec<&str> =
            map.iter().filter(|(_, v)| v.is_sensitive()).map(|(n, _)| n.as_str()).collect();
        assert_eq!(sensitive, ["authorization", "x-api-token", "ocp-apim-subscription-key"]);
        let secret = parse_headers(&["x-tenant: contoso".to_owned()], true).unwrap_or_default();
        assert!(secret.values().all(HeaderValue::is_sensitive));
    }

    #[test]
    fn durations_are_seconds_or_humantime_and_never_negative() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("-5").unwrap_err().contains("negative"));
        assert!(parse_duration("-2m").unwrap_err().contains("negative"));
        assert!(parse_duration("inf").unwrap_err().contains("not a usable number"));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn the_origin_of_a_url_drops_path_and_user_information() {
        assert_eq!(origin_of("https://u:p@svc.example:8443/a/b?c"), "https://svc.example:8443");
        assert_eq!(origin_of("http://127.0.0.1:1234/things/t1"), "http://127.0.0.1:1234");
    }
}
