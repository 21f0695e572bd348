//! The gateway's limits on strangers, called at the two boundaries the socket loop has:
//! the upgrade (device sockets per address) and the first frame (new devices per
//! address). The counting itself lives in `limits.rs`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_proto::device::{ClientFrame, close};

use super::sm::Close;
use crate::limits::{ClientAddr, Held};
use crate::state::AppState;

/// A slot for one more device socket from `client` (`None` for exempt addresses), or
/// [`TooManySockets`] when the address holds `device_connections_per_addr` already.
pub fn hold_socket(app: &AppState, client: ClientAddr) -> Result<Option<Held>, TooManySockets> {
    app.guards.hold_device_connection(client.0).map_err(|_| {
        metrics::counter!("herald_device_sockets_refused_total").increment(1);
        tracing::debug!(client = %client.0, "Too many device sockets from one address; refusing one.");
        TooManySockets
    })
}

/// The upgrade is refused: HTTP 429 with `Retry-After`.
#[derive(Debug)]
pub struct TooManySockets;

impl IntoResponse for TooManySockets {
    fn into_response(self) -> Response {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, "10")],
            "too many device connections from this address\n",
        )
            .into_response()
    }
}

/// A `hello` without a credential registers a device (a durable write that is never
/// undone): at most `registrations_burst` per address, then `registrations_per_hour`.
/// Past that the socket is closed with 1013 (try again later); a known device's `hello`
/// always passes.
pub fn admit_hello(app: &AppState, client: ClientAddr, first: &ClientFrame) -> Result<(), Close> {
    let ClientFrame::Hello { device: None, .. } = first else {
        return Ok(());
    };
    app.guards
        .take_registration(client.0, app.clock.now_ms())
        .map_err(|t| {
            metrics::counter!("herald_registrations_refused_total").increment(1);
            tracing::info!(
                client = %client.0,
                retry_after_secs = t.retry_after_secs,
                "Too many new devices from one address; refusing a registration."
            );
            Close::new(
                close::TRY_AGAIN_LATER,
                "too many new devices from this address",
            )
        })
}
