//! Signing in and out: `POST /api/v1/sessions` (a bearer token with an expiry for
//! scripts, or the console's HttpOnly cookie with a CSRF token) and
//! `DELETE /api/v1/sessions/current`; the argon2 password checks they and a password
//! change share, bounded by the login gate of `limits.rs`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_store::{NewSession, SessionKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::admin::{AdminError, ErrorBody};
use super::principal::{CSRF_COOKIE, Principal, SESSION_COOKIE, secs_ms};
use crate::ids;
use crate::state::Shared;

/// Longest password accepted (argon2's cost grows with it).
pub const MAX_PASSWORD: usize = 1024;
/// Shortest password a user may set.
pub const MIN_PASSWORD: usize = 8;

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    #[schema(max_length = 64)]
    username: String,
    #[schema(max_length = 1024)]
    password: String,
    /// `true`: a console session, set as an HttpOnly, SameSite=Strict cookie
    /// (`herald_session`) with a CSRF token (answered as `csrf_token` and set as the
    /// readable cookie `herald_csrf`) that every POST, PATCH and DELETE must carry in
    /// `X-CSRF-Token`; it ends after `[auth] session_idle_secs` unused. `false`
    /// (default): a bearer token for scripts, valid `[auth] token_ttl_secs`.
    #[serde(default)]
    cookie: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    username: String,
    /// A bearer token for the admin API (not with `cookie: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// With `cookie: true`: the value for the `X-CSRF-Token` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    /// When the session ends at the latest (ms since the epoch).
    expires_at: i64,
    /// A console session also ends after this many seconds unused.
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_secs: Option<u64>,
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
pub(crate) fn throttled(retry_after_secs: u64, why: &str) -> Response {
    metrics::counter!("herald_logins_throttled_total").increment(1);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after_secs.to_string())],
        Json(ErrorBody::new(why)),
    )
        .into_response()
}

/// Check `password` against `hash` (or, for an unknown user, against a throwaway hash
/// at the same cost, so the timing does not tell which user names exist), off the async
/// workers and within the login gate's concurrency. `Err` is the 429 to answer.
pub(crate) async fn verify_password(
    app: &Shared,
    hash: Option<String>,
    password: String,
) -> Result<bool, Response> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    let Some(permit) = app.guards.password_check() else {
        return Err(throttled(
            1,
            "too many password checks at once; try again in a second",
        ));
    };
    // The permit moves into the blocking task, so the bound holds even when the client
    // hangs up early.
    Ok(tokio::task::spawn_blocking(move || {
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
    .unwrap_or(false))
}

/// An argon2 hash of a new password (checked for length first), off the async workers.
pub(crate) async fn hash_password(app: &Shared, password: String) -> Result<String, Response> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let chars = password.chars().count();
    if chars < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        )
        .into_response());
    }
    let Some(permit) = app.guards.password_check() else {
        return Err(throttled(
            1,
            "too many password checks at once; try again in a second",
        ));
    };
    let hashed = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let salt = SaltString::encode_b64(ids::secret(16).as_bytes()).ok()?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .ok()
            .map(|h| h.to_string())
    })
    .await
    .ok()
    .flatten();
    hashed.ok_or_else(|| {
        AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "password hashing failed")
            .into_response()
    })
}

fn store_failed(e: herald_store::StoreError) -> Response {
    AdminError::from(e).into_response()
}

/// Whether the session cookie is marked `Secure`.
fn secure(app: &Shared) -> bool {
    app.config.auth.secure_cookie || app.config.tls_enabled().unwrap_or(false)
}

