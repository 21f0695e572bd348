//! What the console needs beyond the admin API's resources: test devices and test
//! messages (an app developer gets a push onto their own device without a key file), the
//! per-role integration checklist ticked from what the store already records, and the
//! push report as people read it (funnel, series over time, why messages were not shown).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use herald_core::send::{PushType, parse_send};
use herald_store::{ReportRow, SeriesRow, StoreError, TestDevice, TestDeviceAdded};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::admin::{AdminError, BearerAuth, CommonAnswers, ErrorBody, json_errors};
use super::principal::Principal;
use crate::authz::Action;
use crate::ids;
use crate::state::Shared;

/// The console's part of the OpenAPI document (merged into `/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    paths(add_test_device, list_test_devices, remove_test_device, send_test_message, show_checklist),
    components(schemas(
        NewTestDeviceBody, TestDeviceView, TestMessageBody, TestMessageView, ChecklistView,
        ChecklistItem, FunnelStage, SeriesView, SeriesLine, NotShownReason,
    )),
    modifiers(&BearerAuth, &CommonAnswers),
    security(("bearer" = []))
)]
#[derive(Debug)]
pub struct ConsoleApi;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/v1/apps/{client_id}/test-devices",
            get(list_test_devices).post(add_test_device),
        )
        .route(
            "/api/v1/apps/{client_id}/test-devices/{id}",
            delete(remove_test_device),
        )
        .route(
            "/api/v1/apps/{client_id}/test-messages",
            post(send_test_message),
        )
        .route(
            "/api/v1/projects/{project_id}/checklist",
            get(show_checklist),
        )
        .layer(axum::middleware::map_response(json_errors))
}

/// `{"error": why}` with `status`.
fn refuse(status: StatusCode, why: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(why))).into_response()
}

fn store_failed(e: StoreError) -> Response {
    AdminError::from(e).into_response()
}

/// The app, when `who` may register test devices and send test messages in its
/// project (404 for a non-member, 403 naming the roles that may).
async fn test_app(
    who: &Principal,
    app: &Shared,
    client_id: &str,
) -> Result<herald_store::App, Response> {
    who.require_app(app, client_id, Action::SendTest)
        .await
        .map_err(IntoResponse::into_response)
}

// ---------------------------------------------------------------------------------------
// Test devices
// ---------------------------------------------------------------------------------------

/// Longest test device name kept.
const MAX_NAME: usize = 64;
/// Longest token accepted (Push Kit's are 112 characters; Herald's are shorter).
const MAX_TOKEN: usize = 512;

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewTestDeviceBody {
    /// The device's push token for this app (the browser device shows it).
    #[schema(min_length = 1, max_length = 512)]
    token: String,
    /// A name to tell devices apart (default "test device"); at most 64 characters.
    name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestDeviceView {
    /// What `DELETE …/test-devices/{id}` and a test message's `test_device_id` name.
    id: String,
    client_id: String,
    project_id: String,
    token: String,
    name: String,
    /// Who registered it.
    added_by: String,
    created_at: i64,
}

impl From<TestDevice> for TestDeviceView {
    fn from(d: TestDevice) -> Self {
        TestDeviceView {
            id: d.id,
            client_id: d.client_id,
            project_id: d.project_id,
            token: d.token,
            name: d.name,
            added_by: d.added_by,
            created_at: d.created_at,
        }
    }
}

/// Register a test device for an app: a push token of that app, which test messages may
/// then be sent to. At most 100 per app; registering a token twice answers the first
/// registration (200).
#[utoipa::path(post, path = "/api/v1/apps/{client_id}/test-devices",
    params(("client_id" = String, Path)), request_body = NewTestDeviceBody,
    responses((status = 201, body = TestDeviceView), (status = 200, body = TestDeviceView),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "The caller's role may not register test devices."),
              (status = 409, body = ErrorBody, description = "The app has 100 test devices.")))]
