//! [`RetryAfter`]: the delay hint the service advertises, and its `x-mock-retry-after` grammar
//! (shared by the configuration, the control headers and the `429` fault).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// The largest `Retry-After` the service will advertise (seconds, milliseconds or date offset):
/// one hour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The delay hint the service puts on initial responses and in-progress polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RetryAfter {
    /// No delay header.
    #[default]
    None,
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `retry-after-ms: <milliseconds>`.
    Millis(u64),
    /// `Retry-After: <HTTP-date>`, this many seconds after the response is built.
    HttpDate(u64),
}

impl RetryAfter {
    /// The header this mode adds to a response, if any, computed now.
    pub fn header(&self) -> Option<(&'static str, String)> {
        match *self {
            Self::None => None,
            Self::Seconds(seconds) => Some(("retry-after", seconds.to_string())),
            Self::Millis(millis) => Some(("retry-after-ms", millis.to_string())),
            Self::HttpDate(seconds) => {
                let when = SystemTime::now() + Duration::from_secs(seconds);
                Some(("retry-after", httpdate::fmt_http_date(when)))
            }
        }
    }
}

/// Parses the `x-mock-retry-after` grammar: `none`, `<seconds>`, `ms:<millis>` or
/// `date:<seconds from now>`; values above [`MAX_RETRY_AFTER`] are refused.
impl FromStr for RetryAfter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let number = |digits: &str, unit: &str, per_second: u64| -> Result<u64, String> {
            let value: u64 = digits.trim().parse().map_err(|_| {
                format!("expected none, <seconds>, ms:<millis> or date:<seconds>, got {text:?}")
            })?;
            if value > MAX_RETRY_AFTER.as_secs() * per_second {
                return Err(format!("{value}{unit} is above the one-hour cap"));
            }
            Ok(value)
        };
        if text.eq_ignore_ascii_case("none") {
            Ok(Self::None)
        } else if let Some(millis) = strip_prefix_ci(text, "ms:") {
            number(millis, "ms", 1000).map(Self::Millis)
        } else if let Some(seconds) = strip_prefix_ci(text, "date:") {
            number(seconds, "s", 1).map(Self::HttpDate)
        } else {
            number(text, "s", 1).map(Self::Seconds)
        }
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Seconds(seconds) => write!(f, "{seconds}"),
            Self::Millis(millis) => write!(f, "ms:{millis}"),
            Self::HttpDate(seconds) => write!(f, "date:{seconds}"),
        }
    }
}

/// `text` without `prefix`, compared ignoring ASCII case.
fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}
