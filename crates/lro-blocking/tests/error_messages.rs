//! Errors of the blocking transport never repeat the request's URL: its query may hold a SAS
//! signature, and error messages end up in logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error as _;

use bytes::Bytes;
use http::Request;
use lro_blocking::BlockingClient;
use lro_core::HttpClient;

const SECRET: &str = "s3cretSig";

/// The error's message, its causes' messages and its `Debug` output, all together.
fn everything_shown(error: &lro_core::TransportError) -> String {
    let mut shown = format!("{error} {error:?}");
    let mut cause = error.source();
    while let Some(inner) = cause {
        shown.push_str(&format!(" {inner} {inner:?}"));
        cause = inner.source();
    }
    shown
}

fn send(client: &BlockingClient, url: &str) -> lro_core::TransportError {
    let request = Request::get(url).body(Bytes::new()).unwrap();
    client.send(request).expect_err("the request cannot be sent")
}

#[test]
fn an_https_only_agents_refusal_does_not_repeat_the_url() {
    let agent = ureq::Agent::config_builder().https_only(true).build().new_agent();
    let client = BlockingClient::from_agent(agent, 1024);
    let error = send(&client, &format!("http://127.0.0.1:9/op?sig={SECRET}"));
    let shown = everything_shown(&error);
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("https:// URLs only"), "{shown}");
}

#[test]
fn a_url_without_a_host_is_refused_without_repeating_it() {
    let error = send(&BlockingClient::new().unwrap(), &format!("/op?sig={SECRET}"));
    let shown = everything_shown(&error);
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("cannot be sent"), "{shown}");
}
