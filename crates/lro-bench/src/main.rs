//! `lro-bench`: the benchmarks behind `cargo xtask bench`, over loopback only.
//!
//! `lro-bench [--quick] [--out target/bench/results.json] [--only fleet|cpu|memory|store]
//! [--operations N] [--rate R] [--wait-ms MS] [--polls N] [--runs N]` runs them (the options
//! after `--only` change the workloads, for experiments), prints a table and writes
//! `{"quick", "results": [{"name", "metric", "value", "control", "ratio", "ratio_interval",
//! "limit"}]}`. Heap figures come from a counting global allocator (`stats_alloc`); see
//! `docs/performance.md` for each benchmark and the stable names of its figures.
//!
//! Three subcommands are the benchmark's own processes: `lro-bench serve [--cpu C]` (the status
//! monitor service), `lro-bench pair KIND --url URL --polls N --runs T [--cpu C]` (a stack and
//! its control taking turns, `T` operations each) and `lro-bench client KIND --url URL --polls
//! N [--cpu C]` (one measured operation of one stack, for profilers). `lro-bench footprint
//! [--polls N] [--out DIR]` runs those clients under callgrind's cache simulation: the exact
//! instructions and cache lines of a request of each stack and its control (`cargo xtask
//! footprint`; see `footprint.rs`).

mod clients;
mod cpu;
mod fleet;
mod footprint;
mod memory;
mod monitor;
mod server;
mod store;

use std::alloc::System;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A benchmark failed to run.
#[derive(Debug)]
pub(crate) struct BenchError(String);

impl<E: std::error::Error> From<E> for BenchError {
    fn from(error: E) -> Self {
        BenchError(error.to_string())
    }
}

/// One figure: a stable `name`, what it measures, its value, and optionally a control to
/// compare it with.
#[derive(Debug)]
pub(crate) struct Measure {
    name: &'static str,
    metric: &'static str,
    value: f64,
    control: Option<(&'static str, f64)>,
    /// The ratio to the control measured turn by turn (else value over control value).
    paired: Option<f64>,
    /// A 95% interval for the paired ratio (the median of the turns' ratios).
    interval: Option<(f64, f64)>,
    /// The control is a limit every run checks (quick runs included).
    limit: Option<Limit>,
}

/// How a figure must stand to its control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Not above it (a target).
    AtMost,
    /// Equal to it (an exact count).
    Exactly,
}

impl Measure {
    pub(crate) fn new(name: &'static str, metric: &'static str, value: f64) -> Self {
        Measure { name, metric, value, control: None, paired: None, interval: None, limit: None }
    }

    /// Must not exceed `limit` (named `control`): a target every run checks. The ratio is
    /// reported as with [`Measure::against`].
    pub(crate) fn at_most(self, control: &'static str, limit: f64) -> Self {
        self.limited(control, limit, Limit::AtMost)
    }

    /// Must equal `expected` (named `control`): an exact count every run checks.
    pub(crate) fn exactly(self, control: &'static str, expected: f64) -> Self {
        self.limited(control, expected, Limit::Exactly)
    }

    fn limited(mut self, control: &'static str, value: f64, limit: Limit) -> Self {
        self.control = Some((control, value));
        self.limit = Some(limit);
        self
    }

    /// How this figure breaks its limit, if it does (a value that is not a number does).
    fn broken_limit(&self) -> Option<String> {
        let ((control, bound), limit) = self.control.zip(self.limit)?;
        let (holds, relation) = match limit {
            Limit::AtMost => (self.value <= bound, "over its limit"),
            Limit::Exactly => (self.value == bound, "not"),
        };
        (!holds)
            .then(|| format!("{} is {:.3}, {relation} {control} = {bound}", self.name, self.value))
    }

    /// Compared with `control`, whose value is `value`: the ratio is reported.
    pub(crate) fn against(mut self, control: &'static str, value: f64) -> Self {
        self.control = Some((control, value));
        self
    }

    /// The ratio to the control is `ratio`, the median of ratios measured turn by turn, which
    /// lies within `interval` with 95% confidence.
    pub(crate) fn paired(mut self, ratio: f64, interval: (f64, f64)) -> Self {
        self.paired = Some(ratio);
        self.interval = Some(interval).filter(|(low, high)| low.is_finite() && high.is_finite());
        self
    }

