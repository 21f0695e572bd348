//! The Push Kit v3 REST API: routes, the response envelope and the error mapping.

pub mod admin;
pub mod push;
pub mod revoke;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_proto::Code;
use herald_proto::push::ApiResponse;

/// Answer with Push Kit's envelope; the HTTP status comes from the code table.
pub fn respond(code: Code, msg: impl Into<String>, request_id: &str) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::OK);
    (status, Json(ApiResponse::new(code, msg, request_id))).into_response()
}
