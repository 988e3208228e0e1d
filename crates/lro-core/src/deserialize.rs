//! Deserialization callbacks: how the final response becomes the caller's `T`.
//!
//! A callback receives the final response (body, headers, status) and returns the resource.
//! Three ready-made ones cover the usual cases: [`json()`], [`bytes()`] and [`none()`].

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use serde::de::DeserializeOwned;

use crate::transport::BoxError;

/// A deserialization callback, shared between a poller and its polling method.
pub type Deserializer<T> = Arc<dyn Fn(&Response<Bytes>) -> Result<T, BoxError> + Send + Sync>;

/// Wraps a closure as a [`Deserializer`].
///
/// ```
/// use lro_core::deserialize;
///
/// let status_code = deserialize::with(|response| Ok(response.status().as_u16()));
/// # let _ = status_code;
/// ```
pub fn with<T, F>(f: F) -> Deserializer<T>
where
    F: Fn(&Response<Bytes>) -> Result<T, BoxError> + Send + Sync + 'static,
{
    Arc::new(f)
}

/// Parses the body as JSON into `T`.
///
/// An empty body is read as JSON `null`, so `Option<U>` gives `None` and
/// `serde_json::Value` gives `Null` (azure-core returns `None` for an empty final body), while
/// a `T` that cannot be null reports a decode error.
///
/// ```
/// use bytes::Bytes;
/// use http::Response;
/// use lro_core::deserialize;
///
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Widget { name: String }
///
/// let widget = deserialize::json::<Widget>();
/// let response = Response::new(Bytes::from_static(br#"{"name":"w1","extra":true}"#));
/// assert_eq!(widget(&response)?, Widget { name: "w1".into() });
///
/// let maybe = deserialize::json::<Option<Widget>>();
/// assert_eq!(maybe(&Response::new(Bytes::new()))?, None);
/// # Ok::<(), lro_core::BoxError>(())
/// ```
pub fn json<T: DeserializeOwned + 'static>() -> Deserializer<T> {
    Arc::new(|response: &Response<Bytes>| {
        let body = response.body();
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"null" } else { body };
        serde_json::from_slice(body).map_err(BoxError::from)
    })
}

/// Returns the body exactly as the service sent it (shared, not copied).
pub fn bytes() -> Deserializer<Bytes> {
    Arc::new(|response: &Response<Bytes>| Ok(response.body().clone()))
}

/// Ignores the body: for operations whose result is only "it worked".
pub fn none() -> Deserializer<()> {
    Arc::new(|_: &Response<Bytes>| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &'static [u8]) -> Response<Bytes> {
        Response::new(Bytes::from_static(body))
    }

    #[test]
    fn json_reads_empty_bodies_as_null() {
        assert_eq!(json::<Option<u32>>()(&response(b"")).ok(), Some(None));
        assert_eq!(
            json::<serde_json::Value>()(&response(b" \n")).ok(),
            Some(serde_json::Value::Null)
        );
        assert!(json::<u32>()(&response(b"")).is_err());
    }

    #[test]
    fn json_reports_invalid_bodies() {
        assert!(json::<serde_json::Value>()(&response(b"{not json")).is_err());
    }

    #[test]
    fn bytes_returns_the_body_unchanged() {
        let body = b"\xff\x00 not utf-8";
        assert_eq!(bytes()(&response(body)).ok().as_deref(), Some(&body[..]));
    }

    #[test]
    fn none_ignores_the_body() {
        assert!(none()(&response(b"{not json")).is_ok());
    }
}
