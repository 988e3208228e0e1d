//! The seed's custom polling method (examples/custom_backoff.rs), written once and run under
//! both pollers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/custom_backoff.rs"]
mod custom_backoff;

use std::time::Duration;

#[test]
fn custom_exponential_backoff_method_doubles_its_waits_up_to_the_cap_under_both_pollers() {
    let runs = custom_backoff::demo();
    assert_eq!(runs.len(), 2, "the blocking and the async poller");
    for (sleeps, resource) in runs {
        let secs: Vec<u64> = sleeps.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 5], "1 s doubling, capped at 5 s");
        assert_eq!(resource["name"], "w1");
    }
}

#[test]
fn custom_method_stays_within_sixty_lines() {
    let source = include_str!("../examples/custom_backoff.rs");
    let start = source.find("/// Where to poll").expect("the strategy");
    let end = source.find("/// Runs the method against a scripted service").expect("demo");
    let code = |l: &&str| !l.trim().is_empty() && !l.trim_start().starts_with("//");
    let lines = source[start..end].lines().filter(code).count();
    assert!(lines <= 60, "the custom method takes {lines} lines of code; the budget is 60");
}
