//! `POST /v3/{projectId}/messages:send`: authenticate, parse, decide per token (rights,
//! quotas), enqueue durably, then route to connected devices.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use herald_core::live::LiveViewState;
use herald_core::policy::{Admission, AppPolicy, Charge, Ledger, QuotaContext, Recipient, admit};
use herald_core::quota::{AppCategory, Counter, CounterKey};
use herald_core::send::{ParsedSend, Payload, PushType, Rejection, parse_send};
use herald_core::{Category, ReceiptCode};
use herald_proto::Code;
use herald_proto::push::TokenFailures;
use herald_store::{
    DeliveryId, Enqueue, LiveViewKey, MessageKind, NewDelivery, NewDrop, NewMessage, StoreError,
    TokenRecord,
};
use rand::Rng;

use super::{answer, authorization, push_type, read_body};
use crate::delivery::{self, MessageTemplate, Prepared};
use crate::ids;
use crate::policy::{QuotaBook, Reservation};
use crate::registry::{Live, LiveBody};
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
    match handle_send(&app, &project_id, &headers, body, now, &request_id).await {
        Ok(accepted) => answer(Ok(accepted), &request_id),
        Err(Refused::Rejected(r)) => answer(Err(r), &request_id),
        Err(Refused::Faulted(fault)) => fault.response(&request_id),
    }
}

/// Why a send was not accepted.
enum Refused {
    /// Push Kit's answer for what is wrong with it.
    Rejected(Rejection),
    /// Emulator mode: a fault set up by `POST /emulator/v1/faults` answered it.
    Faulted(crate::emulator::FaultAnswer),
}

impl From<Rejection> for Refused {
    fn from(r: Rejection) -> Self {
        Refused::Rejected(r)
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
) -> Result<(Code, String), Refused> {
    app.jwt
        .authenticate(authorization(headers), project_id)
        .await
        .map_err(|e| Rejection::new(e.code(), e.code().default_msg()))?;
    push_service_on(app, project_id).await?;

    let push_type = push_type(headers)?;
    let bytes = read_body(body).await?;
    let parsed = parse_send(push_type, &bytes)?;
    if let Some(fault) = app
        .emulator
        .as_ref()
        .and_then(|e| e.take_fault(&parsed.tokens))
    {
        // As Push Kit answers that failure; nothing is stored or delivered.
        return Err(Refused::Faulted(fault));
    }
    Ok(send_parsed(app, project_id, &parsed, &bytes, now, request_id).await?)
}

/// `80300002` when the project's push service is off (`PATCH /api/v1/projects/{id}`).
pub(crate) async fn push_service_on(app: &Shared, project_id: &str) -> Result<(), Rejection> {
    if app
        .projects
        .push_enabled(app.store.as_ref(), project_id, app.caches_trusted())
        .await
        .map_err(inner_error)?
    {
        Ok(())
    } else {
        Err(Rejection::new(
            Code::NoPermission,
            Code::NoPermission.default_msg(),
        ))
    }
}

/// The send path after authentication and parsing, shared by `messages:send` and the
/// console's test messages (`api/console.rs`): decide per token (rights, quotas), store
/// the request and its deliveries durably, route them, and say what became of each token.
/// `bytes` is the request body as sent (the emulator records it).
pub(crate) async fn send_parsed(
    app: &Shared,
    project_id: &str,
    parsed: &ParsedSend,
    bytes: &[u8],
    now: i64,
    request_id: &str,
) -> Result<(Code, String), Rejection> {
    let push_type = parsed.push_type;
    let (plan, reservation) = plan_deliveries(app, project_id, parsed, now, request_id).await?;
    let failures = plan.failures;
    if plan.enqueue.deliveries.is_empty() && plan.enqueue.drops.is_empty() {
        app.quotas.release(reservation);
        app.live_views.restore(plan.live_previous);
        return Ok((Code::AllTokensInvalid, failures.to_msg()));
    }
    let urgent = push_type == PushType::Voip;
    let notify_id = plan.enqueue.message.notify_id;
    let enqueue = plan.enqueue;
    let mut drops: Vec<ReceiptCode> = enqueue.drops.iter().map(|d| d.code).collect();
    let result = match app.store.enqueue(enqueue).await {
        Ok(r) => r,
        Err(e) => {
            app.quotas.release(reservation);
            app.live_views.restore(plan.live_previous);
            return Err(inner_error(e));
        }
    };
    if let Some(emulator) = &app.emulator {
        emulator.record_send(crate::emulator::SentMessage {
            request_id,
            body: bytes,
            parsed,
            notify_id,
            categories: &plan.categories,
        });
    }
    // The store took the counters again as it committed: what another node took
    // meanwhile (a shared store) refused some deliveries, which are dropped, not sent.
    let refused: HashSet<i64> = result.refused.iter().map(|(token, _)| *token).collect();
    if refused.is_empty() {
        app.quotas.catch_up(&result.counters);
    } else {
        metrics::counter!("herald_quota_refused_at_commit_total").increment(refused.len() as u64);
        drops.extend(result.refused.iter().map(|(_, code)| *code));
        // This node's counters were behind: read them again on their next use.
        app.quotas
            .forget(result.counters.iter().map(|(key, _)| key));
    }
    drop(reservation);
    // Devices not connected here may be connected to another node: tell the others.
    let mut elsewhere = Vec::new();
    for route in plan.routes {
        if refused.contains(&route.token_num) {
            continue;
        }
        if app.bus.is_some() && !app.registry.is_connected(route.device) {
            elsewhere.push(route.device);
        }
        app.registry.deliver(
            route.device,
            Live {
                id: DeliveryId {
                    message: result.message,
                    token: route.token_num,
                },
                body: LiveBody::Message {
                    prepared: route.prepared,
                    record: route.record,
                },
                urgent,
            },
        );
    }
    if let Some(bus) = &app.bus {
        bus.announce(elsewhere);
    }
    for code in drops {
        metrics::counter!("herald_messages_dropped_total", "receipt" => code.0.to_string())
            .increment(1);
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

/// What one request turns into: rows to store, where to route them, and the failures to
/// report.
struct Plan {
    enqueue: Enqueue,
    failures: TokenFailures,
    routes: Vec<Route>,
    /// Live View states before this request changed them (restored if it is not stored).
    live_previous: Vec<(LiveViewKey, Option<LiveViewState>)>,
    /// Emulator mode only: each admitted token's effective category (virtual devices'
    /// inboxes show it).
    categories: Vec<(String, Option<Category>)>,
}

/// Where one queued delivery goes once stored.
struct Route {
    device: i64,
    token_num: i64,
    /// The token's cached record (its token and app travel in the frame).
    record: Arc<TokenRecord>,
    prepared: Arc<Prepared>,
}

/// Takes counters for the core policy from the in-memory book, into the request's
/// reservation (committed with the request or released).
struct Taking<'a> {
    book: &'a QuotaBook,
    reservation: &'a mut Reservation,
}

impl Ledger for Taking<'_> {
    fn try_take(&mut self, key: &CounterKey, limit: u32) -> bool {
        self.book.try_take(key, limit, self.reservation)
    }

    fn give_back(&mut self, key: &CounterKey) {
        self.book.give_back(key, self.reservation);
    }
}

fn recipient(r: &TokenRecord) -> Recipient<'_> {
    Recipient {
        project_id: &r.project_id,
        client_id: &r.client_id,
        device_id: &r.device_id,
    }
}

