//! [`PollOptions`]: what the engine does around a strategy — delays, limits, trust, headers.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::delay::{DelayPolicy, FixedInterval};
use crate::retry::RetryPolicy;
use crate::status::StatusVocabulary;
use crate::token::TokenKey;

/// Longest wait between two polls unless configured otherwise: 10 minutes.
///
/// azure-core has no cap (a `Retry-After: 1e12` sleeps for 31,000 years); here a server's
/// absurd hint cannot park an operation for longer than this.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(600);

/// Shortest wait when the service asks for one, unless configured otherwise: 100 ms.
///
/// azure-core sleeps whatever the service says, so `Retry-After: 1e-9` (or `retry-after-ms:
/// 0.000001`) polls in a hot loop; here such a hint waits at least this long. It applies only
/// when the service gives a non-zero hint: an interval of zero with no hint still polls at once.
pub const DEFAULT_MIN_DELAY: Duration = Duration::from_millis(100);

/// Which hosts polls and final GETs may go to.
///
/// Polling URLs come from response headers and bodies, and the client attaches credentials to
/// every request it sends; so by default a poll may only go to the origin (scheme, host, port)
/// of the request that started the operation. azure-core follows any URL; this is a deliberate
/// difference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    any: bool,
    /// Boxed: most policies pin nothing, and every engine holds a policy.
    pinned: Option<Box<Origin>>,
    extra: Vec<Origin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Scheme, host and effective port of `uri` (`None` for a relative URL or unknown port).
    pub(crate) fn of(uri: &Uri) -> Option<Origin> {
        let (scheme, host, port) = parts(uri)?;
        Some(Origin { scheme: scheme.to_ascii_lowercase(), host: host.to_ascii_lowercase(), port })
    }

    /// Whether `parts` (from [`parts`]) name this origin.
    fn is(&self, parts: Parts<'_>) -> bool {
        same((&self.scheme, &self.host, self.port), parts)
    }
}

impl std::fmt::Display for Origin {
    /// `scheme://host:port`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Scheme, host and effective port, as [`parts`] gives them.
type Parts<'a> = (&'a str, &'a str, u16);

/// Whether two [`Parts`] name one origin (scheme and host in any case).
fn same(a: Parts<'_>, b: Parts<'_>) -> bool {
    a.2 == b.2 && a.0.eq_ignore_ascii_case(b.0) && a.1.eq_ignore_ascii_case(b.1)
}

/// Scheme, host and effective port of `uri`, borrowed, in the case they were written in: what
/// a check on every poll compares, without allocating an [`Origin`].
fn parts(uri: &Uri) -> Option<Parts<'_>> {
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    let port = uri.port_u16().or(if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    })?;
    Some((scheme, host, port))
}

impl OriginPolicy {
    /// Only the origin of the initial request (the default).
    pub fn same_origin() -> Self {
        Self::default()
    }

    /// Any URL the service names. Use only with clients that send no credentials, or when
    /// every host the service may name is trusted.
    pub fn any() -> Self {
        OriginPolicy { any: true, ..Self::default() }
    }

    /// Only the origin of `url`, whatever the initial request was: for operations resumed from
    /// continuation tokens that come from elsewhere (a token names its own initial URL).
    ///
    /// Returns `None` if `url` has no scheme, host or known port.
    pub fn pinned(url: &str) -> Option<Self> {
        let origin = Origin::of(&url.parse().ok()?)?;
        Some(OriginPolicy { pinned: Some(Box::new(origin)), ..Self::default() })
    }

    /// Also trusts the origin of `url` (e.g. `"https://status.example.com"`).
    ///
    /// Returns `None` if `url` has no scheme, host or known port.
    pub fn allow(mut self, url: &str) -> Option<Self> {
        let origin = Origin::of(&url.parse().ok()?)?;
        self.extra.push(origin);
        Some(self)
    }

    /// Whether the user vouched for the origin of `url` by name: [`any`](Self::any), the
    /// [`pinned`](Self::pinned) origin, or one [`allow`](Self::allow)ed. (The default policy
    /// trusts "the origin of the initial request", which for a resumed operation is whatever
    /// the token says: that vouches for nothing.)
    pub fn vouches_for(&self, url: &Uri) -> bool {
        if self.any {
            return true;
        }
        match Origin::of(url) {
            Some(origin) => self.pinned.as_deref() == Some(&origin) || self.extra.contains(&origin),
            None => false,
        }
    }

