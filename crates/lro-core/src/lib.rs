//! Drive HTTP long-running operations (LROs) to completion, the way Azure services define them.
//!
//! `lro-core` is the transport-agnostic heart of the `lro` workspace: the [`Status`],
//! [`LroError`] and [`ContinuationToken`] types, the traits that plug in an HTTP stack
//! ([`HttpClient`], [`AsyncHttpClient`]) and time ([`Timer`], [`AsyncTimer`]), the sans-IO
//! [`Engine`] that makes every polling decision, and the two pollers that drive it:
//! [`LroPoller`] (blocking, on a background thread) and [`AsyncLroPoller`] (async, on the
//! caller's task).
//!
//! What you will *not* find here: an HTTP client, an async runtime, or the Azure polling
//! algorithms. Transports live in `lro-hyper` and `lro-blocking`; the algorithms
//! (Operation-Location, Azure-AsyncOperation, Location, ARM, exponential backoff) in
//! `lro-strategies`. This crate depends on neither tokio nor hyper.
//!
//! # The layers
//!
//! | layer | blocking | async | decides |
//! |---|---|---|---|
//! | poller | [`LroPoller`] | [`AsyncLroPoller`] | threads, waiting, timeouts, callbacks |
//! | polling method | [`PollingMethod`] → [`BlockingOperation`] | [`AsyncPollingMethod`] → [`AsyncOperation`] | the loop (use [`StrategyPolling`], or write your own) |
//! | engine | [`Engine`] | (same) | when to poll, wait, stop; limits; trust; tokens |
//! | strategy | [`Strategy`] | (same) | status, polling URL, final GET |
//!
//! [`StrategyPolling`] turns any [`Strategy`] into both kinds of polling method: the strategy
//! and the engine are written once, and the blocking and async drivers are two short loops.
//!
//! # Example
//!
//! A real operation: an ARM PUT through the blocking transport (`lro-blocking`) and azure-mgmt-core's
//! polling algorithm (`lro-strategies`), here against the embedded mock service (`lro-mock`). The
//! async poller is the same with `lro-hyper`, `InitialResponse::send_async` and `.await`.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use lro_blocking::BlockingClient;
//! use lro_core::{InitialResponse, LroPoller, deserialize};
//! use lro_strategies::ArmPolling;
//! # let mock = lro_mock::MockServer::start_blocking(lro_mock::MockConfig::builder().build())?;
//! # let url = mock.url("/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/w1");
//!
//! let client = Arc::new(BlockingClient::new()?);
//! let request = http::Request::put(&url)
//!     .header("content-type", "application/json")
//!     .body(Bytes::from_static(br#"{"properties": {"size": 3}}"#))?;
//! let initial = InitialResponse::send(&*client, request)?;
//! let method = ArmPolling::builder().interval(Duration::from_millis(20)).build();
//! let poller = LroPoller::new(client,lro_core::SystemTimer, initial, deserialize::json::<serde_json::Value>(), method)?;
//! match poller.result(Some(Duration::from_secs(60))) {
//!     Ok(widget) => assert_eq!(widget["properties"]["provisioningState"], "Succeeded"),
//!     Err(error) => match error.continuation_token() {
//!         Some(token) => eprintln!("{}; resume with {token}", error.chain()),
//!         None => eprintln!("{}", error.chain()),
//!     },
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Tests of code that uses pollers need no network: the `test_util` module (feature
//! `test-util`) has a scripted transport and a manual clock.
#![cfg_attr(feature = "test-util", doc = "See [`test_util`].")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
pub mod deadline;
pub mod delay;
pub mod deserialize;
mod drivers;
mod engine;
mod error;
mod fleet;
mod fleet_stream;
mod initial;
mod method;
mod off_thread;
mod options;
mod owned;
mod poller;
mod redact;
mod retry;
mod status;
mod strategy;
mod telemetry;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod token;
mod transport;

/// `docs/transports.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/transports.md")]
struct TransportsDoctests;

/// `docs/architecture.md`, compiled as doc tests (its Rust blocks must build).
#[cfg(doctest)]
#[doc = include_str!("../../../docs/architecture.md")]
struct ArchitectureDoctests;

pub use delay::{DelayContext, DelayPolicy, FixedInterval};
pub use deserialize::Deserializer;
pub use drivers::{PollEvent, StrategyOperation, StrategyPolling};
pub use engine::{Action, Engine};
pub use error::{
    DecodeError, ErrorChain, HttpResponseError, LroError, MAX_ERROR_BODY, PolicyError,
    ServiceError, StoppedError, TimeoutError, TransportFailure,
};
pub use fleet::{Fleet, FleetAction, FleetOptions, FleetOptionsBuilder, FleetStats, RequestId};
pub use fleet_stream::{FleetHandle, FleetResult, FleetStream};
pub use initial::{InitialResponse, RequestHead};
pub use method::{
    AsyncOperation, AsyncPollingMethod, BlockingOperation, PollingMethod, RunContext,
};
pub use off_thread::{BlockingThreads, OffThread, OffThreadOperation};
pub use options::{
    DEFAULT_MAX_DELAY, DEFAULT_MIN_DELAY, OriginPolicy, PollOptions, PollOptionsBuilder,
    is_credential,
};
pub use poller::{AlreadyComplete, AsyncLroPoller, CallbackId, LroPoller, Progress, async_poller};
pub use retry::{
    DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_MAX_RETRIES, RetryPolicy,
    RetryPolicyBuilder,
};
pub use status::{Status, StatusKind, StatusVocabulary};
pub use strategy::Strategy;
pub use telemetry::WaitReason;
// The wire records of a token (`TokenState`, `RequestRecord`, `ResponseRecord`) and its limits
// stay in `lro_core::token`: tools that inspect tokens need them, everyday code does not.
pub use body::collect_body;
pub use token::{
    ContinuationToken, KeyTooShort, MAX_TOKEN_LEN, TokenError, TokenIntegrity, TokenKey,
};
pub use transport::{
    AsyncHttpClient, AsyncTimer, BoxError, BoxFuture, DEFAULT_MAX_BODY, HttpClient, Interrupt,
    SystemTimer, Timer, Timestamp, TransportError, TransportErrorKind, causes, find_cause,
};
