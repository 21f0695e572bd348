//! Tests of the `herald-bench` binary, run as a user runs it.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected by design

mod smoke;
