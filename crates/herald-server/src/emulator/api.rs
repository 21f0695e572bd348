//! The emulator API, `/emulator/v1/...` (only with `herald serve --emulator`), with the
//! admin token: virtual devices and their inboxes and actions, the clock, faults, the
//! receipt log and the reset between tests. Its OpenAPI document ([`EmulatorApi`]) is
//! merged into `/openapi.json` in this mode.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use herald_client::device::AbilityDecl;
use herald_core::Outcome;
use herald_proto::Code;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::device::{self, Action, AppRunState, Refused, Start};
use super::{
    Emulator, Fault, FaultKind, MAX_DEVICES, MAX_FAULT_COUNT, MAX_FAULTS, MAX_TOKENS,
    ReceiptAttempt, lock,
};
use crate::api::principal::InstanceAdmin;
use crate::state::Shared;

/// The emulator API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        create_device, inbox, act, clock, show_clock, add_fault, list_faults, receipts,
        reset,
    ),
    components(schemas(
        NewDeviceBody, DeviceView, InboxView, InboxItem, Action, AppRunState, ClockBody,
        ClockView, FaultBody, FaultView, FaultsView, ReceiptsView, ReceiptAttempt,
        EmulatorError, AbilityBody,
    )),
    tags((name = "emulator", description = "herald serve --emulator: virtual devices, the clock, faults and receipts for a backend's tests")),
)]
#[derive(Debug)]
pub struct EmulatorApi;

/// The routes, added to the router only in emulator mode.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/emulator/v1/devices", post(create_device))
        .route("/emulator/v1/devices/{device_id}/inbox", get(inbox))
        .route("/emulator/v1/devices/{device_id}/actions", post(act))
        .route("/emulator/v1/clock", post(clock).get(show_clock))
        .route("/emulator/v1/faults", post(add_fault).get(list_faults))
        .route("/emulator/v1/receipts", get(receipts))
        .route("/emulator/v1/state", delete(reset))
}

/// An error: `{"error": "..."}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmulatorError {
    error: String,
}

/// The emulator API's refusals.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(EmulatorError { error: self.1 })).into_response()
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        ApiError(r.0, r.1)
    }
}

impl From<herald_store::StoreError> for ApiError {
    fn from(e: herald_store::StoreError) -> Self {
        tracing::error!(error = %e, "The store failed during an emulator call.");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store failed; see the server log".into(),
        )
    }
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, why.into())
}

/// The body as `T`, or 400 saying what is wrong with it.
fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| bad(format!("body: {e}")))
}

fn emulator(app: &Shared) -> Result<&Arc<Emulator>, ApiError> {
    // The routes exist only in emulator mode; this is the same answer as a normal serve's.
    app.emulator
        .as_ref()
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "not in emulator mode".into()))
}

/// `POST /emulator/v1/devices`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceBody {
    /// The app installed on the device (default: the bootstrap app).
    client_id: Option<String>,
    /// The notification permission: `allow` (the default) or `deny` (the switch is off,
    /// notifications are suppressed with receipt 6).
    #[schema(pattern = "^(allow|deny)$")]
    permission: Option<String>,
    /// Connected (the default), or offline: its messages stay queued until
    /// `{"action":"online","online":true}`.
    online: Option<bool>,
    /// Where the app starts (default `foreground`).
    app_state: Option<AppRunState>,
    /// The app's abilities besides `EntryAbility`, with the `skills` a `clickAction` of
    /// type 1 may match.
    #[serde(default)]
    abilities: Vec<AbilityBody>,
}

/// An ability's declaration (`module.json5` skills).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbilityBody {
    name: String,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    uris: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    device_id: String,
    /// The app's push token: send to it.
    token: String,
    client_id: String,
}

/// Create a virtual device with the app installed, and get its push token.
#[utoipa::path(post, path = "/emulator/v1/devices", tag = "emulator", request_body = NewDeviceBody,
    responses((status = 201, body = DeviceView), (status = 400, body = EmulatorError),
        (status = 401, body = EmulatorError), (status = 404, description = "no such app", body = EmulatorError),
        (status = 429, description = "too many devices", body = EmulatorError)),
    security(("bearer" = [])))]
