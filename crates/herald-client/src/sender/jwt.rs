//! Signing the service-account JWT (PS256 by default, RS256 on request), with reuse while it is fresh.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use herald_proto::keyfile::{JwtClaims, KeyFile};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::SenderError;
use super::cache::{CachedJwt, JwtDiskCache};

/// How long a signed JWT is valid (`exp - iat`), in seconds.
pub const JWT_LIFETIME_SECS: i64 = 3600;
/// A JWT with less than this left is re-signed rather than reused, in seconds.
pub const REFRESH_MARGIN_SECS: i64 = 300;
/// A cached JWT whose `iat` is further in the future than this is not trusted (clock moved back).
const MAX_FUTURE_IAT_SECS: i64 = 60;

/// The JWT signature algorithm. Push Kit documents PS256; RS256 is also accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SigningAlgorithm {
    #[default]
    Ps256,
    Rs256,
}

impl SigningAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Ps256 => "PS256",
            SigningAlgorithm::Rs256 => "RS256",
        }
    }

    fn jwt_algorithm(self) -> Algorithm {
        match self {
            SigningAlgorithm::Ps256 => Algorithm::PS256,
            SigningAlgorithm::Rs256 => Algorithm::RS256,
        }
    }
}

/// Signs the JWT a backend sends as `Authorization: Bearer …`, and reuses it for its hour.
pub struct JwtSigner {
    project_id: String,
    key_id: String,
    sub_account: String,
    aud: String,
    key: EncodingKey,
    algorithm: SigningAlgorithm,
    disk_cache: Option<JwtDiskCache>,
    // A std mutex: it is held only to check the cached token and, rarely, sign a new one
    // (under a millisecond, never across an `.await`), so an async mutex would buy nothing.
    current: Mutex<Option<CachedJwt>>,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("project_id", &self.project_id)
            .field("key_id", &self.key_id)
            .field("sub_account", &self.sub_account)
            .field("aud", &self.aud)
            .field("algorithm", &self.algorithm)
            .field("disk_cache", &self.disk_cache)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A PS256 signer for the key file, without a disk cache.
    pub fn new(key_file: &KeyFile) -> Result<Self, SenderError> {
        let key = EncodingKey::from_rsa_pem(key_file.private_key.as_bytes())
            .map_err(SenderError::BadPrivateKey)?;
        Ok(JwtSigner {
            project_id: key_file.project_id.clone(),
            key_id: key_file.key_id.clone(),
            sub_account: key_file.sub_account.clone(),
            aud: key_file.token_uri.clone(),
            key,
            algorithm: SigningAlgorithm::default(),
            disk_cache: None,
            current: Mutex::new(None),
        })
    }

    /// Signs with `algorithm` instead of PS256.
    pub fn with_algorithm(mut self, algorithm: SigningAlgorithm) -> Self {
        self.algorithm = algorithm;
        self.current = Mutex::new(None);
        self
    }

    /// Reuses JWTs across processes through `cache` (see [`JwtDiskCache`]).
    pub fn with_disk_cache(mut self, cache: JwtDiskCache) -> Self {
        self.disk_cache = Some(cache);
        self
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A JWT valid for at least [`REFRESH_MARGIN_SECS`] more seconds: the one in memory, the
    /// one in the disk cache, or a freshly signed one (which is then cached).
    pub fn token(&self) -> Result<String, SenderError> {
        self.token_at(unix_now())
    }

    /// [`JwtSigner::token`] at a given time (Unix seconds), so that tests control the clock.
    pub fn token_at(&self, now: i64) -> Result<String, SenderError> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(jwt) = current.as_ref().filter(|c| self.can_reuse(c, now)) {
            return Ok(jwt.jwt.clone());
        }
        if let Some(cached) = self
            .disk_cache
            .as_ref()
            .and_then(JwtDiskCache::load)
            .filter(|c| self.can_reuse(c, now))
        {
            tracing::debug!(key_id = %self.key_id, exp = cached.exp, "Reusing the cached JWT.");
            let jwt = cached.jwt.clone();
            *current = Some(cached);
            return Ok(jwt);
        }
        let fresh = self.sign_at(now)?;
        if let Some(cache) = &self.disk_cache {
            cache.store(&fresh);
        }
        let jwt = fresh.jwt.clone();
        *current = Some(fresh);
        Ok(jwt)
    }

