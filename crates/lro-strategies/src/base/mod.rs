//! azure-core's `LROBasePolling` and azure-mgmt-core's `ARMPolling`, as one sans-IO strategy
//! with two default algorithm lists.

mod algorithm;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use lro_core::{
    DelayPolicy, InitialResponse, LroError, PollOptions, PollOptionsBuilder, RetryPolicy, Strategy,
    StrategyPolling,
};
use serde::{Deserialize, Serialize};

pub use algorithm::Algorithm;
use algorithm::Tracker;

use crate::final_state::FinalStateVia;
use crate::urls::UrlHook;

/// The HTTP statuses azure-core accepts on the initial response, polls and the final GET.
fn check_status(response: &Response<Bytes>, method: &Method) -> Result<(), LroError> {
    match response.status() {
        StatusCode::OK | StatusCode::CREATED | StatusCode::ACCEPTED | StatusCode::NO_CONTENT => {
            Ok(())
        }
        _ => Err(LroError::bad_status(response, method)),
    }
}

#[derive(Debug)]
struct Config {
    /// `"base"` or `"arm"` when the algorithms are one of the two default lists.
    family: Option<&'static str>,
    algorithms: Vec<Algorithm>,
    final_state_via: Option<FinalStateVia>,
    url_hook: Option<UrlHook>,
}

/// azure-core's base polling (`LROBasePolling`), and with [`ArmPolling::builder`] azure-mgmt-core's
/// `ARMPolling`: picks an [`Algorithm`] from the initial response, polls with it, and GETs the
/// final resource where `final-state-via` and the method say.
///
/// Built with [`LroBasePolling::builder`] (algorithms Operation-Location → Location → status
/// check) or [`ArmPolling::builder`] (Azure-AsyncOperation → Location → body → status check).
///
/// ```
/// use std::time::Duration;
/// use lro_strategies::{FinalStateVia, LroBasePolling};
///
/// let method = LroBasePolling::builder()
///     .interval(Duration::from_secs(5))
///     .final_state_via(FinalStateVia::Location)
///     .build::<serde_json::Value>();
/// # let _ = method;
/// ```
#[derive(Debug, Clone)]
pub struct LroBasePolling {
    config: Arc<Config>,
    tracker: Option<Tracker>,
}

/// Progress saved in continuation tokens: the URL being polled (the Location algorithm may
/// move it). No `Debug`: it holds the poll URL whole.
#[derive(Serialize, Deserialize)]
struct Saved {
    algorithm: String,
    polling: String,
    /// Which default algorithm list made the token (`base`, `arm`): a resume with the other
    /// list is refused with a message that names the right one, and tools (the CLI) read it to
    /// pick the list themselves. Absent for custom lists and in older tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family: Option<String>,
}

/// The name [`Saved::family`] gives each default list, for people.
fn family_words(family: &str) -> &'static str {
    match family {
        "arm" => "ARM polling (ArmPolling)",
        "base" => "base polling (LroBasePolling)",
        _ => "another algorithm list",
    }
}

impl LroBasePolling {
    /// Which default algorithm list made `token`, as its saved progress records it: `"arm"`
    /// ([`ArmPolling`]) or `"base"` ([`LroBasePolling`]); `None` for tokens that do not say
    /// (Python azure-core's, custom lists, older ones). Only read, never trusted: resuming
    /// checks the token again. Tools use it to pick the list themselves (`lro resume`).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use lro_core::{Engine, InitialResponse};
    /// use lro_strategies::{ArmPolling, LroBasePolling};
    ///
    /// let request = http::Request::put("https://svc.example/w1").body(Bytes::new())?;
    /// let response = http::Response::builder()
    ///     .status(201)
    ///     .header("azure-asyncoperation", "https://svc.example/ops/1")
    ///     .body(Bytes::new())?;
    /// let (strategy, options) = ArmPolling::builder().into_parts();
    /// let engine = Engine::start(strategy, options, InitialResponse::from_exchange(&request, response))?;
    /// let token = engine.continuation_token()?;
    /// assert_eq!(LroBasePolling::family_of(&token), Some("arm"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn family_of(token: &lro_core::ContinuationToken) -> Option<&'static str> {
        let state: lro_core::token::TokenState = token.decode().ok()?;
        let saved = state.progress?.get("strategy")?.clone();
        let saved: Saved = serde_json::from_value(saved).ok()?;
        match saved.family.as_deref()? {
            "arm" => Some("arm"),
            "base" => Some("base"),
            _ => None,
        }
    }

    /// A builder with azure-core's algorithms: Operation-Location, Location, status check.
    pub fn builder() -> PollingBuilder {
        PollingBuilder::new(base_algorithms())
    }

    /// The algorithm chosen for this operation (once started).
    pub fn algorithm(&self) -> Option<&Algorithm> {
        self.tracker.as_ref().map(|t| &t.algorithm)
    }

    fn hooked(&self, uri: Uri) -> Uri {
        match &self.config.url_hook {
            Some(hook) => hook.apply(uri),
            None => uri,
        }
    }
}

