//! Integration tests: each starts a real server on port 0 with its own data directory and
//! drives it with real HTTP requests and real WebSocket devices.

#![allow(clippy::unwrap_used)] // tests panic on the unexpected by design

mod admin_api;
mod auth;
mod cluster;
mod console;
mod docs;
mod emulator;
mod faults;
mod fuzz_corpus;
mod gateway;
mod hardening;
mod helpers;
mod images;
mod push_types;
mod readiness;
mod receipts;
mod rights_quotas;
mod roles;
mod sdk;
mod send_api;
mod tidy;
mod tls;
