//! [`ContinuationToken`]: an operation's state as one printable string, to resume it later.
//!
//! A token is the standard base64 of a compact JSON envelope `{"version": 1, "data": …}` — the
//! envelope Python azure-core (≥ 1.38) uses. Tokens are untrusted input: decoding checks the
//! size, the base64, the JSON and the version, and reports each problem as
//! [`LroError::InvalidContinuationToken`], never a panic.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::LroError;
use crate::initial::{InitialResponse, RequestHead};

/// The only envelope version this crate writes and reads.
pub const TOKEN_VERSION: u64 = 1;

/// Tokens longer than this are refused before any decoding (64 MiB).
pub const MAX_TOKEN_LEN: usize = 64 * 1024 * 1024;

/// Response headers a token keeps (azure-core's allow-list): enough to poll, never credentials.
pub const TOKEN_RESPONSE_HEADERS: [&str; 5] =
    ["operation-location", "azure-asyncoperation", "location", "content-type", "retry-after"];

/// Request headers a token keeps.
pub const TOKEN_REQUEST_HEADERS: [&str; 1] = ["x-ms-client-request-id"];

const NOT_A_TOKEN: &str = "this doesn't look like a continuation token the SDK created";

/// An opaque, versioned, printable token from which an operation can be resumed.
///
/// Get one from a poller or from an error ([`LroError::continuation_token`]); store it as a
/// string; resume with `LroPoller::from_continuation_token` or its async twin. Its `Debug`
/// output does not print the content, which includes the operation's URLs.
///
/// ```
/// use lro_core::ContinuationToken;
///
/// let token: ContinuationToken = "eyJ2ZXJzaW9uIjoxLCJkYXRhIjp7fX0=".parse()?;
/// assert_eq!(token.to_string(), "eyJ2ZXJzaW9uIjoxLCJkYXRhIjp7fX0=");
///
/// // Anything else is refused with a clear message, never a panic.
/// let err = "not a token!".parse::<ContinuationToken>().unwrap_err();
/// assert!(err.to_string().contains("doesn't look like a continuation token"));
/// # Ok::<(), lro_core::LroError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ContinuationToken(String);

impl ContinuationToken {
    /// Wraps a string without checking it; decoding checks it later.
    pub fn from_string(token: String) -> Self {
        ContinuationToken(token)
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token text, by value.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Wraps `data` in a version-1 envelope.
    pub fn encode<T: Serialize>(data: &T) -> Result<Self, LroError> {
        #[derive(Serialize)]
        struct Envelope<'a, T> {
            version: u64,
            data: &'a T,
        }
        let json = serde_json::to_vec(&Envelope { version: TOKEN_VERSION, data })
            .map_err(|e| LroError::invalid_token(format!("the state is not serializable: {e}")))?;
        Ok(ContinuationToken(BASE64.encode(json)))
    }

    /// Reads the envelope's `data` as `T`, checking size, base64, JSON and version.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, LroError> {
        let text = self.0.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(LroError::invalid_token(format!(
                "the token is {} bytes long; at most {MAX_TOKEN_LEN} are accepted",
                text.len()
            )));
        }
        let raw = BASE64.decode(text).map_err(|_| LroError::invalid_token(NOT_A_TOKEN))?;
        if raw.first() == Some(&0x80) && matches!(raw.get(1), Some(1..=5)) {
            return Err(LroError::invalid_token(
                "this is a pickle-based token from azure-core before 1.38, which cannot be read; \
                 start the operation again or resume it with the SDK that created it",
            ));
        }
        #[derive(Deserialize)]
        struct Envelope {
            version: Option<serde_json::Value>,
            data: Option<serde_json::Value>,
        }
        let envelope: Envelope = serde_json::from_slice(&raw)
            .map_err(|_| LroError::invalid_token("invalid continuation token format"))?;
        match envelope.version {
            None => {
                return Err(LroError::invalid_token(
                    "invalid continuation token format: no version",
                ));
            }
            Some(v) if v.as_u64() != Some(TOKEN_VERSION) => {
                return Err(LroError::invalid_token(format!(
                    "token version {v} is not supported (this library reads version {TOKEN_VERSION})"
                )));
            }
            Some(_) => {}
        }
        let data = envelope
            .data
            .ok_or_else(|| LroError::invalid_token("invalid continuation token format: no data"))?;
        serde_json::from_value(data)
            .map_err(|e| LroError::invalid_token(format!("unexpected token content: {e}")))
    }
}

