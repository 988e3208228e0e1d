//! [`ContinuationToken`]: an operation's state as one printable string, to resume it later.
//!
//! A token is the standard base64 of a compact JSON envelope `{"version": 1, "data": …}` — the
//! envelope Python azure-core (≥ 1.38) uses. Tokens are untrusted input: decoding checks the
//! size, the base64, the JSON and the version, and reports each problem as a [`TokenError`]
//! (inside [`LroError::InvalidContinuationToken`](crate::LroError::InvalidContinuationToken)
//! when it stops a poller), never a panic. Decoding holds at most a few times the
//! token's size in memory: the body copy azure-core keeps under `context` is skipped, saved
//! progress is capped at [`MAX_PROGRESS_LEN`] and header maps at [`MAX_TOKEN_HEADERS`] entries.
//!
//! Everyday code needs only [`ContinuationToken`] (and a [`TokenKey`] to sign); the wire
//! records ([`TokenState`], [`RequestRecord`], [`ResponseRecord`]) are for tools that inspect
//! or build tokens, and stay in this module.
//!
//! With a [`TokenKey`], tokens are signed: the envelope gains a `"mac"` member, an HMAC-SHA256
//! of the exact `data` bytes. Python azure-core ignores the member, so it still resumes signed
//! tokens; this library refuses a token whose tag does not match before anything is sent.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;

use crate::initial::{InitialResponse, RequestHead};
use crate::redact::{ShownUrl, TextNames};

/// The only envelope version this crate writes and reads.
pub const TOKEN_VERSION: u64 = 1;

/// Tokens longer than this are refused before any decoding: 16 MiB.
///
/// A token holds the initial response twice (its bytes, and azure-core's parsed copy), base64
/// on base64: about 3.1 times the body. The largest realistic one, an ARM PUT answered with a
/// 4 MiB resource body (the ARM template size limit), measures 12.4 MiB
/// (`tests/token_limits.rs` prints it), so 16 MiB leaves room and refuses anything far larger.
pub const MAX_TOKEN_LEN: usize = 16 * 1024 * 1024;

/// Saved progress larger than this (as JSON) makes a token invalid: 64 KiB. Real progress is a
/// URL or two.
pub const MAX_PROGRESS_LEN: usize = 64 * 1024;

/// A header map in a token with more entries than this makes it invalid (the allow-lists name
/// six headers).
pub const MAX_TOKEN_HEADERS: usize = 32;

/// The prefix of a signed token's `mac` member.
const MAC_PREFIX: &str = "hmac-sha256:";

/// Mixed into every tag, so that a key used elsewhere cannot sign tokens by accident.
const MAC_CONTEXT: &[u8] = b"lro continuation token v1\0";

/// Response headers a token keeps (azure-core's allow-list): enough to poll, never credentials.
pub const TOKEN_RESPONSE_HEADERS: [&str; 5] =
    ["operation-location", "azure-asyncoperation", "location", "content-type", "retry-after"];

/// Request headers a token keeps.
pub const TOKEN_REQUEST_HEADERS: [&str; 1] = ["x-ms-client-request-id"];

const NOT_A_TOKEN: &str = "this doesn't look like a continuation token the SDK created";

/// A continuation token that could not be read (or written): what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    message: String,
}

impl TokenError {
    /// A token error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        TokenError { message: message.into() }
    }

    /// What is wrong with the token.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// An opaque, versioned, printable token from which an operation can be resumed.
