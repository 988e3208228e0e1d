//! An embedded Azure-like long-running-operation service, and a scripted replay server.
//!
//! [`MockServer`] answers like an Azure service that runs long-running operations (LROs): ARM
//! resources that are created, updated, deleted and restarted asynchronously, and data-plane
//! jobs. It serves real HTTP/1.1 and HTTP/2 (prior knowledge) on `127.0.0.1`, so demos, the
//! `lro mock` command, transport loopback tests, benchmarks and SDK authors' own tests can
//! drive real clients against it. It depends on no other `lro` crate.
//!
//! [`scripted::ScriptedServer`] instead replays a fixed list of expected requests with canned
//! answers, for conformance and transport tests.
//!
//! # Routes
//!
//! `{base}` is [`MockServer::base_url`], `{id}` a server-generated operation id, `{widget}`
//! stands for `/subscriptions/{s}/resourceGroups/{g}/providers/Mock.Widgets/widgets/{name}`
//! (literal segments match in any case). Any query string, such as `api-version`, is accepted
//! and ignored.
//!
//! | request | answer |
//! |---|---|
//! | `PUT {widget}` | `201` (`200` if it existed) + `Azure-AsyncOperation: {base}/operations/{id}`; body `{"id", "name", "type", "properties": {…request properties, "provisioningState": "Creating"}}` (`Updating` on replace) |
//! | `PATCH {widget}` | `200` + `Azure-AsyncOperation`; properties merged, `provisioningState: "Updating"`; `404` if absent |
//! | `GET {widget}` | `200` with the current `provisioningState` (`Creating`/`Updating`/`Deleting` while an operation runs, then its outcome); `404` before creation and after a successful delete |
//! | `DELETE {widget}` | `202` + `Location: {base}/operationResults/{id}`; `204` if absent |
//! | `POST {widget}/restart` | `202` + `Location: {base}/operationResults/{id}`; `404` if absent |
//! | `POST /jobs` | `202` + `Operation-Location: {base}/jobs/operations/{id}`; body `{"id", "status": "NotStarted"}`; the request body (any JSON) is the job's input |
//! | `GET /operations/{id}`, `GET /jobs/operations/{id}` | `200 {"id", "status", "startTime", "percentComplete", "endTime"?, "error"?, "resourceLocation"?}` — `percentComplete` 0–99 while running (the share of its polls or time gone by), 100 once terminal; `endTime` once terminal, `error: {"code", "message"}` when `Failed` or `Canceled`, `resourceLocation: {base}/jobs/{id}` when a job `Succeeded` |
//! | `GET /operationResults/{id}` | `202` while running; then `204` (delete), `200` + the resource (PUT/PATCH), `200 {"operationId", "id", "name", "restarted": true}` (restart), `200` + the job (job); `400 {"error"}` when `Failed` or `Canceled` |
//! | `GET /jobs/{id}` | `200 {"id", "status", "input", "result"?, "error"?}` (`result` once `Succeeded`) |
//! | `GET /events` | `200 text/event-stream`: `data: {"operation": "{id}", "status": "Succeeded"}` once per operation when it ends (useful with [`MockConfigBuilder::progress_after`]: clients wake the operation instead of polling it) |
//!
//! Unknown paths answer `404`, known paths with another method `405`; request bodies above the
//! configured cap (1 MiB) `413`; bodies that are not JSON `400`. Responses echo
//! `x-ms-client-request-id`.
//!
//! Every operation has one poll counter, advanced by each GET of its monitor or of its
//! `operationResults` URL. Status moves `NotStarted` (first poll) → `Running` → the terminal
//! status after the configured number of polls (default 2; see [`Progression`]). GETs of the
//! resource only count as polls when the initial response carried no polling header
//! (`x-mock-final-state: none`, ARM body polling).
//!
//! # Control headers (on the initial request)
//!
//! | header | values | effect |
//! |---|---|---|
//! | `x-mock-outcome` | `Succeeded`, `Failed`, `Canceled` | terminal status (default `Succeeded`) |
//! | `x-mock-polls` | `N` | in-progress polls before the terminal status |
//! | `x-mock-retry-after` | `none`, `<seconds>`, `ms:<millis>`, `date:<seconds>` | delay hint on the initial response and in-progress polls: `Retry-After: N`, `retry-after-ms: N`, or `Retry-After: <HTTP-date N s from now>` (at most one hour) |
//! | `x-mock-final-state` | `location`, `azure-async-operation` (or `operation-location`, `monitor`), `both`, `none` | which polling headers the initial response carries; `none` (PUT/PATCH only) leaves clients to poll the resource |
//! | `x-mock-faults` | a [fault spec](faults) | fault injection for this operation, replacing the server's |
//!
//! Default polling headers: `Azure-AsyncOperation` for PUT and PATCH, `Operation-Location` for
//! `POST /jobs`, `Location` for DELETE and restart ([`MockConfigBuilder::initial_headers`]
//! changes them for every route). A malformed control header answers `400` with an error body
//! naming it.
//!
//! # Faults
//!
//! See [`faults`] for the spec grammar. Faults apply to polls (monitor, `operationResults`,
//! resource and job GETs), and to initial requests only when the spec says `initial=true`.
//! Faults that replace the answer (`500`, `503`, `429`, `reset`) do not advance the operation;
//! the others (`slow`, `malformed`, `nostatus`, `oversized`, `cross-origin`) corrupt a normal
//! answer, which does. Injected faults are listed in [`LogEntry::faults`].
//!
//! # Bounds
//!
//! Stored operations and resources (default 10 000 each, oldest forgotten first; kept request
//! bodies at most 64 MiB in all), log entries (default 10 000), distinct counter keys (10 000),
//! request bodies (1 MiB, read within 10 s), request heads (10 s), open connections (1 024),
//! `slow` delays (10 s), `oversized` bodies (1 GiB, streamed), delay hints (one hour), and
//! shutdown (2 s of grace).

mod body;
mod config;
mod control;
mod events;
pub mod faults;
mod log;
mod reply;
mod retry_after;
mod routes;
pub mod scripted;
mod serve;
mod server;
mod service;
mod store;

pub use config::{InitialHeaders, MockConfig, MockConfigBuilder, Outcome, Progression};
pub use faults::{Fault, FaultKind, FaultSpec, FaultSpecError};
pub use log::{Counters, LogEntry};
pub use retry_after::{MAX_RETRY_AFTER, RetryAfter};
pub use server::MockServer;
