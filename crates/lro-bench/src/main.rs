//! `lro-bench`: the benchmarks behind `cargo xtask bench`, over loopback only.
//!
//! `lro-bench [--quick] [--out target/bench/results.json] [--operations N] [--rate R]
//! [--wait-ms MS]` runs them (the last three change the fleet workload, for experiments), prints a table and writes
//! `{"results": [{"name", "metric", "value", "control", "ratio"}]}`. Heap figures come from a
//! counting global allocator (`stats_alloc`); see `docs/performance.md` for each benchmark.

mod fleet;
mod server;

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
}

impl Measure {
    pub(crate) fn new(name: &'static str, metric: &'static str, value: f64) -> Self {
        Measure { name, metric, value, control: None }
    }

    /// Compared with `control`, whose value is `value`: the ratio is reported.
    pub(crate) fn against(mut self, control: &'static str, value: f64) -> Self {
        self.control = Some((control, value));
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.control.map(|(_, c)| self.value / c).filter(|r| r.is_finite())
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "metric": self.metric,
            "value": self.value,
            "control": self.control.map(|(name, _)| name),
            "ratio": self.ratio(),
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

fn main() -> ExitCode {
    let mut quick = false;
    let mut out = PathBuf::from("target/bench/results.json");
    let (mut operations, mut rate, mut wait_ms) = (None, fleet::RATE, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| usage(&format!("{name} needs a positive number")))
        };
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => match args.next() {
                Some(path) => out = PathBuf::from(path),
                None => return usage("--out needs a path"),
            },
            "--operations" => match number("--operations") {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // positive
                Ok(n) => operations = Some(n as usize),
                Err(code) => return code,
            },
            "--rate" => match number("--rate") {
                Ok(r) => rate = r,
                Err(code) => return code,
            },
            "--wait-ms" => match number("--wait-ms") {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // positive
                Ok(ms) => wait_ms = Some(ms as u64),
                Err(code) => return code,
            },
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    // Quick: seconds, for CI (memory and request counts are exact; times only a smoke test).
    let (default_operations, default_wait) = if quick { (2_000, 500) } else { (100_000, 5_000) };
    let operations = operations.unwrap_or(default_operations);
    let wait = Duration::from_millis(wait_ms.unwrap_or(default_wait));
    let measures = match fleet::run(operations, wait, rate, &heap) {
        Ok(measures) => measures,
        Err(BenchError(e)) => {
            eprintln!("bench: the fleet benchmark failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{:<40} {:>14} {:<32} {:>8}", "name", "value", "control", "ratio");
    for m in &measures {
        let ratio = m.ratio().map_or_else(String::new, |r| format!("{r:.3}"));
        let control = m.control.map_or("", |(name, _)| name);
        println!("{:<40} {:>14.3} {control:<32} {ratio:>8}", m.name, m.value);
    }
    let results = json!({
        "quick": quick,
        "results": measures.iter().map(Measure::to_json).collect::<Vec<_>>(),
    });
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(&results).map(|text| std::fs::write(&out, text)) {
        Ok(Ok(())) => {
            println!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("bench: cannot write {}: {e}", out.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "lro-bench: {problem}\nusage: lro-bench [--quick] [--out PATH] [--operations N] \
         [--rate REQUESTS_PER_SECOND] [--wait-ms MS]"
    );
    ExitCode::from(2)
}
