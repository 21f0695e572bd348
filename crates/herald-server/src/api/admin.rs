//! The admin API (`/api/v1/...`): projects, apps, service-account keys, scenario rights
//! and quotas, for operations and for `herald admin`. Bearer-token authenticated; every
//! answer is JSON; the OpenAPI document is served at `/openapi.json`.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use herald_core::quota::{AppCategory, Counter, CounterKey};
use herald_core::rights::{Right, RightAction};
use herald_proto::keyfile::KeyFile;
use herald_store::{
    App, AppUpdate, Project, ReceiptConfig, RightChange, ServiceAccount, StoreError,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::bootstrap::token_uri;
use crate::bus::Control;
use crate::ids;
use crate::keys;
use crate::state::Shared;

/// The admin API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Herald admin API", description = "Projects, apps, keys, scenario rights, quotas and receipt configurations."),
    paths(
        list_projects, create_project, create_key, list_keys, revoke_key,
        list_apps, create_app, show_app, update_app,
        list_rights, change_right, show_quotas, create_session, show_report,
        create_receipt, list_receipts, delete_receipt, test_receipt,
    ),
    components(schemas(
        ProjectView, NewProjectBody, AppView, NewAppBody, AppPatch, LimitsView, KeyView,
        RightView, RightHistoryView, RightsView, RightBody, QuotasView, ErrorBody,
        LoginBody, SessionView, ReportView, ReportLine, ReportSummary,
        NewReceiptBody, ReceiptView, DeletedReceiptView, ReceiptTestView,
    )),
    modifiers(&BearerAuth, &CommonAnswers),
    security(("bearer" = []))
)]
#[derive(Debug)]
pub struct AdminApi;

pub(crate) struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The answers every operation of a kind can give, added to the document so that it
/// describes every answer the API gives (checked by `scripts/schemathesis`): 401 where a
/// bearer token is needed, 400 where there are parameters or a body, 415 and 422 where
/// there is a body (wrong `Content-Type`; JSON of the wrong shape). Every response gets
/// a description (OpenAPI requires one). A right's name and action are listed as the
/// values they take (from [`Right::all`]).
pub(crate) struct CommonAnswers;

impl utoipa::Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        if let Some(op) = openapi
            .paths
            .paths
            .get_mut("/api/v1/apps/{client_id}/rights/{name}/{action}")
            .and_then(|item| item.post.as_mut())
        {
            let names: Vec<String> = Right::all().iter().map(Right::name).collect();
            let actions = ["request", "grant", "refuse", "revoke"].map(String::from);
            for p in op.parameters.iter_mut().flatten() {
                if let utoipa::openapi::RefOr::T(p) = p {
                    let values = match p.name.as_str() {
                        "name" => names.clone(),
                        "action" => actions.to_vec(),
                        _ => continue,
                    };
                    p.schema = Some(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::Type::String)
                            .enum_values(Some(values))
                            .into(),
                    );
                }
            }
        }
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                let answers = &mut op.responses.responses;
                // `security(())` (an empty requirement) marks an open operation.
                let open = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| r == &Default::default()));
                if !open {
                    answers
                        .entry("401".into())
                        .or_insert_with(|| error("No valid bearer token.").into());
                }
                if op.request_body.is_some()
                    || op.parameters.as_ref().is_some_and(|p| !p.is_empty())
                {
                    answers.entry("400".into()).or_insert_with(|| {
                        error("A parameter or the body is not acceptable.").into()
                    });
                }
                if op.request_body.is_some() {
                    answers.entry("415".into()).or_insert_with(|| {
                        error("The body is not sent as application/json.").into()
                    });
                    answers.entry("422".into()).or_insert_with(|| {
                        error("The body is JSON but not of the operation's schema.").into()
                    });
                }
                for (status, answer) in answers.iter_mut() {
                    if let utoipa::openapi::RefOr::T(r) = answer
                        && r.description.is_empty()
                    {
                        r.description = match status.as_str() {
                            "200" | "201" => "Done.",
                            "400" => "A parameter or the body is not acceptable.",
                            "404" => "No such resource.",
                            "409" => "The change conflicts with the current state.",
                            _ => "See the body.",
                        }
                        .into();
                    }
                }
            }
        }
    }
}

