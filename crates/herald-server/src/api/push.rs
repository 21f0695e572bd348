//! `POST /v3/{projectId}/messages:send`: authenticate, parse, decide per token (rights,
//! quotas), enqueue durably, then route to connected devices.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use herald_core::quota::{AppCategory, AppLimits, Counter, CounterKey};
use herald_core::rights::{GrantedRights, Right};
use herald_core::send::{ParsedSend, Payload, PushType, Rejection, parse_send};
use herald_core::{Category, Outcome, ReceiptCode, token};
use herald_proto::Code;
use herald_proto::device::DeviceMessage;
use herald_proto::push::{TokenFailure, TokenFailures};
use herald_store::{Enqueue, NewDelivery, NewDrop, NewRequest, StoreError, TokenRecord};
use rand::Rng;
use serde_json::json;

use super::respond;
use crate::delivery;
use crate::ids;
use crate::policy::Reservation;
use crate::registry::Live;
use crate::state::Shared;

/// Largest raw body read: 4096 bytes of message plus 1000 tokens of the longest shape.
const MAX_RAW_BODY: usize = 4096 + herald_core::send::MAX_TOKENS * (token::MAX_TOKEN_LEN + 3);

/// The send endpoint.
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

fn inner_error(e: StoreError) -> Rejection {
    tracing::error!(error = %e, "The store failed during a send.");
    Rejection::new(Code::InnerError, Code::InnerError.default_msg())
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

    let (plan, reservation) = plan_deliveries(app, project_id, &parsed, now, request_id).await?;
    let failures = plan.failures.clone();
    if plan.enqueue.deliveries.is_empty() && plan.enqueue.drops.is_empty() {
        app.quotas.release(reservation);
        return Ok((Code::AllTokensInvalid, failures.to_msg()));
    }
    let live = plan.live_messages();
    let mut enqueue = plan.enqueue;
    enqueue.usage = reservation.usage();
    let drops: Vec<Outcome> = enqueue.drops.iter().map(|d| d.outcome).collect();
    let result = match app.store.enqueue(enqueue).await {
        Ok(r) => r,
        Err(e) => {
            app.quotas.release(reservation);
            return Err(inner_error(e));
        }
    };
    for ((device_id, message), seq) in live.into_iter().zip(result.seqs) {
        app.registry.deliver(&device_id, Live { seq, message });
    }
    for outcome in drops {
        if let Some(code) = outcome.receipt_code() {
            metrics::counter!("herald_messages_dropped_total", "receipt" => code.0.to_string())
                .increment(1);
        }
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
                let message = DeviceMessage {
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
                    reminder: None,
                };
                (
                    d.device_id.clone(),
                    delivery::finish(message, d.category.as_deref()),
                )
            })
            .collect()
    }
}

/// What the policy needs to know about one app of the request.
struct AppPolicy {
    rights: Arc<GrantedRights>,
    limits: AppLimits,
}

/// The per-token decision: fail (in `illegalTokens`), drop with a receipt, or deliver.
enum Decision {
    Fail(TokenFailure),
    /// Dropped with this receipt code; `client_id` is the token's app when it has one
    /// (its receipt then goes to that app's receipt config).
    Drop {
        code: ReceiptCode,
        client_id: Option<String>,
    },
    Deliver {
        record: TokenRecord,
        category: Option<Category>,
    },
}

