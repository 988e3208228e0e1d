//! The control headers of an initial request (`x-mock-outcome`, `x-mock-polls`,
//! `x-mock-retry-after`, `x-mock-final-state`, `x-mock-faults`), read into a [`Control`].

use http::{HeaderMap, StatusCode};

use crate::config::{InitialHeaders, MockConfig, Outcome, Progression};
use crate::faults::FaultSpec;
use crate::reply::Reply;
use crate::retry_after::RetryAfter;

/// Per-request control, read from the `x-mock-*` headers of an initial request.
#[derive(Debug)]
pub(crate) struct Control {
    /// `x-mock-outcome` (default `Succeeded`).
    pub(crate) outcome: Outcome,
    /// `x-mock-polls`, else the server's progression.
    pub(crate) progression: Progression,
    /// `x-mock-retry-after`, else the server's delay hint.
    pub(crate) retry_after: RetryAfter,
    /// `x-mock-final-state`, else the server's choice; `None` leaves it to the route.
    pub(crate) headers: Option<InitialHeaders>,
    /// A spec from `x-mock-faults`, with its generator.
    pub(crate) faults: Option<(FaultSpec, fastrand::Rng)>,
}

impl Control {
    /// Reads the control headers, falling back to `config`; a malformed one answers `400`
    /// naming it.
    pub(crate) fn parse(headers: &HeaderMap, config: &MockConfig) -> Result<Self, Reply> {
        let polls = header(headers, "x-mock-polls", |text| {
            text.trim()
                .parse::<u32>()
                .map_err(|_| format!("expected a number of polls, got {text:?}"))
        })?;
        Ok(Self {
            outcome: header(headers, "x-mock-outcome", str::parse)?.unwrap_or_default(),
            progression: polls.map_or(config.progression, Progression::Polls),
            retry_after: header(headers, "x-mock-retry-after", str::parse)?
                .unwrap_or(config.retry_after),
            headers: header(headers, "x-mock-final-state", str::parse)?.or(config.initial_headers),
            faults: header(headers, "x-mock-faults", |text| {
                FaultSpec::parse(text).map_err(|error| error.to_string())
            })?
            .map(|spec| {
                let rng = spec.rng();
                (spec, rng)
            }),
        })
    }
}

/// The header `name` parsed with `parse`, if present; `400` naming it if it is malformed.
fn header<T>(
    headers: &HeaderMap,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, Reply> {
    let Some(value) = headers.get(name) else { return Ok(None) };
    let bad = |reason: String| {
        Reply::error(StatusCode::BAD_REQUEST, "InvalidMockHeader", format!("{name}: {reason}"))
    };
    let text = value.to_str().map_err(|_| bad("not visible ASCII".to_owned()))?;
    parse(text).map(Some).map_err(bad)
}
