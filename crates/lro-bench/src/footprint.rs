//! `lro-bench footprint [--polls N] [--out PATH]`: what one request of each stack touches, in
//! exact counts (issue #10). On the benchmark's VM a zero-wait request costs mostly the memory
//! it touches: the client sleeps in the kernel between requests and wakes up with cold caches
//! (`docs/performance.md`, "What is left"). CPU time is too noisy to show a change of a few
//! dozen cache lines; a simulation is not.
//!
//! Each stack and its control run `lro-bench client KIND` under callgrind with its cache
//! simulation, the caches made small (8 KiB first-level caches, a 32 KiB last level) so that
//! what a request touches does not stay in them until the next one. Each runs twice, with `N`
//! and `2N` polls: the figures are the difference of the two processes' instructions and
//! last-level misses (code and data) divided by the difference of their requests, so that what
//! a process does once (start-up, the runtime, the client, the warm-up) does not count. The
//! callgrind files of the longer runs stay in the output folder, for `callgrind_annotate`
//! (build with `--profile profiling` for source lines: `cargo xtask footprint` does).

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::BenchError;
use crate::clients::Kind;
use crate::monitor::MonitorProcess;

/// The stacks measured, each after its control.
const STACKS: [Kind; 7] = [
    Kind::RawHyperCurrentThread,
    Kind::AsyncPollerCurrentThread,
    Kind::EngineByHand,
    Kind::TransportHyper,
    Kind::RawUreq,
    Kind::BlockingPoller,
    Kind::TransportBlocking,
];

/// The simulated caches: size, associativity, line size.
const CACHES: [&str; 3] = ["--I1=8192,2,64", "--D1=8192,2,64", "--LL=32768,4,64"];

/// What one process cost, per request.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    instructions: f64,
    /// Last-level misses: instruction fetches, data reads, data writes.
    misses: [f64; 3],
}

impl Footprint {
    fn lines(&self) -> f64 {
        self.misses.iter().sum()
    }
}

/// Runs every stack under callgrind against one monitor process; prints a table and writes
/// `out/footprint.json` beside the callgrind files.
pub(crate) fn run(polls: u32, out: &Path) -> Result<(), BenchError> {
    let valgrind = Command::new("valgrind").arg("--version").output();
    if !valgrind.is_ok_and(|output| output.status.success()) {
        return Err(BenchError(
            "footprint needs valgrind on PATH (Debian, Ubuntu: apt-get install valgrind)".into(),
        ));
    }
    std::fs::create_dir_all(out)?;
    let server = MonitorProcess::start(None)?;
    let (short, long) = (polls.max(1), polls.max(1).saturating_mul(2));
    let more = requests(long) - requests(short);
    let mut measured: Vec<(Kind, Footprint)> = Vec::new();
    for kind in STACKS {
        let once = simulate(kind, &server.url, short, &out.join("short.callgrind"))?;
        let file = out.join(format!("{}.callgrind", kind.name()));
        let twice = simulate(kind, &server.url, long, &file)?;
        let per_request = |a: f64, b: f64| (b - a) / more;
        measured.push((
            kind,
            Footprint {
                instructions: per_request(once.instructions, twice.instructions),
                misses: [0, 1, 2].map(|at| per_request(once.misses[at], twice.misses[at])),
            },
        ));
    }
    let _ = std::fs::remove_file(out.join("short.callgrind"));
    drop(server);
    let of = |kind: Kind| measured.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f);
    println!(
        "{:<30} {:>12} {:>10} {:>22} {:>10}",
        "stack", "instr/req", "vs ctl", "LL misses/req (I+R+W)", "vs ctl"
    );
    let mut rows = Vec::new();
    for (kind, f) in &measured {
        let control = kind.control().and_then(of);
        let ratio = |ours: f64, theirs: Option<f64>| theirs.map(|theirs| ours / theirs);
        let instr_ratio = ratio(f.instructions, control.map(|c| c.instructions));
        let lines_ratio = ratio(f.lines(), control.map(|c| c.lines()));
        let shown = |r: Option<f64>| r.map_or_else(|| "control".to_owned(), |r| format!("{r:.3}"));
        println!(
            "{:<30} {:>12.0} {:>10} {:>8.0} ({:.0}+{:.0}+{:.0}) {:>10}",
            kind.name(),
            f.instructions,
            shown(instr_ratio),
            f.lines(),
            f.misses[0],
            f.misses[1],
            f.misses[2],
            shown(lines_ratio),
        );
        rows.push(json!({
            "stack": kind.name(),
            "control": kind.control().map(Kind::name),
            "instructions_per_request": f.instructions,
            "ll_misses_per_request": f.lines(),
            "ll_misses_per_request_by_kind": {"instructions": f.misses[0], "reads": f.misses[1], "writes": f.misses[2]},
            "instructions_ratio": instr_ratio,
            "ll_misses_ratio": lines_ratio,
        }));
    }
    let file = out.join("footprint.json");
    let results = json!({"polls": [short, long], "caches": CACHES, "results": rows});
    std::fs::write(&file, serde_json::to_string_pretty(&results)?)?;
    println!("wrote {} and the callgrind files beside it", file.display());
    Ok(())
}

