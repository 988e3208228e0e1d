//! What `lro batch` shows while it runs: on a terminal, a live summary bar (done, failed,
//! running, throttling, requests per second, ETA) and the slowest operations still running;
//! otherwise a plain line every second. Nothing at all with `--output json`.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lro_core::FleetStats;
use serde_json::Value;

/// How many of the slowest running operations the display names.
const SLOWEST: usize = 3;

/// How often the plain (not a terminal) display prints a line.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// The live display of one batch.
pub(crate) struct Display {
    bar: Option<ProgressBar>,
    plain: bool,
    total: usize,
    started: Instant,
    /// When each running operation started (or was resumed).
    running_since: HashMap<String, Instant>,
    /// Requests sent and when, at the previous refresh: the rate is over the last interval.
    last: (u64, Instant),
    rate: f64,
    last_line: Instant,
    /// When the display was last drawn: at most every [`DRAW_EVERY`], since drawing counts
    /// the failures over every operation done.
    last_draw: Option<Instant>,
}

/// How often, at most, the display is drawn.
const DRAW_EVERY: Duration = Duration::from_millis(100);

impl Display {
    /// A display for `total` operations, `done` of them over already; `text` unless the output
    /// is JSON.
    pub(crate) fn new(total: usize, done: usize, text: bool) -> Self {
        let now = Instant::now();
        let bar = (text && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX));
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} done · {msg} · {elapsed} (eta {eta})\n{prefix}",
            ) {
                bar.set_style(style);
            }
            bar.set_position(u64::try_from(done).unwrap_or(u64::MAX));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Display {
            plain: text && bar.is_none(),
            bar,
            total,
            started: now,
            running_since: HashMap::new(),
            last: (0, now),
            rate: 0.0,
            last_line: now,
            last_draw: None,
        }
    }

    /// Operation `key` started (or was resumed).
    pub(crate) fn running(&mut self, key: &str) {
        self.running_since.insert(key.to_owned(), Instant::now());
    }

    /// Operation `key` ended.
    pub(crate) fn ended(&mut self, key: &str) {
        self.running_since.remove(key);
    }

    /// Shows the state of the batch: `done` holds the report of every operation over, `stats`
    /// the fleet's counters.
    pub(crate) fn refresh(&mut self, done: &BTreeMap<String, Value>, stats: FleetStats) {
        self.refresh_at(Instant::now(), done, stats);
    }

    /// As [`Display::refresh`], at `now`.
    fn refresh_at(&mut self, now: Instant, done: &BTreeMap<String, Value>, stats: FleetStats) {
        if self.last_draw.is_some_and(|at| now.saturating_duration_since(at) < DRAW_EVERY) {
            return;
        }
        self.last_draw = Some(now);
        let span = now.saturating_duration_since(self.last.1);
        if span >= Duration::from_millis(500) {
            let sent = stats.requests_sent.saturating_sub(self.last.0);
            #[allow(clippy::cast_precision_loss)] // a display
            let rate = sent as f64 / span.as_secs_f64();
            self.rate = rate;
            self.last = (stats.requests_sent, now);
        }
        let line = self.summary(done, stats);
        if let Some(bar) = &self.bar {
            bar.set_position(u64::try_from(done.len()).unwrap_or(u64::MAX));
            bar.set_message(line);
            bar.set_prefix(self.slowest(now));
        } else if self.plain && now.saturating_duration_since(self.last_line) >= PLAIN_EVERY {
            let slowest = self.slowest(now);
            let progress = format!("batch: {}/{} done · {line}", done.len(), self.total);
            if slowest.is_empty() {
                eprintln!("{progress}");
            } else {
                eprintln!("{progress} · {slowest}");
            }
            self.last_line = now;
        }
    }

    /// Clears the bar; the caller prints the summary.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// `12 failed · 30 running · 1 origin paused (4 throttled) · 48.0 req/s`.
    fn summary(&self, done: &BTreeMap<String, Value>, stats: FleetStats) -> String {
        let failed = failed(done);
        let running = self.total.saturating_sub(done.len());
        let paused = match stats.paused_origins {
            0 => String::new(),
            1 => " · 1 origin paused".to_owned(),
            n => format!(" · {n} origins paused"),
        };
        let throttled = match stats.throttled {
            0 => String::new(),
            n => format!(" · {n} throttled"),
        };
        format!("{failed} failed · {running} running{paused}{throttled} · {:.1} req/s", self.rate)
    }

    /// `slowest: vm-17 (2m 3s), vm-4 (1m 58s)`, or nothing when none runs.
    fn slowest(&self, now: Instant) -> String {
        let mut oldest: Vec<(&String, &Instant)> = self.running_since.iter().collect();
        let k = SLOWEST.min(oldest.len());
        if k == 0 {
            return String::new();
        }
        // The k earliest starts, without sorting all of them.
        oldest.select_nth_unstable_by_key(k - 1, |(key, at)| (**at, (*key).clone()));
        oldest.truncate(k);
        oldest.sort_by_key(|(key, at)| (**at, (*key).clone()));
        let named: Vec<String> = oldest
            .iter()
            .map(|(key, at)| {
                let secs = now.saturating_duration_since(**at).as_secs();
                format!("{key} ({})", humantime::format_duration(Duration::from_secs(secs)))
            })
            .collect();
        format!("slowest: {}", named.join(", "))
    }

    /// The final line: `batch: 98 of 100 done (97 succeeded, 1 failed), 2 running, 12.3s`.
    pub(crate) fn final_line(&self, done: &BTreeMap<String, Value>) -> String {
        let failed = failed(done);
        format!(
            "batch: {} of {} done ({} succeeded, {failed} failed), {} running, {:.1?}",
            done.len(),
            self.total,
            done.len().saturating_sub(failed),
            self.total.saturating_sub(done.len()),
            self.started.elapsed()
        )
    }
}

/// How many of the operations done did not succeed.
pub(crate) fn failed(done: &BTreeMap<String, Value>) -> usize {
    done.values().filter(|r| r["outcome"] != "succeeded").count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_are_the_earliest_started_still_running_oldest_first() {
        let mut display = Display::new(5, 0, false);
        let t0 = Instant::now();
        for (n, key) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let offset = Duration::from_secs(u64::try_from(n).unwrap_or(0) * 10);
            display.running_since.insert(key.to_owned(), t0 + offset);
        }
        display.ended("a");
        let now = t0 + Duration::from_secs(100);
        assert_eq!(display.slowest(now), "slowest: b (1m 30s), c (1m 20s), d (1m 10s)");
        for key in ["b", "c", "d", "e"] {
            display.ended(key);
        }
        assert_eq!(display.slowest(now), "");
    }

    #[test]
    fn the_summary_counts_failures_throttling_and_the_request_rate() {
        let mut display = Display::new(4, 0, false);
        let mut done = BTreeMap::new();
        done.insert("a".to_owned(), serde_json::json!({"outcome": "succeeded"}));
        done.insert("b".to_owned(), serde_json::json!({"outcome": "failed"}));
        let t0 = Instant::now();
        display.last = (0, t0);
        let mut stats = FleetStats::default();
        stats.requests_sent = 10;
        stats.throttled = 3;
        stats.paused_origins = 1;
        display.refresh_at(t0 + Duration::from_secs(2), &done, stats);
        let line = display.summary(&done, stats);
        assert!(
            line.starts_with("1 failed · 2 running · 1 origin paused · 3 throttled · "),
            "{line}"
        );
        assert!((display.rate - 5.0).abs() < 1e-9, "10 requests in 2 s: {}", display.rate);
    }
}
