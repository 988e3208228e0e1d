//! The fault spec grammar: [`FaultSpec`] and its compact text form, the kinds of fault
//! ([`FaultKind`]), the faults recorded in the request log ([`Fault`]) and parse errors.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::retry_after::RetryAfter;

/// The longest `slow` delay a spec may ask for.
pub const MAX_SLOW_DELAY: Duration = Duration::from_secs(10);
/// The largest `oversized` body a spec may ask for (1 GiB).
pub const MAX_OVERSIZED_BYTES: u64 = 1 << 30;

const DEFAULT_SLOW_DELAY: Duration = Duration::from_millis(500);
const DEFAULT_OVERSIZED_BYTES: u64 = 32 << 20;
const DEFAULT_429_RETRY_AFTER: RetryAfter = RetryAfter::Seconds(1);

/// A kind of fault a [`FaultSpec`] can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FaultKind {
    /// `500` (spec key `500`).
    InternalServerError,
    /// `503` (spec key `503`).
    ServiceUnavailable,
    /// `429` with a delay hint (spec key `429`).
    TooManyRequests,
    /// Connection closed without a response (spec key `reset`).
    Reset,
    /// Delayed response (spec key `slow`).
    Slow,
    /// Truncated JSON body (spec key `malformed`).
    Malformed,
    /// Status monitor body without `status` (spec key `nostatus`).
    NoStatus,
    /// Padded, huge body (spec key `oversized`).
    Oversized,
    /// Polling URLs on another origin (spec key `cross-origin`).
    CrossOrigin,
}

impl FaultKind {
    /// Every kind, in spec order.
    pub const ALL: [FaultKind; 9] = [
        Self::InternalServerError,
        Self::ServiceUnavailable,
        Self::TooManyRequests,
        Self::Reset,
        Self::Slow,
        Self::Malformed,
        Self::NoStatus,
        Self::Oversized,
        Self::CrossOrigin,
    ];

    /// The kinds that exclude each other (all but [`FaultKind::Slow`]), in drawing order.
    pub(super) const EXCLUSIVE: [FaultKind; 8] = [
        Self::InternalServerError,
        Self::ServiceUnavailable,
        Self::TooManyRequests,
        Self::Reset,
        Self::Malformed,
        Self::NoStatus,
        Self::Oversized,
        Self::CrossOrigin,
    ];

    /// The key of this kind in a spec string.
    pub fn key(self) -> &'static str {
        match self {
            Self::InternalServerError => "500",
            Self::ServiceUnavailable => "503",
            Self::TooManyRequests => "429",
            Self::Reset => "reset",
            Self::Slow => "slow",
            Self::Malformed => "malformed",
            Self::NoStatus => "nostatus",
            Self::Oversized => "oversized",
            Self::CrossOrigin => "cross-origin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_key(key: &str) -> Option<Self> {
        match key {
            "no-status" => Some(Self::NoStatus),
            "crossorigin" => Some(Self::CrossOrigin),
            _ => Self::ALL.into_iter().find(|kind| kind.key() == key),
        }
    }
}

/// A fault that was injected into one response (see [`LogEntry::faults`](crate::LogEntry)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answered 500.
    InternalServerError,
    /// Answered 503.
    ServiceUnavailable,
    /// Answered 429 with this delay hint.
    TooManyRequests(RetryAfter),
    /// Closed the connection without answering.
    Reset,
    /// Waited this long before answering.
    Slow(Duration),
    /// Sent a truncated JSON body.
    Malformed,
    /// Removed `status` from a status monitor's body.
    NoStatus,
    /// Padded the body to this many bytes.
    Oversized(u64),
    /// Pointed the polling URLs at another origin.
    CrossOrigin,
}

impl Fault {
    /// The kind of this fault.
    pub fn kind(&self) -> FaultKind {
        match self {
            Self::InternalServerError => FaultKind::InternalServerError,
            Self::ServiceUnavailable => FaultKind::ServiceUnavailable,
            Self::TooManyRequests(_) => FaultKind::TooManyRequests,
            Self::Reset => FaultKind::Reset,
            Self::Slow(_) => FaultKind::Slow,
            Self::Malformed => FaultKind::Malformed,
            Self::NoStatus => FaultKind::NoStatus,
            Self::Oversized(_) => FaultKind::Oversized,
            Self::CrossOrigin => FaultKind::CrossOrigin,
        }
    }
}