async fn add_test_device(
    who: Principal,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
    Json(body): Json<NewTestDeviceBody>,
) -> Result<(StatusCode, Json<TestDeviceView>), Response> {
    let found = test_app(&who, &app, &client_id).await?;
    let token = body.token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "token must be the device's push token (1 to 512 characters)",
        ));
    }
    let known = app
        .store
        .lookup_tokens(&[token.to_owned()])
        .await
        .map_err(store_failed)?;
    if !known.iter().any(|r| r.client_id == client_id) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "no device has this push token for this app: copy the token the device shows for this app",
        ));
    }
    let name = body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("test device");
    let name: String = name.chars().take(MAX_NAME).collect();
    let device = TestDevice {
        id: ids::hex_id(16),
        project_id: found.project_id,
        client_id: client_id.clone(),
        token: token.to_owned(),
        name,
        added_by: who.user.username.clone(),
        created_at: app.clock.now_ms(),
    };
    match app
        .store
        .add_test_device(device)
        .await
        .map_err(store_failed)?
    {
        TestDeviceAdded::Added(d) => {
            tracing::info!(%client_id, test_device = %d.id, added_by = %d.added_by, "Test device registered.");
            who.audit(
                &app,
                Some(&d.project_id),
                "test_device.add",
                format!("app {client_id}: test device {} ({})", d.id, d.name),
            )
            .await;
            Ok((StatusCode::CREATED, Json(d.into())))
        }
        TestDeviceAdded::Exists(d) => Ok((StatusCode::OK, Json(d.into()))),
        TestDeviceAdded::Full => Err(refuse(
            StatusCode::CONFLICT,
            format!(
                "the app has {} test devices already: remove one first",
                herald_store::MAX_TEST_DEVICES_PER_APP
            ),
        )),
    }
}

/// An app's test devices, oldest first.
#[utoipa::path(get, path = "/api/v1/apps/{client_id}/test-devices",
    params(("client_id" = String, Path)),
    responses((status = 200, body = [TestDeviceView]), (status = 404, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "The caller's role may not send test messages.")))]
async fn list_test_devices(
    who: Principal,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
) -> Result<Json<Vec<TestDeviceView>>, Response> {
    test_app(&who, &app, &client_id).await?;
    let devices = app
        .store
        .test_devices(&client_id)
        .await
        .map_err(store_failed)?;
    Ok(Json(devices.into_iter().map(Into::into).collect()))
}

/// Remove a test device (the token itself is untouched).
#[utoipa::path(delete, path = "/api/v1/apps/{client_id}/test-devices/{id}",
    params(("client_id" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "The caller's role may not remove test devices.")))]
async fn remove_test_device(
    who: Principal,
    State(app): State<Shared>,
    Path((client_id, id)): Path<(String, String)>,
) -> Result<StatusCode, Response> {
    let found = test_app(&who, &app, &client_id).await?;
    if app
        .store
        .remove_test_device(&client_id, &id)
        .await
        .map_err(store_failed)?
    {
        who.audit(
            &app,
            Some(&found.project_id),
            "test_device.remove",
            format!("app {client_id}: test device {id}"),
        )
        .await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(refuse(StatusCode::NOT_FOUND, "no such test device"))
    }
}

// ---------------------------------------------------------------------------------------
// Test messages
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
pub struct TestMessageBody {
    /// The test device to send to (its `id`), or
    test_device_id: Option<String>,
    /// its push token: one of the app's test devices either way.
    token: Option<String>,
    #[schema(min_length = 1)]
    title: String,
    #[schema(min_length = 1)]
    body: String,
    /// A JSON object handed to the app when the notification is tapped
    /// (`clickAction.data`).
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
    /// The notification's category (default `MARKETING`; test messages are exempt from
    /// the MARKETING quota, counted against the project's test messages a day).
    category: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestMessageView {
    /// Push Kit's business code for the send (`80000000` on success).
    code: String,
    msg: String,
    #[serde(rename = "requestId")]
    request_id: String,
    /// The test device it went to.
    test_device_id: String,
    /// The `push-type` header (0: notification).
    push_type: u8,
    /// The URL a backend posts the same request to.
    url: String,
    /// The Push Kit request body that was sent (`pushOptions.testMessage: true`).
    #[schema(value_type = Object)]
    request: serde_json::Value,
    /// The same request as a `curl` command; `<JWT>` stands for a token signed with a
    /// service-account key of the project.
    curl: String,
}

/// Send a test message (`pushOptions.testMessage: true`) to one of the app's test devices,
/// through the send path of `messages:send` (rights, quotas, receipts, report), without a
/// key file. Any token that is not a test device of the app is refused (403). The answer
/// carries the Push Kit request that was built and the equivalent `curl` command.
#[utoipa::path(post, path = "/api/v1/apps/{client_id}/test-messages",
    params(("client_id" = String, Path)), request_body = TestMessageBody,
    responses((status = 200, body = TestMessageView, description = "The send path answered: `code` is what Push Kit answers (80000000 sent; 80300002 push service off; …)."),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "Not a test device of this app, or the caller's role may not send test messages."),
              (status = 404, body = ErrorBody)))]
