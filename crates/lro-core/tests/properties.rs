//! Property tests of the parsers that read untrusted input: `Retry-After` values, status words,
//! and continuation tokens (no panic, bounded results, round trips).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use lro_core::delay::retry_after;
use lro_core::token::TokenState;
use lro_core::{
    ContinuationToken, InitialResponse, RequestHead, StatusKind, StatusVocabulary, TokenIntegrity,
    TokenKey,
};
use proptest::prelude::*;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn hint(name: &'static str, value: &[u8]) -> Option<Option<Duration>> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    Some(retry_after(&headers, now()))
}

proptest! {
    #[test]
    fn retry_after_never_panics_on_any_header_bytes(
        value in proptest::collection::vec(any::<u8>(), 0..64),
        name in prop_oneof![Just("retry-after"), Just("retry-after-ms"), Just("x-ms-retry-after-ms")],
    ) {
        let _ = hint(name, &value);
    }

    #[test]
    fn whole_seconds_read_back_exactly(seconds in 0u64..10_000_000) {
        let got = hint("retry-after", seconds.to_string().as_bytes()).flatten();
        prop_assert_eq!(got, Some(Duration::from_secs(seconds)));
        let ms = hint("retry-after-ms", seconds.to_string().as_bytes()).flatten();
        prop_assert_eq!(ms, Some(Duration::from_millis(seconds)));
    }

    #[test]
    fn any_number_gives_a_non_negative_saturating_delay(number in any::<f64>()) {
        let got = hint("retry-after", number.to_string().as_bytes()).flatten();
        if number.is_nan() || number <= 0.0 {
            prop_assert_eq!(got, Some(Duration::ZERO));
        } else if number >= 2f64.powi(64) {
            prop_assert_eq!(got, Some(Duration::MAX));
        } else {
            let d = got.unwrap();
            prop_assert!((d.as_secs_f64() - number).abs() <= number * 1e-9 + 1e-9);
        }
    }

    #[test]
    fn http_dates_in_the_future_give_the_time_until_them(ahead in 0u64..(10 * 365 * 86_400)) {
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(ahead));
        prop_assert_eq!(hint("retry-after", date.as_bytes()).flatten(), Some(Duration::from_secs(ahead)));
    }

    #[test]
    fn status_words_are_classified_case_insensitively(word in "\\PC{0,24}") {
        let vocabulary = StatusVocabulary::azure();
        let expected = match word.to_ascii_lowercase().as_str() {
            "succeeded" => StatusKind::Succeeded,
            "failed" => StatusKind::Failed,
            "canceled" => StatusKind::Canceled,
            _ => StatusKind::InProgress,
        };
        prop_assert_eq!(vocabulary.classify(&word), expected);
        let status = vocabulary.status(word.as_str());
        prop_assert_eq!(status.as_str(), word.as_str());
    }

    /// Any text: parsing and decoding never panic (a `TokenError` is the only way out).
    #[test]
    fn no_text_makes_token_parsing_panic(text in "\\PC{0,200}") {
        if let Ok(token) = text.parse::<ContinuationToken>() {
            let _ = token.decode::<TokenState>().and_then(|s| s.initial_response());
        }
    }

    #[test]
    fn any_envelope_bytes_are_a_token_or_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let token = ContinuationToken::from_string(text);
        if let Err(error) = token.decode::<TokenState>().and_then(|s| s.initial_response()) {
            prop_assert!(!error.message().is_empty(), "{error:?}");
        }
    }

    #[test]
    fn initial_responses_round_trip_through_tokens(
        method in prop_oneof![Just(Method::PUT), Just(Method::POST), Just(Method::DELETE), Just(Method::PATCH)],
        path in "[a-z0-9/._~-]{0,40}",
        status in 200u16..300,
        body in proptest::collection::vec(any::<u8>(), 0..200),
        location in proptest::option::of("[a-zA-Z0-9:/._?=&-]{1,60}"),
        signed in any::<bool>(),
    ) {
        let uri: http::Uri = format!("https://svc.example/{path}").parse().unwrap();
        let mut response = Response::new(Bytes::from(body.clone()));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(location) = &location {
            response.headers_mut().insert("location", HeaderValue::from_str(location).unwrap());
        }
        let initial = InitialResponse::new(RequestHead::new(method.clone(), uri.clone(), HeaderMap::new()), response);
        let state = TokenState::new(&initial, None);
        let key = TokenKey::new([9u8; 32]).unwrap();
        let token = if signed {
            ContinuationToken::encode_signed(&state, &key).unwrap()
        } else {
            ContinuationToken::encode(&state).unwrap()
        };
        let text = token.to_string();
        let (back, integrity): (TokenState, _) =
            text.parse::<ContinuationToken>().unwrap().decode_verified(&key).unwrap();
        let expected = if signed { TokenIntegrity::Verified } else { TokenIntegrity::Unsigned };
        prop_assert_eq!(integrity, expected);
        let rebuilt = back.initial_response().unwrap();
        prop_assert_eq!(rebuilt.request().method(), &method);
        prop_assert_eq!(rebuilt.request().uri(), &uri);
        prop_assert_eq!(rebuilt.response().status().as_u16(), status);
        prop_assert_eq!(rebuilt.response().body().as_ref(), body.as_slice());
        prop_assert_eq!(
            rebuilt.response().headers().get("location").map(|v| v.to_str().unwrap().to_owned()),
            location
        );
    }
}
