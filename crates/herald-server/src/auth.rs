//! Service-account JWT verification (reference §4.1), with a cache of verified tokens.
//!
//! A verified JWT is cached by its exact string until its `exp`, so a client that reuses
//! its JWT for an hour (as Huawei's demo does) pays the RSA check once, not per request.
//! Every use of a cached JWT also looks up its key (a map lookup), so revoking the key
//! ends every JWT it signed at once: the node that revokes forgets the key, the others
//! are told on the bus, and on a store shared by several nodes a key is trusted for at
//! most [`KEY_RECHECK`] before it is read again (what bounds a revocation whose notice
//! was lost, or a cluster without a bus, to well under a second).
//! The cache is bounded (`limits.jwt_cache_entries`) and O(1) per lookup and insert:
//! `quick_cache` evicts the least recently used entries (S3-FIFO) when it is full, and an
//! expired entry found on lookup is removed then. A hand-written map would need either a
//! scan to purge (what this replaced) or a second, expiry-ordered index.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use herald_core::Clock;
use herald_proto::Code;
use herald_proto::keyfile::{HUAWEI_TOKEN_URI, JwtClaims};
use herald_store::{ServiceAccount, Store};
use jsonwebtoken::Header;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Longest JWT lifetime Push Kit accepts (`exp - iat`).
pub const MAX_JWT_PERIOD_SECS: i64 = 86_400;
/// Clock skew tolerated on `iat`.
const IAT_LEEWAY_SECS: i64 = 300;
/// On a shared store, how long a key read from the store is trusted before it is read
/// again (a revocation on another node takes effect here within this).
pub const KEY_RECHECK: Duration = Duration::from_millis(500);

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
    /// When it was read from the store (operational time, not the policy clock).
    read_at: Instant,
}

/// Verifies `Authorization: Bearer <JWT>` headers.
pub struct JwtVerifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    verified: quick_cache::sync::Cache<String, Verified>,
    /// One entry per service-account key that exists and is not revoked (an unknown or
    /// revoked `kid` is not cached).
    keys: DashMap<String, Arc<AccountKey>>,
    /// How long a cached key is trusted (`None`: until it is forgotten; a store of this
    /// node's own, where every revocation goes through [`JwtVerifier::forget_key`]).
    recheck: Option<Duration>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("cached", &self.verified.len())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier remembering at most `cache_entries` verified JWTs; `recheck`: how long
    /// a key read from the store is trusted ([`KEY_RECHECK`] on a shared store).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cache_entries: usize,
        recheck: Option<Duration>,
    ) -> Self {
        JwtVerifier {
            store,
            clock,
            verified: quick_cache::sync::Cache::new(cache_entries.max(1)),
            keys: DashMap::new(),
            recheck,
        }
    }

    /// Forget a key (revoked here or on another node): its next use reads the store,
    /// which refuses it, and so does every JWT it signed.
    pub fn forget_key(&self, key_id: &str) {
        self.keys.remove(key_id);
    }

    /// Forget every key (the bus was down: revocations may have been missed).
    pub fn forget_keys(&self) {
        self.keys.clear();
    }

    /// Verified JWTs remembered right now.
    pub fn cached(&self) -> usize {
        self.verified.len()
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
        let cached = self.verified.get(jwt);
        let verified = match cached {
            Some(v) if v.exp_secs > now => {
                // Its key may have been revoked since it was verified.
                if let Err(e) = self.account_key(&v.principal.key_id).await {
                    self.verified.remove(jwt);
                    return Err(e);
                }
                v
            }
            Some(_) => {
                self.verified.remove(jwt);
                return Err(AuthError::Expired);
            }
            None => {
                let v = self.verify(jwt, now).await?;
                self.verified.insert(jwt.to_owned(), v.clone());
                v
            }
        };
        Ok(verified.principal)
    }

    /// The key, from memory while it is trusted, else from the store; a revoked or
    /// unknown key is an authentication failure (80200001).
    async fn account_key(&self, key_id: &str) -> Result<Arc<AccountKey>, AuthError> {
        if let Some(k) = self.keys.get(key_id)
            && self.recheck.is_none_or(|ttl| k.read_at.elapsed() < ttl)
        {
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
        if account.revoked_at.is_some() {
            self.keys.remove(key_id);
            return Err(AuthError::Invalid("revoked key"));
        }
        let key = DecodingKey::from_rsa_pem(account.public_key_pem.as_bytes())
            .map_err(|_| AuthError::Invalid("stored key unreadable"))?;
        let entry = Arc::new(AccountKey {
            account,
            key,
            read_at: Instant::now(),
        });
        self.keys.insert(key_id.to_owned(), entry.clone());
        Ok(entry)
    }

    async fn verify(&self, jwt: &str, now: i64) -> Result<Verified, AuthError> {
        let (alg, kid) = parse_header(jwt)?;
        let account = self.account_key(&kid).await?;

        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<JwtClaims>(jwt, &account.key, &validation)
            .map_err(|_| AuthError::Invalid("bad signature or claims"))?
            .claims;

        let expected = Expected {
            sub_account: &account.account.sub_account,
            token_uri: &account.account.token_uri,
        };
        let exp_secs = check_claims(&claims, &expected, now)?;
        Ok(Verified {
            principal: Principal {
                project_id: account.account.project_id.clone(),
                key_id: kid,
            },
            exp_secs,
        })
    }
}

