//! The CPU benchmark (issue #10): every stack of [`Kind::ALL`] drives one operation of `polls`
//! zero-wait polls against the status monitor, each in a process of its own (pinned to the
//! second core where there is one; the service has the first), round-robin over `runs` rounds
//! (each round starting one stack further on) so that noise falls on every stack alike. The median CPU time per request of each stack is
//! compared with its control's.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::{Cost, Kind};
use crate::monitor::MonitorProcess;
use crate::{BenchError, Measure};

/// The CPUs of the service and of the clients, when the machine has two.
fn cpus() -> (Option<usize>, Option<usize>) {
    match std::thread::available_parallelism().map(usize::from) {
        Ok(n) if n >= 2 => (Some(0), Some(1)),
        _ => (None, None),
    }
}

/// Runs the benchmark; `polls` per operation, `runs` rounds.
pub(crate) fn run(polls: u32, runs: usize) -> Result<Vec<Measure>, BenchError> {
    let (server_cpu, client_cpu) = cpus();
    let server = MonitorProcess::start(server_cpu)?;
    let mut costs: Vec<(Kind, Vec<Cost>)> = Kind::ALL.iter().map(|k| (*k, Vec::new())).collect();
    for round in 0..runs.max(1) {
        // Each round starts one stack further on: no stack always runs right after the same
        // other one (a multi-thread run may leave the machine warmer than it found it).
        let count = costs.len();
        for step in 0..count {
            let (kind, seen) = &mut costs[(round + step) % count];
            seen.push(client_process(*kind, &server.url, polls, client_cpu)?);
        }
    }
    let requests = u64::from(polls) + 2; // the PUT, the polls, the final GET
    #[allow(clippy::cast_precision_loss)] // figures for a report
    let per_request = |cost: &Cost| cost.cpu.as_secs_f64() * 1e6 / requests as f64;
    let median_of = |kind: Kind| -> f64 {
        let seen = costs.iter().find(|(k, _)| *k == kind).map(|(_, s)| s.as_slice());
        let mut values: Vec<f64> = seen.unwrap_or_default().iter().map(per_request).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let mut measures = Vec::new();
    for (kind, seen) in &costs {
        let mut measure = Measure::new(cpu_name(*kind), "cpu_us_per_request", median_of(*kind));
        if let Some(control) = kind.control() {
            measure = measure.against(cpu_name(control), median_of(control));
        }
        measures.push(measure);
        // Exact figures: every run must show them.
        let most = seen.iter().map(|c| c.requests).max().unwrap_or(0);
        if seen.iter().any(|c| c.requests != requests) {
            return Err(BenchError(format!(
                "{} sent up to {most} requests for an operation of {polls} polls: {requests} is \
                 the minimum",
                kind.name()
            )));
        }
        if kind.has_timer() {
            let calls = seen.iter().map(|c| c.timer_calls).max().unwrap_or(0);
            #[allow(clippy::cast_precision_loss)]
            measures.push(Measure::new(
                timer_name(*kind),
                "timer_calls_per_operation",
                calls as f64,
            ));
        }
    }
    #[allow(clippy::cast_precision_loss)]
    measures.push(
        Measure::new("requests_per_operation_zero_wait", "requests_per_operation", requests as f64)
            .against("minimum", requests as f64),
    );
    Ok(measures)
}

fn cpu_name(kind: Kind) -> &'static str {
    match kind {
        Kind::RawHyperCurrentThread => "cpu_raw_hyper_current_thread",
        Kind::RawHyperMultiThread => "cpu_raw_hyper_multi_thread",
        Kind::RawUreq => "cpu_raw_ureq",
        Kind::AsyncPollerCurrentThread => "cpu_async_poller_current_thread",
        Kind::AsyncPollerMultiThread => "cpu_async_poller_multi_thread",
        Kind::BlockingPoller => "cpu_blocking_poller",
        Kind::EngineByHand => "cpu_engine_by_hand_hyper",
    }
}

fn timer_name(kind: Kind) -> &'static str {
    match kind {
        Kind::AsyncPollerMultiThread => "timer_calls_zero_wait_async_poller_multi_thread",
        Kind::BlockingPoller => "timer_calls_zero_wait_blocking_poller",
        _ => "timer_calls_zero_wait_async_poller_current_thread",
    }
}

/// Runs `lro-bench client KIND` and reads its one line of JSON.
fn client_process(
    kind: Kind,
    url: &str,
    polls: u32,
    cpu: Option<usize>,
) -> Result<Cost, BenchError> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["client", kind.name(), "--url", url, "--polls", &polls.to_string()]);
    if let Some(cpu) = cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    let output = command.output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError(format!(
            "client {} failed: {}{}",
            kind.name(),
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let value: Value = serde_json::from_str(text.trim())?;
    let number = |name: &str| value.get(name).and_then(Value::as_u64);
    match (number("cpu_ns"), number("timer_calls"), number("requests")) {
        (Some(ns), Some(timer_calls), Some(requests)) => {
            Ok(Cost { cpu: Duration::from_nanos(ns), timer_calls, requests })
        }
        _ => Err(BenchError(format!("client {} printed {text:?}", kind.name()))),
    }
}

/// `lro-bench client KIND --url URL --polls N [--cpu C]`: one measured operation, printed as
/// JSON.
pub(crate) fn client_main(kind: Kind, url: &str, polls: u32) -> Result<(), BenchError> {
    let cost = crate::clients::measure(kind, url, polls)?;
    let ns = u64::try_from(cost.cpu.as_nanos()).unwrap_or(u64::MAX);
    println!(
        "{}",
        json!({"cpu_ns": ns, "timer_calls": cost.timer_calls, "requests": cost.requests})
    );
    Ok(())
}

/// Pins this process to `cpu` (the benchmark's processes: one core each where the machine has
/// them).
pub(crate) fn pin(cpu: usize) -> Result<(), BenchError> {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}