async fn send_test_message(
    who: Principal,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
    Json(body): Json<TestMessageBody>,
) -> Result<Response, Response> {
    let found = test_app(&who, &app, &client_id).await?;
    if body.title.trim().is_empty() || body.body.trim().is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "title and body must not be empty",
        ));
    }
    if body.data.as_ref().is_some_and(|d| !d.is_object()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "data must be a JSON object",
        ));
    }
    let devices = app
        .store
        .test_devices(&client_id)
        .await
        .map_err(store_failed)?;
    let device = match (&body.test_device_id, &body.token) {
        (Some(id), _) => devices.iter().find(|d| &d.id == id),
        (None, Some(token)) => devices.iter().find(|d| d.token == token.trim()),
        (None, None) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "name the test device: test_device_id or token",
            ));
        }
    };
    let Some(device) = device else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "test messages go only to this app's test devices: register the device first \
             (POST /api/v1/apps/{client_id}/test-devices)",
        ));
    };
    let category = body
        .category
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or("MARKETING");
    let mut click_action = serde_json::json!({ "actionType": 0 });
    if let Some(data) = &body.data {
        click_action["data"] = data.clone();
    }
    let request = serde_json::json!({
        "payload": {
            "notification": {
                "category": category,
                "title": body.title,
                "body": body.body,
                "clickAction": click_action,
            }
        },
        "target": { "token": [device.token] },
        "pushOptions": { "testMessage": true, "ttl": 86400 },
    });
    let project_id = found.project_id;
    let now = app.clock.now_ms();
    let request_id = ids::request_id(now);
    let bytes = serde_json::to_vec(&request).unwrap_or_default();
    let outcome = match parse_send(PushType::Alert, &bytes) {
        Ok(parsed) => match super::push::push_service_on(&app, &project_id).await {
            Ok(()) => {
                super::push::send_parsed(&app, &project_id, &parsed, &bytes, now, &request_id).await
            }
            Err(off) => Err(off),
        },
        Err(rejection) => Err(rejection),
    };
    let (code, msg) = match outcome {
        Ok(answer) => answer,
        Err(r) => (r.code, r.msg),
    };
    tracing::info!(%client_id, %request_id, test_device = %device.id, code = code.as_str(), "Test message sent from the console.");
    who.audit(
        &app,
        Some(&project_id),
        "test_message.send",
        format!(
            "app {client_id}: to test device {} ({}), requestId {request_id}, code {}",
            device.id,
            device.name,
            code.as_str()
        ),
    )
    .await;
    let url = format!(
        "{}/v3/{project_id}/messages:send",
        app.public_url.trim_end_matches('/')
    );
    let curl = curl_command(&url, &request);
    // The send path answered, whatever its code (80300002 with the push service off,
    // 80300029 past the test budget …): 200, with Push Kit's code in the body.
    Ok((
        StatusCode::OK,
        Json(TestMessageView {
            code: code.as_str().to_owned(),
            msg,
            request_id,
            test_device_id: device.id.clone(),
            push_type: PushType::Alert.as_u8(),
            url,
            request,
            curl,
        }),
    )
        .into_response())
}

/// The request as a shell command a backend developer can paste (with a real JWT).
fn curl_command(url: &str, request: &serde_json::Value) -> String {
    let body = serde_json::to_string_pretty(request).unwrap_or_default();
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    format!(
        "curl -X POST {} \\\n  -H 'Content-Type: application/json' \\\n  -H 'Authorization: Bearer <JWT>' \\\n  -H 'push-type: 0' \\\n  -d {}",
        quote(url),
        quote(&body)
    )
}