/// The header of a JWT, before any signature check: PS256 or RS256, with a `kid`.
/// A stranger controls every byte of it (fuzzed in `fuzz/`).
pub fn parse_header(jwt: &str) -> Result<(Algorithm, String), AuthError> {
    let header: Header =
        jsonwebtoken::decode_header(jwt).map_err(|_| AuthError::Invalid("malformed JWT"))?;
    if !matches!(header.alg, Algorithm::PS256 | Algorithm::RS256) {
        return Err(AuthError::Invalid("alg must be PS256 or RS256"));
    }
    let kid = header.kid.ok_or(AuthError::Invalid("missing kid"))?;
    Ok((header.alg, kid))
}

/// What a key's JWTs must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub sub_account: &'a str,
    pub token_uri: &'a str,
}

/// The claims' rules (reference §4.1), on claims whose signature was checked; returns
/// `exp`. Arithmetic is checked: a key holder choosing `iat` and `exp` near the ends of
/// `i64` must not wrap `exp - iat` into a short period (a JWT that never expires).
pub fn check_claims(
    claims: &JwtClaims,
    expected: &Expected<'_>,
    now: i64,
) -> Result<i64, AuthError> {
    if claims.iss != expected.sub_account {
        return Err(AuthError::Invalid("iss is not the account's sub_account"));
    }
    if !audience_matches(&claims.aud, expected.token_uri) {
        return Err(AuthError::Invalid("aud is not a token URI"));
    }
    match claims.exp.checked_sub(claims.iat) {
        Some(period) if period <= MAX_JWT_PERIOD_SECS => {}
        _ => return Err(AuthError::PeriodTooLong),
    }
    if claims.iat > now.saturating_add(IAT_LEEWAY_SECS) {
        return Err(AuthError::Invalid("iat is in the future"));
    }
    if claims.exp <= now {
        return Err(AuthError::Expired);
    }
    Ok(claims.exp)
}

fn audience_matches(aud: &serde_json::Value, token_uri: &str) -> bool {
    let ok = |s: &str| s == HUAWEI_TOKEN_URI || s == token_uri;
    match aud {
        serde_json::Value::String(s) => ok(s),
        serde_json::Value::Array(items) => items.iter().filter_map(|v| v.as_str()).any(ok),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iat: i64, exp: i64) -> JwtClaims {
        JwtClaims {
            iss: "sub".into(),
            aud: serde_json::Value::String(HUAWEI_TOKEN_URI.into()),
            iat,
            exp,
        }
    }

    const EXPECTED: Expected<'static> = Expected {
        sub_account: "sub",
        token_uri: HUAWEI_TOKEN_URI,
    };

    #[test]
    fn a_period_that_overflows_is_too_long_not_forever() {
        let now = 1_795_000_000;
        // exp - iat wraps to a small number without checked arithmetic (and panics in a
        // debug build): a JWT valid until the end of time.
        let c = claims(i64::MIN + 10, i64::MAX);
        assert_eq!(
            check_claims(&c, &EXPECTED, now),
            Err(AuthError::PeriodTooLong)
        );
        let c = claims(i64::MIN, now + 100);
        assert_eq!(
            check_claims(&c, &EXPECTED, now),
            Err(AuthError::PeriodTooLong)
        );
        let c = claims(now, now + 3600);
        assert_eq!(check_claims(&c, &EXPECTED, now), Ok(now + 3600));
        // A clock near i64::MAX must not overflow the leeway addition either.
        let c = claims(i64::MAX - 10, i64::MAX);
        assert_eq!(check_claims(&c, &EXPECTED, i64::MAX - 5), Ok(i64::MAX));
    }

    #[test]
    fn headers_must_name_the_algorithm_and_key() {
        assert!(parse_header("").is_err());
        assert!(parse_header("a.b.c").is_err());
        // {"alg":"HS256","kid":"k"} and {"alg":"PS256"}
        assert!(parse_header("eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.e30.x").is_err());
        assert!(parse_header("eyJhbGciOiJQUzI1NiJ9.e30.x").is_err());
        // {"alg":"PS256","kid":"k"}
        assert_eq!(
            parse_header("eyJhbGciOiJQUzI1NiIsImtpZCI6ImsifQ.e30.x"),
            Ok((Algorithm::PS256, "k".to_owned()))
        );
    }
}
