//! The client-side subcommands of the `herald` binary: a simulated device, a sender, the
//! admin tool (the load generator is its own binary, `herald-bench`).

pub mod admin;
pub mod device;
pub mod revoke;
pub mod send;