/// Checks that need no quota: shape, push-type rules, ownership, rights.
fn admit(
    project_id: &str,
    parsed: &ParsedSend,
    token: &str,
    record: Option<TokenRecord>,
    apps: &HashMap<String, AppPolicy>,
) -> Decision {
    if !token::is_well_formed(token) {
        return Decision::Fail(TokenFailure::TokenFormatError);
    }
    let requested = parsed.payload.category();
    if requested == Some(Category::PlayVoice) && parsed.push_type != PushType::Voice {
        return Decision::Fail(TokenFailure::NotSupportPlayVoice);
    }
    let record = match record {
        None => {
            return Decision::Drop {
                code: ReceiptCode::TOKEN_INVALID,
                client_id: None,
            };
        }
        Some(r) if r.project_id != project_id => return Decision::Fail(TokenFailure::NoRight),
        Some(r) => r,
    };
    let Some(policy) = apps.get(&record.client_id) else {
        return Decision::Drop {
            code: ReceiptCode::TOKEN_INVALID,
            client_id: None,
        };
    };
    if matches!(parsed.payload, Payload::Badge(_))
        && !policy.rights.has(&Right::Category(Category::Im))
    {
        return Decision::Fail(TokenFailure::NoPushTypeRight);
    }
    let category = requested.map(|c| policy.rights.effective_category(c));
    Decision::Deliver { record, category }
}

async fn load_app_policies(
    app: &Shared,
    client_ids: HashSet<String>,
) -> Result<HashMap<String, AppPolicy>, Rejection> {
    let mut out = HashMap::with_capacity(client_ids.len());
    for client_id in client_ids {
        let Some(found) = app
            .apps
            .get(app.store.as_ref(), &client_id)
            .await
            .map_err(inner_error)?
        else {
            continue;
        };
        let rights = app
            .rights
            .get(app.store.as_ref(), &client_id)
            .await
            .map_err(inner_error)?;
        let category = AppCategory::parse(&found.app_category).unwrap_or_default();
        let limits = app.limits.for_app(category, &found.overrides);
        out.insert(client_id, AppPolicy { rights, limits });
    }
    Ok(out)
}

