//! The CPU benchmark (issue #10): each stack measured side by side with its control.
//!
//! CPU time on a shared VM drifts by tens of percent from one second to the next, and from one
//! process to the next: stacks measured in processes of their own, one after the other, gave
//! ratios that moved by 8% between runs of unchanged code. So each comparison runs in one
//! process of its own (`lro-bench pair KIND`, pinned to the second core where there is one; the
//! service has the first) holding both stacks, each with its own runtime and client: they take
//! turns, one operation of `polls` polls at a time (control then stack, then stack then
//! control, and so on), so that adjacent operations see the same machine. A stack's figure is
//! the median CPU time per request of its operations; its ratio is the median of the ratios of
//! its operations to the adjacent operations of its control.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::{Cost, Kind, Stack};
use crate::monitor::MonitorProcess;
use crate::{BenchError, Measure};

/// The CPUs of the service and of the clients, when the machine has two.
fn cpus() -> (Option<usize>, Option<usize>) {
    match std::thread::available_parallelism().map(usize::from) {
        Ok(n) if n >= 2 => (Some(0), Some(1)),
        _ => (None, None),
    }
}

/// The stacks compared with a control, in the order they are measured.
const COMPARED: [Kind; 6] = [
    Kind::AsyncPollerCurrentThread,
    Kind::AsyncPollerMultiThread,
    Kind::BlockingPoller,
    Kind::EngineByHand,
    Kind::TransportHyper,
    Kind::TransportBlocking,
];

/// Runs the benchmark: per compared stack, `turns` operations of `polls` polls, each beside
/// one of its control.
pub(crate) fn run(polls: u32, turns: usize) -> Result<Vec<Measure>, BenchError> {
    let (server_cpu, client_cpu) = cpus();
    let server = MonitorProcess::start(server_cpu)?;
    let requests = u64::from(polls) + 2; // the PUT, the polls, the final GET
    #[allow(clippy::cast_precision_loss)] // figures for a report
    let per_request = |cost: &Cost| cost.cpu.as_secs_f64() * 1e6 / requests as f64;
    // Every operation of every stack, controls included (a control serves two stacks).
    let mut seen: Vec<(Kind, Vec<Cost>)> = Kind::ALL.iter().map(|k| (*k, Vec::new())).collect();
    let mut ratios = Vec::new();
    for kind in COMPARED {
        let control = kind.control().ok_or_else(|| BenchError("no control".into()))?;
        let (stack, beside) = pair_process(kind, &server.url, polls, turns, client_cpu)?;
        let mut paired: Vec<f64> =
            stack.iter().zip(&beside).map(|(s, c)| per_request(s) / per_request(c)).collect();
        let ratio = median(&mut paired); // and `paired` is sorted
        ratios.push((kind, ratio, median_interval(&paired)));
        for (k, costs) in [(kind, stack), (control, beside)] {
            if let Some((_, all)) = seen.iter_mut().find(|(seen, _)| *seen == k) {
                all.extend(costs);
            }
        }
    }
    let median_of = |kind: Kind| -> f64 {
        let costs = seen.iter().find(|(k, _)| *k == kind).map(|(_, s)| s.as_slice());
        let mut values: Vec<f64> = costs.unwrap_or_default().iter().map(per_request).collect();
        median(&mut values)
    };
    let mut measures = Vec::new();
    for (kind, costs) in seen.iter().filter(|(_, costs)| !costs.is_empty()) {
        let mut measure = Measure::new(cpu_name(*kind), "cpu_us_per_request", median_of(*kind));
        if let Some(control) = kind.control() {
            let (ratio, interval) = ratios
                .iter()
                .find(|(k, ..)| k == kind)
                .map_or((f64::NAN, (f64::NAN, f64::NAN)), |(_, r, i)| (*r, *i));
            measure =
                measure.against(cpu_name(control), median_of(control)).paired(ratio, interval);
        }
        measures.push(measure);
        // Exact figures: every operation must show them.
        let most = costs.iter().map(|c| c.requests).max().unwrap_or(0);
        if costs.iter().any(|c| c.requests != requests) {
            return Err(BenchError(format!(
                "{} sent up to {most} requests for an operation of {polls} polls: {requests} is \
                 the minimum",
                kind.name()
            )));
        }
        if kind.has_timer() {
            let calls = costs.iter().map(|c| c.timer_calls).max().unwrap_or(0);
            #[allow(clippy::cast_precision_loss)]
            measures.push(
                Measure::new(timer_name(*kind), "timer_calls_per_operation", calls as f64)
                    .at_most("none", 0.0),
            );
        }
    }
    // Every operation sent exactly the minimum (checked above, stack by stack).
    #[allow(clippy::cast_precision_loss)]
    measures.push(
        Measure::new("requests_per_operation_zero_wait", "requests_per_operation", requests as f64)
            .against("minimum", requests as f64),
    );
    Ok(measures)
}

/// The median of `values` (NaN for none).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A 95% confidence interval for the median of `sorted` (sorted values, NaN for none): the
/// `k`th smallest and the `k`th largest value, `k` = ⌊n/2 − 0.98·√n⌋ (at least 1), as many
/// values outside the interval on each side as a fair coin's 95% range allows (the
/// distribution-free interval of a median, by the normal approximation). With 200 turns: the
/// 86th and the 115th of the 200 ratios.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn median_interval(sorted: &[f64]) -> (f64, f64) {
    let n = sorted.len();
    let k = ((n as f64 / 2.0 - 0.98 * (n as f64).sqrt()).floor().max(1.0)) as usize;
    match (sorted.get(k - 1), sorted.get(n.saturating_sub(k))) {
        (Some(low), Some(high)) => (*low, *high),
        _ => (f64::NAN, f64::NAN),
    }
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
        Kind::TransportHyper => "cpu_transport_alone_hyper",
        Kind::TransportBlocking => "cpu_transport_alone_blocking",
    }
}

