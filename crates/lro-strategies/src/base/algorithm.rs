//! The polling algorithms of azure-core (`OperationResourcePolling`, `LocationPolling`,
//! `StatusCheckPolling`) and azure-mgmt-core (`AzureAsyncOperationPolling`,
//! `BodyContentPolling`): how each reads a status, where it polls, what it GETs at the end.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, Method, Response, StatusCode, Uri};
use lro_core::LroError;
use serde_json::Value;

use crate::final_state::FinalStateVia;
use crate::urls::{Link, resolve};

pub(crate) const NO_BODY: &str =
    "The response from long running operation does not contain a body.";
pub(crate) const NO_STATUS: &str = "No status found in body";
const NOT_JSON: &str = "error occurred in deserializing the response body";

/// One way of following an operation. [`LroBasePolling`](crate::LroBasePolling) tries its
/// algorithms in order and keeps the first that applies to the initial response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Poll the status monitor named by a header (`Operation-Location`, or `Azure-AsyncOperation`
    /// in ARM) and read its body's `status`. Applies when the header is present.
    OperationResource {
        /// The header that names the status monitor.
        header: HeaderName,
    },
    /// Poll the `Location` URL until it stops answering 202. Applies when `Location` is present.
    Location,
    /// ARM: poll the resource itself (PUT/PATCH) and read `properties.provisioningState`.
    BodyContent,
    /// No polling: the initial response is the result. Always applies.
    StatusCheck,
}

impl Algorithm {
    /// `OperationResource` on `Operation-Location`.
    pub fn operation_location() -> Self {
        Algorithm::OperationResource { header: HeaderName::from_static("operation-location") }
    }

    /// `OperationResource` on `Azure-AsyncOperation` (ARM).
    pub fn azure_async_operation() -> Self {
        Algorithm::OperationResource { header: HeaderName::from_static("azure-asyncoperation") }
    }

    /// azure-core's `can_poll`: does this algorithm apply to the initial exchange?
    pub(crate) fn applies(&self, method: &Method, response: &Response<Bytes>) -> bool {
        match self {
            Algorithm::OperationResource { header } => response.headers().contains_key(header),
            Algorithm::Location => response.headers().contains_key(http::header::LOCATION),
            Algorithm::BodyContent => *method == Method::PUT || *method == Method::PATCH,
            Algorithm::StatusCheck => true,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Algorithm::OperationResource { .. } => "operation-resource",
            Algorithm::Location => "location",
            Algorithm::BodyContent => "body-content",
            Algorithm::StatusCheck => "status-check",
        }
    }
}

/// The initial request's method, as far as the final GET cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    PutOrPatch,
    Post,
    Other,
}

impl Verb {
    fn of(method: &Method) -> Verb {
        if *method == Method::PUT || *method == Method::PATCH {
            Verb::PutOrPatch
        } else if *method == Method::POST {
            Verb::Post
        } else {
            Verb::Other
        }
    }
}

/// The state of the chosen algorithm for one operation.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    pub(crate) algorithm: Algorithm,
    /// What the final GET depends on of the initial method (a byte, where a `Method` takes 24).
    pub(crate) method: Verb,
    pub(crate) original: Link,
    /// Where to poll now.
    pub(crate) polling: Option<Link>,
    /// The initial response's `Location`, for the final GET of the operation-resource algorithm.
    pub(crate) location: Option<Link>,
    /// The monitor's latest `percentComplete`, 0 to 100.
    pub(crate) percent: Option<u8>,
}

fn header_text<'r>(response: &'r Response<Bytes>, name: &HeaderName) -> Option<&'r str> {
    response.headers().get(name)?.to_str().ok().map(str::trim)
}

fn json(response: &Response<Bytes>) -> Result<Value, LroError> {
    serde_json::from_slice(response.body()).map_err(|e| LroError::decode(NOT_JSON, Some(e.into())))
}

/// The `status` member of a JSON body: `None` if the body is not an object or has none. Read
/// on every poll, without building the rest of the document (what `json(..).get("status")`
/// gives, for a fraction of the work). A repeated member counts as its last value, as in a
/// parsed `Value`.
struct StatusMember {
    /// The status word: Python's truthiness of the member's value (`None` when absent, empty,
    /// zero, false or null).
    status: Option<Arc<str>>,
    /// `percentComplete`, when it is a number.
    percent: Option<f64>,
}

impl<'de> serde::Deserialize<'de> for StatusMember {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::DeserializeSeed::deserialize(Reader { top: true }, deserializer)
    }
}