/// The requests of one `lro-bench client KIND --polls N` process: an operation to warm up, then
/// the measured one, each its polls (the monitor makes at least one), the PUT and the final GET.
fn requests(polls: u32) -> f64 {
    f64::from(crate::clients::warm_up_polls(polls).max(1)) + 2.0 + f64::from(polls.max(1)) + 2.0
}

/// One `lro-bench client KIND` process under callgrind: its totals (not yet per request).
fn simulate(kind: Kind, url: &str, polls: u32, file: &Path) -> Result<Footprint, BenchError> {
    let mut command = Command::new("valgrind");
    command.args(["--tool=callgrind", "--cache-sim=yes"]).args(CACHES);
    command.arg(format!("--callgrind-out-file={}", file.display()));
    command.arg(std::env::current_exe()?);
    command.args(["client", kind.name(), "--url", url, "--polls", &polls.to_string()]);
    let output = command.output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(BenchError(format!("callgrind of {} failed: {}", kind.name(), stderr.trim())));
    }
    collected(&stderr).ok_or_else(|| {
        BenchError(format!("callgrind of {} printed no totals: {}", kind.name(), stderr.trim()))
    })
}

/// The totals of callgrind's `Collected :` line (with the cache simulation: Ir Dr Dw I1mr
/// D1mr D1mw ILmr DLmr DLmw).
fn collected(stderr: &str) -> Option<Footprint> {
    let line = stderr.lines().find(|line| line.contains("Collected :"))?;
    let (_, counts) = line.split_once("Collected :")?;
    let counts: Vec<f64> =
        counts.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    match counts[..] {
        [instructions, _, _, _, _, _, code, reads, writes] => {
            Some(Footprint { instructions, misses: [code, reads, writes] })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_totals_are_read_from_callgrinds_summary_line() {
        let stderr = "==16070== Events    : Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\n\
                      ==16070== Collected : 47658485 13003179 10039762 3309399 1030898 768102 2897533 736948 608940\n";
        let f = collected(stderr).unwrap();
        assert_eq!(f.instructions, 47_658_485.0);
        assert_eq!(f.misses, [2_897_533.0, 736_948.0, 608_940.0]);
        assert!(collected("==1== Collected : 1 2 3\n").is_none(), "without the cache simulation");
        assert!(collected("nothing here").is_none());
    }

    #[test]
    fn requests_count_the_warm_up_and_the_monitors_one_poll_at_least() {
        assert_eq!(requests(1000), 502.0 + 1002.0);
        assert_eq!(requests(0), 3.0 + 3.0);
        assert_eq!(requests(2000) - requests(1000), 1000.0);
    }

    #[test]
    fn every_compared_stack_is_measured_after_its_control() {
        for (at, kind) in STACKS.iter().enumerate() {
            if let Some(control) = kind.control() {
                assert!(STACKS[..at].contains(&control), "{kind:?} before its control");
            }
        }
    }
}
