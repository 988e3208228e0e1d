//! `lro submit`, `lro worker`, `lro status`: operations kept in a durable store (`lro-store`:
//! `sqlite:PATH` or `postgres://…`), claimed and polled by any number of workers.

mod spec;
mod status;
mod submit;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub(crate) use status::{abandon, status};
pub(crate) use submit::submit;
pub(crate) use worker::worker;

use crate::{Output, StartArgs};

/// Arguments of `lro submit`.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The store: sqlite:PATH or postgres://user@host:port/db.
    #[arg(long, value_name = "URL")]
    store: String,
    /// The operation's key in the store (default: its x-ms-client-request-id).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    #[command(flatten)]
    start: StartArgs,
}

/// Arguments of `lro worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The store: sqlite:PATH or postgres://user@host:port/db.
    #[arg(long, value_name = "URL")]
    store: String,
    /// This worker's name in the store (default: host name and process id).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Operations held (claimed and polled) at once.
    #[arg(long, value_name = "N", default_value_t = 100)]
    concurrency: usize,
    /// Requests per second over all held operations.
    #[arg(long, value_name = "N", default_value_t = 50.0)]
    rate: f64,
    /// Requests in flight to one host at most.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_in_flight: usize,
    /// How long a claim lasts without renewal (renewed every quarter of it).
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = crate::settings::parse_duration)]
    lease: Duration,
    /// How often to look for operations to claim.
    #[arg(long, value_name = "DURATION", default_value = "500ms",
          value_parser = crate::settings::parse_duration)]
    idle_wait: Duration,
    /// Exit once the store has no running operation left (instead of waiting for more).
    #[arg(long)]
    exit_when_done: bool,
    /// A header sent on every poll, as 'Name: value' (repeatable): this worker's credentials.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    headers: Vec<String>,
    /// As --header, for a secret the name does not give away.
    #[arg(long = "secret-header", value_name = "'NAME: VALUE'")]
    secret_headers: Vec<String>,
    /// Also allow polls to this origin (repeatable; default: each token's own origin only).
    /// The worker's choice, never the store's: whoever can write the database cannot send
    /// this worker's credentials elsewhere.
    #[arg(long, value_name = "URL")]
    allow_origin: Vec<String>,
    /// The key the submitters signed the tokens with (or LRO_TOKEN_KEY).
    #[arg(long, value_name = "F")]
    token_key_file: Option<PathBuf>,
    /// The last line: text, or one JSON object.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `lro status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The store: sqlite:PATH or postgres://user@host:port/db.
    #[arg(long, value_name = "URL")]
    store: String,
    /// One operation (default: all).
    key: Option<String>,
    /// Show at most this many operations.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    limit: usize,
    /// Include each operation's continuation token (JSON only).
    #[arg(long)]
    token: bool,
    /// A table, or JSON.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Arguments of `lro abandon`.
#[derive(Debug, Args)]
pub(crate) struct AbandonArgs {
    /// The store: sqlite:PATH or postgres://user@host:port/db.
    #[arg(long, value_name = "URL")]
    store: String,
    /// The operations to stop tracking.
    #[arg(required = true)]
    keys: Vec<String>,
}
