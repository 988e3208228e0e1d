//! Hostile input is normal: random responses and random tokens, driven through the engine with
//! every strategy, must give actions or typed errors — never a panic, never an endless loop,
//! never a request to a host other than the initial one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use lro_core::test_util::{ManualClock, ScriptedTransport};
use lro_core::{Action, ContinuationToken, Engine, InitialResponse, PollOptions, Timer};
use lro_strategies::{ArmPolling, FinalStateVia, LroBasePolling, NoPolling};

const ORIGIN: &str = "https://svc.example";

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

fn random_body(rng: &mut fastrand::Rng) -> String {
    let word =
        pick(rng, &["Succeeded", "failed", "CANCELED", "Running", "", "Cancelled", "\u{0}", "💥"]);
    match rng.u8(..12) {
        0 => String::new(),
        1 => "{".repeat(rng.usize(..300)),
        2 => format!(r#"{{"status":"{word}"}}"#),
        3 => format!(
            r#"{{"status":{}}}"#,
            pick(rng, &["null", "0", "1e999", "true", "[]", "{}", "-1"])
        ),
        4 => format!(r#"{{"properties":{{"provisioningState":"{word}"}}}}"#),
        5 => format!(r#"{{"properties":"{word}"}}"#),
        6 => format!(
            r#"{{"status":"{word}","resourceLocation":"{}"}}"#,
            pick(
                rng,
                &[
                    "/r",
                    "https://evil.example/r",
                    "::",
                    "",
                    "javascript:x",
                    "https://svc.example/r"
                ]
            )
        ),
        7 => "[1,2,3]".to_owned(),
        8 => r#""just a string""#.to_owned(),
        9 => format!(r#"{{"error":{{"code":"{word}","message":"{word}"}},"status":"Failed"}}"#),
        10 => (0..rng.usize(..64)).map(|_| char::from(rng.u8(..))).collect(),
        _ => r#"{"status":"InProgress"}"#.to_owned(),
    }
}

fn random_response(rng: &mut fastrand::Rng) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(random_body(rng)));
    *response.status_mut() = StatusCode::from_u16(
        *[200, 201, 202, 204, 299, 302, 400, 404, 429, 500, 503].get(rng.usize(..11)).unwrap(),
    )
    .unwrap();
    let links = [
        "/op",
        "op",
        "https://svc.example/op",
        "https://evil.example/op",
        "",
        " ",
        "http://[::1",
        "//evil.example/x",
    ];
    for _ in 0..rng.usize(..5) {
        let (name, value) = match rng.u8(..6) {
            0 => ("operation-location", pick(rng, &links).to_owned()),
            1 => ("azure-asyncoperation", pick(rng, &links).to_owned()),
            2 => ("location", pick(rng, &links).to_owned()),
            3 => (
                "retry-after",
                pick(
                    rng,
                    &[
                        "0",
                        "-5",
                        "1e12",
                        "inf",
                        "NaN",
                        "soon",
                        "Sun, 06 Nov 1994 08:49:37 GMT",
                        "3",
                    ],
                )
                .to_owned(),
            ),
            4 => (
                "retry-after-ms",
                pick(rng, &["18446744073709551616", "-1", "250", "x"]).to_owned(),
            ),
            _ => ("x-ms-retry-after-ms", rng.u64(..).to_string()),
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(HeaderName::from_static(name), value);
        }
    }
    response
}

type Strategy = Box<dyn lro_core::Strategy>;

fn random_strategy(rng: &mut fastrand::Rng) -> (Strategy, PollOptions) {
    let via = [
        None,
        Some(FinalStateVia::Location),
        Some(FinalStateVia::OriginalUri),
        Some(FinalStateVia::OperationLocation),
    ][rng.usize(..4)];
    let builder = match rng.u8(..3) {
        0 => LroBasePolling::builder(),
        1 => ArmPolling::builder(),
        _ => return (Box::new(NoPolling), PollOptions::default()),
    };
    let builder = match via {
        Some(via) => builder.final_state_via(via),
        None => builder,
    };
    let (strategy, options) = builder.into_parts();
    (Box::new(strategy), options)
}

#[test]
fn random_responses_never_panic_loop_or_leave_the_origin() {
    let mut rng = fastrand::Rng::with_seed(20261124);
    let clock = ManualClock::new();
    let (mut started, mut polled, mut succeeded, mut failed) = (0, 0, 0, 0);
    for case in 0..3000 {
        let method = pick(&mut rng, &["PUT", "PATCH", "POST", "DELETE", "GET"]);
        let mut first = random_response(&mut rng);
        if rng.u8(..10) < 6 {
            // Mostly a plausible start, so that polling itself gets exercised.
            *first.status_mut() = StatusCode::ACCEPTED;
            let header =
                pick(&mut rng, &["operation-location", "azure-asyncoperation", "location"]);
            first.headers_mut().insert(
                HeaderName::from_static(header),
                HeaderValue::from_static("https://svc.example/op"),
            );
        }
        let initial = InitialResponse::new(
            ScriptedTransport::request_head(method, &format!("{ORIGIN}/items/1")),
            first,
        );
        let (strategy, options) = random_strategy(&mut rng);
        let Ok(mut engine) = Engine::start(strategy, options, initial) else { continue };
        started += 1;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 200, "case {case}: no end after 200 steps");
            let now = Timer::now(&clock);
            match engine.poll(now) {
                Action::Done => break,
                Action::Wait(d) => {
                    assert!(
                        d <= Duration::from_secs(600),
                        "case {case}: waits are capped, got {d:?}"
                    );
                    clock.advance(d);
                }
                Action::SendRequest(request) => {
                    polled += usize::from(steps == 1);
                    let target = request.uri().to_string();
                    assert!(
                        target.starts_with(ORIGIN),
                        "case {case}: a poll left the origin: {target}"
                    );
                    // Half the time, the service eventually settles, so most cases end.
                    let response = if steps > 20 && rng.bool() {
                        Response::new(Bytes::from_static(br#"{"status":"Succeeded"}"#))
                    } else {
                        random_response(&mut rng)
                    };
                    engine.handle_response(Timer::now(&clock), response);
                }
            }
            if steps > 150 {
                break; // a random service that never finishes: bounded by the test, not a hang
            }
        }
        match engine.outcome() {
            Ok(_) if engine.finished() => succeeded += 1,
            Err(_) => failed += 1,
            Ok(_) => {}
        }
        // Whatever happened, the state can be saved and read back.
        if let Ok(token) = engine.continuation_token() {
            assert!(
                token.decode::<lro_core::token::TokenState>().is_ok(),
                "case {case}: our own token reads back"
            );
        }
    }
    // The random service must exercise every path, or this test would prove nothing.
    println!("{started} started, {polled} polled, {succeeded} succeeded, {failed} failed");
    assert!(
        started > 1000 && polled > 500 && succeeded > 200 && failed > 200,
        "{started} started, {polled} polled, {succeeded} succeeded, {failed} failed"
    );
}

#[test]
fn random_tokens_are_refused_with_typed_errors() {
    let mut rng = fastrand::Rng::with_seed(7);
    let (mut refused, mut accepted) = (0, 0);
    let valid = {
        let initial = InitialResponse::new(
            ScriptedTransport::request_head("PUT", &format!("{ORIGIN}/items/1")),
            Response::new(Bytes::from_static(b"{}")),
        );
        let (strategy, options) = LroBasePolling::builder().into_parts();
        Engine::start(strategy, options, initial)
            .unwrap()
            .continuation_token()
            .unwrap()
            .into_string()
    };
    for _ in 0..2000 {
        let text: String = match rng.u8(..3) {
            // Random printable noise.
            0 => (0..rng.usize(..200)).map(|_| char::from(rng.u8(32..127))).collect(),
            // A valid token with a few characters changed.
            1 => {
                let mut bytes = valid.clone().into_bytes();
                for _ in 0..rng.usize(1..4) {
                    let i = rng.usize(..bytes.len());
                    bytes[i] = rng.alphanumeric() as u8;
                }
                String::from_utf8(bytes).unwrap()
            }
            // A valid token cut short.
            _ => valid[..rng.usize(..valid.len())].to_owned(),
        };
        let token = ContinuationToken::from_string(text);
        let (strategy, options) = ArmPolling::builder().into_parts();
        // Either a typed error, or (rarely) a token that still decodes: never a panic.
        match Engine::resume(strategy, options, &token) {
            Ok(_) => accepted += 1,
            Err(lro_core::LroError::InvalidContinuationToken(_)) => refused += 1,
            // A corrupted initial response inside an otherwise valid token is read by the
            // strategy, which may refuse it in its own words.
            Err(
                lro_core::LroError::BadStatus(_)
                | lro_core::LroError::BadResponse(_)
                | lro_core::LroError::Decode(_),
            ) => refused += 1,
            Err(other) => panic!("unexpected error kind for a corrupted token: {other:?}"),
        }
    }
    assert!(refused > 1800, "{refused} refused, {accepted} accepted");
}
