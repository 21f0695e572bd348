//! Service-account JWT verification (reference §4.1), with a cache of verified tokens.
//!
//! A verified JWT is cached by its exact string until its `exp`, so a client that reuses
//! its JWT for an hour (as Huawei's demo does) pays the RSA check once, not per request.

use std::sync::Arc;

use dashmap::DashMap;
use herald_core::Clock;
use herald_proto::Code;
use herald_proto::keyfile::{HUAWEI_TOKEN_URI, JwtClaims};
use herald_store::{ServiceAccount, Store};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Longest JWT lifetime Push Kit accepts (`exp - iat`).
pub const MAX_JWT_PERIOD_SECS: i64 = 86_400;
/// Clock skew tolerated on `iat`.
const IAT_LEEWAY_SECS: i64 = 300;
/// Cached JWTs beyond which a purge of expired entries runs.
const JWT_CACHE_PURGE_AT: usize = 10_000;

/// Why a request was not authenticated; maps 1:1 to a business code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication failed: {0}")]
    Invalid(&'static str),
    #[error("the JWT has expired")]
    Expired,
    #[error("the JWT lives longer than one day")]
    PeriodTooLong,
    #[error("the store failed")]
    Internal,
}

impl AuthError {
    pub fn code(&self) -> Code {
        match self {
            AuthError::Invalid(_) => Code::AuthenticationError,
            AuthError::Expired => Code::JwtExpired,
            AuthError::PeriodTooLong => Code::JwtPeriodTooLong,
            AuthError::Internal => Code::InnerError,
        }
    }
}

/// Who a verified JWT speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub project_id: String,
    pub key_id: String,
}

#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    exp_secs: i64,
}

struct AccountKey {
    account: ServiceAccount,
    key: DecodingKey,
}

/// Verifies `Authorization: Bearer <JWT>` headers.
pub struct JwtVerifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    verified: DashMap<String, Verified>,
    keys: DashMap<String, Arc<AccountKey>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("cached", &self.verified.len())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        JwtVerifier {
            store,
            clock,
            verified: DashMap::new(),
            keys: DashMap::new(),
        }
    }

    /// Authenticate a request for `project_id` from its `Authorization` header value.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        project_id: &str,
    ) -> Result<Principal, AuthError> {
        let principal = self.principal(authorization).await?;
        if principal.project_id != project_id {
            return Err(AuthError::Invalid("JWT belongs to another project"));
        }
        Ok(principal)
    }

    /// Authenticate a request whose URL names no project (revoke names an app); the
    /// caller checks that the principal's project owns what the request touches.
    pub async fn principal(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let jwt = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Invalid("missing Bearer token"))?;
        let now = self.clock.now_secs();
        let cached = self.verified.get(jwt).map(|v| v.clone());
        let verified = match cached {
            Some(v) if v.exp_secs > now => v,
            Some(_) => {
                self.verified.remove(jwt);
                return Err(AuthError::Expired);
            }
            None => {
                let v = self.verify(jwt, now).await?;
                self.remember(jwt, v.clone(), now);
                v
            }
        };
        Ok(verified.principal)
    }

    fn remember(&self, jwt: &str, v: Verified, now: i64) {
        if self.verified.len() >= JWT_CACHE_PURGE_AT {
            self.verified.retain(|_, v| v.exp_secs > now);
        }
        self.verified.insert(jwt.to_owned(), v);
    }

    async fn account_key(&self, key_id: &str) -> Result<Arc<AccountKey>, AuthError> {
        if let Some(k) = self.keys.get(key_id) {
            return Ok(k.clone());
        }
        let account = self
            .store
            .service_account(key_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "Could not read a service account.");
                AuthError::Internal
            })?
            .ok_or(AuthError::Invalid("unknown kid"))?;
        let key = DecodingKey::from_rsa_pem(account.public_key_pem.as_bytes())
            .map_err(|_| AuthError::Invalid("stored key unreadable"))?;
        let entry = Arc::new(AccountKey { account, key });
        self.keys.insert(key_id.to_owned(), entry.clone());
        Ok(entry)
    }

    async fn verify(&self, jwt: &str, now: i64) -> Result<Verified, AuthError> {
        let header =
            jsonwebtoken::decode_header(jwt).map_err(|_| AuthError::Invalid("malformed JWT"))?;
        if !matches!(header.alg, Algorithm::PS256 | Algorithm::RS256) {
            return Err(AuthError::Invalid("alg must be PS256 or RS256"));
        }
        let kid = header.kid.ok_or(AuthError::Invalid("missing kid"))?;
        let account = self.account_key(&kid).await?;

        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<JwtClaims>(jwt, &account.key, &validation)
            .map_err(|_| AuthError::Invalid("bad signature or claims"))?
            .claims;

        if claims.iss != account.account.sub_account {
            return Err(AuthError::Invalid("iss is not the account's sub_account"));
        }
        if !audience_matches(&claims.aud, &account.account.token_uri) {
            return Err(AuthError::Invalid("aud is not a token URI"));
        }
        if claims.exp - claims.iat > MAX_JWT_PERIOD_SECS {
            return Err(AuthError::PeriodTooLong);
        }
        if claims.iat > now + IAT_LEEWAY_SECS {
            return Err(AuthError::Invalid("iat is in the future"));
        }
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        Ok(Verified {
            principal: Principal {
                project_id: account.account.project_id.clone(),
                key_id: kid,
            },
            exp_secs: claims.exp,
        })
    }
}

fn audience_matches(aud: &serde_json::Value, token_uri: &str) -> bool {
    let ok = |s: &str| s == HUAWEI_TOKEN_URI || s == token_uri;
    match aud {
        serde_json::Value::String(s) => ok(s),
        serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_str()).any(ok),
        _ => false,
    }
}