    /// Whether a request to `target` is allowed for an operation started at `initial`.
    pub fn permits(&self, initial: &Uri, target: &Uri) -> bool {
        if self.any {
            return true;
        }
        // The common case, checked on every poll without parsing: the very scheme and authority
        // of the initial request (both compare case-insensitively).
        let same_authority = target.authority().is_some_and(|a| {
            // The very same text (a link the service built from the URL it was called on) is
            // settled without the case-insensitive comparison.
            initial.authority().is_some_and(|i| a.as_str() == i.as_str() || a == i)
        });
        if self.pinned.is_none() && same_authority && target.scheme() == initial.scheme() {
            return true;
        }
        let Some(target) = parts(target) else { return false };
        let base = match &self.pinned {
            Some(pinned) => pinned.is(target),
            None => match parts(initial) {
                Some(initial) => same(initial, target),
                // A relative initial URL vouches for nothing, and neither do the extras then.
                None => return false,
            },
        };
        base || self.extra.iter().any(|origin| origin.is(target))
    }
}

/// How the engine drives a strategy: delay policy and cap, limits, trusted origins, status
/// words and headers on polls. Built with [`PollOptions::builder`].
///
/// Many engines may share one set (a fleet of operations of one kind): pass an
/// `Arc<PollOptions>` to [`Engine::start`](crate::Engine::start). They then share its delay
/// policy too, called under a lock; what a policy knows of one operation comes from its
/// [`DelayContext`](crate::DelayContext).
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderName, HeaderValue};
/// use lro_core::{FixedInterval, PollOptions};
///
/// let options = PollOptions::builder()
///     .delay(FixedInterval::new(Duration::from_secs(5)))
///     .max_elapsed(Duration::from_secs(3600))
///     .header(HeaderName::from_static("x-tenant"), HeaderValue::from_static("contoso"))
///     .build();
/// # let _ = options;
/// ```
#[derive(Debug)]
pub struct PollOptions {
    /// Behind a lock: engines that share one `Arc<PollOptions>` share its policy.
    pub(crate) delay: std::sync::Mutex<Box<dyn DelayPolicy>>,
    pub(crate) max_delay: Duration,
    pub(crate) min_delay: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_polls: Option<u32>,
    pub(crate) max_elapsed: Option<Duration>,
    pub(crate) origins: OriginPolicy,
    pub(crate) vocabulary: StatusVocabulary,
    /// Boxed, and `None` when there are none (the usual case): an empty map takes 96 bytes.
    pub(crate) headers: Option<Box<HeaderMap>>,
    pub(crate) forward_client_request_id: bool,
    pub(crate) token_key: Option<TokenKey>,
    pub(crate) signed_tokens_only: bool,
    pub(crate) client_sends_credentials: bool,
}

/// Whether a header carries a credential, by its name or its value: a name that holds
/// `authorization`, `cookie`, `key`, `token`, `secret`, `signature`, `password` or `credential`
/// (`Authorization`, `x-ms-authorization-auxiliary`, `api-key`, `x-api-key`,
/// `Ocp-Apim-Subscription-Key`, `x-functions-key`, `x-auth-token`, …), a value that starts
/// with an authentication scheme (`Bearer`, `Basic`, `SharedKey`, `SharedAccessSignature`), or
/// any value marked [sensitive](HeaderValue::set_sensitive). Erring on the side of caution: a
/// header taken for a credential is only hidden from output and kept from unvouched origins.
///
/// ```
/// use http::{HeaderName, HeaderValue};
/// use lro_core::is_credential;
///
/// assert!(is_credential(&HeaderName::from_static("api-key"), &HeaderValue::from_static("k")));
/// let aux = HeaderName::from_static("x-ms-authorization-auxiliary");
/// assert!(is_credential(&aux, &HeaderValue::from_static("Bearer eyJ0")));
/// let custom = HeaderName::from_static("x-tenant");
/// assert!(is_credential(&custom, &HeaderValue::from_static("bearer eyJ0")));
/// let mut secret = HeaderValue::from_static("t");
/// secret.set_sensitive(true);
/// assert!(is_credential(&custom, &secret));
/// assert!(!is_credential(&custom, &HeaderValue::from_static("contoso")));
/// ```
pub fn is_credential(name: &HeaderName, value: &HeaderValue) -> bool {
    const WORDS: [&str; 8] = [
        "authorization",
        "cookie",
        "key",
        "token",
        "secret",
        "signature",
        "password",
        "credential",
    ];
    const SCHEMES: [&[u8]; 4] = [b"bearer ", b"basic ", b"sharedkey ", b"sharedaccesssignature "];
    let name = name.as_str(); // always lower case
    let value_starts = |scheme: &[u8]| {
        value.as_bytes().get(..scheme.len()).is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    };
    value.is_sensitive()
        || WORDS.iter().any(|word| name.contains(word))
        || SCHEMES.iter().any(|scheme| value_starts(scheme))
}