///
/// Get one from a poller or from an error ([`LroError::continuation_token`](crate::LroError::continuation_token)); store it as a
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
/// # Ok::<(), lro_core::TokenError>(())
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

    /// Wraps `data` in a version-1 envelope. Fails if `data` cannot be serialized, or if the
    /// token would be longer than [`MAX_TOKEN_LEN`] (it could not be decoded).
    pub fn encode<T: Serialize>(data: &T) -> Result<Self, TokenError> {
        Self::seal(data, None)
    }

    /// Wraps `data` in a version-1 envelope signed with `key` (see [`TokenKey`]); fails as
    /// [`encode`](Self::encode) does.
    pub fn encode_signed<T: Serialize>(data: &T, key: &TokenKey) -> Result<Self, TokenError> {
        Self::seal(data, Some(key))
    }

    fn seal<T: Serialize>(data: &T, key: Option<&TokenKey>) -> Result<Self, TokenError> {
        let data = serde_json::to_string(data)
            .map_err(|e| TokenError::new(format!("the state is not serializable: {e}")))?;
        // Written by hand so that the tag covers exactly the `data` bytes in the token.
        let mut json = format!("{{\"version\":{TOKEN_VERSION},\"data\":{data}");
        if let Some(key) = key {
            json.push_str(&format!(",\"mac\":\"{MAC_PREFIX}{}\"", BASE64.encode(key.tag(&data))));
        }
        json.push('}');
        let token = BASE64.encode(json);
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::new(format!(
                "the token would be {} bytes long; at most {MAX_TOKEN_LEN} can be read back",
                token.len()
            )));
        }
        Ok(ContinuationToken(token))
    }

    /// Reads the envelope's `data` as `T`, checking size, base64, JSON and version. A
    /// signature, if any, is not checked (see [`decode_verified`](Self::decode_verified)).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, TokenError> {
        let raw = self.unwrap_base64()?;
        let envelope = Envelope::parse(&raw)?;
        envelope.data()
    }

    /// As [`decode`](Self::decode), checking the signature against `key` first: a signed token
    /// whose tag does not match is refused; an unsigned token is read and reported
    /// [`TokenIntegrity::Unsigned`] (the caller decides whether to trust it).
    pub fn decode_verified<T: DeserializeOwned>(
        &self,
        key: &TokenKey,
    ) -> Result<(T, TokenIntegrity), TokenError> {
        let raw = self.unwrap_base64()?;
        let envelope = Envelope::parse(&raw)?;
        let integrity = match &envelope.mac {
            None => TokenIntegrity::Unsigned,
            Some(mac) => {
                let tag = mac
                    .strip_prefix(MAC_PREFIX)
                    .and_then(|tag| BASE64.decode(tag).ok())
                    .ok_or_else(|| TokenError::new("the token's signature is malformed"))?;
                let data = envelope.data.map_or("", |d| d.get());
                if !key.verify(data, &tag) {
                    return Err(TokenError::new(
                        "the token's signature does not match: it was altered, or signed with \
                         another key",
                    ));
                }
                TokenIntegrity::Verified
            }
        };
        Ok((envelope.data()?, integrity))
    }

    /// The envelope's bytes, after the size, base64 and pickle checks.
    fn unwrap_base64(&self) -> Result<Vec<u8>, TokenError> {
        let text = self.0.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::new(format!(
                "the token is {} bytes long; at most {MAX_TOKEN_LEN} are accepted",
                text.len()
            )));
        }
        let raw = BASE64.decode(text).map_err(|_| TokenError::new(NOT_A_TOKEN))?;
        if raw.first() == Some(&0x80) && matches!(raw.get(1), Some(1..=5)) {
            return Err(TokenError::new(
                "this is a pickle-based token from azure-core before 1.38, which cannot be read; \
                 start the operation again or resume it with the SDK that created it",
            ));
        }
        Ok(raw)
    }
}

/// Whether a token's content is vouched for by a signature, from
/// [`ContinuationToken::decode_verified`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenIntegrity {
    /// The token carries no signature (Python azure-core's tokens, or ours made without a key).
    Unsigned,
    /// The token's signature matches the key: this process (or one sharing its key) wrote it.
    Verified,
}

/// The envelope, borrowed from the decoded bytes: nothing in it is copied or parsed yet.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    version: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    mac: Option<String>,
}

impl<'a> Envelope<'a> {
    fn parse(raw: &'a [u8]) -> Result<Self, TokenError> {
        let envelope: Envelope<'a> = serde_json::from_slice(raw)
            .map_err(|_| TokenError::new("invalid continuation token format"))?;
        let Some(version) = envelope.version else {
            return Err(TokenError::new("invalid continuation token format: no version"));
        };
        let text = version.get();
        let number = if text.len() <= 32 { serde_json::from_str::<u64>(text).ok() } else { None };
        if number != Some(TOKEN_VERSION) {
            let shown: String = text.chars().take(32).collect();
            return Err(TokenError::new(format!(
                "token version {shown} is not supported (this library reads version {TOKEN_VERSION})"
            )));
        }
        Ok(envelope)
    }

