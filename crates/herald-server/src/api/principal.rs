//! Who is calling the admin API, and whether they may: the [`Principal`] extractor
//! (a bearer token, or the console's session cookie with its CSRF token), session
//! validity (expiry, idle expiry, revocation), the permission check against the one
//! matrix in [`crate::authz`], and the audit trail every change writes.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use herald_store::{App, AuditEntry, Project, Session, SessionKind, User};

use super::admin::AdminError;
use crate::authz::{self, Action, Role};
use crate::config::AuthConfig;
use crate::ids;
use crate::limits::ClientAddr;
use crate::state::Shared;

/// The console's session cookie (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "herald_session";
/// The console's CSRF cookie (readable by the page, SameSite=Strict): its value goes in
/// the [`CSRF_HEADER`] of every unsafe request a cookie authenticates.
pub const CSRF_COOKIE: &str = "herald_csrf";
/// The header a cookie-authenticated POST, PATCH or DELETE must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A session's last use is written at most this often (ms); the idle expiry is that
/// precise (or a quarter of the idle time, when that is shorter).
const TOUCH_EVERY_MS: i64 = 60_000;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    /// SHA-256 of the session's token (for a logout or a password change).
    pub session_hash: String,
    pub kind: SessionKind,
    /// The client address (for the audit log).
    pub address: IpAddr,
}

fn unauthorized(why: &str) -> AdminError {
    AdminError::new(StatusCode::UNAUTHORIZED, why)
}

fn forbidden(why: impl Into<String>) -> AdminError {
    AdminError::new(StatusCode::FORBIDDEN, why)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Why a stored session no longer authenticates, if it does not.
pub fn session_ended(session: &Session, now_ms: i64, auth: &AuthConfig) -> Option<&'static str> {
    if session.revoked_at.is_some() {
        return Some("the session was signed out; sign in again");
    }
    if session.expires_at.is_some_and(|at| at <= now_ms) {
        return Some("the session expired; sign in again");
    }
    let idle_ms = secs_ms(auth.session_idle_secs);
    if session.kind == SessionKind::Cookie && now_ms - session.last_used_at >= idle_ms {
        return Some("the session expired after being idle; sign in again");
    }
    None
}

pub(crate) fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether `headers` carry a valid session of an instance admin (for endpoints open to
/// some addresses and to admins, such as `/metrics`).
pub async fn bears_admin_token(app: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = bearer(headers) else {
        return false;
    };
    match app.store.session(&ids::sha256_hex(token)).await {
        Ok(Some(s)) => {
            s.user.instance_admin
                && session_ended(&s, app.clock.now_ms(), &app.config.auth).is_none()
        }
        _ => false,
    }
}

impl FromRequestParts<Shared> for Principal {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, Self::Rejection> {
        let address = match ClientAddr::from_request_parts(parts, app).await {
            Ok(a) => a.0,
            Err(never) => match never {},
        };
        let (token, via_cookie) = match bearer(&parts.headers) {
            Some(t) => (t, false),
            None => match cookie(&parts.headers, SESSION_COOKIE) {
                Some(c) => (c, true),
                None => {
                    return Err(unauthorized(
                        "missing bearer token (or console session cookie); sign in with POST /api/v1/sessions",
                    ));
                }
            },
        };
        let hash = ids::sha256_hex(token);
        let session = app
            .store
            .session(&hash)
            .await?
            .ok_or_else(|| unauthorized("unknown admin token"))?;
        let now = app.clock.now_ms();
        if let Some(why) = session_ended(&session, now, &app.config.auth) {
            return Err(unauthorized(why));
        }
        if via_cookie {
            if session.kind != SessionKind::Cookie {
                return Err(unauthorized("the cookie does not hold a console session"));
            }
            if !is_safe(&parts.method) {
                let given = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| ids::sha256_hex(v.trim()));
                if given.is_none() || given != session.csrf_hash {
                    return Err(forbidden(
                        "missing or wrong X-CSRF-Token header (the csrf_token the console's sign-in answered)",
                    ));
                }
            }
        }
        let touch_every = TOUCH_EVERY_MS.min(secs_ms(app.config.auth.session_idle_secs) / 4);
        if now - session.last_used_at >= touch_every {
            app.store.touch_session(&hash, now).await?;
        }
        Ok(Principal {
            user: session.user,
            session_hash: hash,
            kind: session.kind,
            address,
        })
    }
}

/// What the caller is in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Their member role, if they are a member.
    pub role: Option<Role>,
    pub instance_admin: bool,
}

