//! Copies of the response parts the library keeps. A transport's header values and a body of
//! one chunk may be slices of its connection's read buffer (hyper's are): one kept slice pins
//! the whole buffer, 8 KiB or more, for as long as it is kept — the hours an operation may
//! run, or the life of a result. So what the engine keeps (the initial exchange, the response
//! polling ended with, an error's response) holds copies; a response read and dropped costs
//! no copy.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};

/// `headers` with values of their own.
pub(crate) fn headers(headers: &HeaderMap) -> HeaderMap {
    // `len` counts values, not names: a transport of the user's may hand over more values than
    // a map can reserve room for at once (which panics), though never more names than it holds.
    let mut copy = HeaderMap::try_with_capacity(headers.len()).unwrap_or_default();
    for (name, value) in headers {
        copy.append(name.clone(), self::value(value));
    }
    copy
}

/// `value` in bytes of its own, as sensitive as it was.
pub(crate) fn value(value: &HeaderValue) -> HeaderValue {
    let mut own = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
    own.set_sensitive(value.is_sensitive());
    own
}

/// `response` with header values and a body of its own (copied once, when polling ends).
pub(crate) fn response(response: Response<Bytes>) -> Response<Bytes> {
    let (mut parts, body) = response.into_parts();
    parts.headers = headers(&parts.headers);
    Response::from_parts(parts, Bytes::copy_from_slice(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_every_value_and_the_sensitive_mark() {
        let buffer = Bytes::from_static(b"a-very-long-connection-buffer: 1");
        let mut secret = HeaderValue::from_static("s3cret");
        secret.set_sensitive(true);
        let mut map = HeaderMap::new();
        map.append("x-a", HeaderValue::from_maybe_shared(buffer.slice(0..6)).expect("valid"));
        map.append("x-a", HeaderValue::from_static("second"));
        map.append("x-key", secret);
        let copy = headers(&map);
        assert_eq!(copy, map);
        assert_eq!(copy.get_all("x-a").iter().count(), 2);
        assert!(copy.get("x-key").is_some_and(HeaderValue::is_sensitive));
    }

    #[test]
    fn a_kept_response_has_a_body_of_its_own() {
        let buffer = Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n{\"id\":1}");
        let body = buffer.slice(19..);
        let kept = response(Response::new(body.clone()));
        assert_eq!(kept.body(), &body);
        assert_ne!(kept.body().as_ptr(), body.as_ptr());
    }

    #[test]
    fn more_values_than_a_map_can_reserve_at_once_are_copied_without_a_panic() {
        let mut map = HeaderMap::new();
        for _ in 0..40_000 {
            map.append("location", HeaderValue::from_static("http://svc/op"));
        }
        let copy = headers(&map);
        assert_eq!(copy.get_all("location").iter().count(), 40_000);
    }
}