    fn data<T: DeserializeOwned>(&self) -> Result<T, TokenError> {
        let data = self
            .data
            .ok_or_else(|| TokenError::new("invalid continuation token format: no data"))?;
        serde_json::from_str(data.get())
            .map_err(|e| TokenError::new(format!("unexpected token content: {e}")))
    }
}

/// A secret that signs continuation tokens with HMAC-SHA256, so that a token this process (or a
/// fleet sharing the key) wrote can be told from one written or altered by anyone else.
///
/// ```
/// use lro_core::{ContinuationToken, TokenIntegrity, TokenKey};
///
/// let key = TokenKey::new(b"0123456789abcdef-a-long-random-secret")?;
/// let token = ContinuationToken::encode_signed(&serde_json::json!({"x": 1}), &key)?;
/// let (_, integrity): (serde_json::Value, _) = token.decode_verified(&key)?;
/// assert_eq!(integrity, TokenIntegrity::Verified);
///
/// let other = TokenKey::new(b"another key of sixteen bytes or more")?;
/// assert!(token.decode_verified::<serde_json::Value>(&other).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TokenKey(Arc<[u8]>);

/// A [`TokenKey`] shorter than [`TokenKey::MIN_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a token key must be at least 16 bytes long (got {0})")]
pub struct KeyTooShort(usize);

impl KeyTooShort {
    /// The length of the key that was refused.
    pub fn key_len(&self) -> usize {
        self.0
    }
}

impl TokenKey {
    /// The shortest key accepted: 16 bytes (128 bits). Use random bytes, not a password.
    pub const MIN_LEN: usize = 16;

    /// A key from secret bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, KeyTooShort> {
        let secret = secret.as_ref();
        if secret.len() < Self::MIN_LEN {
            return Err(KeyTooShort(secret.len()));
        }
        Ok(TokenKey(Arc::from(secret)))
    }

    fn mac(&self, data: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(MAC_CONTEXT);
        mac.update(data.as_bytes());
        mac
    }

    fn tag(&self, data: &str) -> Vec<u8> {
        self.mac(data).finalize().into_bytes().to_vec()
    }

    /// Constant-time comparison of `tag` with the tag of `data`.
    fn verify(&self, data: &str, tag: &[u8]) -> bool {
        self.mac(data).verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
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
    type Err = TokenError;

    /// Parses a token, checking that it is base64 of a version-1 envelope.
    fn from_str(s: &str) -> Result<Self, TokenError> {
        let token = ContinuationToken(s.trim().to_owned());
        token.decode::<IgnoredAny>()?;
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
///
/// Its `Debug` output shows URLs without their queries and headers by name only; the content
/// and the progress (which holds the poll links) by size only.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenState {
    /// The initial request (method, URL, allow-listed headers), if known.
    pub request: Option<RequestRecord>,
    /// The initial response.
    pub response: ResponseRecord,
    /// azure-core's pipeline context: `{"deserialized_data": <initial body as JSON or null>}`.
    /// Written for Python's sake; skipped when reading (it repeats the body, and parsing it
    /// could take many times the token's size in memory), so it reads back as `null`.
    #[serde(default, deserialize_with = "skip_value")]
    pub context: serde_json::Value,
    /// Where polling had got to, so a resumed operation need not start over (at most
    /// [`MAX_PROGRESS_LEN`] bytes of JSON).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded_progress"
    )]
    pub progress: Option<serde_json::Value>,
}

fn skip_value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<serde_json::Value, D::Error> {
    IgnoredAny::deserialize(deserializer)?;
    Ok(serde_json::Value::Null)
}

fn bounded_progress<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    let Some(raw) = Option::<Box<RawValue>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if raw.get().len() > MAX_PROGRESS_LEN {
        return Err(serde::de::Error::custom(format!(
            "the saved progress is larger than {MAX_PROGRESS_LEN} bytes"
        )));
    }
    serde_json::from_str(raw.get()).map(Some).map_err(serde::de::Error::custom)
}

