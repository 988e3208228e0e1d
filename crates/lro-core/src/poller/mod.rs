//! The two pollers: [`LroPoller`] (blocking, background thread) and [`AsyncLroPoller`].

pub(crate) mod blocking;
pub(crate) mod nonblocking;
mod shared_run;
mod threads;

pub use blocking::{AlreadyComplete, CallbackId, LroPoller};
pub use nonblocking::{AsyncLroPoller, Progress, async_poller};

/// The text of a panic's payload (a `&str` or a `String`), for the error that a polling method's
/// panic becomes on either poller.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The error a polling method's panic becomes for the poller's waiters.
pub(crate) fn panicked(panic: &(dyn std::any::Any + Send)) -> crate::error::LroError {
    crate::error::LroError::stopped(format!(
        "the polling method panicked: {}",
        panic_message(panic)
    ))
}