// ---------------------------------------------------------------------------------------
// The integration checklist
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct ChecklistItem {
    /// Stable id: `push_service_on`, `right_requested`, `right_confirmed`,
    /// `right_granted`, `key_created`, `receipt_configured`, `first_send`,
    /// `receipt_answered`, `test_device_registered`, `device_token`,
    /// `permission_granted`, `click_reported`.
    id: &'static str,
    /// The role whose task it is: `operations`, `product`, `backend_developer` or
    /// `app_developer`.
    role: &'static str,
    /// What the step is, in a sentence.
    title: &'static str,
    done: bool,
    /// When it first happened (ms), when known; from hourly counters, the hour's start.
    at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChecklistView {
    project_id: String,
    items: Vec<ChecklistItem>,
}

/// The project's integration checklist, per role, each step ticked from what the store
/// recorded (keys, rights history, receipts, tokens, report counters, test devices).
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/checklist",
    params(("project_id" = String, Path)),
    responses((status = 200, body = ChecklistView), (status = 404, body = ErrorBody)))]
async fn show_checklist(
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
) -> Result<Json<ChecklistView>, Response> {
    who.require(&app, &project_id, Action::Read)
        .await
        .map_err(IntoResponse::into_response)?;
    let Some(project) = app.store.project(&project_id).await.map_err(store_failed)? else {
        return Err(refuse(StatusCode::NOT_FOUND, "no such project"));
    };
    let f = app
        .store
        .checklist_facts(&project_id)
        .await
        .map_err(store_failed)?;
    // When it was last switched on is in the audit log, not a fact: on is "done".
    let push_on = project.push_enabled.then_some(None);
    let item = |id, role, title, at: Option<Option<i64>>| ChecklistItem {
        id,
        role,
        title,
        done: at.is_some(),
        at: at.flatten(),
    };
    let some = |at: Option<i64>| at.map(Some);
    Ok(Json(ChecklistView {
        items: vec![
            item(
                "push_service_on",
                "operations",
                "Push service is on for the project",
                push_on,
            ),
            item(
                "right_requested",
                "operations",
                "A scenario right was requested, with its scenario",
                some(f.right_requested_at),
            ),
            item(
                "right_confirmed",
                "product",
                "Product confirmed the scenario matches the category",
                some(f.right_confirmed_at),
            ),
            item(
                "right_granted",
                "operations",
                "A scenario right was granted",
                some(f.right_granted_at),
            ),
            item(
                "key_created",
                "backend_developer",
                "A service-account key was created",
                some(f.key_created_at),
            ),
            item(
                "receipt_configured",
                "backend_developer",
                "A receipt endpoint was configured",
                some(f.receipt_configured_at),
            ),
            item(
                "first_send",
                "backend_developer",
                "A first message was sent successfully",
                some(f.sent_at),
            ),
            item(
                "receipt_answered",
                "backend_developer",
                "The receipt endpoint answered a receipt",
                some(f.receipt_answered_at),
            ),
            item(
                "test_device_registered",
                "app_developer",
                "A test device was registered",
                some(f.test_device_at),
            ),
            item(
                "device_token",
                "app_developer",
                "A device got a push token",
                some(f.token_at),
            ),
            item(
                "permission_granted",
                "app_developer",
                "A device showed a notification (permission granted)",
                some(f.shown_at),
            ),
            item(
                "click_reported",
                "app_developer",
                "A tap on a notification was reported",
                some(f.clicked_at),
            ),
        ],
        project_id,
    }))
}

// ---------------------------------------------------------------------------------------
// The push report as people read it
// ---------------------------------------------------------------------------------------

/// One step of the funnel.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunnelStage {
    /// `sent`, `delivered`, `shown` or `clicked`.
    stage: &'static str,
    count: u64,
}

/// One series of counts per bucket, for one category or push type (or all).
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesLine {
    /// The category (`MARKETING`, `IM`, …; `none` for messages without one, such as test
    /// and background messages) or the push type (`0`, `1`, `2`, `6`, `7`, `10`).
    key: String,
    sent: Vec<u64>,
    delivered: Vec<u64>,
    shown: Vec<u64>,
    clicked: Vec<u64>,
}

/// The report over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesView {
    /// `day` (24 hourly buckets) or `month` (30 daily buckets, in the quota time zone).
    period: &'static str,
    /// `hour` or `day`.
    bucket: &'static str,
    /// Each bucket's start, ms since the epoch.
    starts: Vec<i64>,
    /// Each bucket's name: `YYYY-MM-DDTHH:00Z` (hours, UTC) or `YYYY-MM-DD` (days).
    labels: Vec<String>,
    total: SeriesLine,
    by_category: Vec<SeriesLine>,
    by_push_type: Vec<SeriesLine>,
}