impl fmt::Display for ContinuationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContinuationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContinuationToken({} chars)", self.0.len())
    }
}

impl FromStr for ContinuationToken {
    type Err = LroError;

    /// Parses a token, checking that it is base64 of a version-1 envelope.
    fn from_str(s: &str) -> Result<Self, LroError> {
        let token = ContinuationToken(s.trim().to_owned());
        token.decode::<serde_json::Value>()?;
        Ok(token)
    }
}

impl Serialize for ContinuationToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ContinuationToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ContinuationToken)
    }
}

/// The content of a version-1 token, as Python azure-core writes it, plus this library's
/// optional `progress` (which Python ignores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenState {
    /// The initial request (method, URL, allow-listed headers), if known.
    pub request: Option<RequestRecord>,
    /// The initial response.
    pub response: ResponseRecord,
    /// azure-core's pipeline context: `{"deserialized_data": <initial body as JSON or null>}`.
    #[serde(default)]
    pub context: serde_json::Value,
    /// Where polling had got to, so a resumed operation need not start over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
}

/// The initial request inside a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Allow-listed headers ([`TOKEN_REQUEST_HEADERS`]).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The initial response inside a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseRecord {
    /// HTTP status code.
    pub status_code: u16,
    /// Allow-listed headers ([`TOKEN_RESPONSE_HEADERS`]).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body, standard base64.
    #[serde(default)]
    pub content: String,
}

impl TokenState {
    /// The state of an operation that has got as far as `initial` (and `progress`).
    pub fn new(initial: &InitialResponse, progress: Option<serde_json::Value>) -> Self {
        let head = initial.request();
        let response = initial.response();
        let body = response.body();
        let deserialized = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
        };
        TokenState {
            request: Some(RequestRecord {
                method: head.method().to_string(),
                url: head.uri().to_string(),
                headers: allowed(head.headers(), &TOKEN_REQUEST_HEADERS),
            }),
            response: ResponseRecord {
                status_code: response.status().as_u16(),
                headers: allowed(response.headers(), &TOKEN_RESPONSE_HEADERS),
                content: BASE64.encode(body),
            },
            context: serde_json::json!({ "deserialized_data": deserialized }),
            progress,
        }
    }

    /// Rebuilds the initial request and response, checking every field.
    pub fn initial_response(&self) -> Result<InitialResponse, LroError> {
        let request = self
            .request
            .as_ref()
            .ok_or_else(|| LroError::invalid_token("the token holds no initial request"))?;
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| LroError::invalid_token("the token's request method is invalid"))?;
        let uri: Uri = request
            .url
            .parse()
            .map_err(|_| LroError::invalid_token("the token's request URL is invalid"))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(LroError::invalid_token("the token's request URL is not absolute"));
        }
        let status = StatusCode::from_u16(self.response.status_code)
            .map_err(|_| LroError::invalid_token("the token's response status is invalid"))?;
        let body = BASE64
            .decode(self.response.content.as_bytes())
            .map_err(|_| LroError::invalid_token("the token's response content is not base64"))?;
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = header_map(&self.response.headers)?;
        let head = RequestHead::new(method, uri, header_map(&request.headers)?);
        Ok(InitialResponse::new(head, response))
    }
}

