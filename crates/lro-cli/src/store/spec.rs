//! How to poll a stored operation: the `spec` a submitter writes beside the token, and the
//! strategy and options a worker builds from it with its own credentials, trusted origins and
//! token key.
//!
//! The spec is not signed (the token is), so it holds nothing that decides where credentials
//! go: which origins beyond the token's own may be polled is the worker's `--allow-origin`,
//! never the store's. Whoever can write the database can change how an operation is polled,
//! not where a worker's credentials are sent.

use std::time::Duration;

use http::HeaderMap;
use lro_core::{OriginPolicy, PollOptions, RetryPolicy, Strategy, TokenKey};
use lro_strategies::FinalStateVia;
use serde::{Deserialize, Serialize};

use crate::Flavour;
use crate::settings::Settings;

/// The most retries per request a spec can ask of a worker: the spec is not signed, and a
/// service that answers 503 forever must not keep an operation (and its share of the worker's
/// budget) for ever. More is lowered to this.
pub(crate) const MAX_SPEC_RETRIES: u32 = 100;

/// What a worker needs to poll an operation, besides its token and its own credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    /// `base` or `arm`.
    pub(crate) flavour: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) final_state_via: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) interval_ms: Option<u64>,
    pub(crate) retries: u32,
}

impl Spec {
    /// The spec of `lro submit`'s settings.
    pub(crate) fn of(settings: &Settings) -> Self {
        Spec {
            flavour: match settings.flavour {
                Flavour::Arm => "arm",
                Flavour::Base => "base",
            }
            .to_owned(),
            final_state_via: settings.final_state_via.map(|v| v.to_string()),
            interval_ms: settings
                .interval
                .map(|i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX)),
            retries: settings.retry.max_retries(),
        }
    }

    /// The strategy and options to poll with: the spec's, with `headers` on every poll (the
    /// worker's own credentials), polls allowed to the `trusted` origins beyond the token's own, tokens
    /// signed and checked with `key`.
    pub(crate) fn polling(
        &self,
        headers: &HeaderMap,
        trusted: &[String],
        key: &TokenKey,
    ) -> Result<(Box<dyn Strategy>, PollOptions), String> {
        let mut builder = Flavour::named(&self.flavour)?.builder();
        if let Some(via) = &self.final_state_via {
            let via: FinalStateVia = via.parse().map_err(|e| format!("{e}"))?;
            builder = builder.final_state_via(via);
        }
        if let Some(ms) = self.interval_ms {
            builder = builder.interval(Duration::from_millis(ms));
        }
        for (name, value) in headers {
            if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
                builder = builder.header(name.clone(), value.clone());
            }
        }
        let mut origins = OriginPolicy::same_origin();
        for url in trusted {
            origins = origins.allow(url).ok_or_else(|| format!("{url:?} is not a URL"))?;
        }
        let key = key.clone();
        let (strategy, options) = builder
            .retry(RetryPolicy::builder().max_retries(self.retries.min(MAX_SPEC_RETRIES)).build())
            // Signed tokens only: an unsigned one planted in the store could name any URL
            // (an internal host), whose answer the worker would store as the result.
            .poll_options(|o| o.origins(origins).token_key(key).signed_tokens_only(true))
            .into_parts();
        Ok((Box::new(strategy), options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_asking_for_endless_retries_gets_the_workers_most() {
        let spec: Spec =
            serde_json::from_value(serde_json::json!({"flavour": "arm", "retries": u32::MAX}))
                .expect("a spec");
        let key = TokenKey::new("a-key-long-enough-for-the-test-0123456789").expect("key");
        let (_, options) = spec.polling(&HeaderMap::new(), &[], &key).expect("options");
        assert_eq!(options.retry().max_retries(), MAX_SPEC_RETRIES);
    }
}