/// Reads a JSON value as strictly as a parse into `Value` would (text, numbers in range, the
/// nesting limit), keeping nothing but, at the top level (`top`), the members of a
/// [`StatusMember`]: the members beside them must not make acceptable a body that a full parse
/// would refuse (`IgnoredAny` checks none of this).
#[derive(Clone, Copy)]
struct Reader {
    top: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Reader {
    type Value = StatusMember;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<StatusMember, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Reader {
    type Value = StatusMember;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StatusMember, A::Error> {
        let mut member = StatusMember::NONE;
        let inner = Reader { top: false };
        while let Some(name) = map.next_key_seed(MemberName)? {
            match name {
                Member::Status if self.top => member.status = map.next_value_seed(StatusWord)?,
                Member::Percent if self.top => member.percent = map.next_value::<Value>()?.as_f64(),
                _ => {
                    map.next_value_seed(inner)?;
                }
            }
        }
        Ok(member)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StatusMember, A::Error> {
        while seq.next_element_seed(Reader { top: false })?.is_some() {}
        Ok(StatusMember::NONE)
    }

    fn visit_bool<E>(self, _: bool) -> Result<StatusMember, E> {
        Ok(StatusMember::NONE)
    }

    fn visit_i64<E>(self, _: i64) -> Result<StatusMember, E> {
        Ok(StatusMember::NONE)
    }

    fn visit_u64<E>(self, _: u64) -> Result<StatusMember, E> {
        Ok(StatusMember::NONE)
    }

    fn visit_f64<E>(self, _: f64) -> Result<StatusMember, E> {
        Ok(StatusMember::NONE)
    }

    fn visit_str<E>(self, _: &str) -> Result<StatusMember, E> {
        Ok(StatusMember::NONE)
    }

    fn visit_unit<E>(self) -> Result<StatusMember, E> {
        Ok(StatusMember::NONE)
    }
}

impl StatusMember {
    const NONE: StatusMember = StatusMember { status: None, percent: None };
}

/// Reads a `status` member's value straight into its word ([`truthy_text`] of the value, with
/// no `Value` for a text and, for a common word, no allocation).
struct StatusWord;

impl<'de> serde::de::DeserializeSeed<'de> for StatusWord {
    type Value = Option<Arc<str>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StatusWord {
    type Value = Option<Arc<str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok((!text.is_empty()).then(|| lro_core::Status::word(text)))
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(truthy_text(&Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(truthy_text(&Value::from(value)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(truthy_text(&Value::from(value)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(truthy_text(&Value::from(value)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    // An object or array status is rare: read it as a `Value`, exactly as a full parse would
    // (also when serde_json's `arbitrary_precision` turns numbers into maps).
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let value: Value =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(truthy_text(&value))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let value: Value =
            serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(truthy_text(&value))
    }
}

/// The members the status reader keeps.
enum Member {
    Status,
    Percent,
    Other,
}

/// Reads an object key as which [`Member`] it is, without keeping it.
struct MemberName;

impl<'de> serde::de::DeserializeSeed<'de> for MemberName {
    type Value = Member;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Member, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for MemberName {
    type Value = Member;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Member, E> {
        Ok(match key {
            "status" => Member::Status,
            "percentComplete" => Member::Percent,
            _ => Member::Other,
        })
    }
}

/// A `percentComplete` as a whole percentage, 0 to 100 (`None` if it is not a finite number).
fn whole_percent(value: f64) -> Option<u8> {
    // Clamped to 0..=100 first: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    value.is_finite().then(|| value.clamp(0.0, 100.0).floor() as u8)
}

/// Python's truthiness, for the JSON values a status can be.
fn truthy_text(value: &Value) -> Option<Arc<str>> {
    match value {
        Value::String(s) if !s.is_empty() => Some(lro_core::Status::word(s)),
        Value::Number(n) if n.as_f64() != Some(0.0) => Some(n.to_string().into()),
        Value::Bool(true) => Some("True".into()),
        _ => None,
    }
}

impl Tracker {
    /// azure-core's `set_initial_status`.
    pub(crate) fn start(
        algorithm: Algorithm,
        method: Method,
        original: &Uri,
        response: &Response<Bytes>,
    ) -> Result<(Tracker, Arc<str>), LroError> {
        let original = Link::of(original);
        let method = Verb::of(&method);
        let mut tracker =
            Tracker { algorithm, method, original, polling: None, location: None, percent: None };
        let status = match &tracker.algorithm {
            Algorithm::OperationResource { header } => {
                let header = header.clone();
                tracker.polling = Some(tracker.link(response, &header)?);
                tracker.location = header_text(response, &http::header::LOCATION)
                    .filter(|v| !v.is_empty())
                    .and_then(|v| resolve(&tracker.original, v));
                // No status (no body, not JSON, no member) says the operation is in progress:
                // no error is made to be dropped.
                let body = response.body();
                let status =
                    if body.is_empty() { None } else { tracker.status_member(body).ok().flatten() };
                status.unwrap_or_else(|| "InProgress".into())
            }
            Algorithm::Location => {
                tracker.polling = Some(tracker.link(response, &http::header::LOCATION)?);
                "InProgress".into()
            }
            Algorithm::BodyContent => {
                tracker.polling = Some(tracker.original.clone());
                let state = match response.status() {
                    StatusCode::CREATED | StatusCode::OK if !response.body().is_empty() => {
                        provisioning_state(response)?
                    }
                    _ => None,
                };
                match (response.status(), state) {
                    (StatusCode::ACCEPTED, _) => "InProgress".into(),
                    (StatusCode::CREATED, state) => state.unwrap_or_else(|| "InProgress".into()),
                    (_, state) => state.unwrap_or_else(|| "Succeeded".into()),
                }
            }
            Algorithm::StatusCheck => "Succeeded".into(),
        };
        Ok((tracker, status))
    }

    /// The absolute URL named by `header` in the initial response.
    fn link(&self, response: &Response<Bytes>, header: &HeaderName) -> Result<Link, LroError> {
        if let Some(raw) = response.headers().get(header) {
            if raw.to_str().is_err() {
                return Err(LroError::bad_response(
                    response,
                    format!(
                        "the {header} header is not a URL: it holds bytes that are not ASCII text"
                    ),
                ));
            }
        }
        let value = header_text(response, header).unwrap_or_default();
        if value.is_empty() {
            // azure-core raises OperationFailed here, although nothing failed: the service sent
            // an empty link. A deliberate difference.
            return Err(LroError::bad_response(response, format!("the {header} header is empty")));
        }
        resolve(&self.original, value).ok_or_else(|| {
            LroError::bad_response(
                response,
                format!("the {header} header is not a usable URL: {:?}", crate::urls::shown(value)),
            )
        })
    }

    /// azure-core's `get_status` for a poll response.
    pub(crate) fn status(&mut self, response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
        match &self.algorithm {
            Algorithm::OperationResource { .. } => self.monitor_status(response),
            Algorithm::Location => {
                if let Some(raw) = response.headers().get(http::header::LOCATION) {
                    // A moved link that cannot be followed is an unusable response, never a
                    // reason to go on polling the old URL as if nothing was said.
                    let moved = raw.to_str().map(str::trim).map_err(|_| {
                        LroError::bad_response(
                            response,
                            "the location header is not a URL: it holds bytes that are not ASCII text",
                        )
                    })?;
                    if let (false, Some(current)) = (moved.is_empty(), &self.polling) {
                        let next = resolve(current, moved).ok_or_else(|| {
                            LroError::bad_response(
                                response,
                                format!(
                                    "the location header is not a usable URL: {:?}",
                                    crate::urls::shown(moved)
                                ),
                            )
                        })?;
                        self.polling = Some(next);
                    }
                }
                Ok(if response.status() == StatusCode::ACCEPTED {
                    "InProgress"
                } else {
                    "Succeeded"
                }
                .into())
            }
            Algorithm::BodyContent => {
                if response.body().is_empty() {
                    return Err(LroError::bad_response(response, NO_BODY));
                }
                Ok(provisioning_state(response)?.unwrap_or_else(|| "Succeeded".into()))
            }
            Algorithm::StatusCheck => Ok("Succeeded".into()),
        }
    }

    /// The `status` of a status-monitor body.
    fn monitor_status(&mut self, response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
        if response.body().is_empty() {
            return Err(LroError::bad_response(response, NO_BODY));
        }
        let status = self
            .status_member(response.body())
            .map_err(|e| LroError::decode(NOT_JSON, Some(e.into())))?;
        status.ok_or_else(|| LroError::bad_response(response, NO_STATUS))
    }

    /// The `status` member of a status-monitor body (`None`: no such member), keeping its
    /// `percentComplete`.
    fn status_member(&mut self, body: &[u8]) -> Result<Option<Arc<str>>, serde_json::Error> {
        let member: StatusMember = serde_json::from_slice(body)?;
        if let Some(percent) = member.percent.and_then(whole_percent) {
            self.percent = Some(percent);
        }
        Ok(member.status)
    }

    /// azure-core's `get_final_get_url`, evaluated on the terminal response.
    pub(crate) fn final_uri(
        &self,
        latest: &Response<Bytes>,
        final_state_via: Option<FinalStateVia>,
    ) -> Result<Option<Uri>, LroError> {
        if !matches!(self.algorithm, Algorithm::OperationResource { .. }) {
            return Ok(None);
        }
        let post = self.method == Verb::Post;
        match final_state_via {
            Some(FinalStateVia::Location) if self.location.is_some() => {
                return Ok(self.location.as_ref().map(Link::uri));
            }
            Some(FinalStateVia::AzureAsyncOperation | FinalStateVia::OperationLocation) if post => {
                return Ok(None);
            }
            // azure-core ignores `original-uri`; the OpenAPI extension means the original URL.
            Some(FinalStateVia::OriginalUri) => return Ok(Some(self.original.uri())),
            _ => {}
        }
        if !latest.body().is_empty() {
            let body = json(latest)?;
            let target =
                body.get("resourceLocation").and_then(Value::as_str).filter(|s| !s.is_empty());
            if let Some(target) = target {
                let base = self.polling.as_ref().unwrap_or(&self.original);
                return resolve(base, target).map(|link| Some(link.uri())).ok_or_else(|| {
                    LroError::bad_response(
                        latest,
                        format!(
                            "resourceLocation is not a usable URL: {:?}",
                            crate::urls::shown(target)
                        ),
                    )
                });
            }
        }
        Ok(match self.method {
            Verb::PutOrPatch => Some(self.original.uri()),
            Verb::Post => self.location.as_ref().map(Link::uri),
            Verb::Other => None,
        })
    }
}

/// `properties.provisioningState`, `None` when absent or empty (ARM body polling).
fn provisioning_state(response: &Response<Bytes>) -> Result<Option<Arc<str>>, LroError> {
    let body = json(response)?;
    if !body.is_object() {
        return Err(LroError::bad_response(response, "the resource body is not a JSON object"));
    }
    Ok(body.get("properties").and_then(|p| p.get("provisioningState")).and_then(truthy_text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a parsed document says of its `status` member.
    fn by_value(body: &str) -> Option<Arc<str>> {
        serde_json::from_str::<Value>(body).ok()?.get("status").and_then(truthy_text)
    }

    #[test]
    fn the_status_member_reads_as_in_a_parsed_document() {
        for body in [
            r#"{"status":"Running"}"#,
            r#"{"id":"x","status":"Succeeded","error":{"code":"E","details":[1,2]}}"#,
            r#"{"status":"Running","status":"Failed"}"#,
            r#"{"st\u0061tus":"Canceled"}"#,
            r#"{"properties":{"status":"Nested"}}"#,
            r#"{"status":0}"#,
            r#"{"status":0.0}"#,
            r#"{"status":-1.5}"#,
            r#"{"status":7}"#,
            r#"{"status":-7}"#,
            r#"{"status":true}"#,
            r#"{"status":false}"#,
            r#"{"status":""}"#,
            r#"{"status":{"code":"Running"}}"#,
            r#"{"status":["Running"]}"#,
            r#"{"status":"Running","status":0}"#,
            r#"{"status":null}"#,
            r#"["status","Running"]"#,
            r#""Running""#,
            "12",
            "true",
            "null",
        ] {
            let member: StatusMember = serde_json::from_str(body).expect(body);
            assert_eq!(member.status, by_value(body), "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_an_error() {
        for body in [r#"{"status":"Running""#, "<html>", r#"{"status":"Running"} x"#] {
            assert!(serde_json::from_str::<StatusMember>(body).is_err(), "{body}");
        }
    }

    #[test]
    fn a_body_a_full_parse_refuses_is_refused_even_beside_the_status() {
        let deep =
            format!("{{\"status\":\"Running\",\"d\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        for body in [
            r#"{"status":"Succeeded","d":"\ud800"}"#,
            r#"{"x":1e400,"status":"Running"}"#,
            r#"["\ud800"]"#,
            r#"{"status":"Running","a":[1,{"b":1e999}]}"#,
            deep.as_str(),
        ] {
            assert!(serde_json::from_str::<Value>(body).is_err(), "a full parse refuses {body}");
            assert!(serde_json::from_str::<StatusMember>(body).is_err(), "{body}");
        }
        let bytes: &[u8] = b"{\"status\":\"Running\",\"d\":\"\xff\"}";
        assert!(serde_json::from_slice::<Value>(bytes).is_err());
        assert!(serde_json::from_slice::<StatusMember>(bytes).is_err(), "invalid UTF-8");
    }
}
