//! The service-account key file, in Huawei's JSON layout (reference §4.1).

use serde::{Deserialize, Serialize};

/// Huawei's token URI: the `aud` every Push Kit client puts in its JWT.
pub const HUAWEI_TOKEN_URI: &str = "https://oauth-login.cloud.huawei.com/oauth2/v3/token";

/// A service-account key file. Field order and names follow the files Huawei hands out;
/// clients read `project_id`, `key_id`, `private_key`, `sub_account` and `token_uri`.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub project_id: String,
    pub key_id: String,
    /// `-----BEGIN PRIVATE KEY-----\n<PKCS#8 base64 on one line>\n-----END PRIVATE KEY-----\n`
    pub private_key: String,
    pub sub_account: String,
    pub auth_uri: String,
    pub token_uri: String,
    pub auth_provider_cert_uri: String,
    pub client_cert_uri: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("project_id", &self.project_id)
            .field("key_id", &self.key_id)
            .field("private_key", &"<redacted>")
            .field("sub_account", &self.sub_account)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// The claims of a service-account JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JwtClaims {
    pub iss: String,
    pub aud: serde_json::Value,
    pub iat: i64,
    pub exp: i64,
}