/// Every error of the admin API is `{"error": "…"}` as the document says, including the
/// framework's own refusals (a body that is not JSON, a wrong `Content-Type`, a query
/// that does not parse, a wrong method), which come as plain text: this layer wraps them.
pub(crate) async fn json_errors(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = resp.status();
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Rejection texts are short; a longer one is cut rather than buffered.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let mut error = String::from_utf8_lossy(&text).trim().to_owned();
    if error.is_empty() {
        error = status.canonical_reason().unwrap_or("error").to_lowercase();
    }
    let mut wrapped = (status, Json(ErrorBody { error })).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            wrapped.headers_mut().insert(name, value.clone());
        }
    }
    wrapped
}

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/projects", get(list_projects).post(create_project))
        .route(
            "/api/v1/projects/{project_id}/keys",
            get(list_keys).post(create_key),
        )
        .route(
            "/api/v1/projects/{project_id}/keys/{key_id}",
            delete(revoke_key),
        )
        .route("/api/v1/apps", get(list_apps).post(create_app))
        .route("/api/v1/apps/{client_id}", get(show_app).patch(update_app))
        .route("/api/v1/apps/{client_id}/rights", get(list_rights))
        .route(
            "/api/v1/apps/{client_id}/rights/{name}/{action}",
            post(change_right),
        )
        .route("/api/v1/apps/{client_id}/quotas", get(show_quotas))
        .route("/api/v1/sessions", post(create_session))
        .route("/api/v1/report", get(show_report))
        .route(
            "/api/v1/projects/{project_id}/receipts",
            get(list_receipts).post(create_receipt),
        )
        .route("/api/v1/receipts/{receipt_id}", delete(delete_receipt))
        .route("/api/v1/receipts/{receipt_id}/test", post(test_receipt))
        .layer(axum::middleware::map_response(json_errors))
}

/// An admin API failure: an HTTP status and a sentence.
#[derive(Debug)]
pub struct AdminError(StatusCode, String);

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: String,
}

impl ErrorBody {
    pub(crate) fn new(error: impl Into<String>) -> Self {
        ErrorBody {
            error: error.into(),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "The store failed during an admin request.");
        AdminError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
    }
}

fn not_found(what: &str) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, format!("no such {what}"))
}

fn bad_request(why: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, why.into())
}

/// An authenticated admin (the extractor checks `Authorization: Bearer <admin token>`).
#[derive(Debug)]
pub struct AdminUser {
    pub username: String,
}

/// Whether `headers` carry a valid admin bearer token (for endpoints that are open to
/// some addresses and to admins, such as `/metrics`).
pub async fn bears_admin_token(app: &Shared, headers: &axum::http::HeaderMap) -> bool {
    let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    matches!(
        app.store
            .admin_by_token_hash(&ids::sha256_hex(token.trim()))
            .await,
        Ok(Some(_))
    )
}

impl FromRequestParts<Shared> for AdminUser {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| AdminError(StatusCode::UNAUTHORIZED, "missing bearer token".into()))?;
        let admin = app
            .store
            .admin_by_token_hash(&ids::sha256_hex(token.trim()))
            .await?
            .ok_or_else(|| AdminError(StatusCode::UNAUTHORIZED, "unknown admin token".into()))?;
        Ok(AdminUser {
            username: admin.username,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    project_id: String,
    name: String,
    created_at: i64,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        ProjectView {
            project_id: p.project_id,
            name: p.name,
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProjectBody {
    /// Not blank.
    #[schema(min_length = 1, pattern = r"\S")]
    name: String,
}

/// List projects.
#[utoipa::path(get, path = "/api/v1/projects", responses((status = 200, body = [ProjectView])))]
async fn list_projects(
    _: AdminUser,
    State(app): State<Shared>,
) -> Result<Json<Vec<ProjectView>>, AdminError> {
    Ok(Json(
        app.store
            .list_projects()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Create a project (Push Kit's AGC project).
#[utoipa::path(post, path = "/api/v1/projects", request_body = NewProjectBody,
    responses((status = 201, body = ProjectView), (status = 400, body = ErrorBody)))]
async fn create_project(
    _: AdminUser,
    State(app): State<Shared>,
    Json(body): Json<NewProjectBody>,
) -> Result<(StatusCode, Json<ProjectView>), AdminError> {
    if body.name.trim().is_empty() {
        return Err(bad_request("name must not be empty"));
    }
    let project = Project {
        project_id: ids::numeric_id(18),
        name: body.name,
        created_at: app.clock.now_ms(),
    };
    app.store.create_project(project.clone()).await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    key_id: String,
    project_id: String,
    sub_account: String,
    token_uri: String,
    created_at: i64,
    /// Whether the key was revoked (it then authenticates nothing).
    revoked: bool,
    /// When it was revoked (ms), if it was.
    revoked_at: Option<i64>,
}

/// Create a service-account key. The answer is the key file, in Huawei's layout, with the
/// private key; it is shown once and never stored.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/keys",
    params(("project_id" = String, Path)),
    responses((status = 201, description = "the key file (Huawei layout)"), (status = 404, body = ErrorBody)))]
async fn create_key(
    _: AdminUser,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
) -> Result<(StatusCode, Json<KeyFile>), AdminError> {
    if app.store.project(&project_id).await?.is_none() {
        return Err(not_found("project"));
    }
    let key = keys::generate().map_err(|e| {
        tracing::error!(error = %e, "Key generation failed.");
        AdminError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "key generation failed".into(),
        )
    })?;
    let base = app.public_url.trim_end_matches('/');
    let account = ServiceAccount {
        key_id: ids::hex_id(32),
        project_id: project_id.clone(),
        sub_account: ids::numeric_id(17),
        public_key_pem: key.public_key_pem,
        token_uri: token_uri(base),
        created_at: app.clock.now_ms(),
        revoked_at: None,
    };
    app.store.create_service_account(account.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyFile {
            project_id,
            key_id: account.key_id,
            private_key: key.private_key_pem,
            sub_account: account.sub_account,
            auth_uri: format!("{base}/oauth2/v3/authorize"),
            token_uri: account.token_uri,
            auth_provider_cert_uri: format!("{base}/oauth2/v3/certs"),
            client_cert_uri: format!("{base}/oauth2/v3/x509?client_id="),
        }),
    ))
}