async fn load_app_policies(
    app: &Shared,
    client_ids: HashSet<String>,
) -> Result<HashMap<String, AppPolicy>, Rejection> {
    let mut out = HashMap::with_capacity(client_ids.len());
    // Without a bus to say what other nodes changed, a shared store is read each time.
    let trusted = app.caches_trusted();
    for client_id in client_ids {
        if !trusted {
            app.apps.invalidate(&client_id);
            app.rights.invalidate(&client_id);
        }
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
        .resolve(app.store.as_ref(), &tokens, app.caches_trusted())
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
        let within = app
            .rates
            .try_take(
                app.store.as_ref(),
                client_id,
                policy.limits.send_rate_per_sec,
                now,
            )
            .await
            .map_err(inner_error)?;
        if !within {
            metrics::counter!("herald_send_flow_controlled_total").increment(1);
            return Err(Rejection::new(
                Code::FlowControl,
                Code::FlowControl.default_msg(),
            ));
        }
    }

    let ctx = QuotaContext {
        parsed,
        day: app.calendar.day(now),
        now,
        widget_daily_limit: app.config.widget_daily_limit,
    };
    let test = parsed.options.test;
    let admissions: Vec<(&str, Option<Arc<TokenRecord>>, Admission)> = tokens
        .into_iter()
        .zip(records)
        .map(|(t, r)| {
            let policy = r.as_ref().and_then(|r| apps.get(&r.client_id));
            let admission = admit(project_id, parsed, t, r.as_deref().map(recipient), policy);
            (t, r, admission)
        })
        .collect();

    // Load every counter this request may touch, in one store call.
    let test_key = CounterKey::per_project(Counter::TestMessages, project_id, ctx.day);
    let mut keys = Vec::new();
    if test {
        keys.push(test_key.clone());
    }
    let mut live_keys = Vec::new();
    for (_, record, admission) in &admissions {
        if let (Admission::Admit(_), Some(r)) = (admission, record) {
            keys.extend(ctx.counter_keys(&recipient(r)));
            if let Payload::LiveView(l) = &parsed.payload {
                live_keys.push(live_key(r, l.activity_id));
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
    // The request's own counter, taken again by the store with the deliveries.
    let request_charges = if test && test_budget_left {
        vec![Charge {
            key: test_key.clone(),
            limit: app.limits.test_messages_per_day,
            code: ReceiptCode::FREQUENCY_LIMIT,
        }]
    } else {
        Vec::new()
    };

    let notify_id = parsed
        .payload
        .notification()
        .and_then(|n| n.notify_id)
        .unwrap_or_else(|| rand::rng().random_range(0..=i32::MAX as u32));
    let payload = parsed.payload.to_device_json(notify_id);
    let expires_at = parsed.options.expires_at(now);
    let template = MessageTemplate {
        request_id,
        push_type: parsed.push_type.as_u8(),
        sent_at: now,
        expires_at,
        payload: &payload,
        test,
        bi_tag: parsed.options.bi_tag.as_deref(),
    };
    // The frame is serialised once per effective category and mode, not per device.
    let mut variants: HashMap<(Option<Category>, Option<u8>), Arc<Prepared>> = HashMap::new();

    let mut failures = TokenFailures::default();
    let mut deliveries = Vec::new();
    let mut routes = Vec::new();
    let mut drops = Vec::new();
    let mut live_views = Vec::new();
    let mut live_previous = Vec::new();
    let mut categories = Vec::new();
    for (token, record, admission) in admissions {
        let (record, admitted) = match (admission, record) {
            (Admission::Fail(reason), _) => {
                failures.add(reason, token);
                continue;
            }
            (Admission::Admit(a), Some(r)) => (r, a),
            (admission, record) => {
                let code = match admission {
                    Admission::Drop(code) => code,
                    _ => ReceiptCode::TOKEN_INVALID,
                };
                failures.success += 1;
                drops.push(NewDrop {
                    token: token.to_owned(),
                    known: record.as_ref().map(|r| (r.token_num, r.device)),
                    client_id: record.map(|r| r.client_id.clone()),
                    code,
                });
                continue;
            }
        };
        let who = recipient(&record);
        let Some(policy) = apps.get(&record.client_id) else {
            continue;
        };
        let decision = if !test_budget_left {
            Err(ReceiptCode::FREQUENCY_LIMIT)
        } else {
            let mut ledger = Taking {
                book: &app.quotas,
                reservation: &mut reservation,
            };
            match &parsed.payload {
                Payload::LiveView(op) => {
                    let key = live_key(&record, op.activity_id);
                    app.live_views.with_entry(&key, |entry| {
                        let before = entry.state.clone();
                        let outcome = ctx.decide_live_view(
                            &who,
                            &admitted,
                            op,
                            &policy.limits,
                            &mut entry.state,
                            &mut entry.rate,
                            &mut ledger,
                        );
                        if entry.state != before {
                            live_previous.push((key.clone(), before));
                            if let Some(state) = &entry.state {
                                live_views.push((key.clone(), state.clone()));
                            }
                        }
                        outcome
                    })
                }
                _ => ctx.take_quotas(&who, &admitted, &policy.limits, &mut ledger),
            }
        };
        failures.success += 1;
        if app.emulator.is_some() {
            categories.push((token.to_owned(), admitted.category));
        }
        match decision {
            Err(code) => drops.push(NewDrop {
                token: token.to_owned(),
                known: Some((record.token_num, record.device)),
                client_id: Some(record.client_id.clone()),
                code,
            }),
            Ok(()) => {
                let prepared = variants
                    .entry((admitted.category, admitted.background_mode))
                    .or_insert_with(|| {
                        Arc::new(delivery::prepare(
                            &template,
                            admitted.category,
                            admitted.background_mode,
                        ))
                    })
                    .clone();
                deliveries.push(NewDelivery {
                    token: record.token_num,
                    device: record.device,
                    client_id: record.client_id.clone(),
                    category: admitted.category,
                    background_mode: admitted.background_mode,
                    offline: !app.registry.is_connected(record.device),
                    // What the decision took in memory, taken again by the store.
                    charges: ctx.charges(&who, &admitted, &policy.limits),
                });
                routes.push(Route {
                    device: record.device,
                    token_num: record.token_num,
                    record,
                    prepared,
                });
            }
        }
    }
    let form_id = match &parsed.payload {
        Payload::Form(f) => Some(f.form_id),
        _ => None,
    };
    Ok((
        Plan {
            enqueue: Enqueue {
                message: NewMessage {
                    request_id: request_id.to_owned(),
                    project_id: project_id.to_owned(),
                    push_type: parsed.push_type.as_u8(),
                    kind: MessageKind::Message,
                    payload: payload.to_string(),
                    bi_tag: parsed.options.bi_tag.clone(),
                    receipt_id: parsed.options.receipt_id.clone(),
                    test,
                    created_at: now,
                    expires_at,
                    collapse_key: parsed.options.collapse_key,
                    notify_id: parsed.payload.notification().map(|_| notify_id),
                    form_id,
                    receipt_hold_ms: Some(app.config.receipt_report_wait_ms()),
                },
                deliveries,
                drops,
                charges: request_charges,
                live_views,
            },
            failures,
            routes,
            live_previous,
            categories,
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