/// Which faults to inject, how often, and under which seed. [`FaultSpec::default`] injects
/// nothing. Parse one from the compact text form described in the [module
/// documentation](crate::faults) with [`FaultSpec::parse`] or [`str::parse`];
/// [`Display`](fmt::Display) writes it back in that form.
///
/// ```
/// use lro_mock::{FaultKind, FaultSpec};
///
/// let spec = FaultSpec::parse("seed=7, 500=0.1, slow=0.5:20ms")?;
/// assert_eq!(spec.seed(), 7);
/// assert_eq!(spec.probability(FaultKind::InternalServerError), 0.1);
/// assert_eq!(spec.to_string(), "seed=7,500=0.1,slow=0.5:20ms");
/// assert!(FaultSpec::parse("500=1.5").is_err());
/// # Ok::<(), lro_mock::FaultSpecError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    seed: u64,
    initial: bool,
    probabilities: [f64; 9],
    retry_after_429: RetryAfter,
    slow_delay: Duration,
    oversized_bytes: u64,
}

impl Default for FaultSpec {
    fn default() -> Self {
        Self {
            seed: 0,
            initial: false,
            probabilities: [0.0; 9],
            retry_after_429: DEFAULT_429_RETRY_AFTER,
            slow_delay: DEFAULT_SLOW_DELAY,
            oversized_bytes: DEFAULT_OVERSIZED_BYTES,
        }
    }
}

/// Why a fault spec was refused: the offending item (empty when the spec as a whole is wrong)
/// and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpecError {
    item: String,
    reason: String,
}

impl FaultSpecError {
    fn new(item: &str, reason: impl Into<String>) -> Self {
        Self { item: item.to_owned(), reason: reason.into() }
    }

    /// The item that was refused, as written (empty if the whole spec is at fault).
    pub fn item(&self) -> &str {
        &self.item
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.item.is_empty() {
            write!(f, "invalid fault spec: {}", self.reason)
        } else {
            write!(f, "invalid fault spec item `{}`: {}", self.item, self.reason)
        }
    }
}

impl std::error::Error for FaultSpecError {}

