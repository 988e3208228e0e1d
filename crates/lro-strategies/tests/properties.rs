//! Property tests of the strategies on untrusted input: any status body and any polling link
//! gives a status word or a typed error (never a panic), and every URL a strategy asks to poll
//! is an absolute http(s) URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use lro_core::test_util::ScriptedTransport;
use lro_core::{InitialResponse, LroError, Strategy as LroStrategy};
use lro_strategies::{ArmPolling, LroBasePolling};
use proptest::prelude::*;

fn strategies() -> Vec<Box<dyn LroStrategy>> {
    vec![
        Box::new(LroBasePolling::builder().into_parts().0),
        Box::new(ArmPolling::builder().into_parts().0),
    ]
}

fn response(status: u16, body: Vec<u8>, headers: &[(&'static str, &[u8])]) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            response.headers_mut().append(*name, value);
        }
    }
    response
}

fn typed(error: &LroError) -> bool {
    matches!(
        error,
        LroError::BadStatus(_)
            | LroError::BadResponse(_)
            | LroError::Decode(_)
            | LroError::OperationFailed(_)
    )
}

/// JSON status bodies: objects with odd `status` / `provisioningState` values, nested junk.
fn status_body() -> impl Strategy<Value = Vec<u8>> {
    let word = prop_oneof![
        Just(serde_json::json!("Succeeded")),
        Just(serde_json::json!("failed")),
        Just(serde_json::json!("Running")),
        Just(serde_json::json!("")),
        Just(serde_json::json!(null)),
        Just(serde_json::json!(42)),
        Just(serde_json::json!([])),
        Just(serde_json::json!({"x": 1})),
        "\\PC{0,16}".prop_map(serde_json::Value::from),
    ];
    (word.clone(), word, any::<bool>()).prop_map(|(status, state, arm)| {
        let body = if arm {
            serde_json::json!({"properties": {"provisioningState": state}, "status": status})
        } else {
            serde_json::json!({"status": status})
        };
        body.to_string().into_bytes()
    })
}

fn any_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![status_body(), proptest::collection::vec(any::<u8>(), 0..80)]
}

proptest! {
    #[test]
    fn any_initial_response_starts_or_is_a_typed_error(
        method in prop_oneof![Just("PUT"), Just("POST"), Just("DELETE"), Just("PATCH")],
        status in prop_oneof![Just(200u16), Just(201), Just(202), Just(204), 100u16..600],
        body in any_body(),
        link in proptest::collection::vec(any::<u8>(), 0..60),
        header in prop_oneof![Just("operation-location"), Just("azure-asyncoperation"), Just("location")],
    ) {
        for mut strategy in strategies() {
            let initial = InitialResponse::new(
                ScriptedTransport::request_head(method, "https://svc.example/items/1?api-version=1"),
                response(status, body.clone(), &[(header, &link)]),
            );
            match strategy.start(&initial) {
                Ok(_) => {
                    if let Some(uri) = strategy.poll_uri() {
                        prop_assert!(matches!(uri.scheme_str(), Some("http" | "https")), "{uri}");
                        prop_assert!(uri.host().is_some(), "{uri}");
                    }
                }
                Err(error) => prop_assert!(typed(&error), "{error:?}"),
            }
        }
    }

    #[test]
    fn any_poll_response_gives_a_status_word_or_a_typed_error(
        status in prop_oneof![Just(200u16), Just(202), 100u16..600],
        body in any_body(),
        link in proptest::collection::vec(any::<u8>(), 0..60),
    ) {
        for mut strategy in strategies() {
            let initial = InitialResponse::new(
                ScriptedTransport::request_head("PUT", "https://svc.example/items/1"),
                response(201, Vec::new(), &[
                    ("azure-asyncoperation", b"https://svc.example/op/1"),
                    ("operation-location", b"https://svc.example/op/1"),
                ]),
            );
            strategy.start(&initial).unwrap();
            let answer = response(status, body.clone(), &[("operation-location", &link), ("location", &link)]);
            match strategy.read_poll(&answer) {
                Ok(word) => prop_assert!(word.len() <= 64 || body.len() >= word.len()),
                Err(error) => prop_assert!(typed(&error), "{error:?}"),
            }
            if let Some(uri) = strategy.poll_uri() {
                prop_assert!(matches!(uri.scheme_str(), Some("http" | "https")), "{uri}");
            }
            let _ = strategy.final_uri(&answer);
        }
    }

    #[test]
    fn relative_links_resolve_on_the_initial_origin(path in "[a-zA-Z0-9/._~-]{0,40}") {
        // (A link starting with two slashes names another host: not a path on this one.)
        let link = format!("/x{path}");
        for mut strategy in strategies() {
            let initial = InitialResponse::new(
                ScriptedTransport::request_head("POST", "https://svc.example:8443/jobs"),
                response(202, Vec::new(), &[("operation-location", link.as_bytes()), ("location", link.as_bytes())]),
            );
            if strategy.start(&initial).is_ok() {
                let uri = strategy.poll_uri().unwrap();
                prop_assert_eq!(uri.scheme_str(), Some("https"));
                prop_assert_eq!(uri.host(), Some("svc.example"));
                prop_assert_eq!(uri.port_u16(), Some(8443));
            }
        }
    }
}
