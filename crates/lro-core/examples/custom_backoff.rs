//! A polling method written from scratch (the seed's custom method): follow the `Location`
//! header, waiting twice as long after every poll. Run with
//! `cargo run -p lro-core --example custom_backoff --features test-util`.
//!
//! Built-in methods are sans-IO strategies driven by the engine; this one shows that the
//! azure-core contract can still be implemented by hand in a few dozen lines.
#![allow(missing_debug_implementations)] // a lint of this workspace, not needed in yours

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
    state: Mutex<State<T>>,
}

struct State<T> {
    client: Option<Arc<dyn HttpClient>>,
    url: Option<Uri>,
    latest: Option<Response<Bytes>>,
    status: Status,
    deserializer: Option<Deserializer<T>>,
}

impl<T> ExponentialLocationPolling<T> {
    /// Waits `first_delay`, then twice as long each time, at most `max_delay`.
    pub fn new(first_delay: Duration, max_delay: Duration) -> Self {
        let state = State {
            client: None,
            url: None,
            latest: None,
            status: Status::new("NotStarted", StatusKind::InProgress),
            deserializer: None,
        };
        ExponentialLocationPolling {
            first_delay,
            max_delay,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn location(response: &Response<Bytes>) -> Option<Uri> {
    response
        .headers()
        .get("location")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl<T> PollingMethod<T> for ExponentialLocationPolling<T> {
    fn initialize(
        &mut self,
        client: Arc<dyn HttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<T>,
    ) -> Result<(), LroError> {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        state.url = location(initial.response());
        state.status = match state.url {
            Some(_) => Status::new("InProgress", StatusKind::InProgress),
            None => Status::new("Succeeded", StatusKind::Succeeded),
        };
        state.latest = Some(initial.response().clone());
        state.client = Some(client);
        state.deserializer = Some(deserializer);
        Ok(())
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<(), LroError> {
        let mut delay = self.first_delay;
        while !self.finished() {
            let (client, url) = {
                let state = self.state();
                (state.client.clone(), state.url.clone())
            };
            let (Some(client), Some(url)) = (client, url) else {
                return Err(LroError::policy("not initialized"));
            };
            let request = Request::get(url)
                .body(Bytes::new())
                .map_err(|e| LroError::policy(e.to_string()))?;
            let response = client.send(request).map_err(LroError::transport)?;
            let mut state = self.state();
            state.status = match response.status() {
                StatusCode::ACCEPTED => Status::new("InProgress", StatusKind::InProgress),
                code if code.is_success() => Status::new("Succeeded", StatusKind::Succeeded),
                _ => return Err(LroError::bad_status(&response, &http::Method::GET)),
            };
            state.url = location(&response).or(state.url.take());
            state.latest = Some(response);
            if !state.status.is_terminal() {
                drop(state);
                ctx.sleep(delay)?;
                delay = delay.saturating_mul(2).min(self.max_delay);
            }
        }
        Ok(())
    }

    fn status(&self) -> Status {
        self.state().status.clone()
    }

    fn finished(&self) -> bool {
        self.state().status.is_terminal()
    }

    fn resource(&self) -> Result<T, LroError> {
        let state = self.state();
        match (&state.deserializer, &state.latest) {
            (Some(deserialize), Some(latest)) => {
                deserialize(latest).map_err(|e| LroError::decode("bad resource", Some(e)))
            }
            _ => Err(LroError::policy("not initialized")),
        }
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
    transport.push_get(
        "http://svc/status/1",
        json_response(200, r#"{"name":"w1"}"#),
    );
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