impl FaultSpec {
    /// Parses the compact text form (see the [module documentation](crate::faults)).
    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let mut parsed = Self::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(FaultSpecError::new(item, "expected key=value"));
            };
            let key = key.trim();
            let value = value.trim();
            let canonical = canonical_key(key).ok_or_else(|| {
                FaultSpecError::new(item, format!("unknown key `{key}`{}", KEYS_HINT))
            })?;
            if seen.contains(&canonical) {
                return Err(FaultSpecError::new(item, format!("`{canonical}` appears twice")));
            }
            seen.push(canonical);
            match canonical {
                "seed" => {
                    parsed.seed = value.parse().map_err(|_| {
                        FaultSpecError::new(item, "the seed must be an unsigned 64-bit integer")
                    })?;
                }
                "initial" => {
                    parsed.initial = parse_bool(value)
                        .ok_or_else(|| FaultSpecError::new(item, "expected true or false"))?;
                }
                _ => {
                    let Some(kind) = FaultKind::from_key(canonical) else {
                        return Err(FaultSpecError::new(item, "unknown key"));
                    };
                    let (probability, parameter) = match value.split_once(':') {
                        Some((probability, parameter)) => (probability, Some(parameter.trim())),
                        None => (value, None),
                    };
                    parsed.probabilities[kind.index()] = parse_probability(probability)
                        .map_err(|reason| FaultSpecError::new(item, reason))?;
                    if let Some(parameter) = parameter {
                        parsed
                            .set_parameter(kind, parameter)
                            .map_err(|reason| FaultSpecError::new(item, reason))?;
                    }
                }
            }
        }
        let total: f64 = FaultKind::EXCLUSIVE.iter().map(|kind| parsed.probability(*kind)).sum();
        if total > 1.0 + 1e-9 {
            return Err(FaultSpecError::new(
                "",
                format!(
                    "the probabilities of the faults other than `slow` add up to {total}, \
                     more than 1 (they exclude each other)"
                ),
            ));
        }
        Ok(parsed)
    }

    fn set_parameter(&mut self, kind: FaultKind, parameter: &str) -> Result<(), String> {
        match kind {
            FaultKind::TooManyRequests => {
                self.retry_after_429 = parameter.parse()?;
            }
            FaultKind::Slow => self.slow_delay = parse_duration(parameter)?,
            FaultKind::Oversized => self.oversized_bytes = parse_size(parameter)?,
            _ => return Err(format!("`{}` takes no `:` parameter", kind.key())),
        }
        Ok(())
    }

    /// The seed of the random sequence.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether initial requests get faults too (by default only polls do).
    pub fn applies_to_initial(&self) -> bool {
        self.initial
    }

    /// The probability of a kind of fault, from 0 to 1.
    pub fn probability(&self, kind: FaultKind) -> f64 {
        self.probabilities[kind.index()]
    }

    /// The delay of a `slow` fault.
    pub fn slow_delay(&self) -> Duration {
        self.slow_delay
    }

    /// The body size of an `oversized` fault, in bytes.
    pub fn oversized_bytes(&self) -> u64 {
        self.oversized_bytes
    }

    /// The delay hint of a `429` fault.
    pub fn retry_after_429(&self) -> RetryAfter {
        self.retry_after_429
    }

    /// True when no fault has a probability above zero.
    pub fn is_empty(&self) -> bool {
        self.probabilities.iter().all(|probability| *probability <= 0.0)
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, FaultSpecError> {
        Self::parse(spec)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed={}", self.seed)?;
        for kind in FaultKind::ALL {
            let probability = self.probability(kind);
            if probability <= 0.0 {
                continue;
            }
            write!(f, ",{}={probability}", kind.key())?;
            match kind {
                FaultKind::TooManyRequests if self.retry_after_429 != DEFAULT_429_RETRY_AFTER => {
                    write!(f, ":{}", self.retry_after_429)?;
                }
                FaultKind::Slow if self.slow_delay != DEFAULT_SLOW_DELAY => {
                    write!(f, ":{}ms", self.slow_delay.as_millis())?;
                }
                FaultKind::Oversized if self.oversized_bytes != DEFAULT_OVERSIZED_BYTES => {
                    write!(f, ":{}", self.oversized_bytes)?;
                }
                _ => {}
            }
        }
        if self.initial {
            f.write_str(",initial=true")?;
        }
        Ok(())
    }
}

const KEYS_HINT: &str = " (known: seed, 500, 503, 429, reset, slow, malformed, nostatus, \
                         oversized, cross-origin, initial)";

fn canonical_key(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    match key.as_str() {
        "seed" => Some("seed"),
        "initial" => Some("initial"),
        other => FaultKind::from_key(other).map(FaultKind::key),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_probability(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let value: f64 = text.parse().map_err(|_| format!("`{text}` is not a probability (0 to 1)"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("the probability {text} is outside 0 to 1"));
    }
    Ok(value)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, scale) = if let Some(digits) = lower.strip_suffix("ms") {
        (digits, 1)
    } else if let Some(digits) = lower.strip_suffix('s') {
        (digits, 1000)
    } else {
        return Err(format!("expected a duration such as 200ms or 2s, got `{text}`"));
    };
    let value: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration such as 200ms or 2s, got `{text}`"))?;
    let delay = Duration::from_millis(value.saturating_mul(scale));
    if delay > MAX_SLOW_DELAY {
        return Err(format!("the delay {text} is above the {}s cap", MAX_SLOW_DELAY.as_secs()));
    }
    Ok(delay)
}

fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let units: [(&str, u64); 4] = [("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("b", 1)];
    let (digits, scale) = units
        .iter()
        .find_map(|(suffix, scale)| lower.strip_suffix(suffix).map(|digits| (digits, *scale)))
        .unwrap_or((lower.as_str(), 1));
    let value: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("expected a size such as 32MiB, 512KiB or 1000000, got `{text}`"))?;
    let bytes = value.saturating_mul(scale);
    if bytes > MAX_OVERSIZED_BYTES {
        return Err(format!("the size {text} is above the 1 GiB cap"));
    }
    Ok(bytes)
}
