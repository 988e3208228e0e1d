//! [`Strategy`]: the protocol-specific decisions of a polling algorithm, with no I/O in them.
//!
//! A strategy answers questions about responses — what is the status, where to poll, what to
//! GET at the end — and the [`Engine`](crate::Engine) turns the answers into actions. Python
//! azure-core calls this layer a "long-running operation algorithm"
//! (`OperationResourcePolling`, `LocationPolling`, ...). Built-in strategies live in the
//! `lro-strategies` crate.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Response, Uri};

use crate::error::LroError;
use crate::initial::InitialResponse;

/// The decisions of one polling algorithm, written once for both blocking and async polling.
///
/// Every method is pure: it reads a response and updates the strategy's own state. Status
/// words are returned as the service spelled them; the engine classifies them with its
/// [`StatusVocabulary`](crate::StatusVocabulary).
///
/// A minimal strategy that polls the `Location` header until the service stops answering 202:
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http::{Response, StatusCode, Uri};
/// use lro_core::{InitialResponse, LroError, Strategy};
///
/// #[derive(Debug, Default)]
/// struct FollowLocation { url: Option<Uri> }
///
/// impl Strategy for FollowLocation {
///     fn start(&mut self, initial: &InitialResponse) -> Result<Arc<str>, LroError> {
///         let response = initial.response();
///         let location = response.headers().get("location").and_then(|v| v.to_str().ok());
///         self.url = location.and_then(|v| v.parse().ok());
///         match &self.url {
///             Some(_) => Ok("InProgress".into()),
///             None => Err(LroError::bad_response(response, "no Location header")),
///         }
///     }
///     fn poll_uri(&self) -> Option<Uri> {
///         self.url.clone()
///     }
///     fn read_poll(&mut self, response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
///         Ok(if response.status() == StatusCode::ACCEPTED { "InProgress" } else { "Succeeded" }.into())
///     }
/// }
/// ```
pub trait Strategy: Send + Sync + fmt::Debug {
    /// Reads the initial response and returns the first status word.
    ///
    /// An error here is returned from the poller's constructor, as in azure-core.
    fn start(&mut self, initial: &InitialResponse) -> Result<Arc<str>, LroError>;

    /// The absolute URL to GET for the current status, `None` if there is nothing to poll.
    fn poll_uri(&self) -> Option<Uri>;

    /// Whether [`poll_uri`](Strategy::poll_uri) would give `uri` now: the engine asks before
    /// a poll that follows the one before without a wait, with that poll's URI, and reuses it
    /// rather than have it built and checked again. Answer `true` only when sure, and only when
    /// the answer costs less than `poll_uri` (a comparison of text, not a parse). Default:
    /// `false`, which makes the engine ask `poll_uri` every time.
    fn polls_uri(&self, uri: &Uri) -> bool {
        let _ = uri;
        false
    }

    /// Reads the response to a status poll and returns the status word.
    fn read_poll(&mut self, response: &Response<Bytes>) -> Result<Arc<str>, LroError>;

    /// Once the status is a terminal success: the absolute URL to GET for the final resource,
    /// or `None` when `latest` (the last response) is the result. Default: `None`.
    fn final_uri(&self, latest: &Response<Bytes>) -> Result<Option<Uri>, LroError> {
        let _ = latest;
        Ok(None)
    }

    /// Checks the response of the final GET. Default: accepts any response.
    fn read_final(&mut self, response: &Response<Bytes>) -> Result<(), LroError> {
        let _ = response;
        Ok(())
    }

    /// The delay the service asks for in `response`. Default: [`delay::retry_after`](crate::delay::retry_after).
    fn retry_after(&self, response: &Response<Bytes>, now: SystemTime) -> Option<Duration> {
        crate::delay::retry_after(response.headers(), now)
    }

    /// How far the operation has got, 0 to 100, when the service says so (ARM's and Azure's
    /// status monitors send `percentComplete`): read by progress displays, never by polling.
    /// `None` (the default) when the service does not say.
    fn percent_complete(&self) -> Option<u8> {
        None
    }

    /// A short name for spans and metric labels (`"operation-resource"`, `"location"`, ...):
    /// a fixed word, never data from the service. Default: `"custom"`.
    fn name(&self) -> &'static str {
        "custom"
    }

    /// The strategy's progress, for continuation tokens (e.g. a polling URL that changed).
    /// Default: nothing to save.
    fn save(&self) -> Option<serde_json::Value> {
        None
    }

    /// Restores progress saved by [`save`](Strategy::save), after [`start`](Strategy::start)
    /// has read the token's initial response. `saved` comes from an untrusted token: check it.
    /// Default: ignores it (polling resumes from the initial response, as in azure-core).
    fn restore(&mut self, saved: &serde_json::Value) -> Result<(), LroError> {
        let _ = saved;
        Ok(())
    }
}

impl<S: Strategy + ?Sized> Strategy for Box<S> {
    fn start(&mut self, initial: &InitialResponse) -> Result<Arc<str>, LroError> {
        (**self).start(initial)
    }
    fn poll_uri(&self) -> Option<Uri> {
        (**self).poll_uri()
    }
    fn polls_uri(&self, uri: &Uri) -> bool {
        (**self).polls_uri(uri)
    }
    fn read_poll(&mut self, response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
        (**self).read_poll(response)
    }
    fn final_uri(&self, latest: &Response<Bytes>) -> Result<Option<Uri>, LroError> {
        (**self).final_uri(latest)
    }
    fn read_final(&mut self, response: &Response<Bytes>) -> Result<(), LroError> {
        (**self).read_final(response)
    }
    fn retry_after(&self, response: &Response<Bytes>, now: SystemTime) -> Option<Duration> {
        (**self).retry_after(response, now)
    }
    fn percent_complete(&self) -> Option<u8> {
        (**self).percent_complete()
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn save(&self) -> Option<serde_json::Value> {
        (**self).save()
    }
    fn restore(&mut self, saved: &serde_json::Value) -> Result<(), LroError> {
        (**self).restore(saved)
    }
}