/// Marks `value` [sensitive](HeaderValue::set_sensitive) if it is a
/// [credential](is_credential), so that no `Debug` output shows it.
pub(crate) fn hide_if_credential(name: &HeaderName, value: &mut HeaderValue) {
    if is_credential(name, value) {
        value.set_sensitive(true);
    }
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            delay: std::sync::Mutex::new(Box::new(FixedInterval::default())),
            max_delay: DEFAULT_MAX_DELAY,
            min_delay: DEFAULT_MIN_DELAY,
            retry: RetryPolicy::default(),
            max_polls: None,
            max_elapsed: None,
            origins: OriginPolicy::default(),
            vocabulary: StatusVocabulary::azure(),
            headers: None,
            forward_client_request_id: true,
            token_key: None,
            signed_tokens_only: false,
            client_sends_credentials: false,
        }
    }
}

impl PollOptions {
    /// A builder starting from azure-core's defaults (30 s interval, azure status words).
    pub fn builder() -> PollOptionsBuilder {
        PollOptionsBuilder { options: PollOptions::default() }
    }

    /// The status words in use.
    pub fn vocabulary(&self) -> &StatusVocabulary {
        &self.vocabulary
    }

    /// The retry policy in use.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Whether polls carry credentials: a [credential](is_credential) among the poll headers,
    /// or a client said to add its own ([`PollOptionsBuilder::client_sends_credentials`]).
    pub fn sends_credentials(&self) -> bool {
        self.client_sends_credentials
            || self
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .any(|(name, value)| is_credential(name, value))
    }
}

/// Builder of [`PollOptions`].
#[derive(Debug)]
#[must_use]
pub struct PollOptionsBuilder {
    options: PollOptions,
}

impl PollOptionsBuilder {
    /// How long to wait between polls (default: [`FixedInterval`] of 30 s, honouring the
    /// service's `Retry-After`).
    pub fn delay(mut self, policy: impl DelayPolicy + 'static) -> Self {
        self.options.delay = std::sync::Mutex::new(Box::new(policy));
        self
    }

    /// Shorthand for `delay(FixedInterval::new(interval))`.
    pub fn interval(self, interval: Duration) -> Self {
        self.delay(FixedInterval::new(interval))
    }

