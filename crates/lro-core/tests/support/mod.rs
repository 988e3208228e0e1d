//! Shared test strategies and helpers for lro-core's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, Uri};
use lro_core::test_util::{ScriptedTransport, WithHeader, json_response};
use lro_core::{InitialResponse, LroError, Strategy};

/// A status-monitor strategy with the features the engine must support: a polling URL that the
/// service may move (new `operation-location` on a poll), a final GET of the original URL for
/// PUT, and progress saved in continuation tokens.
#[derive(Debug, Clone, Default)]
pub struct Monitor {
    url: Option<Uri>,
    final_url: Option<Uri>,
    /// How many times the engine asked for the polling URL (`poll_uri`).
    pub asked: Arc<std::sync::atomic::AtomicUsize>,
}

fn header_uri(response: &Response<Bytes>, name: &str) -> Option<Uri> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn body_status(response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
    let body: serde_json::Value = serde_json::from_slice(response.body())
        .map_err(|e| LroError::decode("not JSON", Some(e.into())))?;
    body.get("status")
        .and_then(|s| s.as_str())
        .map(Arc::from)
        .ok_or_else(|| LroError::bad_response(response, "no status found in body"))
}

impl Strategy for Monitor {
    fn start(&mut self, initial: &InitialResponse) -> Result<Arc<str>, LroError> {
        let response = initial.response();
        if !response.status().is_success() {
            return Err(LroError::bad_status(response, initial.request().method()));
        }
        self.url = header_uri(response, "operation-location");
        if *initial.request().method() == Method::PUT {
            self.final_url = Some(initial.request().uri().clone());
        }
        Ok(body_status(response).unwrap_or_else(|_| "InProgress".into()))
    }

    fn poll_uri(&self) -> Option<Uri> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.url.clone()
    }

    fn polls_uri(&self, uri: &Uri) -> bool {
        self.url.as_ref() == Some(uri)
    }

    fn read_poll(&mut self, response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
        if !response.status().is_success() {
            return Err(LroError::bad_status(response, &Method::GET));
        }
        if let Some(moved) = header_uri(response, "operation-location") {
            self.url = Some(moved);
        }
        body_status(response)
    }

    fn final_uri(&self, _latest: &Response<Bytes>) -> Result<Option<Uri>, LroError> {
        Ok(self.final_url.clone())
    }

    fn read_final(&mut self, response: &Response<Bytes>) -> Result<(), LroError> {
        if response.status().is_success() {
            Ok(())
        } else {
            Err(LroError::bad_status(response, &Method::GET))
        }
    }

    fn save(&self) -> Option<serde_json::Value> {
        self.url.as_ref().map(|u| serde_json::json!({ "url": u.to_string() }))
    }

    fn restore(&mut self, saved: &serde_json::Value) -> Result<(), LroError> {
        let url = saved
            .get("url")
            .and_then(|u| u.as_str())
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| LroError::invalid_token("the saved polling URL is invalid"))?;
        self.url = Some(url);
        Ok(())
    }
}

/// An operation that finished with its initial response (like NoPolling).
#[derive(Debug, Clone, Default)]
pub struct Immediate;

impl Strategy for Immediate {
    fn start(&mut self, _initial: &InitialResponse) -> Result<Arc<str>, LroError> {
        Ok("Succeeded".into())
    }
    fn poll_uri(&self) -> Option<Uri> {
        None
    }
    fn read_poll(&mut self, _response: &Response<Bytes>) -> Result<Arc<str>, LroError> {
        Ok("Succeeded".into())
    }
}

pub const OP: &str = "http://svc/op";
pub const RESOURCE: &str = "http://svc/widgets/1";

/// A 201/202 initial response pointing at the monitor [`OP`], for `method` on [`RESOURCE`].
pub fn started(method: &str, body: &str) -> InitialResponse {
    let status = if method == "PUT" { 201 } else { 202 };
    InitialResponse::new(
        ScriptedTransport::request_head(method, RESOURCE),
        json_response(status, body).with_header("operation-location", OP),
    )
}

pub fn status(word: &str) -> Response<Bytes> {
    json_response(200, &format!(r#"{{"status":"{word}"}}"#))
}