async fn create_device(
    _: InstanceAdmin,
    State(app): State<Shared>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
    let emu = emulator(&app)?;
    let _calls = emu.gate.read().await;
    let b: NewDeviceBody = body(&bytes)?;
    let permission = match b.permission.as_deref() {
        None | Some("allow") => true,
        Some("deny") => false,
        Some(other) => {
            return Err(bad(format!(
                "permission must be allow or deny, not {other:?}"
            )));
        }
    };
    let client_id = match b.client_id.or_else(|| emu.default_client_id.get().cloned()) {
        Some(c) => c,
        None => return Err(bad("client_id is required")),
    };
    if lock(&emu.devices).len() >= MAX_DEVICES || !emu.has_room_for_a_token() {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {MAX_DEVICES} virtual devices; DELETE /emulator/v1/state"),
        ));
    }
    let (handle, token) = device::start(
        &app,
        Start {
            client_id: client_id.clone(),
            permission,
            online: b.online.unwrap_or(true),
            app_state: b.app_state.unwrap_or(AppRunState::Foreground),
            abilities: b
                .abilities
                .into_iter()
                .map(|a| AbilityDecl {
                    name: a.name,
                    actions: a.actions,
                    uris: a.uris,
                })
                .collect(),
        },
    )
    .await?;
    let device_id = handle.device_id.clone();
    emu.remember_token(&token, &device_id);
    lock(&emu.devices).insert(device_id.clone(), handle);
    tracing::info!(%device_id, %client_id, "Virtual device created.");
    Ok((
        StatusCode::CREATED,
        Json(DeviceView {
            device_id,
            token,
            client_id,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxView {
    /// Oldest first.
    items: Vec<InboxItem>,
}

/// One message sent to the device, and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxItem {
    /// The delivery's id (`"<message>.<token>"`), as the device acks and reports it.
    message_id: String,
    request_id: String,
    push_type: u8,
    notify_id: Option<u32>,
    /// The effective category (after any downgrade to MARKETING).
    category: Option<String>,
    /// `payload` as the backend sent it.
    #[schema(value_type = Object)]
    payload: Value,
    /// `queued`, `delivered` (acked, nothing shown: a repeated `appMessageId`), `shown`,
    /// `suppressed`, `clicked`, `revoked`, `replaced`, `expired` or `dropped`, from the
    /// store's lifecycle of the delivery.
    state: String,
    /// The receipt code of the delivery's latest receipt-bearing step (0 delivered, 6
    /// switch off, 256 quota, 14 expired, 15 replaced, …), or null.
    receipt: Option<u32>,
    /// The token it was sent to.
    token: String,
}

/// What the device got: every message sent to its tokens, oldest first, with its state
/// and receipt code from the store. Waits until the device has taken what was routed to
/// it and its reports are written, so what a send's answer promised is visible.
#[utoipa::path(get, path = "/emulator/v1/devices/{device_id}/inbox", tag = "emulator",
    params(("device_id" = String, Path)),
    responses((status = 200, body = InboxView), (status = 401, body = EmulatorError),
        (status = 404, body = EmulatorError)),
    security(("bearer" = [])))]
async fn inbox(
    _: InstanceAdmin,
    State(app): State<Shared>,
    Path(device_id): Path<String>,
) -> Result<Json<InboxView>, ApiError> {
    let emu = emulator(&app)?;
    let _calls = emu.gate.read().await;
    let device = emu
        .device(&device_id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such device".into()))?;
    device.settle().await;
    let _ = app.reports.flush().await.await;
    let mut items = Vec::new();
    for r in device.records() {
        let events = app
            .store
            .events_of_request(&r.request_id, Some(&r.token))
            .await?;
        let Some(last) = events.last() else {
            continue;
        };
        let receipt = events
            .iter()
            .rev()
            .find_map(|e| e.outcome.receipt_code())
            .map(|c| c.0);
        items.push(InboxItem {
            message_id: last.message_id.clone(),
            request_id: r.request_id,
            push_type: r.push_type,
            notify_id: r.notify_id,
            category: r.category,
            payload: r.payload,
            state: state_of(last.outcome).to_owned(),
            receipt,
            token: r.token,
        });
    }
    Ok(Json(InboxView { items }))
}

fn state_of(outcome: Outcome) -> &'static str {
    outcome.name()
}

/// Act on the device: tap a notification (answers the `want`), flip the notification
/// switch, bind or unbind a profile, delete the token (answers the new one), change the
/// app's run state, go on- or offline.
#[utoipa::path(post, path = "/emulator/v1/devices/{device_id}/actions", tag = "emulator",
    params(("device_id" = String, Path)), request_body = Action,
    responses((status = 200, description = "what the action did; a click: `ability`, `callback` (onCreate/onNewWant) and `want`", body = Object),
        (status = 400, body = EmulatorError), (status = 401, body = EmulatorError),
        (status = 404, description = "no such device, or no such notification on its shade", body = EmulatorError),
        (status = 429, description = "too many tokens handed out", body = EmulatorError)),
    security(("bearer" = [])))]
