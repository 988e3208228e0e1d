//! `lro status`: the operations of a store, as a table or JSON.

use std::process::ExitCode;

use lro_store::OperationRecord;
use serde_json::{Value, json};

use super::submit::store_error;
use super::{AbandonArgs, StatusArgs};
use crate::output::resource_value;
use crate::paint::printable;
use crate::{Output, UsageError};

/// The JSON of one record: everything but the token (a credential-free but long string that
/// resumes the operation; `--token` shows it).
fn record_json(record: &OperationRecord, token: bool) -> Value {
    json!({
        "key": record.key,
        "state": record.state.as_str(),
        "status": record.status,
        "polls": record.polls,
        "owner": record.owner,
        "claims": record.claims,
        "outcome": record.outcome,
        "resource": record.result.as_ref().map(resource_value),
        "created_ms": record.created_ms,
        "updated_ms": record.updated_ms,
        "continuation_token": if token { record.token.clone() } else { None },
    })
}

/// `lro status`.
pub(crate) async fn status(args: StatusArgs) -> Result<ExitCode, UsageError> {
    let store = lro_store::open(&args.store).await.map_err(|e| store_error(&args.store, &e))?;
    let records = match &args.key {
        Some(key) => match store.get(key).await {
            Ok(Some(record)) => vec![record],
            Ok(None) => {
                eprintln!("error: no operation {key:?} in the store");
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(store_error(&args.store, &e)),
        },
        None => store.list(args.limit).await.map_err(|e| store_error(&args.store, &e))?,
    };
    if args.output == Output::Json {
        let values: Vec<Value> = records.iter().map(|r| record_json(r, args.token)).collect();
        match &args.key {
            Some(_) => println!("{}", values.first().cloned().unwrap_or(Value::Null)),
            None => println!("{}", Value::Array(values)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<38} {:<10} {:<14} {:>6} {:>6}  OWNER",
        "KEY", "STATE", "STATUS", "POLLS", "CLAIMS"
    );
    for record in &records {
        println!(
            "{:<38} {:<10} {:<14} {:>6} {:>6}  {}",
            printable(&record.key),
            record.state.as_str(),
            printable(&record.status),
            record.polls,
            record.claims,
            record.owner.as_deref().map(printable).unwrap_or_default()
        );
    }
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for record in &records {
        *counts.entry(record.state.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
    eprintln!("{} operations: {}", records.len(), summary.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// `lro abandon`: stop tracking running operations (the service is not told).
pub(crate) async fn abandon(args: AbandonArgs) -> Result<ExitCode, UsageError> {
    let store = lro_store::open(&args.store).await.map_err(|e| store_error(&args.store, &e))?;
    let mut code = ExitCode::SUCCESS;
    for key in &args.keys {
        match store.abandon(key).await {
            Ok(true) => eprintln!("abandoned {}", printable(key)),
            Ok(false) => {
                eprintln!("{}: not running (unknown, or over already)", printable(key));
                code = ExitCode::from(1);
            }
            Err(e) => return Err(store_error(&args.store, &e)),
        }
    }
    Ok(code)
}
