//! `lro`: start, resume and watch HTTP long-running operations from a terminal or a script.
//!
//! ```text
//! lro [-v|-vv|-vvv] COMMAND ...   (D: seconds or a duration: 30, 0.5, 30s, 2m, 1h)
//! lro start --method PUT --url URL [--header 'Name: value']... [--body JSON | --body-file F]
//!           [--flavour base|arm] [--final-state-via V] [--interval D] [--timeout D]
//!           [--token-file F] [--output text|json]
//! lro resume (--token TOKEN | --token-file F) [--url URL] [polling options]
//! lro batch --file ops.jsonl [--rate N] [--max-in-flight N] [--state-file F [--resume]] [--output text|json]
//! lro mock [--port N] [--faults SPEC] [--quiet]
//! lro submit --store URL [--key K] (the options of start)
//! lro worker --store URL [--concurrency N] [--rate N] [--lease D] [--exit-when-done]
//! lro status --store URL [KEY] [--output text|json]
//! lro abandon --store URL KEY...
//! ```
//!
//! Polling options: `--transport hyper|blocking`, `--header`, `--secret-header`, `--flavour`,
//! `--final-state-via`, `--interval`, `--retries`, `--timeout`, `--allow-origin`,
//! `--token-key-file` (or `LRO_TOKEN_KEY`), `--output text|json|raw` (`raw`: the final resource's
//! bytes on stdout exactly as the service sent them).
//!
//! Exit codes: 0 succeeded, 1 failed / canceled / error (SIGINT and SIGTERM included: the token
//! is saved and the resume command printed), 2 usage error.
//!
//! Credentials (`Authorization`, `Cookie`, `api-key`, any header whose name has `key`, `token`,
//! `secret`, `signature` or `password` in it, and every `--secret-header`) are never printed.
//! `lro resume` sends them only to an origin named on its command line (`--allow-origin`, or
//! `--url`), or when the token's signature matches the token key.
//!
//! `--output json` prints one object on stdout, schema 1: see [`output::SCHEMA_HELP`] (also
//! shown by `lro --help`) and the README.
//!
//! `-v` / `-vv` / `LRO_LOG` log the library's spans and events on stderr (feature `tracing`, on
//! by default); URLs without their query, never a credential or a token.

mod batch;
mod batch_display;
mod drive;
mod logging;
mod mock;
mod output;
mod paint;
mod progress;
mod run;
mod settings;
mod store;
mod token_file;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Start, resume and watch long-running HTTP operations (Azure-style LROs).
#[derive(Debug, Parser)]
#[command(name = "lro", version, about, long_about = None)]
#[command(after_long_help = output::SCHEMA_HELP)]
struct Cli {
    /// Log what polling does on stderr: -v operations, retries and outcomes; -vv every request
    /// with its status and the wait chosen; -vvv also a line as each request is sent. LRO_LOG
    /// (e.g. `lro_core=debug`) sets it finely.
    /// URLs are logged without their query; credentials and tokens never.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send the initial request, then poll the operation to its end.
    Start(StartArgs),
    /// Resume an operation from a continuation token (this tool's or Python azure-core's).
    Resume(ResumeArgs),
    /// Run many operations at once under one request budget (one JSON object per line of
    /// --file), with a state file to resume after a kill.
    Batch(batch::BatchArgs),
    /// Serve the embedded mock LRO service in the foreground until interrupted.
    Mock(mock::MockArgs),
    /// Send the initial request and store the operation for workers (--store URL).
    Submit(store::SubmitArgs),
    /// Claim operations from a store and poll them to their end, with any number of other
    /// workers; a dead worker's operations are taken over once its leases run out.
    Worker(store::WorkerArgs),
    /// Show the operations of a store and their outcomes.
    Status(store::StatusArgs),
    /// Stop tracking operations of a store: their holders let go, nobody polls them again
    /// (the service is not told; the operation may still run there).
    Abandon(store::AbandonArgs),
}

/// Arguments of `lro start`.
#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// HTTP method of the initial request (PUT, PATCH, POST, DELETE, ...).
    #[arg(long)]
    method: String,
    /// URL of the initial request.
    #[arg(long)]
    url: String,
    /// The request body, as JSON.
    #[arg(long, value_name = "JSON", conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the request body from a file (at most 16 MiB).
    #[arg(long, value_name = "F")]
    body_file: Option<PathBuf>,
    /// Write the continuation token to this file (atomically) after the initial response and
    /// after every poll.
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    polling: PollingArgs,
}