/// A `Set-Cookie` value: SameSite=Strict, Path=/, `Secure` when served over TLS.
fn set_cookie(
    app: &Shared,
    name: &str,
    value: &str,
    max_age_secs: u64,
    http_only: bool,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; Max-Age={max_age_secs}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure(app) {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sign in with a user name and password: a bearer token (for scripts) or, with
/// `cookie: true`, the console's session cookie and its CSRF token.
///
/// Guarded (see `limits.rs`): an address or user name in back-off after failed logins,
/// or a moment when `login_concurrency` password checks already run, is answered 429
/// at once, without running argon2 (~19 MiB and tens of milliseconds each).
#[utoipa::path(post, path = "/api/v1/sessions", request_body = LoginBody, security(()),
    responses((status = 201, body = SessionView), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many failed or concurrent logins; see Retry-After.")))]
pub(crate) async fn create_session(
    State(app): State<Shared>,
    client: crate::limits::ClientAddr,
    Json(body): Json<LoginBody>,
) -> Result<Response, Response> {
    let refused =
        || AdminError::new(StatusCode::UNAUTHORIZED, "wrong user name or password").into_response();
    let now = app.clock.now_ms();
    if let Err(t) = app.guards.login_allowed(client.0, &body.username, now) {
        return Err(throttled(
            t.retry_after_secs,
            "too many failed logins; try again later",
        ));
    }
    if body.password.len() > MAX_PASSWORD {
        return Err(refused());
    }
    let found = app
        .store
        .user_by_username(&body.username)
        .await
        .map_err(store_failed)?;
    let hash = found.as_ref().map(|(_, hash)| hash.clone());
    let verified = verify_password(&app, hash, body.password).await?;
    let user = match found {
        Some((user, _)) if verified => user,
        found => {
            let user = found.map(|(user, _)| user.username);
            app.guards
                .login_failed(client.0, user.as_deref(), app.clock.now_ms());
            tracing::info!(client = %client.0, known_user = user.is_some(), "Login refused.");
            return Err(refused());
        }
    };
    let now = app.clock.now_ms();
    let auth = &app.config.auth;
    let token = ids::secret(32);
    let (kind, csrf, ttl_secs) = if body.cookie {
        (
            SessionKind::Cookie,
            Some(ids::secret(32)),
            auth.session_max_secs,
        )
    } else {
        (SessionKind::Bearer, None, auth.token_ttl_secs)
    };
    let expires_at = now.saturating_add(secs_ms(ttl_secs));
    app.store
        .create_session(NewSession {
            token_hash: ids::sha256_hex(&token),
            user_id: user.id,
            kind,
            csrf_hash: csrf.as_deref().map(ids::sha256_hex),
            created_at: now,
            expires_at: Some(expires_at),
        })
        .await
        .map_err(store_failed)?;
    let who = Principal {
        user: user.clone(),
        session_hash: String::new(),
        kind,
        address: client.0,
    };
    who.audit(
        &app,
        None,
        "session.create",
        format!("signed in ({})", kind.as_str()),
    )
    .await;
    tracing::info!(username = %user.username, kind = kind.as_str(), "User signed in.");
    let view = SessionView {
        username: user.username,
        token: (!body.cookie).then(|| token.clone()),
        csrf_token: csrf.clone(),
        expires_at,
        idle_timeout_secs: body.cookie.then_some(auth.session_idle_secs),
    };
    let mut resp = (StatusCode::CREATED, Json(view)).into_response();
    if let Some(csrf) = csrf {
        let headers = resp.headers_mut();
        headers.append(
            header::SET_COOKIE,
            set_cookie(&app, SESSION_COOKIE, &token, ttl_secs, true),
        );
        headers.append(
            header::SET_COOKIE,
            set_cookie(&app, CSRF_COOKIE, &csrf, ttl_secs, false),
        );
    }
    Ok(resp)
}

/// Sign out: the session (bearer token or cookie) that authenticates this request
/// is revoked at once, and the console's cookies are cleared. The bootstrap token
/// (`bootstrap.json`) cannot be signed out (409).
#[utoipa::path(delete, path = "/api/v1/sessions/current",
    responses((status = 204, description = "signed out"), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete_session(
    who: Principal,
    State(app): State<Shared>,
) -> Result<Response, AdminError> {
    if who.kind == SessionKind::Bootstrap {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "the bootstrap token cannot be signed out; sign in with a password to get a session that can",
        ));
    }
    app.store
        .revoke_session(&who.session_hash, app.clock.now_ms())
        .await?;
    who.audit(&app, None, "session.delete", "signed out").await;
    tracing::info!(username = %who.user.username, "User signed out.");
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let headers = resp.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(&app, SESSION_COOKIE, "", 0, true),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&app, CSRF_COOKIE, "", 0, false),
    );
    Ok(resp)
}
