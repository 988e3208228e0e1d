//! [`Reply`]: a response before serialization, so faults can still change it, and the header
//! names the service writes.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::MockBody;
use crate::retry_after::RetryAfter;

/// The monitor header of the ARM routes.
pub(crate) const H_AZURE_ASYNC: &str = "azure-asyncoperation";
/// The monitor header of `POST /jobs`.
pub(crate) const H_OPERATION_LOCATION: &str = "operation-location";
/// The `operationResults` header.
pub(crate) const H_LOCATION: &str = "location";
/// The client's request id, echoed on every response.
pub(crate) const H_CLIENT_REQUEST_ID: &str = "x-ms-client-request-id";
/// The headers that carry polling URLs.
pub(crate) const POLLING_HEADERS: [&str; 3] = [H_AZURE_ASYNC, H_OPERATION_LOCATION, H_LOCATION];

/// A response before serialization, so faults can still change it.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: StatusCode,
    /// Headers to append, in order (values that are not valid header values are dropped).
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The body.
    pub(crate) body: ReplyBody,
    /// Pad the body with JSON whitespace to this many bytes (the `oversized` fault).
    pub(crate) pad_to: Option<u64>,
}

/// The body of a [`Reply`].
#[derive(Debug)]
pub(crate) enum ReplyBody {
    /// No body.
    Empty,
    /// A JSON document.
    Json(Value),
    /// Truncated JSON (the `malformed` fault).
    Malformed,
}

impl Reply {
    /// An empty reply with this status.
    pub(crate) fn new(status: StatusCode) -> Self {
        Self { status, headers: Vec::new(), body: ReplyBody::Empty, pad_to: None }
    }

    /// A JSON reply.
    pub(crate) fn json(status: StatusCode, body: Value) -> Self {
        Self { body: ReplyBody::Json(body), ..Self::new(status) }
    }

    /// An error reply: `{"error": {"code", "message"}}`.
    pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::json(status, json!({ "error": { "code": code, "message": message.into() } }))
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds the delay hint's header, if any.
    pub(crate) fn retry_after(mut self, retry_after: RetryAfter) -> Self {
        if let Some((name, value)) = retry_after.header() {
            self.headers.push((name, value));
        }
        self
    }

    /// Serializes the reply, echoing the client's request id.
    pub(crate) fn into_response(
        self,
        client_request_id: Option<&HeaderValue>,
    ) -> Response<MockBody> {
        let (content_type, head) = match self.body {
            ReplyBody::Empty => (None, Bytes::new()),
            ReplyBody::Json(value) => {
                (Some("application/json"), Bytes::from(value.to_string().into_bytes()))
            }
            ReplyBody::Malformed => {
                (Some("application/json"), Bytes::from_static(b"{\"status\": \"Runn"))
            }
        };
        let padding = self.pad_to.map_or(0, |size| size.saturating_sub(head.len() as u64));
        let mut response = Response::new(MockBody::padded(head, padding));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some(content_type) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.append(name, value);
            }
        }
        if let Some(id) = client_request_id {
            headers.insert(H_CLIENT_REQUEST_ID, id.clone());
        }
        response
    }
}