fn timer_name(kind: Kind) -> &'static str {
    match kind {
        Kind::AsyncPollerMultiThread => "timer_calls_zero_wait_async_poller_multi_thread",
        Kind::BlockingPoller => "timer_calls_zero_wait_blocking_poller",
        _ => "timer_calls_zero_wait_async_poller_current_thread",
    }
}

/// Runs `lro-bench pair KIND` and reads its one line of JSON: the operations of the stack and
/// of its control, turn by turn.
fn pair_process(
    kind: Kind,
    url: &str,
    polls: u32,
    turns: usize,
    cpu: Option<usize>,
) -> Result<(Vec<Cost>, Vec<Cost>), BenchError> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["pair", kind.name(), "--url", url, "--polls", &polls.to_string()]);
    command.args(["--runs", &turns.to_string()]);
    if let Some(cpu) = cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    let output = command.output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError(format!(
            "pair {} failed: {}{}",
            kind.name(),
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let value: Value = serde_json::from_str(text.trim())?;
    let costs = |name: &str| -> Result<Vec<Cost>, BenchError> {
        let list = value.get(name).and_then(Value::as_array);
        let list =
            list.ok_or_else(|| BenchError(format!("pair {} printed {text:?}", kind.name())))?;
        list.iter().map(|cost| cost_of(cost, kind, &text)).collect()
    };
    Ok((costs("stack")?, costs("control")?))
}

fn cost_of(value: &Value, kind: Kind, text: &str) -> Result<Cost, BenchError> {
    let number = |name: &str| value.get(name).and_then(Value::as_u64);
    match (number("cpu_ns"), number("timer_calls"), number("requests")) {
        (Some(ns), Some(timer_calls), Some(requests)) => {
            Ok(Cost { cpu: Duration::from_nanos(ns), timer_calls, requests })
        }
        _ => Err(BenchError(format!("{} printed {text:?}", kind.name()))),
    }
}

fn cost_json(cost: &Cost) -> Value {
    let ns = u64::try_from(cost.cpu.as_nanos()).unwrap_or(u64::MAX);
    json!({"cpu_ns": ns, "timer_calls": cost.timer_calls, "requests": cost.requests})
}

/// `lro-bench client KIND --url URL --polls N [--cpu C]`: one measured operation (after one to
/// warm up), printed as JSON.
///
/// The process starts an idle thread first, so that every stack runs in a multi-threaded
/// process, as both stacks of a `pair` process do once one of them has started a thread of its
/// own (lro-hyper's deadline watch, a polling thread). glibc's allocator takes its
/// single-threaded fast paths only in a process that never started a thread: they save the raw
/// hyper loop 287 instructions a request (callgrind, the 1,000-poll minus the 500-poll
/// process), which no stack with a thread of its own can have.
pub(crate) fn client_main(kind: Kind, url: &str, polls: u32) -> Result<(), BenchError> {
    std::thread::Builder::new().name("lro-bench-idle".into()).spawn(|| {
        loop {
            std::thread::park();
        }
    })?;
    let cost = crate::clients::measure(kind, url, polls)?;
    println!("{}", cost_json(&cost));
    Ok(())
}

/// `lro-bench pair KIND --url URL --polls N --runs T [--cpu C]`: `T` operations of the stack,
/// each beside one of its control (in turn before and after it), after one each to warm up;
/// printed as JSON (`{"stack": [...], "control": [...]}`, the `i`th of each side by side).
pub(crate) fn pair_main(kind: Kind, url: &str, polls: u32, turns: usize) -> Result<(), BenchError> {
    let control =
        kind.control().ok_or_else(|| BenchError(format!("{} is a control", kind.name())))?;
    let (stack, beside) = (Stack::new(kind)?, Stack::new(control)?);
    stack.operation(url, polls)?;
    beside.operation(url, polls)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for turn in 0..turns.max(1) {
        if turn % 2 == 0 {
            theirs.push(beside.counted(url, polls)?);
            ours.push(stack.counted(url, polls)?);
        } else {
            ours.push(stack.counted(url, polls)?);
            theirs.push(beside.counted(url, polls)?);
        }
    }
    let list = |costs: &[Cost]| costs.iter().map(cost_json).collect::<Vec<_>>();
    println!("{}", json!({"stack": list(&ours), "control": list(&theirs)}));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_s_interval_is_the_ranks_a_fair_coin_allows() {
        let values: Vec<f64> = (1..=200).map(f64::from).collect();
        // k = ⌊100 − 13.86⌋ = 86: the 86th smallest and the 86th largest.
        assert_eq!(median_interval(&values), (86.0, 115.0));
        let mut shuffled: Vec<f64> = values.iter().rev().copied().collect();
        assert_eq!(median(&mut shuffled), 101.0);
    }

    #[test]
    fn a_few_values_give_an_interval_as_wide_as_they_are_and_none_give_none() {
        assert_eq!(median_interval(&[1.0, 2.0, 3.0, 4.0]), (1.0, 4.0));
        assert_eq!(median_interval(&[7.0]), (7.0, 7.0));
        let (low, high) = median_interval(&[]);
        assert!(low.is_nan() && high.is_nan());
    }
}