impl Standing {
    pub fn allows(self, action: Action) -> bool {
        self.instance_admin || self.role.is_some_and(|r| authz::allows(r, action))
    }

    /// The actions they may do there, in [`Action::ALL`]'s order.
    pub fn actions(self) -> Vec<Action> {
        Action::ALL
            .into_iter()
            .filter(|a| self.allows(*a))
            .collect()
    }
}

impl Principal {
    /// The caller's standing in `project_id`; `None` when they may not see it at all
    /// (no such project, or not a member and not the instance admin).
    pub async fn standing(
        &self,
        app: &Shared,
        project_id: &str,
    ) -> Result<Option<Standing>, AdminError> {
        let role = app
            .store
            .memberships(self.user.id)
            .await?
            .into_iter()
            .find(|m| m.project_id == project_id)
            .and_then(|m| Role::parse(&m.role));
        if role.is_none() && !self.user.instance_admin {
            return Ok(None);
        }
        if app.store.project(project_id).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(Standing {
            role,
            instance_admin: self.user.instance_admin,
        }))
    }

    /// Go on only if the caller may do `action` in `project_id`: 404 (`no such
    /// {missing}`) when they may not see the project, 403 naming the roles that may when
    /// their role does not allow it.
    pub async fn require_in(
        &self,
        app: &Shared,
        project_id: &str,
        action: Action,
        missing: &str,
    ) -> Result<Standing, AdminError> {
        let standing = self
            .standing(app, project_id)
            .await?
            .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, format!("no such {missing}")))?;
        if standing.allows(action) {
            return Ok(standing);
        }
        Err(match standing.role {
            Some(role) => forbidden(authz::refusal(role, action)),
            None => forbidden(format!("only the instance admin may {}", action.describe())),
        })
    }

    /// [`Principal::require_in`] for a project.
    pub async fn require(
        &self,
        app: &Shared,
        project_id: &str,
        action: Action,
    ) -> Result<Standing, AdminError> {
        self.require_in(app, project_id, action, "project").await
    }

    /// [`Principal::require_in`] for an app's project; returns the app.
    pub async fn require_app(
        &self,
        app: &Shared,
        client_id: &str,
        action: Action,
    ) -> Result<App, AdminError> {
        let found = app
            .store
            .app(client_id)
            .await?
            .ok_or_else(|| AdminError::new(StatusCode::NOT_FOUND, "no such app"))?;
        self.require_in(app, &found.project_id, action, "app")
            .await?;
        Ok(found)
    }

    /// Go on only for the instance admin (403 otherwise).
    pub fn require_instance_admin(&self, what: &str) -> Result<(), AdminError> {
        if self.user.instance_admin {
            Ok(())
        } else {
            Err(forbidden(format!("only the instance admin may {what}")))
        }
    }

    /// The projects the caller may see, with their standing in each.
    pub async fn visible_projects(
        &self,
        app: &Shared,
    ) -> Result<Vec<(Project, Standing)>, AdminError> {
        let memberships = app.store.memberships(self.user.id).await?;
        let role_in = |project_id: &str| {
            memberships
                .iter()
                .find(|m| m.project_id == project_id)
                .and_then(|m| Role::parse(&m.role))
        };
        Ok(app
            .store
            .list_projects()
            .await?
            .into_iter()
            .filter_map(|p| {
                let standing = Standing {
                    role: role_in(&p.project_id),
                    instance_admin: self.user.instance_admin,
                };
                (standing.instance_admin || standing.role.is_some()).then_some((p, standing))
            })
            .collect())
    }

    /// Write an audit entry for a change the caller made. A failure to write it is
    /// logged (the change itself is done).
    pub async fn audit(
        &self,
        app: &Shared,
        project_id: Option<&str>,
        action: &str,
        detail: impl Into<String>,
    ) {
        let entry = AuditEntry {
            project_id: project_id.map(str::to_owned),
            actor: self.user.username.clone(),
            action: action.to_owned(),
            detail: detail.into(),
            address: self.address.to_string(),
            at: app.clock.now_ms(),
        };
        if let Err(e) = app.store.append_audit(entry).await {
            tracing::error!(error = %e, action, "The audit log could not be written.");
        }
    }
}

/// The instance admin, for instance-wide tools such as the emulator API: 401 without a
/// valid session, 403 for any other user.
#[derive(Debug, Clone)]
pub struct InstanceAdmin(pub Principal);

impl FromRequestParts<Shared> for InstanceAdmin {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, Self::Rejection> {
        let who = Principal::from_request_parts(parts, app).await?;
        who.require_instance_admin("use this API")?;
        Ok(InstanceAdmin(who))
    }
}
