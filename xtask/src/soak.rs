//! `cargo xtask soak`: the soak test of `lro-hyper` (its `soak` example): 10,000 operations
//! through the async poller against the mock with faults injected, in release mode. test-all
//! runs a reduced soak (2,000 operations, debug build) as a step.

use crate::{Ctx, Failure, run};

/// What the test-all step line shows.
pub(crate) const SHOWS: &str = "cargo run -p lro-hyper --example soak -- --operations 2000 \
     --rounds 4 (faults in polls: every operation must end as the mock was told, RSS flat)";

/// The full soak, as `cargo xtask soak` runs it.
pub(crate) fn full(ctx: &Ctx) -> Result<(), Failure> {
    soak(ctx, &["--release"], "10000", "5")
}

/// The test-all step: a reduced soak.
pub(crate) fn check(ctx: &Ctx) -> Result<Option<String>, Failure> {
    soak(ctx, &[], "2000", "4").map(|()| None)
}

/// `cargo run [profile] -p lro-hyper --example soak -- --operations N --rounds R`.
fn soak(ctx: &Ctx, profile: &[&str], operations: &str, rounds: &str) -> Result<(), Failure> {
    let mut command = ctx.cargo();
    command.arg("run").args(profile).args(["--quiet", "-p", "lro-hyper", "--example", "soak"]);
    run(command.args(["--", "--operations", operations, "--rounds", rounds]))
}
