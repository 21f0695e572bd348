//! herald-client's integration tests, one binary: the device client against an in-test
//! WebSocket server, and the push client against an in-test HTTP server.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod device;
mod sender;
