//! `cargo xtask demo`: builds the `lro` binary and the demo example of `lro-cli`, then runs the
//! tour against the embedded mock service. test-all runs it too, as a smoke test.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use crate::{Ctx, Failure, run};

/// What the test-all step line shows.
pub(crate) const SHOWS: &str = "cargo build -p lro-cli --bin lro --example demo, then the demo \
     (mock service, both pollers, both transports, the lro CLI)";

/// Builds and runs the demo. `show_build`: let cargo show its progress (a first build takes
/// minutes, and a silent pause looks like a hang); test-all keeps it quiet.
pub(crate) fn run_demo(ctx: &Ctx, show_build: bool) -> Result<(), Failure> {
    let mut build = ctx.cargo();
    build.arg("build");
    if show_build {
        eprintln!("demo: building `lro` and the demo (the first build takes a few minutes)…");
    } else {
        build.arg("--quiet");
    }
    run(build.args(["-p", "lro-cli", "--bin", "lro", "--example", "demo"]))?;
    let target =
        env::var_os("CARGO_TARGET_DIR").map_or_else(|| ctx.root.join("target"), PathBuf::from);
    let target = if target.is_absolute() { target } else { ctx.root.join(target) };
    let debug = target.join("debug");
    let exe = |name: &str| debug.join(format!("{name}{}", env::consts::EXE_SUFFIX));
    run(Command::new(exe("examples/demo")).current_dir(&ctx.root).env("LRO_BIN", exe("lro")))
}

/// The test-all step.
pub(crate) fn check(ctx: &Ctx) -> Result<Option<String>, Failure> {
    run_demo(ctx, false).map(|()| None)
}
