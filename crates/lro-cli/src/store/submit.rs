//! `lro submit`: send the initial request, then store the operation (its signed token and how
//! to poll it) for workers to claim. Nothing is polled here.

use std::process::ExitCode;
use std::sync::Arc;

use lro_core::{Engine, LroError};
use lro_store::{NewOperation, StoreError};
use serde_json::json;

use super::SubmitArgs;
use super::spec::Spec;
use crate::drive::Client;
use crate::output::Report;
use crate::settings::Settings;
use crate::{Output, UsageError};

/// `lro submit`.
pub(crate) async fn submit(args: SubmitArgs) -> Result<ExitCode, UsageError> {
    let settings = Settings::new(&args.start.polling, None)?;
    let Some(key) = settings.token_key().cloned() else {
        return Err(UsageError(
            "a store holds signed tokens only: give --token-key-file or LRO_TOKEN_KEY (the \
             workers need the same key)"
                .to_owned(),
        ));
    };
    let request = crate::run::initial_request(&args.start, &settings.headers)?;
    let store = lro_store::open(&args.store).await.map_err(|e| store_error(&args.store, &e))?;
    let spec = Spec::of(&settings);
    let operation_key = args.key.clone().unwrap_or_else(|| {
        request
            .headers()
            .get("x-ms-client-request-id")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| format!("{:016x}", fastrand::u64(..)), str::to_owned)
    });
    let client = Client::new(settings.transport);
    let started = match client {
        Err(error) => Err(error),
        Ok(client) => match client.send_initial(request, &settings.retry).await {
            Err(error) => Err(error),
            Ok(initial) => spec
                .polling(&settings.headers, &args.start.polling.allow_origin, &key)
                .map_err(LroError::policy)
                .and_then(|(strategy, options)| Engine::start(strategy, Arc::new(options), initial))
                .and_then(|engine| Ok((engine.continuation_token()?, engine.status().to_string()))),
        },
    };
    let (token, status) = match started {
        Ok(started) => started,
        Err(error) => {
            let report = Report::failed(&error, None, 0);
            report.print(settings.output, "");
            return Ok(report.exit_code());
        }
    };
    let spec = serde_json::to_value(&spec).unwrap_or_default();
    let operation = NewOperation::new(&operation_key, token.into_string(), spec).status(&status);
    if let Err(e) = store.submit(operation).await {
        // The service has the operation, the store does not: say so plainly.
        eprintln!(
            "error: the service accepted the operation (status {status}) but the store refused \
             it: {}",
            lro_core::ErrorChain::new(&e)
        );
        return Ok(ExitCode::from(1));
    }
    match settings.output {
        Output::Json => println!("{}", json!({"key": operation_key, "status": status})),
        _ => {
            println!("{operation_key}");
            eprintln!("submitted: {operation_key} (status {status}); `lro worker` polls it");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A store that cannot be opened: a usage problem (exit 2) when the URL is wrong, else the
/// database's own error.
pub(crate) fn store_error(url: &str, error: &StoreError) -> UsageError {
    UsageError(format!(
        "cannot open the store {:?}: {}",
        lro_store::redacted_url(url),
        lro_core::ErrorChain::new(error)
    ))
}