/// A header map of at most [`MAX_TOKEN_HEADERS`] entries.
fn bounded_headers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a map of at most {MAX_TOKEN_HEADERS} headers")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut headers = BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                if headers.len() >= MAX_TOKEN_HEADERS {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_TOKEN_HEADERS} headers"
                    )));
                }
                headers.insert(name, value);
            }
            Ok(headers)
        }
    }
    deserializer.deserialize_map(Bounded)
}

/// The initial request inside a token. `Debug` shows the URL without its query, headers by name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Allow-listed headers ([`TOKEN_REQUEST_HEADERS`]).
    #[serde(default, deserialize_with = "bounded_headers")]
    pub headers: BTreeMap<String, String>,
}

/// The initial response inside a token. `Debug` shows headers by name, the content by size.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponseRecord {
    /// HTTP status code.
    pub status_code: u16,
    /// Allow-listed headers ([`TOKEN_RESPONSE_HEADERS`]).
    #[serde(default, deserialize_with = "bounded_headers")]
    pub headers: BTreeMap<String, String>,
    /// The body, standard base64.
    #[serde(default)]
    pub content: String,
}

impl fmt::Debug for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The progress is JSON written by this library, so it prints again; its length is all
        // that is shown.
        let progress = self.progress.as_ref().map(|p| p.to_string().len());
        f.debug_struct("TokenState")
            .field("request", &self.request)
            .field("response", &self.response)
            .field("progress_len", &progress)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRecord")
            .field("method", &self.method)
            .field("url", &ShownUrl(&self.url))
            .field("headers", &TextNames(&self.headers))
            .finish()
    }
}

impl fmt::Debug for ResponseRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseRecord")
            .field("status_code", &self.status_code)
            .field("headers", &TextNames(&self.headers))
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// The text of `uri` without user information (`user:password@`): a token is written to files,
/// stores and terminals, and the engine never sends a request to a URL that holds it anyway.
fn without_user_info(uri: &Uri) -> String {
    if !crate::redact::has_user_info(uri) {
        return uri.to_string();
    }
    let mut text = String::new();
    // Writing to a `String` cannot fail.
    let _ = crate::redact::write_origin_and_path(&mut text, uri);
    if let Some(query) = uri.query() {
        text.push('?');
        text.push_str(query);
    }
    text
}

impl TokenState {
    /// The state of an operation that has got as far as `initial` (and `progress`).
    pub fn new(initial: &InitialResponse, progress: Option<serde_json::Value>) -> Self {
        let head = initial.request();
        let body = initial.body();
        let deserialized = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
        };
        TokenState {
            request: Some(RequestRecord {
                method: head.method().to_string(),
                url: without_user_info(head.uri()),
                headers: allowed(|name| head.headers().get(name), &TOKEN_REQUEST_HEADERS),
            }),
            response: ResponseRecord {
                status_code: initial.status().as_u16(),
                headers: allowed(|name| initial.header(name), &TOKEN_RESPONSE_HEADERS),
                content: BASE64.encode(body),
            },
            context: serde_json::json!({ "deserialized_data": deserialized }),
            progress,
        }
    }

    /// Rebuilds the initial request and response, checking every field.
    pub fn initial_response(&self) -> Result<InitialResponse, TokenError> {
        let request = self
            .request
            .as_ref()
            .ok_or_else(|| TokenError::new("the token holds no initial request"))?;
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| TokenError::new("the token's request method is invalid"))?;
        let uri: Uri = request
            .url
            .parse()
            .map_err(|_| TokenError::new("the token's request URL is invalid"))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(TokenError::new("the token's request URL is not absolute"));
        }
        let status = StatusCode::from_u16(self.response.status_code)
            .map_err(|_| TokenError::new("the token's response status is invalid"))?;
        let body = BASE64
            .decode(self.response.content.as_bytes())
            .map_err(|_| TokenError::new("the token's response content is not base64"))?;
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = header_map(&self.response.headers)?;
        let head = RequestHead::new(method, uri, header_map(&request.headers)?);
        Ok(InitialResponse::new(head, response))
    }
}