impl Strategy for LroBasePolling {
    fn start(&mut self, initial: &InitialResponse) -> Result<Arc<str>, LroError> {
        let response = initial.response();
        let method = initial.request().method();
        let algorithm = self
            .config
            .algorithms
            .iter()
            .find(|a| a.applies(method, response))
            .cloned()
            .ok_or_else(|| {
                LroError::bad_response(response, "Unable to find status link for polling.")
            })?;
        check_status(response, method)?;
        let (tracker, status) =
            Tracker::start(algorithm, method.clone(), initial.request().uri(), response)?;
        self.tracker = Some(tracker);
        Ok(status)
    }

    fn poll_uri(&self) -> Option<Uri> {
        let polling = self.tracker.as_ref()?.polling.as_ref()?.uri();
        Some(self.hooked(polling))
    }

    /// Compares the text of the polling link with `uri`. Never with a URL hook: what the hook
    /// makes of the link is known only by calling it.
    fn polls_uri(&self, uri: &Uri) -> bool {
        let polling = self.tracker.as_ref().and_then(|tracker| tracker.polling.as_ref());
        self.config.url_hook.is_none() && polling.is_some_and(|link| link.is(uri))
    }

    fn read_poll(&mut self, response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
        check_status(response, &Method::GET)?;
        match &mut self.tracker {
            Some(tracker) => tracker.status(response),
            None => Err(LroError::bad_response(response, "polling was not started")),
        }
    }

    fn final_uri(&self, latest: &Response<Bytes>) -> Result<Option<Uri>, LroError> {
        let Some(tracker) = &self.tracker else { return Ok(None) };
        Ok(tracker.final_uri(latest, self.config.final_state_via)?.map(|uri| self.hooked(uri)))
    }

    fn read_final(&mut self, response: &Response<Bytes>) -> Result<(), LroError> {
        check_status(response, &Method::GET)
    }

    fn percent_complete(&self) -> Option<u8> {
        self.tracker.as_ref()?.percent
    }

    /// The algorithm chosen (`"operation-resource"`, `"location"`, `"body-content"`,
    /// `"status-check"`), or `"unstarted"`.
    fn name(&self) -> &'static str {
        self.tracker.as_ref().map_or("unstarted", |t| t.algorithm.name())
    }

    fn save(&self) -> Option<serde_json::Value> {
        let tracker = self.tracker.as_ref()?;
        let saved = Saved {
            algorithm: tracker.algorithm.name().to_owned(),
            polling: tracker.polling.as_ref()?.as_str().to_owned(),
            family: self.config.family.map(str::to_owned),
        };
        serde_json::to_value(saved).ok()
    }

    fn restore(&mut self, saved: &serde_json::Value) -> Result<(), LroError> {
        let saved: Saved = serde_json::from_value(saved.clone())
            .map_err(|e| LroError::invalid_token(format!("unexpected polling progress: {e}")))?;
        if let (Some(made), Some(mine)) = (saved.family.as_deref(), self.config.family) {
            if made != mine {
                return Err(LroError::invalid_token(format!(
                    "the token was made by {}; resume it with the same ({} would poll \
                     differently)",
                    family_words(made),
                    family_words(mine)
                )));
            }
        }
        let Some(tracker) = &mut self.tracker else { return Ok(()) };
        if saved.algorithm != tracker.algorithm.name() {
            return Err(LroError::invalid_token(format!(
                "the token was made by the {} algorithm, but its initial response selects {}",
                saved.algorithm,
                tracker.algorithm.name()
            )));
        }
        let polling: Uri = saved
            .polling
            .parse()
            .map_err(|_| LroError::invalid_token("the saved polling URL is invalid"))?;
        if polling.scheme().is_none() || polling.authority().is_none() {
            return Err(LroError::invalid_token("the saved polling URL is not absolute"));
        }
        tracker.polling = Some(crate::urls::Link::of(&polling));
        Ok(())
    }
}

/// azure-mgmt-core's `ARMPolling`: an [`LroBasePolling`] with ARM's algorithms.
///
/// ```
/// use lro_strategies::{ArmPolling, FinalStateVia};
///
/// let method = ArmPolling::builder()
///     .final_state_via(FinalStateVia::AzureAsyncOperation)
///     .build::<serde_json::Value>();
/// # let _ = method;
/// ```
#[derive(Debug, Clone, Copy)]
#[allow(clippy::exhaustive_structs)] // a name for a builder, never a value with fields
pub struct ArmPolling;

impl ArmPolling {
    /// A builder with ARM's algorithms: Azure-AsyncOperation, Location, body
    /// (`provisioningState`), status check. ARM ignores `Operation-Location`.
    pub fn builder() -> PollingBuilder {
        PollingBuilder::new(arm_algorithms())
    }
}

/// azure-core's algorithms, in its order.
fn base_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::operation_location(), Algorithm::Location, Algorithm::StatusCheck]
}

/// azure-mgmt-core's algorithms, in its order.
fn arm_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::azure_async_operation(),
        Algorithm::Location,
        Algorithm::BodyContent,
        Algorithm::StatusCheck,
    ]
}