async fn act(
    _: InstanceAdmin,
    State(app): State<Shared>,
    Path(device_id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let emu = emulator(&app)?;
    let _calls = emu.gate.read().await;
    let action: Action = body(&bytes)?;
    let device = emu
        .device(&device_id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no such device".into()))?;
    if matches!(action, Action::DeleteToken) && !emu.has_room_for_a_token() {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {MAX_TOKENS} tokens; DELETE /emulator/v1/state"),
        ));
    }
    // What was routed to the device before the action is on its shade first.
    device.settle().await;
    let answer = device.act(action).await?;
    if let Some(token) = answer.get("token").and_then(Value::as_str) {
        emu.remember_token(token, &device_id);
    }
    // What the action reported is written before the answer (a later inbox shows it).
    let _ = app.reports.flush().await.await;
    Ok(Json(answer))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockBody {
    /// Seconds to move Herald's clock forward (0 to 10 years).
    #[schema(minimum = 0, maximum = 315360000)]
    advance_secs: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClockView {
    /// Herald's time now, ms since the Unix epoch (sign JWTs with it: `iat`/`exp` are
    /// checked against it).
    now_ms: i64,
    /// How far ahead of the wall clock Herald's clock is, in seconds.
    offset_secs: i64,
}

fn clock_view(emu: &Emulator) -> ClockView {
    use herald_core::Clock;
    ClockView {
        now_ms: emu.clock.now_ms(),
        offset_secs: emu.clock.offset_ms() / 1000,
    }
}

/// Herald's clock.
#[utoipa::path(get, path = "/emulator/v1/clock", tag = "emulator",
    responses((status = 200, body = ClockView), (status = 401, body = EmulatorError)),
    security(("bearer" = [])))]
async fn show_clock(
    _: InstanceAdmin,
    State(app): State<Shared>,
) -> Result<Json<ClockView>, ApiError> {
    let emu = emulator(&app)?;
    let _calls = emu.gate.read().await;
    Ok(Json(clock_view(emu)))
}

/// Move Herald's clock forward for everything that reads it: TTLs (what expired is
/// expired before the answer), daily quotas, JWT `iat`/`exp`, receipt retries.
#[utoipa::path(post, path = "/emulator/v1/clock", tag = "emulator", request_body = ClockBody,
    responses((status = 200, body = ClockView), (status = 400, body = EmulatorError),
        (status = 401, body = EmulatorError)),
    security(("bearer" = [])))]
async fn clock(
    _: InstanceAdmin,
    State(app): State<Shared>,
    bytes: Bytes,
) -> Result<Json<ClockView>, ApiError> {
    let emu = emulator(&app)?;
    let _calls = emu.gate.read().await;
    let b: ClockBody = body(&bytes)?;
    if !(0..=315_360_000).contains(&b.advance_secs) {
        return Err(bad("advance_secs must be 0 to 315360000 (ten years)"));
    }
    emu.clock.advance_ms(b.advance_secs * 1000);
    // The sweeper wakes on the move too; this pass makes the answer's promise hold.
    let now = app.clock.now_ms();
    app.quotas.forget_before(app.calendar.day(now));
    while app.store.expire_due(now, crate::EXPIRE_BATCH).await? > 0 {}
    app.receipt_wake.notify_one();
    tracing::info!(advance_secs = b.advance_secs, "Emulator clock moved.");
    Ok(Json(clock_view(emu)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultBody {
    /// A Push Kit business code to answer with (its HTTP status and `msg`), e.g.
    /// `81000001`, `80300007`, `80200001`. Either this or `http_status`.
    code: Option<String>,
    /// A bare HTTP status to answer with (e.g. 503), no body.
    #[schema(minimum = 400, maximum = 599)]
    http_status: Option<u16>,
    /// How many sends it answers (1 to 10000, default 1).
    #[schema(minimum = 1, maximum = 10000)]
    count: Option<u32>,
    /// Only sends that include this token (default: any send).
    token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FaultView {
    code: Option<String>,
    http_status: Option<u16>,
    /// Sends it still answers.
    left: u32,
    token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FaultsView {
    /// Waiting faults, oldest first (the first that matches a send answers it).
    faults: Vec<FaultView>,
}

fn faults_view(emu: &Emulator) -> FaultsView {
    FaultsView {
        faults: lock(&emu.faults)
            .iter()
            .map(|f| FaultView {
                code: match f.kind {
                    FaultKind::Code(c) => Some(c.as_str().to_owned()),
                    FaultKind::Status(_) => None,
                },
                http_status: match f.kind {
                    FaultKind::Status(s) => Some(s),
                    FaultKind::Code(_) => None,
                },
                left: f.left,
                token: f.token.clone(),
            })
            .collect(),
    }
}

/// Make the next `count` sends (to `token`, or any) fail as Push Kit fails: answered with
/// the business code (its HTTP status and `msg`) or a bare HTTP status. A faulted send
/// stores and delivers nothing.
#[utoipa::path(post, path = "/emulator/v1/faults", tag = "emulator", request_body = FaultBody,
    responses((status = 201, body = FaultsView), (status = 400, body = EmulatorError),
        (status = 401, body = EmulatorError), (status = 429, description = "too many faults waiting", body = EmulatorError)),
    security(("bearer" = [])))]
async fn add_fault(
    _: InstanceAdmin,
    State(app): State<Shared>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<FaultsView>), ApiError> {
    let emu = emulator(&app)?;
    let _calls = emu.gate.read().await;
    let b: FaultBody = body(&bytes)?;
    let kind = match (b.code.as_deref(), b.http_status) {
        (Some(code), None) => FaultKind::Code(
            Code::ALL
                .into_iter()
                .find(|c| c.as_str() == code && *c != Code::Success)
                .ok_or_else(|| {
                    bad(format!(
                        "code {code:?} is not a Push Kit failure code Herald knows"
                    ))
                })?,
        ),
        (None, Some(status)) if (400..=599).contains(&status) => FaultKind::Status(status),
        (None, Some(status)) => return Err(bad(format!("http_status {status} is not 400 to 599"))),
        _ => return Err(bad("give either code or http_status")),
    };
    let count = b.count.unwrap_or(1);
    if !(1..=MAX_FAULT_COUNT).contains(&count) {
        return Err(bad(format!("count must be 1 to {MAX_FAULT_COUNT}")));
    }
    {
        let mut faults = lock(&emu.faults);
        if faults.len() >= MAX_FAULTS {
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {MAX_FAULTS} faults wait at once"),
            ));
        }
        faults.push_back(Fault {
            kind,
            left: count,
            token: b.token,
        });
    }
    Ok((StatusCode::CREATED, Json(faults_view(emu))))
}

/// The faults still waiting.
#[utoipa::path(get, path = "/emulator/v1/faults", tag = "emulator",
    responses((status = 200, body = FaultsView), (status = 401, body = EmulatorError)),
    security(("bearer" = [])))]
