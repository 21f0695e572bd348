//! The Push Kit v3 REST API: routes, the response envelope and the error mapping.

pub mod accounts;
pub mod admin;
pub mod console;
pub mod images;
pub mod principal;
pub mod push;
pub mod revoke;
pub mod sessions;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::send::{PushType, Rejection};
use herald_proto::Code;
use herald_proto::push::ApiResponse;

/// Answer with Push Kit's envelope; the HTTP status comes from the code table.
pub fn respond(code: Code, msg: impl Into<String>, request_id: &str) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::OK);
    (status, Json(ApiResponse::new(code, msg, request_id))).into_response()
}

/// Answer a Push Kit endpoint's outcome (an accepted code and `msg`, or a rejection),
/// counting rejections by code.
pub fn answer(outcome: Result<(Code, String), Rejection>, request_id: &str) -> Response {
    match outcome {
        Ok((code, msg)) => respond(code, msg, request_id),
        Err(r) => {
            metrics::counter!("herald_api_rejected_total", "code" => r.code.as_str()).increment(1);
            respond(r.code, r.msg, request_id)
        }
    }
}

/// The request body, at most [`herald_core::send::MAX_RAW_BODY`] bytes (else `80300008`);
/// a body not sent within `limits.body_timeout_secs` is `80100001`.
pub async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, Rejection> {
    axum::body::to_bytes(body, herald_core::send::MAX_RAW_BODY)
        .await
        .map_err(|e| {
            if timed_out(&e) {
                Rejection::new(
                    Code::ParameterError,
                    "Check Parameter Error, the body did not arrive in time.",
                )
            } else {
                Rejection::new(Code::MessageTooLong, Code::MessageTooLong.default_msg())
            }
        })
}

/// Whether a body error is the listener's body deadline.
fn timed_out(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The `Authorization` header, if it is text.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// The `push-type` header, parsed (missing or unknown → `80100003`).
pub fn push_type(headers: &HeaderMap) -> Result<PushType, Rejection> {
    PushType::from_header(headers.get("push-type").and_then(|v| v.to_str().ok()))
}
