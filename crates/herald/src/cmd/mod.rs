//! The client-side subcommands of the `herald` binary: a simulated device and a sender.

pub mod admin;
pub mod device;
pub mod send;
