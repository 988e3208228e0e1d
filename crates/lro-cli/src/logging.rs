//! `-v` and `LRO_LOG`: the library's spans and events (lro-core's `tracing` feature) as log lines
//! on stderr. Off unless asked for: the progress display is the default view.

use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable with a filter in `tracing-subscriber`'s syntax (`lro_core=debug`).
pub(crate) const LOG_VARIABLE: &str = "LRO_LOG";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether log lines go to stderr in this run.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Installs the log subscriber for `-v` (`verbosity` 1: operations, retries, outcomes; 2: every
/// request too, a line when it is answered; 3 and more: also a line as it is sent), or for the
/// filter in `LRO_LOG`, which wins.
#[cfg(feature = "tracing")]
pub(crate) fn init(verbosity: u8) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::format::FmtSpan;

    let filter = match std::env::var(LOG_VARIABLE) {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => filter,
            Err(e) => {
                eprintln!("warning: {LOG_VARIABLE}={spec:?} is not a log filter ({e}); ignored");
                return;
            }
        },
        _ => match verbosity {
            0 => return,
            1 => EnvFilter::new("lro_core=info"),
            _ => EnvFilter::new("lro_core=debug"),
        },
    };
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let installed = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_target(false)
        // A line when a poll's span closes: its status code, status, delay and reason; and with
        // -vvv one as it opens, when the request is sent.
        .with_span_events(match verbosity {
            0 | 1 => FmtSpan::NONE,
            2 => FmtSpan::CLOSE,
            _ => FmtSpan::NEW | FmtSpan::CLOSE,
        })
        .try_init();
    ENABLED.store(installed.is_ok(), Ordering::Relaxed);
}

/// Without the `tracing` feature there is nothing to log: say so when asked.
#[cfg(not(feature = "tracing"))]
pub(crate) fn init(verbosity: u8) {
    if verbosity > 0 || std::env::var_os(LOG_VARIABLE).is_some() {
        eprintln!("warning: this lro was built without the `tracing` feature: nothing to log");
    }
}