async fn plan_deliveries(
    app: &Shared,
    project_id: &str,
    parsed: &ParsedSend,
    now: i64,
    request_id: &str,
) -> Result<(Plan, Reservation), Rejection> {
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
        .map_err(inner_error)?;
    let client_ids: HashSet<String> = records
        .iter()
        .flatten()
        .filter(|r| r.project_id == project_id)
        .map(|r| r.client_id.clone())
        .collect();
    let apps = load_app_policies(app, client_ids).await?;

    // Flow control first: a request over an app's rate is refused whole (HTTP 503).
    for (client_id, policy) in &apps {
        if !app
            .rates
            .try_take(client_id, policy.limits.send_rate_per_sec, now)
        {
            metrics::counter!("herald_send_flow_controlled_total").increment(1);
            return Err(Rejection::new(
                Code::FlowControl,
                Code::FlowControl.default_msg(),
            ));
        }
    }

    let day = app.calendar.day(now);
    let test = parsed.options.test;
    let decisions: Vec<(&str, Decision)> = tokens
        .into_iter()
        .zip(records)
        .map(|(t, r)| (t, admit(project_id, parsed, t, r, &apps)))
        .collect();

    // Load every counter this request may touch, in one store call.
    let test_key = CounterKey::per_project(Counter::TestMessages, project_id, day);
    let mut keys = Vec::new();
    if test {
        keys.push(test_key.clone());
    }
    for (_, d) in &decisions {
        if let Decision::Deliver { record, .. } = d {
            for counter in [Counter::DeviceTotal, Counter::Marketing] {
                keys.push(CounterKey::per_device(
                    counter,
                    &record.client_id,
                    &record.device_id,
                    day,
                ));
            }
        }
    }
    app.quotas
        .load(app.store.as_ref(), &keys)
        .await
        .map_err(inner_error)?;

    let mut reservation = Reservation::default();
    let test_budget_left = !test
        || app.quotas.try_take(
            &test_key,
            app.limits.test_messages_per_day,
            &mut reservation,
        );

    let notify_id = match &parsed.payload {
        Payload::Alert(n) => n
            .notify_id
            .unwrap_or_else(|| rand::rng().random_range(0..=i32::MAX as u32)),
        Payload::Badge(_) => 0,
    };
    let payload = match &parsed.payload {
        Payload::Alert(n) => json!({ "notification": n.to_wire(notify_id) }),
        Payload::Badge(b) => json!({ "notification": { "badge": match b {
            herald_core::send::BadgeChange::Add(n) => json!({"addNum": n}),
            herald_core::send::BadgeChange::Set(n) => json!({"setNum": n}),
        }}}),
    };
    let expires_at = now + i64::from(parsed.options.ttl_secs) * 1000;
    let collapse_key = parsed.options.collapse_key;

    let mut failures = TokenFailures::default();
    let mut deliveries = Vec::new();
    let mut drops = Vec::new();
    for (token, decision) in decisions {
        let decision = match decision {
            Decision::Deliver { record, .. } if !test_budget_left => Decision::Drop {
                code: ReceiptCode::FREQUENCY_LIMIT,
                client_id: Some(record.client_id),
            },
            Decision::Deliver { record, category } => {
                match take_quotas(app, &apps, &record, category, test, day, &mut reservation) {
                    Ok(()) => Decision::Deliver { record, category },
                    Err(code) => Decision::Drop {
                        code,
                        client_id: Some(record.client_id),
                    },
                }
            }
            other => other,
        };
        match decision {
            Decision::Fail(reason) => failures.add(reason, token),
            Decision::Drop { code, client_id } => {
                failures.success += 1;
                drops.push(NewDrop {
                    message_id: ids::hex_id(32),
                    token: token.to_owned(),
                    client_id,
                    outcome: Outcome::Dropped(code),
                });
            }
            Decision::Deliver { record, category } => {
                failures.success += 1;
                deliveries.push(NewDelivery {
                    message_id: ids::hex_id(32),
                    token: record.token,
                    device_id: record.device_id,
                    client_id: record.client_id,
                    expires_at,
                    collapse_key,
                    notify_id: matches!(parsed.payload, Payload::Alert(_)).then_some(notify_id),
                    category: category.map(|c| c.as_str().to_owned()),
                });
            }
        }
    }
    Ok((
        Plan {
            enqueue: Enqueue {
                request: NewRequest {
                    request_id: request_id.to_owned(),
                    project_id: project_id.to_owned(),
                    push_type: parsed.push_type.as_u8(),
                    payload: payload.to_string(),
                    bi_tag: parsed.options.bi_tag.clone(),
                    receipt_id: parsed.options.receipt_id.clone(),
                    test,
                    ttl_secs: parsed.options.ttl_secs,
                    created_at: now,
                },
                deliveries,
                drops,
                usage: Vec::new(),
            },
            failures,
            push_type: parsed.push_type.as_u8(),
            payload,
        },
        reservation,
    ))
}

/// Take the daily quotas one delivery needs: the MARKETING quota (not for test
/// messages), then device-level control. On failure nothing stays taken.
fn take_quotas(
    app: &Shared,
    apps: &HashMap<String, AppPolicy>,
    record: &TokenRecord,
    category: Option<Category>,
    test: bool,
    day: i32,
    reservation: &mut Reservation,
) -> Result<(), ReceiptCode> {
    let Some(policy) = apps.get(&record.client_id) else {
        return Err(ReceiptCode::TOKEN_INVALID);
    };
    let marketing_key = CounterKey::per_device(
        Counter::Marketing,
        &record.client_id,
        &record.device_id,
        day,
    );
    let counts_as_marketing = category == Some(Category::Marketing) && !test;
    if counts_as_marketing
        && !app
            .quotas
            .try_take(&marketing_key, policy.limits.marketing_per_day, reservation)
    {
        return Err(ReceiptCode::FREQUENCY_LIMIT);
    }
    let total_key = CounterKey::per_device(
        Counter::DeviceTotal,
        &record.client_id,
        &record.device_id,
        day,
    );
    if !app
        .quotas
        .try_take(&total_key, policy.limits.device_daily_total, reservation)
    {
        if counts_as_marketing {
            app.quotas.give_back(&marketing_key, reservation);
        }
        return Err(ReceiptCode::DEVICE_CONTROL);
    }
    Ok(())
}
