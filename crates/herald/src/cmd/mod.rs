//! The client-side subcommands of the `herald` binary: a simulated device, a sender, the
//! admin tool and the benchmark.

pub mod admin;
pub mod bench;
pub mod device;
pub mod revoke;
pub mod send;
