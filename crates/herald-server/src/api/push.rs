//! `POST /v3/{projectId}/messages:send`: authenticate, parse, decide per token, enqueue
//! durably, then route to connected devices.

use std::collections::HashSet;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use herald_core::send::{ParsedSend, Payload, PushType, Rejection, parse_send};
use herald_core::{Category, Outcome, ReceiptCode, token};
use herald_proto::Code;
use herald_proto::device::DeviceMessage;
use herald_proto::push::{TokenFailure, TokenFailures};
use herald_store::{Enqueue, NewDelivery, NewDrop, NewRequest, TokenRecord};
use rand::Rng;

use super::respond;
use crate::ids;
use crate::registry::Live;
use crate::state::Shared;

/// Largest raw body read: 4096 bytes of message plus 1000 tokens of the longest shape.
const MAX_RAW_BODY: usize = 4096 + herald_core::send::MAX_TOKENS * (token::MAX_TOKEN_LEN + 3);

/// The send endpoint. `project_message` is the path segment after `/v3/`, which axum
/// cannot split at the `:` of `messages:send`, so the router passes `{projectId}` here.
pub async fn send(
    State(app): State<Shared>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = app.clock.now_ms();
    let request_id = ids::request_id(now);
    match handle_send(&app, &project_id, &headers, body, now, &request_id).await {
        Ok((code, msg)) => respond(code, msg, &request_id),
        Err(rejection) => {
            metrics::counter!("herald_send_rejected_total", "code" => rejection.code.as_str())
                .increment(1);
            respond(rejection.code, rejection.msg, &request_id)
        }
    }
}

async fn handle_send(
    app: &Shared,
    project_id: &str,
    headers: &HeaderMap,
    body: Body,
    now: i64,
    request_id: &str,
) -> Result<(Code, String), Rejection> {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    app.jwt
        .authenticate(authorization, project_id)
        .await
        .map_err(|e| Rejection::new(e.code(), e.code().default_msg()))?;

    let push_type = PushType::from_header(headers.get("push-type").and_then(|v| v.to_str().ok()))?;
    let bytes = to_bytes(body, MAX_RAW_BODY)
        .await
        .map_err(|_| Rejection::new(Code::MessageTooLong, Code::MessageTooLong.default_msg()))?;
    let parsed = parse_send(push_type, &bytes)?;

    let plan = plan_deliveries(app, project_id, &parsed, now, request_id).await?;
    let failures = plan.failures.clone();
    if plan.enqueue.deliveries.is_empty() && plan.enqueue.drops.is_empty() {
        return Ok((Code::AllTokensInvalid, failures.to_msg()));
    }
    let live = plan.live_messages();
    let result = app.store.enqueue(plan.enqueue).await.map_err(|e| {
        tracing::error!(error = %e, %request_id, "Could not store an accepted message.");
        Rejection::new(Code::InnerError, Code::InnerError.default_msg())
    })?;
    for ((device_id, message), seq) in live.into_iter().zip(result.seqs) {
        app.registry.deliver(&device_id, Live { seq, message });
    }
    metrics::counter!("herald_messages_accepted_total").increment(failures.success as u64);
    tracing::info!(%project_id, %request_id, push_type = push_type.as_u8(), tokens = failures.success, failed = failures.failure, "Message accepted.");
    if failures.is_empty() {
        Ok((Code::Success, Code::Success.default_msg().to_owned()))
    } else if failures.success > 0 {
        Ok((Code::PartialSuccess, failures.to_msg()))
    } else {
        Ok((Code::AllTokensInvalid, failures.to_msg()))
    }
}

/// What one request turns into: rows to store, and the failures to report.
struct Plan {
    enqueue: Enqueue,
    failures: TokenFailures,
    push_type: u8,
    payload: serde_json::Value,
}

