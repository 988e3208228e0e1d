//! `GET /events`: a server-sent-event stream of operations reaching their end, so that clients
//! can poll an operation at once instead of waiting out their interval.
//!
//! Each event is one line of JSON: `data: {"operation": "<id>", "status": "Succeeded"}`
//! (`Failed`, `Canceled`), sent once per operation when it ends. Operations that end by their
//! polls ([`Progression::Polls`](crate::Progression::Polls)) end only when polled; the stream is
//! useful with [`Progression::Elapsed`](crate::Progression::Elapsed).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::body::MockBody;
use crate::service::{State, lock};
use crate::store::Phase;

/// How often the store is looked at for operations that ended.
const TICK: Duration = Duration::from_millis(5);

/// The response of `GET /events`: an event stream fed by a task until the client goes away.
pub(crate) fn stream(state: Arc<State>) -> Response<MockBody> {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut told = HashSet::new();
        // A comment first, so the client sees the stream open.
        if sender.send(Bytes::from_static(b": lro-mock events\n\n")).await.is_err() {
            return;
        }
        loop {
            let ended: Vec<(String, &'static str)> = {
                let mut store = lock(&state.store);
                let ids: Vec<String> = store.operations.keys().cloned().collect();
                ids.into_iter()
                    .filter(|id| !told.contains(id))
                    .filter_map(|id| match store.observe(&id, false) {
                        Some(Phase::Done(outcome)) => Some((id, outcome.as_str())),
                        _ => None,
                    })
                    .collect()
            };
            for (id, status) in ended {
                let event = serde_json::json!({"operation": id, "status": status});
                told.insert(id);
                if sender.send(Bytes::from(format!("data: {event}\n\n"))).await.is_err() {
                    return; // the client went away
                }
            }
            // Stop as soon as the client goes away, even when nothing happens.
            tokio::select! {
                () = sender.closed() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            // Forget operations the store no longer holds (evicted), so `told` stays bounded.
            let known: HashSet<String> = lock(&state.store).operations.keys().cloned().collect();
            told.retain(|id| known.contains(id));
        }
    });
    let mut response = Response::new(MockBody::streaming(receiver));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/event-stream"));
    response.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}