/// Why messages were not shown: one line per outcome and receipt code.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotShownReason {
    /// `suppressed`, `dropped`, `replaced`, `expired` or `revoked`.
    outcome: String,
    /// The receipt code, where Push Kit has one.
    code: Option<u32>,
    /// What it means.
    meaning: String,
    count: u64,
}

/// Every reason Herald knows for a message not being shown, with its usual outcome.
const REASONS: &[(&str, Option<u32>, &str)] = &[
    (
        "dropped",
        Some(2),
        "The app is not installed on the device any more.",
    ),
    ("dropped", Some(5), "The token is invalid or was deleted."),
    (
        "suppressed",
        Some(6),
        "Notifications are off for the app on the device.",
    ),
    (
        "expired",
        Some(14),
        "Its TTL ended before the device came online.",
    ),
    (
        "replaced",
        Some(15),
        "Replaced before delivery: a newer message with the same collapseKey, or the offline cache (120 per token) was full.",
    ),
    (
        "dropped",
        Some(102),
        "Device-level control: the device's messages for the day were used up.",
    ),
    (
        "suppressed",
        Some(144),
        "The profileId is not bound on the device.",
    ),
    (
        "dropped",
        Some(155),
        "Live View update for an activity the device does not have.",
    ),
    ("dropped", Some(156), "Live View update out of order."),
    (
        "dropped",
        Some(256),
        "Frequency limit: the MARKETING quota (2 a day, 5 for news apps) or the project's test messages for the day were used up.",
    ),
    (
        "dropped",
        Some(262),
        "The widget's updates for the day were used up.",
    ),
    (
        "dropped",
        Some(265),
        "Live View blocked for a while after too many updates.",
    ),
    ("dropped", Some(268), "Live View update without a status."),
    (
        "dropped",
        Some(269),
        "Live View update that repeats the previous one.",
    ),
    (
        "revoked",
        None,
        "Withdrawn by the sender (messages:revoke) before it was shown.",
    ),
];

const NOT_SHOWN: [&str; 5] = ["suppressed", "dropped", "replaced", "expired", "revoked"];

/// The funnel from the report's lines.
pub(crate) fn funnel(rows: &[ReportRow]) -> Vec<FunnelStage> {
    let count = |names: &[&str]| -> u64 {
        rows.iter()
            .filter(|r| names.contains(&r.outcome.as_str()))
            .map(|r| r.count)
            .sum()
    };
    vec![
        FunnelStage {
            stage: "sent",
            count: count(&["queued", "dropped"]),
        },
        FunnelStage {
            stage: "delivered",
            count: count(&["delivered"]),
        },
        FunnelStage {
            stage: "shown",
            count: count(&["shown"]),
        },
        FunnelStage {
            stage: "clicked",
            count: count(&["clicked"]),
        },
    ]
}

/// Every known reason with its count, and any other the window has; most frequent first.
pub(crate) fn not_shown(rows: &[ReportRow]) -> Vec<NotShownReason> {
    let mut out: Vec<NotShownReason> = REASONS
        .iter()
        .map(|(outcome, code, meaning)| NotShownReason {
            outcome: (*outcome).to_owned(),
            code: *code,
            meaning: (*meaning).to_owned(),
            count: 0,
        })
        .collect();
    for r in rows
        .iter()
        .filter(|r| NOT_SHOWN.contains(&r.outcome.as_str()))
    {
        match out
            .iter_mut()
            .find(|x| x.outcome == r.outcome && x.code == r.code)
        {
            Some(x) => x.count += r.count,
            None => {
                let meaning = REASONS.iter().find(|(_, code, _)| *code == r.code).map_or(
                    "See the receipt codes in docs/compatibility.md.",
                    |(_, _, m)| m,
                );
                out.push(NotShownReason {
                    outcome: r.outcome.clone(),
                    code: r.code,
                    meaning: meaning.to_owned(),
                    count: r.count,
                });
            }
        }
    }
    out.sort_by_key(|x| std::cmp::Reverse(x.count));
    out
}

/// Which window a period covers and how it is cut.
pub(crate) struct Period {
    pub name: &'static str,
    /// The window's first hour (hours since the epoch).
    pub first_hour: i64,
}

