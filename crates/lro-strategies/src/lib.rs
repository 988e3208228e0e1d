//! The polling strategies an SDK author picks from: [`NoPolling`], azure-core's base polling
//! ([`LroBasePolling`]: Operation-Location, Location, status check), azure-mgmt-core's
//! [`ArmPolling`] (Azure-AsyncOperation, Location, `provisioningState`), and
//! [`ExponentialBackoff`].
//!
//! Each strategy is sans-IO (an [`lro_core::Strategy`]): it reads responses and answers
//! questions, and `lro-core`'s engine and drivers do the rest, so every strategy works with the
//! blocking and the async poller and with any transport. Behaviour follows azure-core 1.41 /
//! azure-mgmt-core 1.6; the deliberate differences are listed in `docs/strategies.md`.
//!
//! ```
//! use lro_strategies::{ArmPolling, ExponentialBackoff, FinalStateVia};
//!
//! // ARM polling, waiting 1 s, 2 s, 4 s ... (at most 30 s) unless the service says otherwise.
//! let method = ArmPolling::builder()
//!     .final_state_via(FinalStateVia::Location)
//!     .delay(ExponentialBackoff::builder().max_delay(std::time::Duration::from_secs(30)).build())
//!     .build::<serde_json::Value>();
//! # let _ = method;
//! ```

/// `docs/strategies.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/strategies.md")]
struct StrategiesDoc;

mod backoff;
mod base;
mod final_state;
mod no_polling;
mod urls;

pub use backoff::{ExponentialBackoff, ExponentialBackoffBuilder, Jitter};
pub use base::{Algorithm, ArmPolling, LroBasePolling, PollingBuilder};
pub use final_state::{FinalStateVia, UnknownFinalStateVia};
pub use no_polling::NoPolling;
pub use urls::UrlHook;
