//! `POST /v3/{projectId}/messages:send`: authenticate, parse, decide per token (rights,
//! quotas), enqueue durably, then route to connected devices.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use herald_core::live::{self, LiveDecision, LiveViewState};
use herald_core::quota::{AppCategory, AppLimits, Counter, CounterKey};
use herald_core::rights::{GrantedRights, Right};
use herald_core::send::{ParsedSend, Payload, PushType, Rejection, parse_send};
use herald_core::{Category, Outcome, ReceiptCode, token};
use herald_proto::Code;
use herald_proto::device::{DeviceMessage, ServerFrame};
use herald_proto::push::{TokenFailure, TokenFailures};
use herald_store::{
    Enqueue, LiveViewKey, NewDelivery, NewDrop, NewRequest, StoreError, TokenRecord,
};
use rand::Rng;

use super::{answer, authorization, push_type, read_body};
use crate::delivery;
use crate::ids;
use crate::policy::{LiveEntry, Reservation};
use crate::registry::Live;
use crate::state::Shared;

/// The send endpoint.
pub async fn send(
    State(app): State<Shared>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = app.clock.now_ms();
    let request_id = ids::request_id(now);
    let outcome = handle_send(&app, &project_id, &headers, body, now, &request_id).await;
    answer(outcome, &request_id)
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
    app.jwt
        .authenticate(authorization(headers), project_id)
        .await
        .map_err(|e| Rejection::new(e.code(), e.code().default_msg()))?;

    let push_type = push_type(headers)?;
    let bytes = read_body(body).await?;
    let parsed = parse_send(push_type, &bytes)?;

    let (plan, reservation) = plan_deliveries(app, project_id, &parsed, now, request_id).await?;
    let failures = plan.failures.clone();
    if plan.enqueue.deliveries.is_empty() && plan.enqueue.drops.is_empty() {
        app.quotas.release(reservation);
        app.live_views.restore(plan.live_previous);
        return Ok((Code::AllTokensInvalid, failures.to_msg()));
    }
    let live = plan.live_messages();
    let urgent = push_type == PushType::Voip;
    let live_previous = plan.live_previous;
    let mut enqueue = plan.enqueue;
    enqueue.usage = reservation.usage();
    let drops: Vec<Outcome> = enqueue.drops.iter().map(|d| d.outcome).collect();
    let result = match app.store.enqueue(enqueue).await {
        Ok(r) => r,
        Err(e) => {
            app.quotas.release(reservation);
            app.live_views.restore(live_previous);
            return Err(inner_error(e));
        }
    };
    for ((device_id, message), seq) in live.into_iter().zip(result.seqs) {
        let frame = ServerFrame::Message(message);
        app.registry
            .deliver(&device_id, Live { seq, frame, urgent });
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
    /// Live View states before this request changed them (restored if it is not stored).
    live_previous: Vec<(LiveViewKey, Option<LiveViewState>)>,
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
                    background_mode: d.background_mode,
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
    /// (its receipt then goes to that app's receipt configuration).
    Drop {
        code: ReceiptCode,
        client_id: Option<String>,
    },
    Deliver(Admitted),
}

impl Decision {
    /// A drop of a token whose app is unknown.
    fn drop_unknown(code: ReceiptCode) -> Decision {
        Decision::Drop {
            code,
            client_id: None,
        }
    }

    /// A drop of an admitted token (its app is known).
    fn drop_admitted(code: ReceiptCode, a: &Admitted) -> Decision {
        Decision::Drop {
            code,
            client_id: Some(a.record.client_id.clone()),
        }
    }
}

/// A token that passed the checks that need no quota.
struct Admitted {
    record: TokenRecord,
    /// The effective category, for notifications.
    category: Option<Category>,
    /// The effective `backgroundMode`, for background messages.
    background_mode: Option<u8>,
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
        None => return Decision::drop_unknown(ReceiptCode::TOKEN_INVALID),
        Some(r) if r.project_id != project_id => return Decision::Fail(TokenFailure::NoRight),
        Some(r) => r,
    };
    let Some(policy) = apps.get(&record.client_id) else {
        return Decision::drop_unknown(ReceiptCode::TOKEN_INVALID);
    };
    if let Some(failure) = missing_type_right(&parsed.payload, &policy.rights) {
        return Decision::Fail(failure);
    }
    let category = requested.map(|c| policy.rights.effective_category(c));
    let background_mode = matches!(parsed.payload, Payload::Background(_)).then(|| {
        // Without the right, an IM background message is sent as a normal one.
        u8::from(parsed.options.im_background && policy.rights.has(&Right::ImBackground))
    });
    Decision::Deliver(Admitted {
        record,
        category,
        background_mode,
    })
}