    /// Signs a new JWT issued at `now` (Unix seconds), bypassing every cache.
    pub fn sign_at(&self, now: i64) -> Result<CachedJwt, SenderError> {
        let mut header = Header::new(self.algorithm.jwt_algorithm());
        header.typ = Some("JWT".to_owned());
        header.kid = Some(self.key_id.clone());
        let claims = JwtClaims {
            iss: self.sub_account.clone(),
            aud: serde_json::Value::String(self.aud.clone()),
            iat: now,
            exp: now + JWT_LIFETIME_SECS,
        };
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key).map_err(SenderError::Sign)?;
        Ok(CachedJwt {
            key_id: self.key_id.clone(),
            sub_account: self.sub_account.clone(),
            aud: self.aud.clone(),
            alg: self.algorithm.as_str().to_owned(),
            iat: claims.iat,
            exp: claims.exp,
            jwt,
        })
    }

    /// Whether `cached` was signed by this key for this audience and is fresh enough at `now`.
    fn can_reuse(&self, cached: &CachedJwt, now: i64) -> bool {
        cached.key_id == self.key_id
            && cached.sub_account == self.sub_account
            && cached.aud == self.aud
            && cached.alg == self.algorithm.as_str()
            && cached.exp - now > REFRESH_MARGIN_SECS
            && cached.iat <= now + MAX_FUTURE_IAT_SECS
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    use base64::Engine;
    use jsonwebtoken::{DecodingKey, Validation};

    /// A key file as Herald (and Huawei) hand them out: PKCS#8, base64 body on one line.
    pub(crate) fn test_key_file(key_id: &str) -> (KeyFile, DecodingKey) {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("PKCS#8");
        let body = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let public = pair.public_key();
        let decoding = DecodingKey::from_rsa_raw_components(
            public.modulus().big_endian_without_leading_zero(),
            public.exponent().big_endian_without_leading_zero(),
        );
        let key_file = KeyFile {
            project_id: "388421841221".into(),
            key_id: key_id.into(),
            private_key: pem,
            sub_account: "1100001".into(),
            auth_uri: "https://oauth-login.cloud.huawei.com/oauth2/v3/authorize".into(),
            token_uri: herald_proto::keyfile::HUAWEI_TOKEN_URI.into(),
            auth_provider_cert_uri: "https://oauth-login.cloud.huawei.com/oauth2/v3/certs".into(),
            client_cert_uri: "https://oauth-login.cloud.huawei.com/oauth2/v3/x509?client_id=1"
                .into(),
        };
        (key_file, decoding)
    }

    fn verify(jwt: &str, key: &DecodingKey, alg: Algorithm) -> JwtClaims {
        let mut validation = Validation::new(alg);
        validation.set_audience(&[herald_proto::keyfile::HUAWEI_TOKEN_URI]);
        validation.set_issuer(&["1100001"]);
        jsonwebtoken::decode::<JwtClaims>(jwt, key, &validation)
            .expect("signature and claims verify")
            .claims
    }

    #[test]
    fn one_line_pkcs8_pem_signs_a_ps256_jwt_that_verifies() {
        let (key_file, public) = test_key_file("kid-1");
        assert_eq!(key_file.private_key.lines().count(), 3);
        let signer = JwtSigner::new(&key_file).expect("key accepted");
        let jwt = signer.token().unwrap();

        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::PS256);
        assert_eq!(header.kid.as_deref(), Some("kid-1"));
        assert_eq!(header.typ.as_deref(), Some("JWT"));

        let claims = verify(&jwt, &public, Algorithm::PS256);
        assert_eq!(claims.iss, "1100001");
        assert_eq!(claims.aud, herald_proto::keyfile::HUAWEI_TOKEN_URI);
        assert_eq!(claims.exp - claims.iat, 3600);
        assert!((claims.iat - unix_now()).abs() < 5);
    }

    #[test]
    fn rs256_is_available_on_request() {
        let (key_file, public) = test_key_file("kid-1");
        let signer = JwtSigner::new(&key_file)
            .unwrap()
            .with_algorithm(SigningAlgorithm::Rs256);
        let jwt = signer.token().unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&jwt).unwrap().alg,
            Algorithm::RS256
        );
        verify(&jwt, &public, Algorithm::RS256);
    }

    #[test]
    fn garbage_keys_are_rejected_up_front() {
        let (mut key_file, _) = test_key_file("kid-1");
        key_file.private_key =
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        assert!(matches!(
            JwtSigner::new(&key_file),
            Err(SenderError::BadPrivateKey(_))
        ));
    }

    #[test]
    fn the_jwt_is_reused_until_five_minutes_remain() {
        let (key_file, _) = test_key_file("kid-1");
        let signer = JwtSigner::new(&key_file).unwrap();
        let t0 = 1_800_000_000;
        let first = signer.token_at(t0).unwrap();
        assert_eq!(signer.token_at(t0 + 3600 - 301).unwrap(), first);
        let second = signer.token_at(t0 + 3600 - 300).unwrap();
        assert_ne!(second, first);
        assert_eq!(signer.token_at(t0 + 3600).unwrap(), second);
    }

    #[test]
    fn the_disk_cache_carries_the_jwt_to_the_next_process() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join("herald").join("jwt-kid-1");
        let (key_file, _) = test_key_file("kid-1");
        let t0 = 1_800_000_000;

        let first_run = JwtSigner::new(&key_file)
            .unwrap()
            .with_disk_cache(JwtDiskCache::at(&cache_path));
        let jwt = first_run.token_at(t0).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cache_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let second_run = JwtSigner::new(&key_file)
            .unwrap()
            .with_disk_cache(JwtDiskCache::at(&cache_path));
        assert_eq!(second_run.token_at(t0 + 600).unwrap(), jwt);

        // Another sub-account or algorithm does not pick it up, and a stale one is re-signed.
        let mut other = key_file.clone();
        other.sub_account = "999".into();
        let other_signer = JwtSigner::new(&other)
            .unwrap()
            .with_disk_cache(JwtDiskCache::at(&cache_path));
        assert_ne!(other_signer.token_at(t0 + 600).unwrap(), jwt);
        let rs = JwtSigner::new(&key_file)
            .unwrap()
            .with_algorithm(SigningAlgorithm::Rs256)
            .with_disk_cache(JwtDiskCache::at(&cache_path));
        assert_ne!(rs.token_at(t0 + 600).unwrap(), jwt);
        let late = JwtSigner::new(&key_file)
            .unwrap()
            .with_disk_cache(JwtDiskCache::at(&cache_path));
        assert_ne!(late.token_at(t0 + 3400).unwrap(), jwt);
    }

    #[test]
    fn a_broken_cache_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache_path = dir.path().join("jwt-kid-1");
        std::fs::write(&cache_path, "garbage").unwrap();
        let (key_file, _) = test_key_file("kid-1");
        let signer = JwtSigner::new(&key_file)
            .unwrap()
            .with_disk_cache(JwtDiskCache::at(&cache_path));
        assert!(signer.token().is_ok());
        // …and replaced by a good entry.
        assert!(JwtDiskCache::at(&cache_path).load().is_some());
    }

    #[test]
    fn the_default_cache_path_follows_xdg() {
        let path =
            |xdg, home| JwtDiskCache::default_in("k/1", xdg, home).map(|c| c.path().to_owned());
        assert_eq!(
            path(Some("/x/cache"), Some("/home/u")),
            Some(std::path::PathBuf::from("/x/cache/herald/jwt-k_1")),
            "XDG_CACHE_HOME wins"
        );
        assert_eq!(
            path(None, Some("/home/u")),
            Some(std::path::PathBuf::from("/home/u/.cache/herald/jwt-k_1"))
        );
        assert_eq!(path(None, None), None, "no cache without either");
    }
}
