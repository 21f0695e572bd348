//! End-to-end tests of the `herald` binary, run the way a newcomer runs it: `herald serve`
//! on a fresh data directory, `herald device --json` as a child process, requests signed
//! by the test itself from `service-account.json`, and `kill -9` for the exactly-once test.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected by design

mod cluster;
mod commands;
mod compat;
mod disk_full;
mod emulator;
mod exactly_once;
mod newcomer;
mod operator;
mod process;
mod push_types;
mod receipts;
mod secrets;
mod tls;