/// Arguments of `lro resume`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["token", "token_file"])))]
#[command(mut_arg("headers", |arg| arg.help(
    "A header sent on every poll and on the final GET, as 'Name: value' (repeatable): the \
     initial request was sent by `lro start`, and tokens never keep credentials, so give an \
     Authorization header again here. Every header given here counts as a credential, whatever \
     its name: polls carry them only to an origin vouched for (--url, --allow-origin, or a \
     token signed with the token key)"
)))]
struct ResumeArgs {
    /// The continuation token.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Read the token from this file, and keep it up to date while polling.
    #[arg(long, value_name = "F")]
    token_file: Option<PathBuf>,
    /// The operation's URL (its initial request's): vouches for the token's origin, so that
    /// credentials may be sent there.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    polling: PollingArgs,
}

/// How to poll: the options `start` and `resume` share.
#[derive(Debug, Args)]
struct PollingArgs {
    /// A request header, as 'Name: value' (repeatable). Sent on the initial request and on
    /// every poll (polls only go to trusted origins), e.g. an Authorization header.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    headers: Vec<String>,
    /// As --header, for a secret the name does not give away: never printed, and held to the
    /// rules of credentials.
    #[arg(long = "secret-header", value_name = "'NAME: VALUE'")]
    secret_headers: Vec<String>,
    /// The HTTP stack: hyper (async, HTTP/1.1 and 2) or blocking (ureq, HTTP/1.1, polling on a
    /// thread of its own).
    #[arg(long, value_enum, default_value_t = Transport::Hyper)]
    transport: Transport,
    /// Sign continuation tokens with the key in this file (at least 16 bytes), and refuse tokens
    /// whose signature does not match it. The environment variable LRO_TOKEN_KEY may hold the
    /// key instead.
    #[arg(long, value_name = "F")]
    token_key_file: Option<PathBuf>,
    /// Polling algorithms: azure-core's base polling, or ARM's. Default: base for `start`; for
    /// `resume`, the one that made the token (base for a token that does not say).
    #[arg(long, value_enum)]
    flavour: Option<Flavour>,
    /// Where the final resource comes from.
    #[arg(long, value_name = "VIA", value_parser = ["azure-async-operation", "location", "original-uri", "operation-location"])]
    final_state_via: Option<String>,
    /// Time between polls when the service sends no Retry-After: seconds (30, 0.5) or a
    /// duration (30s, 2m, 1h); default 30s, 0 polls again at once.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = settings::parse_duration)]
    interval: Option<std::time::Duration>,
    /// How many times a poll, a final GET or an idempotent initial request (PUT, DELETE) that
    /// failed for a transient reason (connection error, timeout, 408, 429, 5xx) is sent again,
    /// with jittered exponential backoff. 0 turns retries off.
    #[arg(long, value_name = "N", default_value_t = lro_core::DEFAULT_MAX_RETRIES)]
    retries: u32,
    /// Overall deadline of the whole operation: seconds (90) or a duration (90s, 10m, 2h).
    /// When it runs out the operation goes on on the service; the token resumes it.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = settings::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Also allow polls to this origin (repeatable; default: the initial request's origin only).
    #[arg(long, value_name = "URL")]
    allow_origin: Vec<String>,
    /// What to print at the end.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Flavour {
    /// Operation-Location, then Location, then the initial response (azure-core's LROBasePolling).
    Base,
    /// Azure-AsyncOperation, then Location, then provisioningState (azure-mgmt-core's ARMPolling).
    Arm,
}

impl Flavour {
    /// The flavour a file or a store names (`base`, `arm`); anything else is refused.
    fn named(name: &str) -> Result<Flavour, String> {
        <Flavour as ValueEnum>::from_str(name, false)
            .map_err(|_| format!("unknown flavour {name:?} (base or arm)"))
    }

    /// The builder of this flavour's polling method.
    fn builder(self) -> lro_strategies::PollingBuilder {
        match self {
            Flavour::Base => lro_strategies::LroBasePolling::builder(),
            Flavour::Arm => lro_strategies::ArmPolling::builder(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// lro-hyper: hyper and tokio, the async poller.
    Hyper,
    /// lro-blocking: ureq, the blocking poller.
    Blocking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Progress on the terminal, then the result.
    Text,
    /// One JSON object on stdout at the end.
    Json,
    /// The final resource's bytes on stdout, exactly as the service sent them (messages on
    /// stderr, as with text).
    Raw,
}

/// A usage error found after parsing (exit code 2).
#[derive(Debug)]
struct UsageError(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::from(1);
            }
        };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Start(args) => run::start(args).await,
            Command::Resume(args) => run::resume(args).await,
            Command::Batch(args) => batch::batch(args).await,
            Command::Mock(args) => mock::serve(args).await,
            Command::Submit(args) => store::submit(args).await,
            Command::Worker(args) => store::worker(args).await,
            Command::Status(args) => store::status(args).await,
            Command::Abandon(args) => store::abandon(args).await,
        }
    });
    // A blocking poller's thread may still be inside a request: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(UsageError(message)) => {
            eprintln!("error: {message}");
            eprintln!("see `lro --help`");
            ExitCode::from(2)
        }
    }
}