/// `config`, or the one shared copy of it when it is a default one: every poller built with
/// `LroBasePolling::builder()` or `ArmPolling::builder()` and no other algorithm setting then
/// shares its configuration instead of holding a copy.
fn shared(config: Config) -> Arc<Config> {
    static BASE: OnceLock<Arc<Config>> = OnceLock::new();
    static ARM: OnceLock<Arc<Config>> = OnceLock::new();
    if config.final_state_via.is_none() && config.url_hook.is_none() {
        for (cell, defaults) in [(&BASE, base_algorithms()), (&ARM, arm_algorithms())] {
            if config.algorithms == defaults {
                return Arc::clone(cell.get_or_init(|| Arc::new(config)));
            }
        }
    }
    Arc::new(config)
}

/// Builder of [`LroBasePolling`] / [`ArmPolling`] polling methods.
#[derive(Debug)]
#[must_use]
pub struct PollingBuilder {
    algorithms: Vec<Algorithm>,
    final_state_via: Option<FinalStateVia>,
    url_hook: Option<UrlHook>,
    options: PollOptionsBuilder,
}

impl PollingBuilder {
    fn new(algorithms: Vec<Algorithm>) -> Self {
        PollingBuilder {
            algorithms,
            final_state_via: None,
            url_hook: None,
            options: PollOptions::builder(),
        }
    }

    /// Where the final resource comes from (default: azure-core's per-method rules).
    pub fn final_state_via(mut self, via: FinalStateVia) -> Self {
        self.final_state_via = Some(via);
        self
    }

    /// The header naming the status monitor (default `Operation-Location`; ARM:
    /// `Azure-AsyncOperation`). Replaces the header of the first operation-resource algorithm.
    pub fn operation_location_header(mut self, header: HeaderName) -> Self {
        if let Some(Algorithm::OperationResource { header: h }) =
            self.algorithms.iter_mut().find(|a| matches!(a, Algorithm::OperationResource { .. }))
        {
            *h = header;
        }
        self
    }

    /// Replaces the list of algorithms, tried in order.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The wait between polls when the service sends no `Retry-After` (default 30 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.options = self.options.interval(interval);
        self
    }

    /// How long to wait between polls, e.g. an [`ExponentialBackoff`](crate::ExponentialBackoff).
    pub fn delay(mut self, policy: impl DelayPolicy + 'static) -> Self {
        self.options = self.options.delay(policy);
        self
    }

    /// Gives up with [`LroError::Timeout`] after this many polls (default: no limit).
    pub fn max_polls(mut self, max: u32) -> Self {
        self.options = self.options.max_polls(max);
        self
    }

    /// Gives up with [`LroError::Timeout`] once the next poll would come later than this after
    /// polling started (default: no limit).
    pub fn max_elapsed(mut self, max: Duration) -> Self {
        self.options = self.options.max_elapsed(max);
        self
    }

    /// How transient failures of polls and final GETs are retried (default: 3 retries with
    /// jittered exponential backoff; [`RetryPolicy::none`] turns them off).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options = self.options.retry(policy);
        self
    }

    /// Adds a header to every poll and final GET (e.g. a tenant or correlation header).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.options = self.options.header(name, value);
        self
    }

    /// Rewrites every poll and final-GET URL, e.g. [`UrlHook::api_version`].
    pub fn url_hook(mut self, hook: UrlHook) -> Self {
        self.url_hook = Some(hook);
        self
    }

    /// Shorthand for `url_hook(UrlHook::api_version(version))`.
    pub fn api_version(self, version: &str) -> Self {
        self.url_hook(UrlHook::api_version(version))
    }

    /// Any other engine option: maximum delay, trusted origins, status words, ...
    ///
    /// ```
    /// use std::time::Duration;
    /// use lro_strategies::LroBasePolling;
    ///
    /// let method = LroBasePolling::builder()
    ///     .poll_options(|o| o.max_delay(Duration::from_secs(120)))
    ///     .build::<()>();
    /// # let _ = method;
    /// ```
    pub fn poll_options(
        mut self,
        configure: impl FnOnce(PollOptionsBuilder) -> PollOptionsBuilder,
    ) -> Self {
        self.options = configure(self.options);
        self
    }

    /// The strategy and the engine options, for callers that assemble their own method.
    pub fn into_parts(self) -> (LroBasePolling, PollOptions) {
        let family = if self.algorithms == base_algorithms() {
            Some("base")
        } else if self.algorithms == arm_algorithms() {
            Some("arm")
        } else {
            None
        };
        let config = Config {
            family,
            algorithms: self.algorithms,
            final_state_via: self.final_state_via,
            url_hook: self.url_hook,
        };
        (LroBasePolling { config: shared(config), tracker: None }, self.options.build())
    }

    /// The polling method, for either poller.
    pub fn build<T>(self) -> StrategyPolling<LroBasePolling, T> {
        let (strategy, options) = self.into_parts();
        StrategyPolling::with_options(strategy, options)
    }
}