/// The right a push type needs and the app lacks, as the per-token failure to report.
fn missing_type_right(payload: &Payload, rights: &GrantedRights) -> Option<TokenFailure> {
    let (right, failure) = match payload {
        Payload::Badge(_) => (Right::Category(Category::Im), TokenFailure::NoPushTypeRight),
        Payload::Voice { .. } => (
            Right::Category(Category::PlayVoice),
            TokenFailure::NoPushTypeRight,
        ),
        Payload::Voip { .. } => (Right::VoipCall, TokenFailure::NoPushTypeRight),
        Payload::LiveView(l) => (
            Right::LiveView(l.event.clone()),
            TokenFailure::NoRightToSendThisLiveNotificationEvent,
        ),
        Payload::Alert(_) | Payload::Form(_) | Payload::Background(_) => return None,
    };
    (!rights.has(&right)).then_some(failure)
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
    let mut live_keys = Vec::new();
    for (_, d) in &decisions {
        if let Decision::Deliver(a) = d {
            keys.extend(
                counters_for(parsed, &a.record, day, now)
                    .into_iter()
                    .map(|(k, _)| k),
            );
            keys.push(CounterKey::per_device(
                Counter::DeviceTotal,
                &a.record.client_id,
                &a.record.device_id,
                day,
            ));
            if let Payload::LiveView(l) = &parsed.payload {
                live_keys.push(live_key(&a.record, l.activity_id));
            }
        }
    }
    app.quotas
        .load(app.store.as_ref(), &keys)
        .await
        .map_err(inner_error)?;
    app.live_views
        .load(app.store.as_ref(), &live_keys)
        .await
        .map_err(inner_error)?;

    let mut reservation = Reservation::default();
    let test_budget_left = !test
        || app.quotas.try_take(
            &test_key,
            app.limits.test_messages_per_day,
            &mut reservation,
        );

    let notify_id = parsed
        .payload
        .notification()
        .and_then(|n| n.notify_id)
        .unwrap_or_else(|| rand::rng().random_range(0..=i32::MAX as u32));
    let payload = parsed.payload.to_device_json(notify_id);
    let expires_at = now + i64::from(parsed.options.ttl_secs) * 1000;
    let collapse_key = parsed.options.collapse_key;

    let mut failures = TokenFailures::default();
    let mut deliveries = Vec::new();
    let mut drops = Vec::new();
    let mut live_views = Vec::new();
    let mut live_previous = Vec::new();
    let ctx = QuotaContext {
        app,
        apps: &apps,
        parsed,
        day,
        now,
    };
    for (token, decision) in decisions {
        let decision = match decision {
            Decision::Deliver(a) if !test_budget_left => {
                Decision::drop_admitted(ReceiptCode::FREQUENCY_LIMIT, &a)
            }
            Decision::Deliver(admitted) => match &parsed.payload {
                Payload::LiveView(op) => {
                    let key = live_key(&admitted.record, op.activity_id);
                    app.live_views.with_entry(&key, |entry| {
                        let before = entry.state.clone();
                        let outcome =
                            decide_live_view(&ctx, &admitted, op, entry, &mut reservation);
                        if entry.state != before {
                            live_previous.push((key.clone(), before));
                            if let Some(state) = &entry.state {
                                live_views.push((key.clone(), state.clone()));
                            }
                        }
                        match outcome {
                            Ok(()) => Decision::Deliver(admitted),
                            Err(code) => Decision::drop_admitted(code, &admitted),
                        }
                    })
                }
                _ => match ctx.take_quotas(&admitted, &mut reservation) {
                    Ok(()) => Decision::Deliver(admitted),
                    Err(code) => Decision::drop_admitted(code, &admitted),
                },
            },
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
            Decision::Deliver(a) => {
                failures.success += 1;
                deliveries.push(NewDelivery {
                    message_id: ids::hex_id(32),
                    token: a.record.token,
                    device_id: a.record.device_id,
                    client_id: a.record.client_id,
                    expires_at,
                    collapse_key,
                    notify_id: parsed.payload.notification().map(|_| notify_id),
                    category: a.category.map(|c| c.as_str().to_owned()),
                    background_mode: a.background_mode,
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
                live_views,
            },
            failures,
            push_type: parsed.push_type.as_u8(),
            payload,
            live_previous,
        },
        reservation,
    ))
}

fn live_key(record: &TokenRecord, activity_id: i32) -> LiveViewKey {
    LiveViewKey {
        client_id: record.client_id.clone(),
        device_id: record.device_id.clone(),
        activity_id,
    }
}

/// The push-type counters one delivery takes before device-level control, with their
/// limits and the receipt code past them: the MARKETING quota (not for test messages), a
/// widget's daily refreshes, IM background messages per hour.
fn counters_for(
    parsed: &ParsedSend,
    record: &TokenRecord,
    day: i32,
    now: i64,
) -> Vec<(CounterKey, (Counter, ReceiptCode))> {
    let (client, device) = (&record.client_id, &record.device_id);
    match &parsed.payload {
        Payload::Alert(_) if !parsed.options.test => vec![(
            CounterKey::per_device(Counter::Marketing, client, device, day),
            (Counter::Marketing, ReceiptCode::FREQUENCY_LIMIT),
        )],
        Payload::Form(f) => vec![(
            CounterKey::per_device_item(Counter::Widget, client, device, f.form_id, day),
            (Counter::Widget, ReceiptCode::WIDGET_LIMIT),
        )],
        Payload::Background(_) if parsed.options.im_background => vec![(
            CounterKey::per_device_item(
                Counter::ImBackgroundHour,
                client,
                device,
                now.div_euclid(3_600_000),
                day,
            ),
            (Counter::ImBackgroundHour, ReceiptCode::FREQUENCY_LIMIT),
        )],
        _ => Vec::new(),
    }
}

/// What the quota checks of one request share.
struct QuotaContext<'a> {
    app: &'a Shared,
    apps: &'a HashMap<String, AppPolicy>,
    parsed: &'a ParsedSend,
    day: i32,
    now: i64,
}

