//! A blocking polling method written by hand, under the async poller: `lro_hyper::off_thread`
//! runs its loop on tokio's blocking threads and its requests through the async client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use lro_core::{
    AsyncLroPoller, BlockingOperation, Deserializer, HttpClient, InitialResponse, LroError,
    PollingMethod, RunContext, Status, StatusKind, async_poller, deserialize,
};
use lro_hyper::{HyperClient, TokioTimer};
use lro_mock::scripted::{ScriptedServer, Step};
use serde_json::Value;

/// A raw loop, as azure-core users write them: GET the `Location` until it stops answering 202.
struct FollowLocation;

struct Following {
    client: Arc<dyn HttpClient>,
    deserializer: Deserializer<Value>,
    state: Mutex<(Uri, Response<Bytes>, Status)>,
}

impl PollingMethod<Value> for FollowLocation {
    type Operation = Following;

    fn initialize(
        self,
        client: Arc<dyn HttpClient>,
        initial: InitialResponse,
        deserializer: Deserializer<Value>,
    ) -> Result<Following, LroError> {
        let response = initial.response().clone();
        let url = response.headers()["location"].to_str().unwrap().parse().unwrap();
        let status = Status::new("InProgress", StatusKind::InProgress);
        Ok(Following { client, deserializer, state: Mutex::new((url, response, status)) })
    }
}

impl BlockingOperation<Value> for Following {
    fn run(&self, ctx: &RunContext<'_>) -> Result<(), LroError> {
        while !self.finished() {
            let url = self.state.lock().unwrap().0.clone();
            let mut request = Request::new(Bytes::new());
            *request.uri_mut() = url;
            ctx.check()?;
            let response = self.client.send(request).map_err(LroError::transport)?;
            let status = if response.status() == StatusCode::ACCEPTED {
                Status::new("InProgress", StatusKind::InProgress)
            } else {
                Status::new("Succeeded", StatusKind::Succeeded)
            };
            let done = status.is_terminal();
            {
                let mut state = self.state.lock().unwrap();
                (state.1, state.2) = (response, status);
            }
            if !done {
                ctx.sleep(Duration::from_millis(5))?;
            }
        }
        Ok(())
    }

    fn status(&self) -> Status {
        self.state.lock().unwrap().2.clone()
    }

    fn finished(&self) -> bool {
        self.status().is_terminal()
    }

    fn resource(&self) -> Result<Value, LroError> {
        (self.deserializer)(&self.state.lock().unwrap().1)
            .map_err(|e| LroError::decode("bad resource", Some(e)))
    }
}

fn server() -> ScriptedServer {
    ScriptedServer::start_blocking(vec![
        Step::get("/status/1").status(202),
        Step::get("/status/1").status(202),
        Step::get("/status/1").json(r#"{"name": "w1"}"#),
    ])
    .unwrap()
}

fn started(server: &ScriptedServer) -> InitialResponse {
    let head = Request::post(server.url("/jobs")).body(()).unwrap();
    let mut first = Response::new(Bytes::new());
    *first.status_mut() = StatusCode::ACCEPTED;
    first.headers_mut().insert("location", server.url("/status/1").parse().unwrap());
    InitialResponse::from_exchange(&head, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_method_runs_under_the_async_poller_off_the_async_task() {
    let server = server();
    let client = Arc::new(HyperClient::new().unwrap());
    let method = lro_hyper::off_thread(FollowLocation);
    let poller =
        AsyncLroPoller::new(client, TokioTimer, started(&server), deserialize::json(), method)
            .unwrap();
    let resource =
        tokio::time::timeout(Duration::from_secs(20), poller.result(None)).await.unwrap().unwrap();
    assert_eq!(resource["name"], "w1");
    assert_eq!(poller.status().as_str(), "Succeeded");
    assert!(server.is_complete(), "{:?}", server.remaining());
}

#[tokio::test(flavor = "current_thread")]
async fn async_poller_accepts_it_even_on_a_single_threaded_runtime() {
    let server = server();
    let client = Arc::new(HyperClient::new().unwrap());
    let resource = tokio::time::timeout(
        Duration::from_secs(20),
        async_poller(
            client,
            TokioTimer,
            started(&server),
            deserialize::json(),
            lro_hyper::off_thread(FollowLocation),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resource["name"], "w1");
}
