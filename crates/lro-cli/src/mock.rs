//! `lro mock`: the embedded mock LRO service in the foreground.

use std::process::ExitCode;

use clap::Args;

use crate::UsageError;

/// Arguments of `lro mock`.
#[derive(Debug, Args)]
pub(crate) struct MockArgs {
    /// Port to listen on (default: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Fault injection, e.g. 'seed=7,500=0.1,429=0.1,reset=0.02'.
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,
}

/// Serves until interrupted.
pub(crate) async fn serve(args: MockArgs) -> Result<ExitCode, UsageError> {
    let _ = (args.port, args.faults);
    Err(UsageError("the mock service is not built into this lro yet".to_owned()))
}
