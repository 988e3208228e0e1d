//! Fault application: drawing the faults for one request from a [`FaultSpec`], then replacing
//! the answer (`500`, `503`, `429`, `reset`), delaying it (`slow`) or corrupting it
//! (`malformed`, `nostatus`, `oversized`, `cross-origin`).

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use super::{Fault, FaultKind, FaultSpec};
use crate::reply::{H_LOCATION, POLLING_HEADERS, Reply, ReplyBody};
use crate::retry_after::RetryAfter;
use crate::serve::{Conn, ResetConnection};

impl FaultSpec {
    /// A fresh generator for this spec's sequence.
    pub(crate) fn rng(&self) -> fastrand::Rng {
        fastrand::Rng::with_seed(self.seed())
    }
}

/// Faults drawn for one request.
#[derive(Debug, Default)]
pub(crate) struct Drawn {
    /// The `slow` delay, if drawn.
    delay: Option<Duration>,
    /// The other fault, if drawn.
    kind: Option<FaultKind>,
    /// The delay hint of a `429`.
    retry_after_429: RetryAfter,
    /// The body size of an `oversized` fault.
    oversized_bytes: u64,
}

/// Draws the faults for one request: always exactly two numbers from `rng`, one for `slow`,
/// one choosing among the others.
pub(crate) fn draw(spec: &FaultSpec, rng: &mut fastrand::Rng) -> Drawn {
    let slow_roll = rng.f64();
    let roll = rng.f64();
    let delay = (slow_roll < spec.probability(FaultKind::Slow)).then_some(spec.slow_delay());
    let mut threshold = 0.0;
    let mut kind = None;
    for candidate in FaultKind::EXCLUSIVE {
        let probability = spec.probability(candidate);
        threshold += probability;
        if probability > 0.0 && roll < threshold {
            kind = Some(candidate);
            break;
        }
    }
    Drawn {
        delay,
        kind,
        retry_after_429: spec.retry_after_429(),
        oversized_bytes: spec.oversized_bytes(),
    }
}

/// What to do with a request once its faults are drawn.
#[derive(Debug)]
pub(crate) enum Next {
    /// Build the normal reply, then [`corrupt`] it.
    Proceed,
    /// Answer this instead.
    Replace(Reply),
}

/// Applies the faults that replace the response, or delay it, recording them in `faults`.
pub(crate) async fn inject(
    drawn: &Drawn,
    conn: &Conn,
    faults: &mut Vec<Fault>,
) -> Result<Next, ResetConnection> {
    if let Some(delay) = drawn.delay {
        faults.push(Fault::Slow(delay));
        conn.sleep(delay).await;
    }
    let replace = |fault: Fault, reply: Reply| (fault, reply);
    let (fault, reply) = match drawn.kind {
        Some(FaultKind::InternalServerError) => replace(
            Fault::InternalServerError,
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "injected fault: 500",
            ),
        ),
        Some(FaultKind::ServiceUnavailable) => replace(
            Fault::ServiceUnavailable,
            Reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "injected fault: 503",
            ),
        ),
        Some(FaultKind::TooManyRequests) => replace(
            Fault::TooManyRequests(drawn.retry_after_429),
            Reply::error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "injected fault: 429")
                .retry_after(drawn.retry_after_429),
        ),
        Some(FaultKind::Reset) => {
            faults.push(Fault::Reset);
            return Err(conn.reset());
        }
        _ => return Ok(Next::Proceed),
    };
    faults.push(fault);
    Ok(Next::Replace(reply))
}

/// Applies the faults that corrupt a normal response, recording them in `faults`.
/// `cross-origin` moves the URLs on `base` to `other_origin`, or adds a `Location` there
/// (`operationResults` of `operation_id`, if any) when the reply has none.
pub(crate) fn corrupt(
    mut reply: Reply,
    drawn: &Drawn,
    base: &str,
    other_origin: &str,
    operation_id: Option<&str>,
    faults: &mut Vec<Fault>,
) -> Reply {
    let no_body = reply.status == StatusCode::NO_CONTENT;
    match drawn.kind {
        Some(FaultKind::Malformed) if !no_body => {
            reply.body = ReplyBody::Malformed;
            faults.push(Fault::Malformed);
        }
        Some(FaultKind::NoStatus) => {
            if let ReplyBody::Json(Value::Object(body)) = &mut reply.body {
                if body.remove("status").is_some() {
                    faults.push(Fault::NoStatus);
                }
            }
        }
        Some(FaultKind::Oversized) if !no_body => {
            reply.pad_to = Some(drawn.oversized_bytes);
            faults.push(Fault::Oversized(drawn.oversized_bytes));
        }
        Some(FaultKind::CrossOrigin) => {
            let mut moved = false;
            for (name, value) in &mut reply.headers {
                if POLLING_HEADERS.contains(name) {
                    if let Some(rest) = value.strip_prefix(base) {
                        *value = format!("{other_origin}{rest}");
                        moved = true;
                    }
                }
            }
            if let ReplyBody::Json(Value::Object(body)) = &mut reply.body {
                if let Some(Value::String(url)) = body.get_mut("resourceLocation") {
                    if let Some(rest) = url.strip_prefix(base) {
                        *url = format!("{other_origin}{rest}");
                        moved = true;
                    }
                }
            }
            if !moved {
                let target = match operation_id {
                    Some(id) => format!("{other_origin}/operationResults/{id}"),
                    None => format!("{other_origin}/"),
                };
                reply.headers.push((H_LOCATION, target));
            }
            faults.push(Fault::CrossOrigin);
        }
        _ => {}
    }
    reply
}
