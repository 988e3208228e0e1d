//! Live progress while one operation is polled, and the token file kept up to date.
//!
//! On a terminal: a spinner (a bar once the service reports `percentComplete`) with the status,
//! the polls, the elapsed time and the countdown to the next poll with its reason
//! ("next poll in 28s, Retry-After"). Elsewhere: a line on stderr whenever the status or the
//! percentage changes. Nothing with `--output json`, or with `-v` (the log lines say it all).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use lro_core::{ContinuationToken, PollEvent, WaitReason};

use crate::Output;
use crate::paint::{self, Paint};
use crate::token_file;

/// When the next poll is due and why: read by the spinner's countdown at every tick.
type NextPoll = Arc<Mutex<Option<(Instant, WaitReason)>>>;

/// Progress while polling, and the token file kept up to date.
pub(crate) struct Progress {
    started: Instant,
    token_file: Option<PathBuf>,
    style: Style,
    paint: Paint,
    next: NextPoll,
    state: Mutex<State>,
}

enum Style {
    Quiet,
    Lines,
    Spinner(ProgressBar),
}

#[derive(Default)]
struct State {
    last_line: Option<String>,
    /// Whether the spinner became a bar (the service reported a percentage).
    bar: bool,
    token_error: Option<String>,
    /// Set once the run was interrupted: the token file holds its final token and is not
    /// written again (a blocking poller's thread may still report a poll or two).
    frozen: bool,
}

const SPINNER: &str = "{spinner} {msg} · {elapsed}{countdown}";
const BAR: &str = "{spinner} [{bar:24}] {pos:>3}% {msg} · {elapsed}{countdown}";

fn style(template: &str, next: &NextPoll) -> Option<ProgressStyle> {
    let next = Arc::clone(next);
    let countdown = move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
        let due = *next.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, reason)) = due {
            let left = at.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                // Whole seconds, rounded up: "in 0s" would be a lie.
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                let _ = write!(w, " · next poll in {secs}s ({reason})");
            }
        }
    };
    ProgressStyle::with_template(template).ok().map(|s| s.with_key("countdown", countdown))
}

impl Progress {
    /// With logging on (`-v`, `LRO_LOG`), log lines go to stderr: no spinner draws over them.
    pub(crate) fn new(output: Output, token_file: Option<PathBuf>) -> Self {
        let verbose = crate::logging::enabled();
        let next: NextPoll = Arc::default();
        let style = match output {
            // The log lines say it all (and a spinner would draw over them).
            Output::Json => Style::Quiet,
            Output::Text | Output::Raw if verbose => Style::Quiet,
            Output::Text | Output::Raw if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::new_spinner();
                if let Some(style) = style(SPINNER, &next) {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(Duration::from_millis(120));
                Style::Spinner(bar)
            }
            Output::Text | Output::Raw => Style::Lines,
        };
        Progress {
            started: Instant::now(),
            token_file,
            style,
            paint: Paint::stderr(),
            next,
            state: Mutex::new(State::default()),
        }
    }

    /// Time since the run started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Called after the initial response and after every poll.
    pub(crate) fn update(&self, event: &PollEvent) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.frozen {
            return;
        }
        if let Some(token) = &event.continuation_token {
            self.save(&mut state, token);
        }
        *self.next.lock().unwrap_or_else(PoisonError::into_inner) = event
            .next_wait
            .and_then(|(wait, reason)| Some((Instant::now().checked_add(wait)?, reason)));
        let word = paint::printable(event.status.as_str());
        let status = self.paint.status(&word, event.status.kind());
        let polls = paint::polls(u64::from(event.polls));
        match &self.style {
            Style::Quiet => {}
            Style::Spinner(bar) => {
                if let Some(percent) = event.percent_complete {
                    if !state.bar {
                        state.bar = true;
                        bar.set_length(100);
                        if let Some(style) = style(BAR, &self.next) {
                            bar.set_style(style);
                        }
                    }
                    bar.set_position(u64::from(percent));
                }
                bar.set_message(format!("{status} · {polls}"));
            }
            Style::Lines => {
                let percent =
                    event.percent_complete.map(|p| format!(" · {p}%")).unwrap_or_default();
                let line = format!("{status}{percent}");
                if state.last_line.as_deref() != Some(line.as_str()) {
                    let next = match event.next_wait {
                        Some((wait, reason)) if !event.finished => {
                            format!(" · next poll in {} ({reason})", paint::duration(wait))
                        }
                        _ => String::new(),
                    };
                    eprintln!(
                        "status: {line} · {polls} · {}{next}",
                        paint::duration(self.started.elapsed())
                    );
                    state.last_line = Some(line);
                }
            }
        }
    }

    /// Writes `token` to the token file (if any), then stops writing it: the run was
    /// interrupted. Under the same lock as the updates, so two writes never overlap.
    pub(crate) fn freeze(&self, token: Option<&ContinuationToken>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = token {
            self.save(&mut state, token);
        }
        state.frozen = true;
    }

    fn save(&self, state: &mut State, token: &ContinuationToken) {
        if let Some(path) = &self.token_file {
            if let Err(e) = token_file::write(path, token) {
                state.token_error =
                    Some(format!("cannot write the token file {}: {e}", path.display()));
            }
        }
    }

    /// A problem writing the token file, if any happened.
    pub(crate) fn token_error(&self) -> Option<String> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).token_error.clone()
    }

    pub(crate) fn finish(&self) {
        if let Style::Spinner(bar) = &self.style {
            bar.finish_and_clear();
        }
    }
}
