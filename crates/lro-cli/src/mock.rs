//! `lro mock`: the embedded mock LRO service in the foreground.

use std::process::ExitCode;

use clap::Args;
use lro_mock::{FaultSpec, MockConfig, MockServer};

use crate::UsageError;

/// Arguments of `lro mock`.
#[derive(Debug, Args)]
pub(crate) struct MockArgs {
    /// Port to listen on, on 127.0.0.1 (default: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Fault injection, e.g. 'seed=7,500=0.1,429=0.1:2,reset=0.02' (see the lro-mock docs).
    #[arg(long, value_name = "SPEC")]
    faults: Option<String>,
    /// In-progress polls before an operation ends (default 2).
    #[arg(long, value_name = "N")]
    polls: Option<u32>,
    /// Do not log each request on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// One request as `lro mock` logs it: method, path (without its query, which may carry
/// secrets), status (or `reset`), and the faults injected.
fn log_line(entry: &lro_mock::LogEntry) -> String {
    let path = entry.path.split('?').next().unwrap_or_default();
    let status = entry.status.map_or_else(|| "reset".to_owned(), |s| s.to_string());
    let faults = if entry.faults.is_empty() {
        String::new()
    } else {
        format!(" (faults: {:?})", entry.faults)
    };
    format!("{} {path} -> {status}{faults}", entry.method)
}

/// Serves until interrupted (Ctrl-C).
pub(crate) async fn serve(args: MockArgs) -> Result<ExitCode, UsageError> {
    let mut config = MockConfig::builder().port(args.port);
    if let Some(spec) = &args.faults {
        let faults: FaultSpec = spec.parse().map_err(|e| UsageError(format!("--faults: {e}")))?;
        config = config.faults(faults);
    }
    if let Some(polls) = args.polls {
        config = config.progress_after_polls(polls);
    }
    if !args.quiet {
        config = config.on_request(|entry| eprintln!("{}", log_line(entry)));
    }
    let server = match MockServer::start(config.build()).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: cannot start the mock service on port {}: {e}", args.port);
            return Ok(ExitCode::from(1));
        }
    };
    // Listening for SIGINT/SIGTERM before the URL is out (on unix): a script that reads it and
    // stops the service at once must find the handler in place, not die of the signal.
    let stop = crate::drive::interrupted();
    // The base URL alone on stdout, so scripts can read it; the rest on stderr.
    println!("{}", server.base_url());
    eprintln!("mock LRO service listening; try:");
    eprintln!(
        "  lro start --method PUT --url {}/subscriptions/s/resourceGroups/g/providers/Mock.Widgets/widgets/w1 --flavour arm --body '{{}}' --interval 0.1",
        server.base_url()
    );
    eprintln!(
        "stop with Ctrl-C{}",
        if args.quiet { "" } else { "; requests are logged below (--quiet: not)" }
    );
    stop.await;
    server.shutdown().await;
    eprintln!("mock LRO service stopped");
    Ok(ExitCode::SUCCESS)
}