    /// Caps every wait, whatever the service or the policy asks (default: 10 minutes).
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.options.max_delay = max;
        self
    }

    /// The shortest wait when the service asks for a non-zero one (default: 100 ms). A tiny
    /// `Retry-After` is raised to this, so no service can make the poller spin.
    pub fn min_delay(mut self, min: Duration) -> Self {
        self.options.min_delay = min;
        self
    }

    /// How transient failures of polls and final GETs are retried (default: azure-core's
    /// 3 retries with exponential backoff; [`RetryPolicy::none`] turns retries off).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// Gives up with [`LroError::Timeout`](crate::LroError::Timeout) after this many status
    /// polls (default: no limit).
    pub fn max_polls(mut self, max: u32) -> Self {
        self.options.max_polls = Some(max);
        self
    }

    /// Gives up with [`LroError::Timeout`](crate::LroError::Timeout) once the next poll would
    /// come later than this after polling started (default: no limit).
    pub fn max_elapsed(mut self, max: Duration) -> Self {
        self.options.max_elapsed = Some(max);
        self
    }

    /// Which hosts polls may go to (default: the initial request's origin only).
    pub fn origins(mut self, policy: OriginPolicy) -> Self {
        self.options.origins = policy;
        self
    }

    /// Which status words end the operation (default: azure-core's).
    pub fn vocabulary(mut self, vocabulary: StatusVocabulary) -> Self {
        self.options.vocabulary = vocabulary;
        self
    }

    /// Adds a header to every poll and final GET. A [credential](is_credential) here makes
    /// resuming from an unsigned token require an origin the user vouched for, and is marked
    /// [sensitive](HeaderValue::set_sensitive): no `Debug` output shows it.
    pub fn header(mut self, name: HeaderName, mut value: HeaderValue) -> Self {
        hide_if_credential(&name, &mut value);
        self.options.headers.get_or_insert_with(Box::default).append(name, value);
        self
    }

    /// Whether polls repeat the initial request's `x-ms-client-request-id`, as azure-core
    /// does (default: yes).
    pub fn forward_client_request_id(mut self, forward: bool) -> Self {
        self.options.forward_client_request_id = forward;
        self
    }

    /// Signs continuation tokens with `key`, and checks the signature of tokens resumed from:
    /// a token whose signature does not match is refused before anything is sent, and a
    /// correctly signed token's origin is trusted (see [`OriginPolicy::vouches_for`]).
    pub fn token_key(mut self, key: TokenKey) -> Self {
        self.options.token_key = Some(key);
        self
    }

    /// Resumes only tokens signed with the [`token_key`](Self::token_key) (default: no). For
    /// tokens read from a place others can write, such as a shared store: an unsigned token
    /// could name any URL, and its answer would be taken for the operation's result, even when
    /// polls carry no credential. Without a token key no token is resumed.
    pub fn signed_tokens_only(mut self, only: bool) -> Self {
        self.options.signed_tokens_only = only;
        self
    }

    /// Says that the client attaches credentials by itself (say, a bearer-token layer in the
    /// transport), so that resuming a token is held to the same rule as with credential
    /// headers: only to an origin the user vouched for, or from a signed token.
    pub fn client_sends_credentials(mut self, sends: bool) -> Self {
        self.options.client_sends_credentials = sends;
        self
    }

    /// The options.
    pub fn build(self) -> PollOptions {
        self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().expect("test URI")
    }

    #[test]
    fn a_credential_given_as_a_poll_header_never_shows_in_debug_output() {
        let options = PollOptions::builder()
            .header(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cr3t-1"))
            .header(HeaderName::from_static("x-api-key"), HeaderValue::from_static("s3cr3t-2"))
            .header(HeaderName::from_static("x-tenant"), HeaderValue::from_static("contoso"))
            .build();
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("contoso"), "other headers are shown: {shown}");
        assert!(options.sends_credentials());
    }

    #[test]
    fn same_origin_compares_scheme_host_and_effective_port() {
        let policy = OriginPolicy::same_origin();
        let start = uri("https://Example.com/resource");
        assert!(policy.permits(&start, &uri("https://example.com:443/op?x=1")));
        assert!(!policy.permits(&start, &uri("http://example.com/op")), "downgrade to http");
        assert!(!policy.permits(&start, &uri("https://example.com:8443/op")));
        assert!(!policy.permits(&start, &uri("https://evil.example/op")));
        assert!(!policy.permits(&start, &uri("/relative")));
    }

    #[test]
    fn allowed_origins_and_any_widen_the_policy() {
        let start = uri("https://example.com/resource");
        let policy =
            OriginPolicy::same_origin().allow("https://status.example.com").expect("valid origin");
        assert!(policy.permits(&start, &uri("https://status.example.com/op/1")));
        assert!(policy.permits(&start, &uri("https://STATUS.Example.com/op/1")), "any case");
        assert!(!policy.permits(&start, &uri("http://status.example.com/op/1")));
        assert!(OriginPolicy::any().permits(&start, &uri("http://anything/")));
        assert!(OriginPolicy::same_origin().allow("not a url").is_none());
    }

    #[test]
    fn a_pinned_origin_ignores_the_initial_request() {
        let policy = OriginPolicy::pinned("https://example.com").expect("valid origin");
        let forged = uri("https://evil.example/resource");
        assert!(!policy.permits(&forged, &uri("https://evil.example/op")));
        assert!(policy.permits(&forged, &uri("https://example.com/op")));
    }
}
