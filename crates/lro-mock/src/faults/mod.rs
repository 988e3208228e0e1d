//! Fault injection: [`FaultSpec`] (what may go wrong, how often, under which seed), its compact
//! text form, and [`Fault`] (what did go wrong, as recorded in the request log).
//!
//! # Spec grammar
//!
//! A spec is a comma-separated list of `key=value` items (whitespace around items is ignored,
//! empty items are skipped, each key may appear once, keys are case-insensitive):
//!
//! | item | meaning |
//! |---|---|
//! | `seed=<u64>` | seed of the random sequence (default 0, so runs repeat) |
//! | `500=<p>` | answer `500 Internal Server Error` with an error body |
//! | `503=<p>` | answer `503 Service Unavailable` with an error body |
//! | `429=<p>[:<retry-after>]` | answer `429 Too Many Requests` with a delay hint in the `x-mock-retry-after` grammar (`none`, `<seconds>`, `ms:<millis>`, `date:<seconds>`; default `1`) |
//! | `reset=<p>` | close the connection without answering (TCP reset) |
//! | `slow=<p>[:<duration>]` | wait before answering; `<n>ms` or `<n>s`, default `500ms`, at most 10 s |
//! | `malformed=<p>` | the body is truncated JSON |
//! | `nostatus=<p>` | a status monitor's body lacks `status` |
//! | `oversized=<p>[:<size>]` | the body is padded with JSON whitespace to this size: `<n>`, `<n>B`, `<n>KiB`, `<n>MiB` or `<n>GiB`; default `32MiB`, at most 1 GiB; streamed in 64 KiB chunks |
//! | `cross-origin=<p>` | polling URLs point at `http://127.0.0.2:PORT` (another origin) |
//! | `initial=<bool>` | also inject into initial requests (`true`/`false`, default `false`) |
//!
//! `<p>` is a probability from 0 to 1. `slow` is drawn on its own and combines with the others;
//! the other faults exclude each other, so their probabilities must add up to at most 1.
//!
//! Example: `seed=7,500=0.1,503=0.05,429=0.1,reset=0.02,slow=0.1:200ms,malformed=0.05,`
//! `nostatus=0.05,oversized=0.01:32MiB,cross-origin=0.01`.
//!
//! # Determinism
//!
//! Each request the spec applies to draws exactly two numbers from a `fastrand::Rng` seeded
//! with `seed`: one for `slow`, one choosing among the others. The server-wide spec has one
//! generator for the whole server; a spec given with `x-mock-faults` has one for its operation.
//! The same seed and the same sequence of requests therefore give the same faults.

pub(crate) mod apply;
mod spec;

pub use spec::{Fault, FaultKind, FaultSpec, FaultSpecError, MAX_OVERSIZED_BYTES, MAX_SLOW_DELAY};