    fn ratio(&self) -> Option<f64> {
        let ratio = self.paired.or_else(|| self.control.map(|(_, c)| self.value / c));
        ratio.filter(|r| r.is_finite())
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "metric": self.metric,
            "value": self.value,
            "control": self.control.map(|(name, _)| name),
            "ratio": self.ratio(),
            "ratio_interval": self.interval.map(|(low, high)| [low, high]),
            "limit": self.limit.map(|limit| match limit {
                Limit::AtMost => "at_most",
                Limit::Exactly => "exactly",
            }),
        })
    }
}

/// Heap bytes in use now (allocated minus freed since the start).
fn heap() -> isize {
    let stats = GLOBAL.stats();
    let net = i128::try_from(stats.bytes_allocated).unwrap_or(i128::MAX)
        - i128::try_from(stats.bytes_deallocated).unwrap_or(i128::MAX);
    isize::try_from(net).unwrap_or(isize::MAX)
}

/// What the command line asked for.
#[derive(Debug)]
struct Args {
    quick: bool,
    /// `--out`: the results file (`footprint`: the folder of its files).
    out: Option<PathBuf>,
    only: Option<String>,
    operations: Option<usize>,
    rate: f64,
    wait_ms: Option<u64>,
    polls: Option<u32>,
    runs: Option<usize>,
    cpu: Option<usize>,
    url: Option<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        quick: false,
        out: None,
        only: None,
        operations: None,
        rate: fleet::RATE,
        wait_ms: None,
        polls: None,
        runs: None,
        cpu: None,
        url: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        let mut number = || -> Result<f64, String> {
            value()?
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{arg} needs a number"))
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // non-negative
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--out" => parsed.out = Some(PathBuf::from(value()?)),
            "--only" => parsed.only = Some(value()?),
            "--url" => parsed.url = Some(value()?),
            "--operations" => parsed.operations = Some(number()? as usize),
            "--rate" => parsed.rate = number()?,
            "--wait-ms" => parsed.wait_ms = Some(number()? as u64),
            "--polls" => parsed.polls = Some(number()? as u32),
            "--runs" => parsed.runs = Some(number()? as usize),
            "--cpu" => parsed.cpu = Some(number()? as usize),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let command = match args.peek().map(String::as_str) {
        Some("serve" | "client" | "pair" | "footprint") => args.next(),
        _ => None,
    };
    let kind = match command.as_deref() {
        Some("client" | "pair") => match args.next().as_deref().map(clients::Kind::parse) {
            Some(Some(kind)) => Some(kind),
            _ => return usage("client and pair need a KIND"),
        },
        _ => None,
    };
    let args = match parse(args) {
        Ok(args) => args,
        Err(problem) => return usage(&problem),
    };
    if let Some(cpu) = args.cpu {
        if let Err(BenchError(e)) = cpu::pin(cpu) {
            eprintln!("lro-bench: cannot pin to CPU {cpu}: {e}");
        }
    }
    let outcome = match (command.as_deref(), kind) {
        (Some("serve"), _) => monitor::serve().map_err(BenchError::from),
        (Some("client"), Some(kind)) => {
            let url = args.url.clone().unwrap_or_default();
            cpu::client_main(kind, &url, args.polls.unwrap_or(1_000))
        }
        (Some("footprint"), _) => {
            let out = args.out.clone().unwrap_or_else(|| PathBuf::from("target/bench/footprint"));
            footprint::run(args.polls.unwrap_or(500), &out)
        }
        (Some("pair"), Some(kind)) => {
            let url = args.url.clone().unwrap_or_default();
            cpu::pair_main(kind, &url, args.polls.unwrap_or(1_000), args.runs.unwrap_or(10))
        }
        _ => benchmarks(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(BenchError(e)) => {
            eprintln!("lro-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmarks, prints the table and writes the results.
fn benchmarks(args: &Args) -> Result<(), BenchError> {
    let quick = args.quick;
    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    let mut measures = Vec::new();
    if wanted("fleet") {
        // Quick: seconds, for CI (memory and request counts are exact; times only a smoke test).
        // The wait outlasts the sending of the first polls (5 s at the default budget; in the
        // quick debug build 2,000 of them once took more than 500 ms on the CI's VM, and 5 s
        // leaves room for a machine ten times as loaded), so the fleet is whole and idle
        // between its two rounds.
        let (operations, wait) = if quick { (2_000, 5_000) } else { (100_000, 10_000) };
        let operations = args.operations.unwrap_or(operations);
        let wait = Duration::from_millis(args.wait_ms.unwrap_or(wait));
        let fleet = fleet::run(operations, wait, args.rate, &heap)
            .map_err(|BenchError(e)| BenchError(format!("the fleet benchmark failed: {e}")))?;
        measures.extend(fleet);
    }
    if wanted("cpu") || wanted("memory") {
        let server = monitor::MonitorProcess::start(None)?;
        if wanted("memory") {
            let memory = memory::run(&server.url, &heap)
                .map_err(|BenchError(e)| BenchError(format!("the memory benchmark failed: {e}")))?;
            measures.extend(memory);
        }
        if wanted("cpu") {
            let cost = clients::with_retry_after(&server.url, 3, 100)?;
            #[allow(clippy::cast_precision_loss)]
            measures.extend([
                Measure::new(
                    "requests_per_operation_retry_after",
                    "requests_per_operation",
                    cost.requests as f64,
                )
                .exactly("minimum", 5.0),
                Measure::new(
                    "timer_calls_retry_after",
                    "timer_calls_per_operation",
                    cost.timer_calls as f64,
                )
                .exactly("waits_asked", 2.0),
            ]);
            drop(server);
            // Turns of some twenty milliseconds each, so that adjacent ones see the same machine,
            // and many of them: the VM's noise is large.
            let (polls, runs) = if quick { (500, 4) } else { (500, 200) };
            let cpu = cpu::run(args.polls.unwrap_or(polls), args.runs.unwrap_or(runs))
                .map_err(|BenchError(e)| BenchError(format!("the CPU benchmark failed: {e}")))?;
            measures.extend(cpu);
        }
    }
    if wanted("store") {
        let store = store::run(quick)
            .map_err(|BenchError(e)| BenchError(format!("the store benchmark failed: {e}")))?;
        measures.extend(store);
    }
    println!("{:<52} {:>14} {:<34} {:>8} 95% interval", "name", "value", "control", "ratio");
    for m in &measures {
        let ratio = m.ratio().map_or_else(String::new, |r| format!("{r:.3}"));
        let interval = m.interval.map_or_else(String::new, |(l, h)| format!("{l:.3}-{h:.3}"));
        let control = m.control.map_or("", |(name, _)| name);
        println!("{:<52} {:>14.3} {control:<34} {ratio:>8} {interval}", m.name, m.value);
    }
    let results = json!({
        "quick": quick,
        "results": measures.iter().map(Measure::to_json).collect::<Vec<_>>(),
    });
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("target/bench/results.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    println!("wrote {}", out.display());
    let broken: Vec<String> = measures.iter().filter_map(Measure::broken_limit).collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(BenchError(format!("limits exceeded: {}", broken.join("; "))))
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "lro-bench: {problem}\nusage: lro-bench [--quick] [--out PATH] [--only fleet|cpu|memory|store] \
         [--operations N] [--rate REQUESTS_PER_SECOND] [--wait-ms MS] [--polls N] [--runs N]\n       \
         lro-bench serve [--cpu C]\n       lro-bench pair KIND --url URL --polls N --runs T [--cpu C]\n       lro-bench client KIND --url URL --polls N [--cpu C]\n       lro-bench footprint [--polls N] [--out DIR]"
    );
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::Measure;

    #[test]
    fn a_figure_over_its_limit_fails_and_one_over_a_mere_control_does_not() {
        let over = Measure::new("heap", "bytes", 2049.0).at_most("target", 2048.0);
        assert!(over.broken_limit().is_some_and(|m| m.contains("heap is 2049.000")));
        let at = Measure::new("heap", "bytes", 2048.0).at_most("target", 2048.0);
        assert!(at.broken_limit().is_none());
        assert!(Measure::new("heap", "bytes", f64::NAN).at_most("t", 1.0).broken_limit().is_some());
        assert!(Measure::new("cpu", "us", 9.0).against("raw", 1.0).broken_limit().is_none());
    }

    #[test]
    fn an_exact_count_fails_on_either_side() {
        let count = |value| Measure::new("timer_calls", "calls", value).exactly("waits_asked", 2.0);
        assert!(count(2.0).broken_limit().is_none());
        assert!(count(1.0).broken_limit().is_some_and(|m| m.contains("not waits_asked = 2")));
        assert!(count(3.0).broken_limit().is_some());
    }
}