async fn list_faults(
    _: InstanceAdmin,
    State(app): State<Shared>,
) -> Result<Json<FaultsView>, ApiError> {
    let emu = emulator(&app)?;
    let _calls = emu.gate.read().await;
    Ok(Json(faults_view(emu)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptsView {
    /// Every receipt callback Herald posted or tried to post (the latest 1000), oldest
    /// first, with the endpoint's answer.
    items: Vec<ReceiptAttempt>,
}

/// The receipt callbacks Herald posted or tried to post, with the endpoints' answers.
#[utoipa::path(get, path = "/emulator/v1/receipts", tag = "emulator",
    responses((status = 200, body = ReceiptsView), (status = 401, body = EmulatorError)),
    security(("bearer" = [])))]
async fn receipts(
    _: InstanceAdmin,
    State(app): State<Shared>,
) -> Result<Json<ReceiptsView>, ApiError> {
    let emu = emulator(&app)?;
    let _calls = emu.gate.read().await;
    Ok(Json(ReceiptsView {
        items: lock(&emu.receipts).iter().cloned().collect(),
    }))
}

/// Forget every device, token, message, delivery, quota count, receipt and fault; keep
/// the project, its apps, keys, rights and receipt configurations (and the clock, which
/// only moves forward).
#[utoipa::path(delete, path = "/emulator/v1/state", tag = "emulator",
    responses((status = 204, description = "a clean slate"), (status = 401, body = EmulatorError)),
    security(("bearer" = [])))]
async fn reset(_: InstanceAdmin, State(app): State<Shared>) -> Result<StatusCode, ApiError> {
    let emu = emulator(&app)?;
    // No other emulator call runs during a reset (a device created halfway through one
    // would outlive its own rows).
    let _alone = emu.gate.write().await;
    let started = Instant::now();
    let devices: Vec<_> = lock(&emu.devices).drain().map(|(_, d)| d).collect();
    for d in &devices {
        d.stop().await;
    }
    lock(&emu.tokens).clear();
    lock(&emu.faults).clear();
    // What the devices said is written before the tables are emptied.
    let _ = app.reports.flush().await.await;
    app.store.forget_traffic().await?;
    app.tokens.clear();
    app.quotas.clear();
    app.live_views.clear();
    lock(&emu.receipts).clear();
    emu.resets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    app.receipt_wake.notify_one();
    tracing::info!(
        devices = devices.len(),
        ms = started.elapsed().as_millis() as u64,
        "Emulator state reset."
    );
    Ok(StatusCode::NO_CONTENT)
}
