//! Accounts and roles in the admin API: who am I (`/api/v1/me`), users (the instance
//! admin creates them), project members and their roles, a password change, a
//! project's push switch and its audit log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_store::{NewUser, Project};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::admin::{AdminError, ErrorBody, ProjectView, bad_request, not_found, project_view};
use super::principal::Principal;
use super::sessions::{hash_password, verify_password};
use crate::authz::{Action, Role};
use crate::bus::Control;
use crate::state::Shared;

/// Longest user name.
pub const MAX_USERNAME: usize = 64;

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    username: String,
    /// Whether this user is the instance admin (creates users and projects; grants,
    /// refuses and revokes rights; may do everything in every project).
    instance_admin: bool,
    /// The projects this user may see (the instance admin: all of them).
    projects: Vec<MyProject>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MyProject {
    project_id: String,
    name: String,
    /// The member role, or `instance_admin` for the instance admin who is not a member.
    role: String,
    /// What this user may do in this project (docs/roles.md names them).
    actions: Vec<Action>,
    push_enabled: bool,
}

/// Who is signed in: the user, whether they are the instance admin, and for each
/// project they may see, their role and the actions it allows.
#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = MeView)))]
pub(crate) async fn me(
    who: Principal,
    State(app): State<Shared>,
) -> Result<Json<MeView>, AdminError> {
    let projects = who
        .visible_projects(&app)
        .await?
        .into_iter()
        .map(|(p, standing)| MyProject {
            role: standing
                .role
                .map_or("instance_admin", Role::as_str)
                .to_owned(),
            actions: standing.actions(),
            project_id: p.project_id,
            name: p.name,
            push_enabled: p.push_enabled,
        })
        .collect();
    Ok(Json(MeView {
        username: who.user.username,
        instance_admin: who.user.instance_admin,
        projects,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUserBody {
    /// 1 to 64 of `A-Z a-z 0-9 . _ @ -`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._@-]+$")]
    username: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    username: String,
    instance_admin: bool,
    created_at: i64,
}

fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USERNAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// Create a user (the instance admin only). They see nothing until a project's owner
/// (or the instance admin) makes them a member.
#[utoipa::path(post, path = "/api/v1/users", request_body = NewUserBody,
    responses((status = 201, body = UserView), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "Too many password hashes at once; see Retry-After.")))]
pub(crate) async fn create_user(
    who: Principal,
    State(app): State<Shared>,
    Json(body): Json<NewUserBody>,
) -> Result<(StatusCode, Json<UserView>), Response> {
    who.require_instance_admin("create users")
        .map_err(IntoResponse::into_response)?;
    if !valid_username(&body.username) {
        return Err(bad_request(format!(
            "username must be 1 to {MAX_USERNAME} of A-Z a-z 0-9 . _ @ -"
        ))
        .into_response());
    }
    let password_hash = hash_password(&app, body.password).await?;
    let created = app
        .store
        .create_user(NewUser {
            username: body.username.clone(),
            password_hash,
            instance_admin: false,
            created_at: app.clock.now_ms(),
        })
        .await
        .map_err(|e| AdminError::from(e).into_response())?
        .ok_or_else(|| {
            AdminError::new(
                StatusCode::CONFLICT,
                format!("user {:?} already exists", body.username),
            )
            .into_response()
        })?;
    who.audit(
        &app,
        None,
        "user.create",
        format!("created user {}", created.username),
    )
    .await;
    tracing::info!(username = %created.username, by = %who.user.username, "User created.");
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            username: created.username,
            instance_admin: created.instance_admin,
            created_at: created.created_at,
        }),
    ))
}