impl Plan {
    /// One device frame per queued delivery, in the same order as `enqueue.deliveries`.
    fn live_messages(&self) -> Vec<(String, DeviceMessage)> {
        let r = &self.enqueue.request;
        self.enqueue
            .deliveries
            .iter()
            .map(|d| {
                (
                    d.device_id.clone(),
                    DeviceMessage {
                        id: d.message_id.clone(),
                        client_id: d.client_id.clone(),
                        token: d.token.clone(),
                        push_type: self.push_type,
                        request_id: r.request_id.clone(),
                        sent_at: r.created_at,
                        expires_at: d.expires_at,
                        payload: self.payload.clone(),
                        test: r.test,
                        bi_tag: r.bi_tag.clone(),
                    },
                )
            })
            .collect()
    }
}

/// The per-token decision: fail (in `illegalTokens`), drop with a receipt, or deliver.
enum Decision {
    Fail(TokenFailure),
    Drop(ReceiptCode),
    Deliver(TokenRecord),
}

fn decide(
    project_id: &str,
    push_type: PushType,
    category: Option<Category>,
    token: &str,
    record: Option<TokenRecord>,
) -> Decision {
    if !token::is_well_formed(token) {
        return Decision::Fail(TokenFailure::TokenFormatError);
    }
    if category == Some(Category::PlayVoice) && push_type != PushType::Voice {
        return Decision::Fail(TokenFailure::NotSupportPlayVoice);
    }
    match record {
        None => Decision::Drop(ReceiptCode::TOKEN_INVALID),
        Some(r) if r.project_id != project_id => Decision::Fail(TokenFailure::NoRight),
        Some(r) => Decision::Deliver(r),
    }
}

async fn plan_deliveries(
    app: &Shared,
    project_id: &str,
    parsed: &ParsedSend,
    now: i64,
    request_id: &str,
) -> Result<Plan, Rejection> {
    // The same token twice in one request is sent once.
    let mut seen = HashSet::with_capacity(parsed.tokens.len());
    let tokens: Vec<&str> = parsed
        .tokens
        .iter()
        .map(String::as_str)
        .filter(|t| seen.insert(*t))
        .collect();
    let records = app
        .tokens
        .resolve(app.store.as_ref(), &tokens)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "Could not look up tokens.");
            Rejection::new(Code::InnerError, Code::InnerError.default_msg())
        })?;

    let notify_id = match &parsed.payload {
        Payload::Alert(n) => n
            .notify_id
            .unwrap_or_else(|| rand::rng().random_range(0..=i32::MAX as u32)),
    };
    let payload = match &parsed.payload {
        Payload::Alert(n) => serde_json::json!({ "notification": n.to_wire(notify_id) }),
    };
    let expires_at = now + i64::from(parsed.options.ttl_secs) * 1000;
    let collapse_key = parsed.options.collapse_key;

    let mut failures = TokenFailures::default();
    let mut deliveries = Vec::new();
    let mut drops = Vec::new();
    for (token, record) in tokens.into_iter().zip(records) {
        match decide(
            project_id,
            parsed.push_type,
            parsed.payload.category(),
            token,
            record,
        ) {
            Decision::Fail(reason) => failures.add(reason, token),
            Decision::Drop(code) => {
                failures.success += 1;
                drops.push(NewDrop {
                    message_id: ids::hex_id(32),
                    token: token.to_owned(),
                    client_id: None,
                    outcome: Outcome::Dropped(code),
                });
            }
            Decision::Deliver(r) => {
                failures.success += 1;
                deliveries.push(NewDelivery {
                    message_id: ids::hex_id(32),
                    token: r.token,
                    device_id: r.device_id,
                    client_id: r.client_id,
                    expires_at,
                    collapse_key,
                    notify_id: Some(notify_id),
                });
            }
        }
    }
    Ok(Plan {
        enqueue: Enqueue {
            request: NewRequest {
                request_id: request_id.to_owned(),
                project_id: project_id.to_owned(),
                push_type: parsed.push_type.as_u8(),
                payload: payload.to_string(),
                bi_tag: parsed.options.bi_tag.clone(),
                receipt_id: parsed.options.receipt_id.clone(),
                test: parsed.options.test,
                ttl_secs: parsed.options.ttl_secs,
                created_at: now,
            },
            deliveries,
            drops,
        },
        failures,
        push_type: parsed.push_type.as_u8(),
        payload,
    })
}
