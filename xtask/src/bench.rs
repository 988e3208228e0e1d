//! `cargo xtask bench [--quick]`: the benchmarks of the `lro-bench` crate, over loopback. The
//! full run (release build) gives the figures of `docs/performance.md`; `--quick` (a debug
//! build, seconds) is the test-all step: its heap and request counts are exact, its times only
//! a smoke test. Both print a table and write `target/bench/results.json`.

use crate::{Ctx, Failure, run};

/// What the test-all step line shows.
pub(crate) const SHOWS: &str = "cargo run -p lro-bench -- --quick (a fleet of 2,000 \
     operations, heap per idle poller, every stack of the CPU benchmark through one operation \
     over loopback, and 100 operations through a SQLite store with 1 and 3 lro workers: all \
     complete with the minimum of requests and no timer call for zero waits, and an idle \
     poller keeps at most 2 KiB; writes target/bench/results.json)";

/// `cargo xtask bench`, full unless `quick`.
pub(crate) fn bench(ctx: &Ctx, quick: bool) -> Result<(), Failure> {
    // The store benchmark runs `lro worker` processes: the binary beside lro-bench's.
    let mut build = ctx.cargo();
    build.args(["build", "--quiet", "-p", "lro-cli", "--bin", "lro"]);
    if !quick {
        build.arg("--release");
    }
    run(&mut build)?;
    let mut command = ctx.cargo();
    command.arg("run");
    if !quick {
        command.arg("--release");
    }
    command.args(["--quiet", "-p", "lro-bench", "--", "--out"]);
    command.arg(ctx.root.join("target/bench/results.json"));
    if quick {
        command.arg("--quick");
    }
    run(&mut command)
}

/// `cargo xtask footprint`: `lro-bench footprint` in the profiling build (release code with
/// source lines, for `callgrind_annotate` on the files it leaves).
pub(crate) fn footprint(ctx: &Ctx) -> Result<(), Failure> {
    let mut command = ctx.cargo();
    command.args(["run", "--quiet", "--profile", "profiling", "-p", "lro-bench", "--"]);
    command.arg("footprint").arg("--out").arg(ctx.root.join("target/bench/footprint"));
    run(&mut command)
}

/// The test-all step.
pub(crate) fn check(ctx: &Ctx) -> Result<Option<String>, Failure> {
    bench(ctx, true).map(|()| None)
}