impl Period {
    /// `day` (default) or `month`; `None` for anything else.
    pub(crate) fn parse(s: Option<&str>, now_ms: i64) -> Option<Period> {
        let now_hour = now_ms.div_euclid(3_600_000);
        match s.unwrap_or("day") {
            "day" => Some(Period {
                name: "day",
                first_hour: now_hour - 23,
            }),
            "month" => Some(Period {
                name: "month",
                first_hour: now_hour - 30 * 24 + 1,
            }),
            _ => None,
        }
    }

    pub(crate) fn since_ms(&self) -> i64 {
        self.first_hour * 3_600_000
    }
}

/// Cut the counters into the period's buckets, in total, by category and by push type.
pub(crate) fn series(app: &Shared, period: &Period, now_ms: i64, rows: &[SeriesRow]) -> SeriesView {
    let now_hour = now_ms.div_euclid(3_600_000);
    // Each hour of the window → its bucket.
    let mut starts = Vec::new();
    let mut labels = Vec::new();
    let mut bucket_of_hour: Vec<usize> = Vec::new();
    let mut last_day = None;
    for hour in period.first_hour..=now_hour {
        let ms = hour * 3_600_000;
        if period.name == "day" {
            starts.push(ms);
            labels.push(hour_label(hour));
        } else {
            let day = app.calendar.day(ms);
            if last_day != Some(day) {
                last_day = Some(day);
                starts.push(ms);
                labels.push(format!(
                    "{:04}-{:02}-{:02}",
                    day / 10_000,
                    day / 100 % 100,
                    day % 100
                ));
            }
        }
        bucket_of_hour.push(starts.len() - 1);
    }
    let n = starts.len();
    let empty = |key: String| SeriesLine {
        key,
        sent: vec![0; n],
        delivered: vec![0; n],
        shown: vec![0; n],
        clicked: vec![0; n],
    };
    let mut total = empty("all".into());
    let mut by_category: BTreeMap<String, SeriesLine> = BTreeMap::new();
    let mut by_push_type: BTreeMap<u8, SeriesLine> = BTreeMap::new();
    for r in rows {
        let Some(&b) = usize::try_from(r.hour - period.first_hour)
            .ok()
            .and_then(|i| bucket_of_hour.get(i))
        else {
            continue;
        };
        let category = if r.category.is_empty() {
            "none".to_owned()
        } else {
            r.category.clone()
        };
        let lines = [
            &mut total,
            by_category
                .entry(category.clone())
                .or_insert_with(|| empty(category)),
            by_push_type
                .entry(r.push_type)
                .or_insert_with(|| empty(r.push_type.to_string())),
        ];
        for line in lines {
            let cell = match r.outcome.as_str() {
                "queued" | "dropped" => &mut line.sent[b],
                "delivered" => &mut line.delivered[b],
                "shown" => &mut line.shown[b],
                "clicked" => &mut line.clicked[b],
                _ => continue,
            };
            *cell += r.count;
        }
    }
    SeriesView {
        period: period.name,
        bucket: if period.name == "day" { "hour" } else { "day" },
        starts,
        labels,
        total,
        by_category: by_category.into_values().collect(),
        by_push_type: by_push_type.into_values().collect(),
    }
}

/// `YYYY-MM-DDTHH:00Z` for an hour since the epoch (civil date from days, UTC).
fn hour_label(hour: i64) -> String {
    let days = hour.div_euclid(24);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:00Z", hour.rem_euclid(24))
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_labels_are_utc_civil_dates() {
        assert_eq!(hour_label(0), "1970-01-01T00:00Z");
        // 2026-12-01T03:00Z
        assert_eq!(
            hour_label(1_796_094_000_000 / 3_600_000),
            "2026-12-01T03:00Z"
        );
        assert_eq!(hour_label(11_016 * 24 + 23), "2000-02-29T23:00Z");
    }

    #[test]
    fn the_curl_command_quotes_the_body() {
        let c = curl_command(
            "http://h/v3/1/messages:send",
            &serde_json::json!({"t": "it's"}),
        );
        assert!(
            c.starts_with("curl -X POST 'http://h/v3/1/messages:send'"),
            "{c}"
        );
        assert!(c.contains(r"it'\''s"), "{c}");
        assert!(c.contains("Authorization: Bearer <JWT>"));
    }
}
