//! A polling method written from scratch (the seed's custom method): follow the `Location`
//! header, waiting twice as long after every poll. Run with
//! `cargo run -p lro-core --example custom_backoff --features test-util`.
//!
//! Built-in methods are sans-IO strategies driven by the engine; this one shows that the
//! azure-core contract can still be implemented by hand in a few dozen lines.
#![allow(missing_debug_implementations, unreachable_pub)] // lints of this workspace, not needed in yours

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use lro_core::{
    Deserializer, HttpClient, InitialResponse, LroError, PollingMethod, RunContext, Status,
    StatusKind,
};

/// Polls `Location` until it stops answering 202, with exponential backoff.
pub struct ExponentialLocationPolling<T> {
    first_delay: Duration,
    max_delay: Duration,
    state: Mutex<Option<State<T>>>,
}

struct State<T> {
    client: Arc<dyn HttpClient>,
    deserializer: Deserializer<T>,
    url: Option<Uri>,
    latest: Response<Bytes>,
    status: Status,
}

impl<T> ExponentialLocationPolling<T> {
    /// Waits `first_delay`, then twice as long each time, at most `max_delay`.
    pub fn new(first_delay: Duration, max_delay: Duration) -> Self {
        ExponentialLocationPolling { first_delay, max_delay, state: Mutex::new(None) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> Result<R, LroError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.as_mut().map(f).ok_or_else(|| LroError::policy("not initialized"))
    }
}

fn status_of(response: &Response<Bytes>) -> Result<Status, LroError> {
    match response.status() {
        StatusCode::ACCEPTED => Ok(Status::new("InProgress", StatusKind::InProgress)),
        code if code.is_success() => Ok(Status::new("Succeeded", StatusKind::Succeeded)),
        _ => Err(LroError::bad_status(response, &http::Method::GET)),
    }
}

fn location(response: &Response<Bytes>) -> Option<Uri> {
    response.headers().get("location")?.to_str().ok()?.parse().ok()
}

impl<T> PollingMethod<T> for ExponentialLocationPolling<T> {
    fn initialize(
        &mut self,
        client: Arc<dyn HttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        let latest = initial.response().clone();
        let url = location(&latest);
        let status = match url {
            Some(_) => Status::new("InProgress", StatusKind::InProgress),
            None => status_of(&latest)?,
        };
        let state = State { client, deserializer, url, latest, status };
        *self.state.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(state);
        Ok(())
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<(), LroError> {
        let mut delay = self.first_delay;
        while !self.finished() {
            let (client, url) = self.with(|s| (s.client.clone(), s.url.clone()))?;
            let url = url.ok_or_else(|| LroError::policy("no Location to poll"))?;
            let mut request = Request::new(Bytes::new()); // a GET
            *request.uri_mut() = url;
            let response = client.send(request).map_err(LroError::transport)?;
            let status = status_of(&response)?;
            let done = status.is_terminal();
            self.with(|s| {
                s.url = location(&response).or(s.url.take());
                (s.latest, s.status) = (response, status);
            })?;
            if !done {
                ctx.sleep(delay)?;
                delay = delay.saturating_mul(2).min(self.max_delay);
            }
        }
        Ok(())
    }

    fn status(&self) -> Status {
        let not_started = || Status::new("NotStarted", StatusKind::InProgress);
        self.with(|s| s.status.clone()).unwrap_or_else(|_| not_started())
    }

    fn finished(&self) -> bool {
        self.with(|s| s.status.is_terminal()).unwrap_or(false)
    }

    fn resource(&self) -> Result<T, LroError> {
        self.with(|s| (s.deserializer)(&s.latest))?
            .map_err(|e| LroError::decode("bad resource", Some(e)))
    }
}

/// Runs the method against a scripted service; returns the waits and the resource.
#[allow(clippy::unwrap_used)]
pub fn demo() -> (Vec<Duration>, serde_json::Value) {
    use lro_core::test_util::{ScriptedTransport, WithHeader, json_response};
    use lro_core::{LroPoller, deserialize};

    let transport = Arc::new(ScriptedTransport::new());
    for _ in 0..4 {
        transport.push_get("http://svc/status/1", json_response(202, ""));
    }
    transport.push_get("http://svc/status/1", json_response(200, r#"{"name":"w1"}"#));
    let initial = InitialResponse::new(
        ScriptedTransport::request_head("POST", "http://svc/widgets"),
        json_response(202, "").with_header("location", "http://svc/status/1"),
    );
    let method = ExponentialLocationPolling::new(Duration::from_secs(1), Duration::from_secs(5));
    let poller = LroPoller::new(transport.clone(), initial, deserialize::json(), method).unwrap();
    let resource = poller.result(None).unwrap();
    (transport.sleeps(), resource)
}

#[allow(dead_code)]
fn main() {
    let (sleeps, resource) = demo();
    println!("waited {sleeps:?} (virtual time), got {resource}");
}
