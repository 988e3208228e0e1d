//! The two pollers: [`LroPoller`] (blocking, background thread) and [`AsyncLroPoller`].

pub(crate) mod blocking;
pub(crate) mod nonblocking;
mod shared_run;

pub use blocking::{AlreadyComplete, CallbackId, LroPoller};
pub use nonblocking::{AsyncLroPoller, Progress, async_poller};
