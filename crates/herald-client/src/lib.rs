//! Herald's client library: the backend side (`sender`: JWT signing and the Push Kit REST
//! calls), the operator side (`admin`: the admin API) and the device side (`device`: the
//! WebSocket protocol client with reconnects), and `tls`: trusting a private CA (`--ca-file`).
//!
//! Neither side installs anything process-global (no rustls provider, no tracing
//! subscriber); binaries do that.

pub mod admin;
pub mod device;
pub mod sender;
pub mod tls;
