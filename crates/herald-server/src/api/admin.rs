//! The admin API (`/api/v1/...`): projects, apps, service-account keys, scenario rights
//! and quotas, for the console and for `herald admin`. Every operation but the sign-in
//! takes a [`Principal`] (a bearer token or the console's session cookie) and asks the
//! permission matrix (`authz.rs`) through it; every answer is JSON; the OpenAPI
//! document is served at `/openapi.json`. Accounts, members and the audit log are in
//! `accounts.rs`, signing in and out in `sessions.rs`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
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

use super::principal::Principal;
use super::{accounts, sessions};
use crate::authz::{Action, Role};
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
        list_rights, change_right, show_quotas, show_report,
        create_receipt, list_receipts, delete_receipt, test_receipt,
        super::sessions::create_session, super::sessions::delete_session,
        super::accounts::me, super::accounts::create_user, super::accounts::list_users,
        super::accounts::change_password, super::accounts::list_members,
        super::accounts::add_member, super::accounts::remove_member,
        super::accounts::update_project, super::accounts::show_audit,
        super::accounts::show_instance_audit,
    ),
    components(schemas(
        ProjectView, NewProjectBody, AppView, NewAppBody, AppPatch, LimitsView, KeyView,
        RightView, RightHistoryView, RightsView, RightBody, QuotasView, ErrorBody,
        ReportView, ReportLine, ReportSummary,
        NewReceiptBody, ReceiptView, DeletedReceiptView, ReceiptTestView,
        super::sessions::LoginBody, super::sessions::SessionView,
        super::accounts::MeView, super::accounts::MyProject, super::accounts::NewUserBody,
        super::accounts::UserView, super::accounts::PasswordBody,
        super::accounts::NewMemberBody, super::accounts::MemberView,
        super::accounts::ProjectPatch, super::accounts::AuditView, Role, Action,
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
/// describes every answer the API gives (checked by `scripts/schemathesis`): 401 and 403
/// where a bearer token is needed (403: the role may not, see `authz.rs`), 400 where there are parameters or a body, 415 and 422 where
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
            let actions = ["request", "confirm", "grant", "refuse", "revoke"].map(String::from);
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
                    answers.entry("403".into()).or_insert_with(|| {
                        error("The caller's role may not do this (the sentence names who may), or a console request lacks its X-CSRF-Token.").into()
                    });
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
            "/api/v1/projects/{project_id}",
            axum::routing::patch(accounts::update_project),
        )
        .route(
            "/api/v1/projects/{project_id}/members",
            get(accounts::list_members).post(accounts::add_member),
        )
        .route(
            "/api/v1/projects/{project_id}/members/{username}",
            delete(accounts::remove_member),
        )
        .route(
            "/api/v1/projects/{project_id}/audit",
            get(accounts::show_audit),
        )
        .route("/api/v1/me", get(accounts::me))
        .route("/api/v1/audit", get(accounts::show_instance_audit))
        .route(
            "/api/v1/users",
            get(accounts::list_users).post(accounts::create_user),
        )
        .route("/api/v1/users/me/password", post(accounts::change_password))
        .route("/api/v1/sessions/current", delete(sessions::delete_session))
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
        .route("/api/v1/sessions", post(sessions::create_session))
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

impl AdminError {
    pub fn new(status: StatusCode, why: impl Into<String>) -> Self {
        AdminError(status, why.into())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: String,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> Self {
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

pub(crate) fn not_found(what: &str) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, format!("no such {what}"))
}

pub(crate) fn bad_request(why: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, why.into())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    project_id: String,
    name: String,
    created_at: i64,
    /// Whether the project may send and revoke (off: both answer 80300002).
    push_enabled: bool,
    /// The caller's role in the project (`null` for the instance admin who is not a member).
    role: Option<Role>,
}

pub(crate) fn project_view(p: Project, role: Option<Role>) -> ProjectView {
    ProjectView {
        project_id: p.project_id,
        name: p.name,
        created_at: p.created_at,
        push_enabled: p.push_enabled,
        role,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProjectBody {
    /// Not blank.
    #[schema(min_length = 1, pattern = r"\S")]
    name: String,
}

/// List the projects the caller is a member of (the instance admin: every project).
#[utoipa::path(get, path = "/api/v1/projects", responses((status = 200, body = [ProjectView])))]
async fn list_projects(
    who: Principal,
    State(app): State<Shared>,
) -> Result<Json<Vec<ProjectView>>, AdminError> {
    Ok(Json(
        who.visible_projects(&app)
            .await?
            .into_iter()
            .map(|(p, standing)| project_view(p, standing.role))
            .collect(),
    ))
}

/// Create a project (Push Kit's AGC project); the instance admin only. Its creator
/// becomes its owner.
#[utoipa::path(post, path = "/api/v1/projects", request_body = NewProjectBody,
    responses((status = 201, body = ProjectView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
async fn create_project(
    who: Principal,
    State(app): State<Shared>,
    Json(body): Json<NewProjectBody>,
) -> Result<(StatusCode, Json<ProjectView>), AdminError> {
    who.require_instance_admin("create projects")?;
    if body.name.trim().is_empty() {
        return Err(bad_request("name must not be empty"));
    }
    let now = app.clock.now_ms();
    let project = Project {
        project_id: ids::numeric_id(18),
        name: body.name,
        created_at: now,
        push_enabled: true,
    };
    app.store.create_project(project.clone()).await?;
    app.store
        .set_member(&project.project_id, who.user.id, Role::Owner.as_str(), now)
        .await?;
    who.audit(
        &app,
        Some(&project.project_id),
        "project.create",
        format!(
            "created project {:?}; {} is its owner",
            project.name, who.user.username
        ),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(project_view(project, Some(Role::Owner))),
    ))
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
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
) -> Result<(StatusCode, Json<KeyFile>), AdminError> {
    who.require(&app, &project_id, Action::ManageCredentials)
        .await?;
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
    who.audit(
        &app,
        Some(&project_id),
        "key.create",
        format!("created service-account key {}", account.key_id),
    )
    .await;
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
    params(("project_id" = String, Path)),
    responses((status = 200, body = [KeyView]), (status = 404, body = ErrorBody)))]
async fn list_keys(
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
) -> Result<Json<Vec<KeyView>>, AdminError> {
    who.require(&app, &project_id, Action::Read).await?;
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
    who: Principal,
    State(app): State<Shared>,
    Path((project_id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, AdminError> {
    who.require(&app, &project_id, Action::ManageCredentials)
        .await?;
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
    who.audit(
        &app,
        Some(&project_id),
        "key.revoke",
        format!("revoked service-account key {key_id}"),
    )
    .await;
    tracing::info!(%project_id, %key_id, user = %who.user.username, "Service-account key revoked.");
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

/// List apps, optionally of one project: those of the caller's projects (the
/// instance admin: every app).
#[utoipa::path(get, path = "/api/v1/apps", params(AppFilter),
    responses((status = 200, body = [AppView]), (status = 404, body = ErrorBody)))]
async fn list_apps(
    who: Principal,
    State(app): State<Shared>,
    Query(filter): Query<AppFilter>,
) -> Result<Json<Vec<AppView>>, AdminError> {
    if let Some(project_id) = &filter.project_id {
        who.require(&app, project_id, Action::Read).await?;
    }
    let visible: std::collections::HashSet<String> = who
        .visible_projects(&app)
        .await?
        .into_iter()
        .map(|(p, _)| p.project_id)
        .collect();
    let apps = app.store.list_apps(filter.project_id.as_deref()).await?;
    Ok(Json(
        apps.into_iter()
            .filter(|a| visible.contains(&a.project_id))
            .map(|a| app_view(&app, a))
            .collect(),
    ))
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
    who: Principal,
    State(app): State<Shared>,
    Json(body): Json<NewAppBody>,
) -> Result<(StatusCode, Json<AppView>), AdminError> {
    who.require(&app, &body.project_id, Action::ConfigureApp)
        .await?;
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
    who.audit(
        &app,
        Some(&new.project_id),
        "app.create",
        format!(
            "created app {} ({:?}, {})",
            new.client_id, new.name, new.package_name
        ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(app_view(&app, new))))
}

/// Show an app with its effective limits.
#[utoipa::path(get, path = "/api/v1/apps/{client_id}", params(("client_id" = String, Path)),
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody)))]
async fn show_app(
    who: Principal,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
) -> Result<Json<AppView>, AdminError> {
    let found = who.require_app(&app, &client_id, Action::Read).await?;
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
    who: Principal,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
    Json(patch): Json<AppPatch>,
) -> Result<Json<AppView>, AdminError> {
    who.require_app(&app, &client_id, Action::ConfigureApp)
        .await?;
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
    who.audit(
        &app,
        Some(&updated.project_id),
        "app.update",
        format!(
            "app {client_id}: category {}, marketing_per_day {:?}, device_daily_total {:?}, send_rate_per_sec {:?}",
            updated.app_category,
            updated.overrides.marketing_per_day,
            updated.overrides.device_daily_total,
            updated.overrides.send_rate_per_sec
        ),
    )
    .await;
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
    /// The latest request's scenario text and sample message.
    scenario: Option<String>,
    sample_message: Option<String>,
    /// Who confirmed the latest request's scenario matches the category, and when
    /// (`null`: not confirmed yet).
    confirmed_by: Option<String>,
    confirmed_at: Option<i64>,
}

fn right_view(r: herald_store::RightRecord) -> RightView {
    RightView {
        name: r.name,
        state: r.state.as_str().to_owned(),
        reason: r.reason,
        updated_at: r.updated_at,
        scenario: r.scenario,
        sample_message: r.sample_message,
        confirmed_by: r.confirmed_by,
        confirmed_at: r.confirmed_at,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RightHistoryView {
    name: String,
    /// `request`, `confirm`, `grant`, `refuse` or `revoke`.
    action: String,
    state: String,
    reason: Option<String>,
    /// The user name of whoever took the step.
    actor: String,
    at: i64,
    /// With a request: its scenario text and sample message.
    scenario: Option<String>,
    sample_message: Option<String>,
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
    who: Principal,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
) -> Result<Json<RightsView>, AdminError> {
    who.require_app(&app, &client_id, Action::Read).await?;
    let rights = app.store.rights(&client_id).await?;
    let history = app.store.right_history(&client_id).await?;
    Ok(Json(RightsView {
        granted: rights
            .iter()
            .filter(|r| r.state == herald_core::rights::RightState::Granted)
            .map(|r| r.name.clone())
            .collect(),
        rights: rights.into_iter().map(right_view).collect(),
        history: history
            .into_iter()
            .map(|e| RightHistoryView {
                name: e.name,
                action: e.action,
                state: e.state.as_str().to_owned(),
                reason: e.reason,
                actor: e.actor,
                at: e.at,
                scenario: e.scenario,
                sample_message: e.sample_message,
            })
            .collect(),
        available: Right::all().iter().map(Right::name).collect(),
        client_id,
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RightBody {
    /// For `grant`, `refuse`, `revoke`, `confirm`: why (optional). For `request`: the
    /// scenario, when `scenario` is absent.
    #[schema(max_length = 2000)]
    reason: Option<String>,
    /// For `request`: the push scenario the right serves (required, here or as `reason`).
    #[schema(max_length = 2000)]
    scenario: Option<String>,
    /// For `request`: a sample message of the scenario (what a user would see).
    #[schema(max_length = 4096)]
    sample_message: Option<String>,
}

/// Longest scenario text or reason accepted.
const MAX_SCENARIO: usize = 2000;
/// Longest sample message accepted (Push Kit's message size).
const MAX_SAMPLE_MESSAGE: usize = 4096;

/// A text field of a right's body: trimmed, blank = absent, at most `max` bytes.
fn right_text(field: &str, v: Option<String>, max: usize) -> Result<Option<String>, AdminError> {
    let v = v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if v.as_ref().is_some_and(|v| v.len() > max) {
        return Err(bad_request(format!("{field} is longer than {max} bytes")));
    }
    Ok(v)
}

/// Request (with a scenario and a sample message), confirm, grant, refuse or revoke a
/// right. `request`: operations or owner; `confirm` (the scenario matches the
/// category): product or owner; `grant`, `refuse`, `revoke`: the instance admin.
#[utoipa::path(post, path = "/api/v1/apps/{client_id}/rights/{name}/{action}",
    params(("client_id" = String, Path), ("name" = String, Path, description = "e.g. IM, WORK, VOIP_CALL, LIVE_VIEW_FLIGHT"),
           ("action" = String, Path, description = "request | confirm | grant | refuse | revoke")),
    request_body = Option<RightBody>,
    responses((status = 200, body = RightView), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn change_right(
    who: Principal,
    State(app): State<Shared>,
    Path((client_id, name, action)): Path<(String, String, String)>,
    body: Option<Json<RightBody>>,
) -> Result<Json<RightView>, AdminError> {
    let right: Right = name
        .parse()
        .map_err(|e: herald_core::rights::UnknownRight| bad_request(e.to_string()))?;
    let (action, needs) = match action.as_str() {
        "request" => (RightAction::Request, Action::RequestRight),
        "confirm" => (RightAction::Confirm, Action::ConfirmRight),
        "grant" => (RightAction::Grant, Action::DecideRight),
        "refuse" => (RightAction::Refuse, Action::DecideRight),
        "revoke" => (RightAction::Revoke, Action::DecideRight),
        _ => {
            return Err(bad_request(
                "action must be request, confirm, grant, refuse or revoke",
            ));
        }
    };
    let found = who.require_app(&app, &client_id, needs).await?;
    let Json(body) = body.unwrap_or_default();
    let reason = right_text("reason", body.reason, MAX_SCENARIO)?;
    let mut scenario = right_text("scenario", body.scenario, MAX_SCENARIO)?;
    let mut sample_message = right_text("sample_message", body.sample_message, MAX_SAMPLE_MESSAGE)?;
    if action == RightAction::Request {
        scenario = scenario.or_else(|| reason.clone());
        if scenario.is_none() {
            return Err(bad_request(
                "a request needs the scenario the right serves (scenario)",
            ));
        }
    } else {
        scenario = None;
        sample_message = None;
    }
    let changed = app
        .store
        .change_right(RightChange {
            client_id: client_id.clone(),
            name: right.name(),
            action,
            reason: reason.clone(),
            actor: who.user.username.clone(),
            at: app.clock.now_ms(),
            scenario: scenario.clone(),
            sample_message,
        })
        .await?
        .map_err(|why| AdminError(StatusCode::CONFLICT, why))?;
    app.rights.invalidate(&client_id);
    app.tell_others(Control::RightsChanged {
        client_id: client_id.clone(),
    });
    let detail = match (&scenario, &reason) {
        (Some(s), _) => format!(
            "{} {} of app {client_id}: {s}",
            action.as_str(),
            changed.name
        ),
        (None, Some(r)) => format!(
            "{} {} of app {client_id}: {r}",
            action.as_str(),
            changed.name
        ),
        (None, None) => format!("{} {} of app {client_id}", action.as_str(), changed.name),
    };
    who.audit(
        &app,
        Some(&found.project_id),
        &format!("right.{}", action.as_str()),
        detail,
    )
    .await;
    tracing::info!(%client_id, right = %changed.name, state = changed.state.as_str(), user = %who.user.username, "Right changed.");
    Ok(Json(right_view(changed)))
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
    who: Principal,
    State(app): State<Shared>,
    Path(client_id): Path<String>,
    Query(q): Query<QuotaQuery>,
) -> Result<Json<QuotasView>, AdminError> {
    let found = who.require_app(&app, &client_id, Action::Read).await?;
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
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
    Json(body): Json<NewReceiptBody>,
) -> Result<(StatusCode, Json<ReceiptView>), AdminError> {
    who.require(&app, &project_id, Action::ManageCredentials)
        .await?;
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
    who.audit(
        &app,
        Some(&config.project_id),
        "receipt.create",
        format!(
            "created receipt configuration {} for {}",
            config.receipt_id, config.url
        ),
    )
    .await;
    tracing::info!(receipt_id = %config.receipt_id, project_id = %config.project_id, url = %config.url, "Receipt configuration created.");
    Ok((StatusCode::CREATED, Json(receipt_view(config, true))))
}

/// A project's receipt configurations (its apps' included), oldest first, without secrets.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/receipts",
    params(("project_id" = String, Path)),
    responses((status = 200, body = [ReceiptView]), (status = 404, body = ErrorBody)))]
async fn list_receipts(
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
) -> Result<Json<Vec<ReceiptView>>, AdminError> {
    who.require(&app, &project_id, Action::Read).await?;
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
    who: Principal,
    State(app): State<Shared>,
    Path(receipt_id): Path<String>,
) -> Result<Json<DeletedReceiptView>, AdminError> {
    let config = managed_receipt_config(&who, &app, &receipt_id).await?;
    let dropped = app
        .store
        .delete_receipt_config(&receipt_id, app.clock.now_ms())
        .await?
        .ok_or_else(|| not_found("receipt configuration"))?;
    if dropped > 0 {
        metrics::counter!("herald_receipts_dropped_total").increment(dropped);
    }
    who.audit(
        &app,
        Some(&config.project_id),
        "receipt.delete",
        format!("deleted receipt configuration {receipt_id} ({dropped} pending receipts dropped)"),
    )
    .await;
    tracing::info!(%receipt_id, dropped_pending = dropped, "Receipt configuration deleted.");
    Ok(Json(DeletedReceiptView {
        receipt_id,
        deleted: true,
        dropped_pending: dropped,
    }))
}

/// The receipt configuration `receipt_id`, if `who` may manage its project's credentials
/// (404 when there is none, or for a non-member; 403 for a role that may not).
async fn managed_receipt_config(
    who: &Principal,
    app: &Shared,
    receipt_id: &str,
) -> Result<ReceiptConfig, AdminError> {
    let config = app
        .store
        .receipt_config(receipt_id)
        .await?
        .ok_or_else(|| not_found("receipt configuration"))?;
    who.require_in(
        app,
        &config.project_id,
        Action::ManageCredentials,
        "receipt configuration",
    )
    .await?;
    Ok(config)
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
    who: Principal,
    State(app): State<Shared>,
    Path(receipt_id): Path<String>,
) -> Result<Json<ReceiptTestView>, AdminError> {
    let config = managed_receipt_config(&who, &app, &receipt_id).await?;
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
    who.audit(
        &app,
        Some(&config.project_id),
        "receipt.test",
        format!(
            "sent the test receipt to {} (answer {:?})",
            config.url, outcome.status
        ),
    )
    .await;
    tracing::info!(%receipt_id, success = outcome.success, "Test receipt sent.");
    Ok(Json(ReceiptTestView {
        success: outcome.success,
        status: outcome.status,
        body: outcome.body,
    }))
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

/// The report filters the caller may read: the app or project asked for (404 when
/// they may not see it), else every project (the instance admin), else each of theirs.
pub(crate) async fn report_scope(
    who: &Principal,
    app: &Shared,
    project_id: Option<String>,
    client_id: Option<String>,
    since_ms: i64,
) -> Result<Vec<herald_store::ReportFilter>, AdminError> {
    if let Some(client_id) = &client_id {
        who.require_app(app, client_id, Action::Read).await?;
    }
    if let Some(project_id) = &project_id {
        who.require(app, project_id, Action::Read).await?;
    }
    if client_id.is_some() || project_id.is_some() || who.user.instance_admin {
        return Ok(vec![herald_store::ReportFilter {
            project_id,
            client_id,
            since_ms,
        }]);
    }
    Ok(who
        .visible_projects(app)
        .await?
        .into_iter()
        .map(|(p, _)| herald_store::ReportFilter {
            project_id: Some(p.project_id),
            client_id: None,
            since_ms,
        })
        .collect())
}

/// The push report's rows over `scope`, summed by outcome and code.
pub(crate) async fn scoped_report(
    app: &Shared,
    scope: Vec<herald_store::ReportFilter>,
) -> Result<Vec<herald_store::ReportRow>, AdminError> {
    let mut sums: std::collections::BTreeMap<(String, Option<u32>), u64> = Default::default();
    for filter in scope {
        for r in app.store.report(filter).await? {
            *sums.entry((r.outcome, r.code)).or_default() += r.count;
        }
    }
    Ok(sums
        .into_iter()
        .map(|((outcome, code), count)| herald_store::ReportRow {
            outcome,
            code,
            count,
        })
        .collect())
}

/// The push report: what happened to the messages of a window, by outcome and reason,
/// over the caller's projects (or the one app or project asked for); the funnel, the
/// period's series over time and every reason a message was not shown. Receipt counts
/// are the whole instance's: the instance admin's only.
#[utoipa::path(get, path = "/api/v1/report", params(ReportQuery),
    responses((status = 200, body = ReportView), (status = 404, body = ErrorBody)))]
async fn show_report(
    who: Principal,
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
    let scope = report_scope(&who, &app, q.project_id, q.client_id, since_ms).await?;
    let mut series_rows = Vec::new();
    for filter in &scope {
        series_rows.extend(
            app.store
                .report_series(herald_store::ReportFilter {
                    since_ms: period.since_ms(),
                    ..filter.clone()
                })
                .await?,
        );
    }
    let rows = scoped_report(&app, scope).await?;
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
    let receipts = if who.user.instance_admin {
        app.store.receipt_counts().await?.into_iter().collect()
    } else {
        Default::default()
    };
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