/// List a project's service-account keys (public parts only).
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/keys",
    params(("project_id" = String, Path)), responses((status = 200, body = [KeyView])))]
async fn list_keys(
    _: AdminUser,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
) -> Result<Json<Vec<KeyView>>, AdminError> {
    Ok(Json(
        app.store
            .list_service_accounts(&project_id)
            .await?
            .into_iter()
            .map(|a| KeyView {
                key_id: a.key_id,
                project_id: a.project_id,
                sub_account: a.sub_account,
                token_uri: a.token_uri,
                created_at: a.created_at,
                revoked: a.revoked_at.is_some(),
                revoked_at: a.revoked_at,
            })
            .collect(),
    ))
}

/// Revoke a service-account key: from this moment every JWT it signed is refused with
/// 80200001, on every node (this one forgets it now; the others are told on the bus and
/// re-read their keys at least every 500 ms on a shared store). The key stays listed as
/// revoked. Revoking a revoked key again changes nothing.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/keys/{key_id}",
    params(("project_id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 404, body = ErrorBody)))]
async fn revoke_key(
    admin: AdminUser,
    State(app): State<Shared>,
    Path((project_id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, AdminError> {
    match app.store.service_account(&key_id).await? {
        Some(a) if a.project_id == project_id => {}
        _ => return Err(not_found("key")),
    }
    app.store
        .revoke_service_account(&key_id, app.clock.now_ms())
        .await?
        .ok_or_else(|| not_found("key"))?;
    app.jwt.forget_key(&key_id);
    app.tell_others(Control::KeyRevoked {
        key_id: key_id.clone(),
    });
    tracing::info!(%project_id, %key_id, admin = %admin.username, "Service-account key revoked.");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    /// MARKETING notifications per device per day (2; 5 for news apps).
    marketing_per_day: u32,
    /// Messages per device per day before device-level control (receipt 102).
    device_daily_total: u32,
    /// Requests per second before HTTP 503.
    send_rate_per_sec: u32,
    /// Test messages per project per day.
    test_messages_per_day: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    client_id: String,
    project_id: String,
    package_name: String,
    name: String,
    /// `news` or `other`.
    app_category: String,
    /// Effective limits (defaults with this app's overrides applied).
    limits: LimitsView,
    /// This app's overrides; `null` = the server default.
    overrides: OverridesView,
    created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OverridesView {
    marketing_per_day: Option<u32>,
    device_daily_total: Option<u32>,
    send_rate_per_sec: Option<u32>,
}

fn app_view(app: &Shared, a: App) -> AppView {
    let category = AppCategory::parse(&a.app_category).unwrap_or_default();
    let limits = app.limits.for_app(category, &a.overrides);
    AppView {
        limits: LimitsView {
            marketing_per_day: limits.marketing_per_day,
            device_daily_total: limits.device_daily_total,
            send_rate_per_sec: limits.send_rate_per_sec,
            test_messages_per_day: app.limits.test_messages_per_day,
        },
        overrides: OverridesView {
            marketing_per_day: a.overrides.marketing_per_day,
            device_daily_total: a.overrides.device_daily_total,
            send_rate_per_sec: a.overrides.send_rate_per_sec,
        },
        client_id: a.client_id,
        project_id: a.project_id,
        package_name: a.package_name,
        name: a.name,
        app_category: a.app_category,
        created_at: a.created_at,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AppFilter {
    project_id: Option<String>,
}

/// List apps, optionally of one project.
#[utoipa::path(get, path = "/api/v1/apps", params(AppFilter), responses((status = 200, body = [AppView])))]
async fn list_apps(
    _: AdminUser,
    State(app): State<Shared>,
    Query(filter): Query<AppFilter>,
) -> Result<Json<Vec<AppView>>, AdminError> {
    let apps = app.store.list_apps(filter.project_id.as_deref()).await?;
    Ok(Json(apps.into_iter().map(|a| app_view(&app, a)).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAppBody {
    project_id: String,
    name: String,
    package_name: String,
    /// `news` or `other` (default).
    app_category: Option<String>,
}

fn parse_app_category(s: &str) -> Result<String, AdminError> {
    AppCategory::parse(s)
        .map(|c| c.as_str().to_owned())
        .ok_or_else(|| bad_request("app_category must be \"news\" or \"other\""))
}

/// Create an app in a project; Herald assigns its client ID.
#[utoipa::path(post, path = "/api/v1/apps", request_body = NewAppBody,
    responses((status = 201, body = AppView), (status = 404, body = ErrorBody)))]
async fn create_app(
    _: AdminUser,
    State(app): State<Shared>,
    Json(body): Json<NewAppBody>,
) -> Result<(StatusCode, Json<AppView>), AdminError> {
    if app.store.project(&body.project_id).await?.is_none() {
        return Err(not_found("project"));
    }
    if body.name.trim().is_empty() || body.package_name.trim().is_empty() {
        return Err(bad_request("name and package_name must not be empty"));
    }
    let new = App {
        client_id: ids::numeric_id(19),
        project_id: body.project_id,
        package_name: body.package_name,
        name: body.name,
        created_at: app.clock.now_ms(),
        app_category: parse_app_category(body.app_category.as_deref().unwrap_or("other"))?,
        overrides: Default::default(),
    };
    app.store.create_app(new.clone()).await?;
    Ok((StatusCode::CREATED, Json(app_view(&app, new))))
}

/// Show an app with its effective limits.
#[utoipa::path(get, path = "/api/v1/apps/{client_id}", params(("client_id" = String, Path)),
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody)))]
async fn show_app(
    _: AdminUser,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
) -> Result<Json<AppView>, AdminError> {
    let found = app
        .store
        .app(&client_id)
        .await?
        .ok_or_else(|| not_found("app"))?;
    Ok(Json(app_view(&app, found)))
}

/// A change to an app. Absent fields stay; a limit set to `null` returns to the default.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AppPatch {
    app_category: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    marketing_per_day: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    device_daily_total: Option<Option<u32>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    send_rate_per_sec: Option<Option<u32>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

/// Change an app's category (news apps get 5 MARKETING messages a day) or limits.
#[utoipa::path(patch, path = "/api/v1/apps/{client_id}", params(("client_id" = String, Path)),
    request_body = AppPatch, responses((status = 200, body = AppView), (status = 404, body = ErrorBody)))]
async fn update_app(
    _: AdminUser,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
    Json(patch): Json<AppPatch>,
) -> Result<Json<AppView>, AdminError> {
    if let Some(Some(0)) = patch.send_rate_per_sec {
        return Err(bad_request("send_rate_per_sec must be at least 1"));
    }
    let update = AppUpdate {
        app_category: patch
            .app_category
            .as_deref()
            .map(parse_app_category)
            .transpose()?,
        marketing_per_day: patch.marketing_per_day,
        device_daily_total: patch.device_daily_total,
        send_rate_per_sec: patch.send_rate_per_sec,
    };
    let updated = app
        .store
        .update_app(&client_id, update)
        .await?
        .ok_or_else(|| not_found("app"))?;
    app.apps.invalidate(&client_id);
    app.tell_others(Control::AppChanged {
        client_id: client_id.clone(),
    });
    tracing::info!(%client_id, "App settings changed.");
    Ok(Json(app_view(&app, updated)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RightView {
    name: String,
    /// `requested`, `granted`, `refused` or `revoked`.
    state: String,
    reason: Option<String>,
    updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RightHistoryView {
    name: String,
    action: String,
    state: String,
    reason: Option<String>,
    actor: String,
    at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RightsView {
    client_id: String,
    /// Rights in effect (granted).
    granted: Vec<String>,
    /// Every right the app has a record of, with its state.
    rights: Vec<RightView>,
    /// Every action taken, oldest first.
    history: Vec<RightHistoryView>,
    /// All right names there are.
    available: Vec<String>,
}

/// An app's rights, their states and history.
#[utoipa::path(get, path = "/api/v1/apps/{client_id}/rights", params(("client_id" = String, Path)),
    responses((status = 200, body = RightsView), (status = 404, body = ErrorBody)))]
async fn list_rights(
    _: AdminUser,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
) -> Result<Json<RightsView>, AdminError> {
    if app.store.app(&client_id).await?.is_none() {
        return Err(not_found("app"));
    }
    let rights = app.store.rights(&client_id).await?;
    let history = app.store.right_history(&client_id).await?;
    Ok(Json(RightsView {
        granted: rights
            .iter()
            .filter(|r| r.state == herald_core::rights::RightState::Granted)
            .map(|r| r.name.clone())
            .collect(),
        rights: rights
            .into_iter()
            .map(|r| RightView {
                name: r.name,
                state: r.state.as_str().to_owned(),
                reason: r.reason,
                updated_at: r.updated_at,
            })
            .collect(),
        history: history
            .into_iter()
            .map(|e| RightHistoryView {
                name: e.name,
                action: e.action,
                state: e.state.as_str().to_owned(),
                reason: e.reason,
                actor: e.actor,
                at: e.at,
            })
            .collect(),
        available: Right::all().iter().map(Right::name).collect(),
        client_id,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RightBody {
    /// For `request`: the push scenario the right serves. For the others: why.
    reason: Option<String>,
}

/// Request, grant, refuse or revoke a right (`action` is one of those four).
#[utoipa::path(post, path = "/api/v1/apps/{client_id}/rights/{name}/{action}",
    params(("client_id" = String, Path), ("name" = String, Path, description = "e.g. IM, WORK, VOIP_CALL, LIVE_VIEW_FLIGHT"),
           ("action" = String, Path, description = "request | grant | refuse | revoke")),
    request_body = Option<RightBody>,
    responses((status = 200, body = RightView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn change_right(
    admin: AdminUser,
    State(app): State<Shared>,
    Path((client_id, name, action)): Path<(String, String, String)>,
    body: Option<Json<RightBody>>,
) -> Result<Json<RightView>, AdminError> {
    let right: Right = name
        .parse()
        .map_err(|e: herald_core::rights::UnknownRight| bad_request(e.to_string()))?;
    let action = match action.as_str() {
        "request" => RightAction::Request,
        "grant" => RightAction::Grant,
        "refuse" => RightAction::Refuse,
        "revoke" => RightAction::Revoke,
        _ => {
            return Err(bad_request(
                "action must be request, grant, refuse or revoke",
            ));
        }
    };
    if app.store.app(&client_id).await?.is_none() {
        return Err(not_found("app"));
    }
    let reason = body
        .and_then(|Json(b)| b.reason)
        .filter(|r| !r.trim().is_empty());
    let changed = app
        .store
        .change_right(RightChange {
            client_id: client_id.clone(),
            name: right.name(),
            action,
            reason,
            actor: admin.username,
            at: app.clock.now_ms(),
        })
        .await?
        .map_err(|why| AdminError(StatusCode::CONFLICT, why))?;
    app.rights.invalidate(&client_id);
    app.tell_others(Control::RightsChanged {
        client_id: client_id.clone(),
    });
    tracing::info!(%client_id, right = %changed.name, state = changed.state.as_str(), "Right changed.");
    Ok(Json(RightView {
        name: changed.name,
        state: changed.state.as_str().to_owned(),
        reason: changed.reason,
        updated_at: changed.updated_at,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct QuotaQuery {
    /// Show this device's usage today too.
    device_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuotasView {
    client_id: String,
    /// The quota day (`YYYYMMDD`) in the configured time zone.
    day: i32,
    time_zone: String,
    limits: LimitsView,
    /// Test messages the app's project sent today.
    test_messages_used: u32,
    /// With `device_id`: MARKETING notifications and all messages sent to it today.
    device: Option<DeviceUsage>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceUsage {
    device_id: String,
    marketing_used: u32,
    total_used: u32,
}

/// An app's limits and today's usage.
#[utoipa::path(get, path = "/api/v1/apps/{client_id}/quotas",
    params(("client_id" = String, Path), QuotaQuery),
    responses((status = 200, body = QuotasView), (status = 404, body = ErrorBody)))]
async fn show_quotas(
    _: AdminUser,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
    Query(q): Query<QuotaQuery>,
) -> Result<Json<QuotasView>, AdminError> {
    let found = app
        .store
        .app(&client_id)
        .await?
        .ok_or_else(|| not_found("app"))?;
    let day = app.calendar.day(app.clock.now_ms());
    let test_key = CounterKey::per_project(Counter::TestMessages, &found.project_id, day);
    let mut keys = vec![test_key.clone()];
    if let Some(device) = &q.device_id {
        keys.push(CounterKey::per_device(
            Counter::Marketing,
            &client_id,
            device,
            day,
        ));
        keys.push(CounterKey::per_device(
            Counter::DeviceTotal,
            &client_id,
            device,
            day,
        ));
    }
    if app.shared_store {
        // Other nodes count too: read the store's counts, not this node's copy.
        app.quotas.forget(keys.iter());
    }
    app.quotas.load(app.store.as_ref(), &keys).await?;
    let used = |k: &CounterKey| app.quotas.used(k).unwrap_or(0);
    let device = q.device_id.as_ref().map(|d| DeviceUsage {
        marketing_used: used(&keys[1]),
        total_used: used(&keys[2]),
        device_id: d.clone(),
    });
    let view = app_view(&app, found);
    Ok(Json(QuotasView {
        client_id,
        day,
        time_zone: app.config.quota_time_zone.clone(),
        limits: view.limits,
        test_messages_used: used(&test_key),
        device,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewReceiptBody {
    /// The callback URL (`https://`; `http://` too unless `receipt_require_https`).
    #[schema(pattern = r"^https?://[^/?#\s]+")]
    url: String,
    /// Callback user name, signed into `X-HUAWEI-CALLBACK-ID` (empty when absent).
    #[schema(max_length = 256)]
    username: Option<String>,
    /// The signing secret. Absent: Herald generates Base64 of 32 random bytes. A secret
    /// that is valid Base64 is decoded to form the HMAC key, any other is used as UTF-8.
    #[schema(min_length = 1, pattern = r"\S")]
    secret: Option<String>,
    /// Make it an app-level configuration (wins over the project's).
    client_id: Option<String>,
}

/// A receipt configuration. `secret` is shown only when it is created.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptView {
    #[serde(rename = "receiptId")]
    receipt_id: String,
    url: String,
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    client_id: Option<String>,
    project_id: String,
    /// Always `V2`.
    version: String,
    created_at: i64,
}

fn receipt_view(c: ReceiptConfig, with_secret: bool) -> ReceiptView {
    ReceiptView {
        secret: with_secret.then_some(c.secret),
        receipt_id: c.receipt_id,
        url: c.url,
        username: c.username,
        client_id: c.client_id,
        project_id: c.project_id,
        version: c.version,
        created_at: c.created_at,
    }
}

/// Longest callback user name accepted.
const MAX_RECEIPT_USERNAME: usize = 256;

/// Check a callback URL: absolute http(s) with a host; https when the config demands it.
fn receipt_url(app: &Shared, url: &str) -> Result<String, AdminError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| bad_request(format!("url is not a valid URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if !app.config.receipt_require_https => {}
        "http" => {
            return Err(bad_request(
                "url must be https:// (this server sets receipt_require_https)",
            ));
        }
        _ => return Err(bad_request("url must be an http:// or https:// URL")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad_request("url must name a host"));
    }
    Ok(parsed.to_string())
}

/// Create a receipt configuration (V2) for a project, or for one of its apps with
/// `client_id`. Messages choose one with `pushOptions.receiptId`; otherwise the app's
/// oldest configuration applies, else the project's oldest.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/receipts",
    params(("project_id" = String, Path)), request_body = NewReceiptBody,
    responses((status = 201, body = ReceiptView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn create_receipt(
    _: AdminUser,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
    Json(body): Json<NewReceiptBody>,
) -> Result<(StatusCode, Json<ReceiptView>), AdminError> {
    if app.store.project(&project_id).await?.is_none() {
        return Err(not_found("project"));
    }
    let url = receipt_url(&app, &body.url)?;
    let username = body
        .username
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    if username
        .as_ref()
        .is_some_and(|u| u.len() > MAX_RECEIPT_USERNAME)
    {
        return Err(bad_request("username is too long"));
    }
    let secret = match body.secret {
        Some(s) if s.trim().is_empty() => return Err(bad_request("secret must not be empty")),
        Some(s) => s.trim().to_owned(),
        None => crate::receipts::generate_secret(),
    };
    if let Some(client_id) = &body.client_id {
        let found = app
            .store
            .app(client_id)
            .await?
            .ok_or_else(|| not_found("app"))?;
        if found.project_id != project_id {
            return Err(bad_request("the app belongs to another project"));
        }
    }
    let config = ReceiptConfig {
        receipt_id: format!("RCP{}", ids::hex_id(24).to_uppercase()),
        project_id,
        client_id: body.client_id,
        url,
        username,
        secret,
        version: herald_proto::receipt::VERSION.to_owned(),
        created_at: app.clock.now_ms(),
    };
    app.store.create_receipt_config(config.clone()).await?;
    tracing::info!(receipt_id = %config.receipt_id, project_id = %config.project_id, url = %config.url, "Receipt configuration created.");
    Ok((StatusCode::CREATED, Json(receipt_view(config, true))))
}

/// A project's receipt configurations (its apps' included), oldest first, without secrets.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/receipts",
    params(("project_id" = String, Path)),
    responses((status = 200, body = [ReceiptView]), (status = 404, body = ErrorBody)))]
async fn list_receipts(
    _: AdminUser,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
) -> Result<Json<Vec<ReceiptView>>, AdminError> {
    if app.store.project(&project_id).await?.is_none() {
        return Err(not_found("project"));
    }
    Ok(Json(
        app.store
            .list_receipt_configs(&project_id)
            .await?
            .into_iter()
            .map(|c| receipt_view(c, false))
            .collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedReceiptView {
    #[serde(rename = "receiptId")]
    receipt_id: String,
    deleted: bool,
    /// Receipts still waiting for this endpoint, now dropped.
    dropped_pending: u64,
}

/// Delete a receipt configuration; receipts still pending for it are dropped.
#[utoipa::path(delete, path = "/api/v1/receipts/{receipt_id}",
    params(("receipt_id" = String, Path)),
    responses((status = 200, body = DeletedReceiptView), (status = 404, body = ErrorBody)))]
async fn delete_receipt(
    _: AdminUser,
    State(app): State<Shared>,
    Path(receipt_id): Path<String>,
) -> Result<Json<DeletedReceiptView>, AdminError> {
    let dropped = app
        .store
        .delete_receipt_config(&receipt_id, app.clock.now_ms())
        .await?
        .ok_or_else(|| not_found("receipt configuration"))?;
    if dropped > 0 {
        metrics::counter!("herald_receipts_dropped_total").increment(dropped);
    }
    tracing::info!(%receipt_id, dropped_pending = dropped, "Receipt configuration deleted.");
    Ok(Json(DeletedReceiptView {
        receipt_id,
        deleted: true,
        dropped_pending: dropped,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptTestView {
    /// The endpoint answered HTTP 2xx with `{"code":"0"}`.
    success: bool,
    /// Its HTTP status; `null` when it could not be reached.
    status: Option<u16>,
    /// Its answer (or the connection error).
    body: String,
}

/// Send the fixed test receipt (one delivered status with token
/// `HERALD_TEST_RECEIPT_TOKEN`, requestId `000000000000000000000`, biTag
/// `herald-test-receipt`), signed like every receipt, and report the endpoint's answer.
#[utoipa::path(post, path = "/api/v1/receipts/{receipt_id}/test",
    params(("receipt_id" = String, Path)),
    responses((status = 200, body = ReceiptTestView), (status = 404, body = ErrorBody)))]
async fn test_receipt(
    _: AdminUser,
    State(app): State<Shared>,
    Path(receipt_id): Path<String>,
) -> Result<Json<ReceiptTestView>, AdminError> {
    let config = app
        .store
        .receipt_config(&receipt_id)
        .await?
        .ok_or_else(|| not_found("receipt configuration"))?;
    let package = match &config.client_id {
        Some(c) => app
            .store
            .app(c)
            .await?
            .map(|a| a.package_name)
            .unwrap_or_default(),
        None => String::new(),
    };
    let now = app.clock.now_ms();
    let body = herald_proto::receipt::test_body(&package, now);
    let outcome = crate::receipts::post(&app.receipt_http, &config, &body, now).await;
    tracing::info!(%receipt_id, success = outcome.success, "Test receipt sent.");
    Ok(Json(ReceiptTestView {
        success: outcome.success,
        status: outcome.status,
        body: outcome.body,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    username: String,
    /// A new bearer token for the admin API (the console keeps it).
    token: String,
}

/// An argon2 hash of a random password nobody knows, made once: what a login for an
/// unknown user name is checked against.
fn unknown_user_hash() -> &'static str {
    use argon2::password_hash::{PasswordHasher, SaltString};
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let salt = SaltString::encode_b64(ids::secret(16).as_bytes()).ok();
        salt.and_then(|salt| {
            argon2::Argon2::default()
                .hash_password(ids::secret(24).as_bytes(), &salt)
                .ok()
                .map(|h| h.to_string())
        })
        .unwrap_or_default()
    })
}

/// A login that was not checked: HTTP 429 with `Retry-After`.
fn throttled(retry_after_secs: u64, why: &str) -> Response {
    metrics::counter!("herald_logins_throttled_total").increment(1);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(
            axum::http::header::RETRY_AFTER,
            retry_after_secs.to_string(),
        )],
        Json(ErrorBody { error: why.into() }),
    )
        .into_response()
}

/// Log in with the admin's user name and password; answers a new bearer token.
///
/// Guarded (see `limits.rs`): an address or user name in back-off after failed logins,
/// or a moment when `login_concurrency` password checks already run, is answered 429
/// at once, without running argon2 (~19 MiB and tens of milliseconds each).
#[utoipa::path(post, path = "/api/v1/sessions", request_body = LoginBody, security(()),
    responses((status = 201, body = SessionView), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many failed or concurrent logins; see Retry-After.")))]
async fn create_session(
    State(app): State<Shared>,
    client: crate::limits::ClientAddr,
    Json(body): Json<LoginBody>,
) -> Result<(StatusCode, Json<SessionView>), Response> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let refused = || {
        AdminError(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        )
        .into_response()
    };
    let now = app.clock.now_ms();
    if let Err(t) = app.guards.login_allowed(client.0, &body.username, now) {
        return Err(throttled(
            t.retry_after_secs,
            "too many failed logins; try again later",
        ));
    }
    let found = app
        .store
        .admin_by_username(&body.username)
        .await
        .map_err(|e| AdminError::from(e).into_response())?;
    let Some(permit) = app.guards.password_check() else {
        return Err(throttled(
            1,
            "too many logins at once; try again in a second",
        ));
    };
    // An unknown user name costs the same check against a throwaway hash, so the
    // answer's timing does not tell which user names exist.
    let hash = found.as_ref().map(|(_, hash)| hash.clone());
    // Argon2 is deliberately slow: verify off the async workers. The permit moves into
    // the blocking task, so the bound holds even when the client hangs up early.
    let password = body.password;
    let verified = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let hash: &str = match &hash {
            Some(h) => h,
            None => unknown_user_hash(),
        };
        PasswordHash::new(hash)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    let admin = match found {
        Some((admin, _)) if verified => admin,
        found => {
            let user = found.map(|(admin, _)| admin.username);
            app.guards
                .login_failed(client.0, user.as_deref(), app.clock.now_ms());
            tracing::info!(client = %client.0, known_user = user.is_some(), "Admin login refused.");
            return Err(refused());
        }
    };
    let token = ids::secret(32);
    app.store
        .create_admin_token(admin.id, &ids::sha256_hex(&token), app.clock.now_ms())
        .await
        .map_err(|e| AdminError::from(e).into_response())?;
    tracing::info!(username = %admin.username, "Admin logged in.");
    Ok((
        StatusCode::CREATED,
        Json(SessionView {
            username: admin.username,
            token,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ReportQuery {
    project_id: Option<String>,
    client_id: Option<String>,
    /// Start of the window, ms since the epoch (default: the period's start).
    since_ms: Option<i64>,
    /// The series' period: `day` (24 hourly buckets, the default) or `month` (30 daily
    /// buckets); without `since_ms`, also the window of the summary and lines.
    period: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportLine {
    /// `queued`, `delivered`, `shown`, `suppressed`, `clicked`, `replaced`, `expired`,
    /// `revoked` or `dropped`.
    outcome: String,
    /// The receipt code, where Push Kit has one.
    code: Option<u32>,
    count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportSummary {
    /// Messages accepted for a token (queued for a device, or dropped at once).
    sent: u64,
    delivered: u64,
    shown: u64,
    clicked: u64,
    /// Not shown by the device (switch off, profile mismatch…).
    suppressed: u64,
    /// Never delivered: dropped, replaced, expired or revoked.
    not_delivered: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportView {
    since_ms: i64,
    until_ms: i64,
    summary: ReportSummary,
    /// Every outcome with its receipt code, e.g. dropped/256 (MARKETING quota).
    lines: Vec<ReportLine>,
    /// Receipt callbacks by state (pending, sent, dropped).
    receipts: std::collections::BTreeMap<String, u64>,
    /// sent → delivered → shown → clicked, in the window.
    funnel: Vec<super::console::FunnelStage>,
    /// The period's counts over time, in total, by category and by push type.
    series: super::console::SeriesView,
    /// Every reason a message was not shown, with its meaning and count (known reasons
    /// with none in the window count 0), most frequent first.
    not_shown: Vec<super::console::NotShownReason>,
}

/// The push report: what happened to the messages of a window, by outcome and reason;
/// the funnel, the period's series over time and every reason a message was not shown.
#[utoipa::path(get, path = "/api/v1/report", params(ReportQuery),
    responses((status = 200, body = ReportView)))]
async fn show_report(
    _: AdminUser,
    State(app): State<Shared>,
    Query(q): Query<ReportQuery>,
) -> Result<Json<ReportView>, AdminError> {
    let now = app.clock.now_ms();
    let period = super::console::Period::parse(q.period.as_deref(), now)
        .ok_or_else(|| bad_request("period must be day or month"))?;
    let since_ms = q.since_ms.unwrap_or(match period.name {
        "day" => now - 86_400_000,
        _ => period.since_ms(),
    });
    let series_rows = app
        .store
        .report_series(super::console::series_filter(
            q.project_id.clone(),
            q.client_id.clone(),
            &period,
        ))
        .await?;
    let rows = app
        .store
        .report(herald_store::ReportFilter {
            project_id: q.project_id,
            client_id: q.client_id,
            since_ms,
        })
        .await?;
    let count = |names: &[&str]| -> u64 {
        rows.iter()
            .filter(|r| names.contains(&r.outcome.as_str()))
            .map(|r| r.count)
            .sum()
    };
    let summary = ReportSummary {
        sent: count(&["queued", "dropped"]),
        delivered: count(&["delivered"]),
        shown: count(&["shown"]),
        clicked: count(&["clicked"]),
        suppressed: count(&["suppressed"]),
        not_delivered: count(&["dropped", "replaced", "expired", "revoked"]),
    };
    let receipts = app.store.receipt_counts().await?.into_iter().collect();
    Ok(Json(ReportView {
        since_ms,
        until_ms: now,
        summary,
        funnel: super::console::funnel(&rows),
        series: super::console::series(&app, &period, now, &series_rows),
        not_shown: super::console::not_shown(&rows),
        lines: rows
            .into_iter()
            .map(|r| ReportLine {
                outcome: r.outcome,
                code: r.code,
                count: r.count,
            })
            .collect(),
        receipts,
    }))
}