fn allowed(headers: &HeaderMap, names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, LroError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| LroError::invalid_token(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| LroError::invalid_token(format!("invalid value for header {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(json: &str) -> String {
        BASE64.encode(json)
    }

    fn message(token: &str) -> String {
        match token.parse::<ContinuationToken>() {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    fn sample() -> InitialResponse {
        let mut response = Response::new(Bytes::from_static(br#"{"status":"Running"}"#));
        *response.status_mut() = StatusCode::ACCEPTED;
        let headers = response.headers_mut();
        headers.insert("operation-location", HeaderValue::from_static("http://host/op"));
        headers.insert("set-cookie", HeaderValue::from_static("secret=1"));
        let mut request_headers = HeaderMap::new();
        request_headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
        request_headers.insert("x-ms-client-request-id", HeaderValue::from_static("abc"));
        let head = RequestHead::new(
            Method::PUT,
            "http://host/resource".parse().unwrap_or_default(),
            request_headers,
        );
        InitialResponse::new(head, response)
    }

    #[test]
    fn state_round_trips_and_keeps_only_allow_listed_headers() {
        let state = TokenState::new(&sample(), Some(serde_json::json!({"url": "http://host/op"})));
        let token = ContinuationToken::encode(&state)
            .unwrap_or_else(|_| ContinuationToken::from_string(String::new()));
        let text = String::from_utf8(BASE64.decode(token.as_str()).unwrap_or_default())
            .unwrap_or_default();
        assert!(!text.contains("secret"), "credentials leaked into the token: {text}");
        assert!(text.starts_with(r#"{"version":1,"data":{"request":"#));

        let back: TokenState = token.decode().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, state);
        let initial = back.initial_response().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(initial.request().method(), Method::PUT);
        assert_eq!(initial.request().headers()["x-ms-client-request-id"], "abc");
        assert_eq!(initial.response().status(), StatusCode::ACCEPTED);
        assert_eq!(initial.response().headers()["operation-location"], "http://host/op");
        assert_eq!(initial.response().body(), &br#"{"status":"Running"}"#[..]);
    }

    #[test]
    fn malformed_tokens_are_refused_with_clear_messages() {
        assert!(message("%%%").contains("doesn't look like a continuation token"));
        assert!(message(&encoded("not json")).contains("invalid continuation token format"));
        assert!(message(&encoded(r#"{"data":{}}"#)).contains("no version"));
        assert!(
            message(&encoded(r#"{"version":2,"data":{}}"#)).contains("version 2 is not supported")
        );
        assert!(message(&encoded(r#"{"version":"1","data":{}}"#)).contains("not supported"));
        assert!(message(&encoded(r#"{"version":1}"#)).contains("no data"));
        assert!(message(&BASE64.encode([0x80, 4, 0x95])).contains("pickle"));
        assert_eq!(message(&encoded(r#"{"version":1,"data":{}}"#)), "accepted");
    }

    #[test]
    fn tokens_over_the_size_limit_are_refused_before_decoding() {
        let huge = "A".repeat(MAX_TOKEN_LEN + 4);
        assert!(message(&huge).contains("at most"));
    }

    #[test]
    fn hostile_state_fields_are_errors_not_panics() {
        let bad = [
            r#"{"request":null,"response":{"status_code":200}}"#,
            r#"{"request":{"method":"G T","url":"http://h/"},"response":{"status_code":200}}"#,
            r#"{"request":{"method":"GET","url":"/relative"},"response":{"status_code":200}}"#,
            r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status_code":9999}}"#,
            r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status_code":200,"content":"@@"}}"#,
            r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status_code":200,"headers":{"bad name":"x"}}}"#,
            r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status_code":200,"headers":{"location":"a\nb"}}}"#,
        ];
        for data in bad {
            let token = ContinuationToken::from_string(encoded(&format!(
                r#"{{"version":1,"data":{data}}}"#
            )));
            let result = token.decode::<TokenState>().and_then(|s| s.initial_response());
            assert!(
                matches!(result, Err(LroError::InvalidContinuationToken(_))),
                "{data} gave {result:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_print_the_token() {
        let token = ContinuationToken::from_string("c2VjcmV0".into());
        assert_eq!(format!("{token:?}"), "ContinuationToken(8 chars)");
    }
}