/// The first value of each of `names` that `get` finds, as text.
fn allowed<'h>(
    get: impl Fn(&str) -> Option<&'h HeaderValue>,
    names: &[&str],
) -> BTreeMap<String, String> {
    names
        .iter()
        .filter_map(|name| {
            let value = get(name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect()
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, TokenError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| TokenError::new(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| TokenError::new(format!("invalid value for header {name}")))?;
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
    fn a_tokens_initial_url_keeps_no_user_information() {
        let url = |text: &str| {
            let head = RequestHead::new(Method::PUT, text.parse().unwrap(), HeaderMap::new());
            let initial = InitialResponse::new(head, Response::new(Bytes::new()));
            TokenState::new(&initial, None).request.map(|r| r.url).unwrap_or_default()
        };
        assert_eq!(url("https://u:p%40ss@host:8443/w/1?x=1"), "https://host:8443/w/1?x=1");
        assert_eq!(url("https://u@host/w"), "https://host/w");
        assert_eq!(url("http://u:p@[::1]:8080/w"), "http://[::1]:8080/w");
        assert_eq!(url("https://host/w?x=1"), "https://host/w?x=1");
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
        assert_eq!(back.request, state.request);
        assert_eq!(back.response, state.response);
        assert_eq!(back.progress, state.progress);
        assert_eq!(back.context, serde_json::Value::Null, "Python's copy of the body is skipped");
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
            assert!(result.is_err(), "{data} gave {result:?}");
        }
    }

    #[test]
    fn signed_tokens_verify_and_any_change_breaks_the_tag() {
        let key = TokenKey::new([7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        let state = TokenState::new(&sample(), None);
        let token =
            ContinuationToken::encode_signed(&state, &key).unwrap_or_else(|e| panic!("{e}"));
        let (back, integrity): (TokenState, _) =
            token.decode_verified(&key).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(integrity, TokenIntegrity::Verified);
        assert_eq!(back.request, state.request);
        // Readable without the key, as Python reads it.
        assert!(token.decode::<TokenState>().is_ok());

        let json = String::from_utf8(BASE64.decode(token.as_str()).unwrap_or_default())
            .unwrap_or_default();
        let forged = ContinuationToken::from_string(
            BASE64.encode(json.replace("http://host/resource", "http://evil/resource")),
        );
        let error = forged.decode_verified::<TokenState>(&key).err().map(|e| e.to_string());
        assert!(error.unwrap_or_default().contains("signature does not match"));
        let other = TokenKey::new([8u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        assert!(token.decode_verified::<TokenState>(&other).is_err());
        let garbled = ContinuationToken::from_string(
            BASE64.encode(json.replace("hmac-sha256:", "hmac-sha256:%%")),
        );
        assert!(garbled.decode_verified::<TokenState>(&key).is_err());

        let unsigned = ContinuationToken::encode(&state).unwrap_or_else(|e| panic!("{e}"));
        let (_, integrity): (TokenState, _) =
            unsigned.decode_verified(&key).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(integrity, TokenIntegrity::Unsigned);
        assert!(TokenKey::new([0u8; 15]).is_err());
        assert_eq!(format!("{key:?}"), "TokenKey(..)");
    }

    #[test]
    fn oversized_progress_and_header_maps_are_refused() {
        let big = "x".repeat(MAX_PROGRESS_LEN);
        let data = format!(
            r#"{{"request":null,"response":{{"status_code":200}},"progress":{{"pad":"{big}"}}}}"#
        );
        let token =
            ContinuationToken::from_string(encoded(&format!(r#"{{"version":1,"data":{data}}}"#)));
        assert!(token.decode::<TokenState>().is_err());
        let headers: Vec<String> =
            (0..=MAX_TOKEN_HEADERS).map(|i| format!(r#""h{i}":"v""#)).collect();
        let data = format!(
            r#"{{"request":null,"response":{{"status_code":200,"headers":{{{}}}}}}}"#,
            headers.join(",")
        );
        let token =
            ContinuationToken::from_string(encoded(&format!(r#"{{"version":1,"data":{data}}}"#)));
        assert!(token.decode::<TokenState>().is_err());
    }

    #[test]
    fn debug_does_not_print_the_token() {
        let token = ContinuationToken::from_string("c2VjcmV0".into());
        assert_eq!(format!("{token:?}"), "ContinuationToken(8 chars)");
    }
}
