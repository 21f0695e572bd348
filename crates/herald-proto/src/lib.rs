//! Wire types: the Push Kit v3 REST JSON, its business codes, and Herald's device protocol.
//!
//! Nothing here does I/O. Types in this crate describe bytes on a wire; the domain types
//! that policy works on live in `herald-core`.

pub mod code;
pub mod device;
pub mod keyfile;
pub mod push;
pub mod receipt;

pub use code::Code;
