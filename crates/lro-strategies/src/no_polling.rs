//! [`NoPolling`]: for operations that finish with their initial response.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, Uri};
use lro_core::{InitialResponse, LroError, Strategy, StrategyPolling};

/// azure-core's `NoPolling` / `AsyncNoPolling` (one type serves both pollers): the operation is
/// done at once, its status is `succeeded`, and the resource is the deserialized initial
/// response. Its continuation token holds the initial response, so it round-trips.
///
/// ```
/// use lro_strategies::NoPolling;
///
/// let method = NoPolling::method::<serde_json::Value>();
/// # let _ = method;
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[allow(clippy::exhaustive_structs)] // a unit value, used as `NoPolling`
pub struct NoPolling;

impl NoPolling {
    /// The polling method, for either poller.
    pub fn method<T>() -> StrategyPolling<NoPolling, T> {
        StrategyPolling::new(NoPolling)
    }
}

impl Strategy for NoPolling {
    fn start(&mut self, _initial: &InitialResponse) -> Result<Arc<str>, LroError> {
        // azure-core's NoPolling reports the lower-case word.
        Ok("succeeded".into())
    }

    fn poll_uri(&self) -> Option<Uri> {
        None
    }

    fn read_poll(&mut self, _response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
        Ok("succeeded".into())
    }

    fn name(&self) -> &'static str {
        "no-polling"
    }
}