impl QuotaContext<'_> {
    /// Take the quotas one delivery needs: its push type's counter (see
    /// [`counters_for`]), then device-level control. On failure nothing stays taken.
    fn take_quotas(&self, a: &Admitted, reservation: &mut Reservation) -> Result<(), ReceiptCode> {
        let Some(policy) = self.apps.get(&a.record.client_id) else {
            return Err(ReceiptCode::TOKEN_INVALID);
        };
        let quotas = &self.app.quotas;
        let mut taken = Vec::new();
        for (key, (counter, code)) in counters_for(self.parsed, &a.record, self.day, self.now) {
            let applies = match counter {
                // Only notifications shown as MARKETING count towards its quota.
                Counter::Marketing => a.category == Some(Category::Marketing),
                // Only messages that stayed IM background messages count per hour.
                Counter::ImBackgroundHour => a.background_mode == Some(1),
                _ => true,
            };
            if !applies {
                continue;
            }
            let limit = match counter {
                Counter::Marketing => policy.limits.marketing_per_day,
                Counter::Widget => self.app.config.widget_daily_limit,
                Counter::ImBackgroundHour => herald_core::quota::IM_BACKGROUND_PER_HOUR,
                Counter::DeviceTotal | Counter::TestMessages => u32::MAX,
            };
            if !quotas.try_take(&key, limit, reservation) {
                for k in taken {
                    quotas.give_back(&k, reservation);
                }
                return Err(code);
            }
            taken.push(key);
        }
        let total_key = CounterKey::per_device(
            Counter::DeviceTotal,
            &a.record.client_id,
            &a.record.device_id,
            self.day,
        );
        if !quotas.try_take(&total_key, policy.limits.device_daily_total, reservation) {
            for k in taken {
                quotas.give_back(&k, reservation);
            }
            return Err(ReceiptCode::DEVICE_CONTROL);
        }
        Ok(())
    }
}

/// A Live View operation for one device: state rules (155/156/265/268/269), the
/// per-activity rate (256), then device-level control. Runs under the activity's lock;
/// the entry's state changes only when the operation is accepted (or an unknown id gets
/// blocked).
fn decide_live_view(
    ctx: &QuotaContext<'_>,
    admitted: &Admitted,
    op: &herald_core::send::LiveView,
    entry: &mut LiveEntry,
    reservation: &mut Reservation,
) -> Result<(), ReceiptCode> {
    match live::decide(entry.state.as_ref(), op, ctx.now) {
        LiveDecision::Reject(code, new_state) => {
            if let Some(state) = new_state {
                entry.state = Some(state);
            }
            Err(code)
        }
        LiveDecision::Accept(next) => {
            if !entry.rate.try_take(&op.event, ctx.now) {
                return Err(ReceiptCode::FREQUENCY_LIMIT);
            }
            ctx.take_quotas(admitted, reservation)?;
            entry.state = Some(next);
            Ok(())
        }
    }
}