/// Every user (the instance admin only).
#[utoipa::path(get, path = "/api/v1/users",
    responses((status = 200, body = [UserView]), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_users(
    who: Principal,
    State(app): State<Shared>,
) -> Result<Json<Vec<UserView>>, AdminError> {
    who.require_instance_admin("list users")?;
    Ok(Json(
        app.store
            .list_users()
            .await?
            .into_iter()
            .map(|u| UserView {
                username: u.username,
                instance_admin: u.instance_admin,
                created_at: u.created_at,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordBody {
    #[schema(max_length = 1024)]
    current_password: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    new_password: String,
}

/// Change your own password. Every other session of yours (bearer tokens, console
/// sessions; not the bootstrap token) is signed out.
#[utoipa::path(post, path = "/api/v1/users/me/password", request_body = PasswordBody,
    responses((status = 204, description = "changed"), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many failed or concurrent password checks; see Retry-After.")))]
pub(crate) async fn change_password(
    who: Principal,
    State(app): State<Shared>,
    Json(body): Json<PasswordBody>,
) -> Result<StatusCode, Response> {
    let now = app.clock.now_ms();
    if let Err(t) = app
        .guards
        .login_allowed(who.address, &who.user.username, now)
    {
        return Err(super::sessions::throttled(
            t.retry_after_secs,
            "too many failed password checks; try again later",
        ));
    }
    let stored = app
        .store
        .user_by_username(&who.user.username)
        .await
        .map_err(|e| AdminError::from(e).into_response())?
        .map(|(_, hash)| hash);
    if body.current_password.len() > super::sessions::MAX_PASSWORD
        || !verify_password(&app, stored, body.current_password).await?
    {
        app.guards
            .login_failed(who.address, Some(&who.user.username), app.clock.now_ms());
        return Err(
            AdminError::new(StatusCode::FORBIDDEN, "the current password is wrong").into_response(),
        );
    }
    let hash = hash_password(&app, body.new_password).await?;
    app.store
        .set_password(
            who.user.id,
            &hash,
            Some(&who.session_hash),
            app.clock.now_ms(),
        )
        .await
        .map_err(|e| AdminError::from(e).into_response())?;
    who.audit(&app, None, "user.password", "changed their password")
        .await;
    tracing::info!(username = %who.user.username, "Password changed.");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewMemberBody {
    #[schema(max_length = 64)]
    username: String,
    role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    username: String,
    role: String,
    added_at: i64,
}

/// A project's members and their roles (owners and the instance admin).
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/members",
    params(("project_id" = String, Path)),
    responses((status = 200, body = [MemberView]), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn list_members(
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
) -> Result<Json<Vec<MemberView>>, AdminError> {
    who.require(&app, &project_id, Action::ManageMembers)
        .await?;
    Ok(Json(
        app.store
            .members(&project_id)
            .await?
            .into_iter()
            .map(|m| MemberView {
                username: m.username,
                role: m.role,
                added_at: m.added_at,
            })
            .collect(),
    ))
}

/// Whether removing `username` (or changing their role to `new_role`) would leave the
/// project without an owner.
async fn last_owner(
    app: &Shared,
    project_id: &str,
    username: &str,
    new_role: Option<Role>,
) -> Result<bool, AdminError> {
    if new_role == Some(Role::Owner) {
        return Ok(false);
    }
    let members = app.store.members(project_id).await?;
    let owner = Role::Owner.as_str();
    let is_owner = members
        .iter()
        .any(|m| m.username == username && m.role == owner);
    let owners = members.iter().filter(|m| m.role == owner).count();
    Ok(is_owner && owners == 1)
}

/// Make a user a member of the project with a role, or change their role (owners and
/// the instance admin). A project keeps at least one owner.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/members",
    params(("project_id" = String, Path)), request_body = NewMemberBody,
    responses((status = 201, body = MemberView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn add_member(
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
    Json(body): Json<NewMemberBody>,
) -> Result<(StatusCode, Json<MemberView>), AdminError> {
    who.require(&app, &project_id, Action::ManageMembers)
        .await?;
    let (user, _) = app
        .store
        .user_by_username(&body.username)
        .await?
        .ok_or_else(|| not_found("user"))?;
    if last_owner(&app, &project_id, &user.username, Some(body.role)).await? {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the project's last owner cannot change role; make someone else owner first",
        ));
    }
    let now = app.clock.now_ms();
    app.store
        .set_member(&project_id, user.id, body.role.as_str(), now)
        .await?;
    who.audit(
        &app,
        Some(&project_id),
        "member.add",
        format!("{} is {}", user.username, body.role),
    )
    .await;
    tracing::info!(%project_id, username = %user.username, role = %body.role, by = %who.user.username, "Member added.");
    Ok((
        StatusCode::CREATED,
        Json(MemberView {
            username: user.username,
            role: body.role.as_str().to_owned(),
            added_at: now,
        }),
    ))
}

/// Remove a member from the project (owners and the instance admin); not its last owner.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/members/{username}",
    params(("project_id" = String, Path), ("username" = String, Path)),
    responses((status = 204, description = "removed"), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn remove_member(
    who: Principal,
    State(app): State<Shared>,
    Path((project_id, username)): Path<(String, String)>,
) -> Result<StatusCode, AdminError> {
    who.require(&app, &project_id, Action::ManageMembers)
        .await?;
    let (user, _) = app
        .store
        .user_by_username(&username)
        .await?
        .ok_or_else(|| not_found("member"))?;
    if last_owner(&app, &project_id, &user.username, None).await? {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the project's last owner cannot be removed; make someone else owner first",
        ));
    }
    if !app.store.remove_member(&project_id, user.id).await? {
        return Err(not_found("member"));
    }
    who.audit(
        &app,
        Some(&project_id),
        "member.remove",
        format!("removed {}", user.username),
    )
    .await;
    tracing::info!(%project_id, username = %user.username, by = %who.user.username, "Member removed.");
    Ok(StatusCode::NO_CONTENT)
}

/// A change to a project. Absent fields stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    /// `false`: the send and revoke APIs answer 80300002 for this project until it is
    /// `true` again.
    push_enabled: Option<bool>,
}

/// Switch a project's push service on or off (owner, operations, the instance admin);
/// every node follows at once.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}",
    params(("project_id" = String, Path)), request_body = ProjectPatch,
    responses((status = 200, body = ProjectView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn update_project(
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
    Json(patch): Json<ProjectPatch>,
) -> Result<Json<ProjectView>, AdminError> {
    let standing = who.require(&app, &project_id, Action::ConfigureApp).await?;
    let project: Project = match patch.push_enabled {
        Some(on) => {
            let p = app
                .store
                .set_push_enabled(&project_id, on)
                .await?
                .ok_or_else(|| not_found("project"))?;
            app.projects.invalidate(&project_id);
            app.tell_others(Control::ProjectChanged {
                project_id: project_id.clone(),
            });
            who.audit(
                &app,
                Some(&project_id),
                "project.push_enabled",
                format!("push service {}", if on { "on" } else { "off" }),
            )
            .await;
            tracing::info!(%project_id, push_enabled = on, by = %who.user.username, "Push service switched.");
            p
        }
        None => app
            .store
            .project(&project_id)
            .await?
            .ok_or_else(|| not_found("project"))?,
    };
    Ok(Json(project_view(project, standing.role)))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Entries older than this (ms since the epoch), for the next page.
    before_ms: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// The project it concerns (`null`: instance-wide — users, sign-ins).
    project_id: Option<String>,
    /// Who: the user name.
    actor: String,
    /// What: e.g. `member.add`, `key.revoke`, `right.grant`, `project.push_enabled`.
    action: String,
    /// On what, and how.
    detail: String,
    /// From which client address.
    address: String,
    /// When (ms since the epoch).
    at: i64,
}

impl From<herald_store::AuditEntry> for AuditView {
    fn from(e: herald_store::AuditEntry) -> Self {
        AuditView {
            project_id: e.project_id,
            actor: e.actor,
            action: e.action,
            detail: e.detail,
            address: e.address,
            at: e.at,
        }
    }
}

/// A project's audit log, newest first (owners and the instance admin).
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/audit",
    params(("project_id" = String, Path), AuditQuery),
    responses((status = 200, body = [AuditView]), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn show_audit(
    who: Principal,
    State(app): State<Shared>,
    Path(project_id): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditView>>, AdminError> {
    who.require(&app, &project_id, Action::ManageMembers)
        .await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000) as usize;
    Ok(Json(
        app.store
            .audit(Some(&project_id), q.before_ms, limit)
            .await?
            .into_iter()
            .map(AuditView::from)
            .collect(),
    ))
}

/// The whole instance's audit log, newest first: every project's entries and the
/// instance-wide ones (users created, sign-ins, sign-outs, password changes). The
/// instance admin only.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    responses((status = 200, body = [AuditView]), (status = 403, body = ErrorBody)))]
pub(crate) async fn show_instance_audit(
    who: Principal,
    State(app): State<Shared>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditView>>, AdminError> {
    who.require_instance_admin("read the instance's audit log")?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000) as usize;
    Ok(Json(
        app.store
            .audit(None, q.before_ms, limit)
            .await?
            .into_iter()
            .map(AuditView::from)
            .collect(),
    ))
}
