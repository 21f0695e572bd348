//! First start: create the admin, a project, an app and a service account, and write
//! `service-account.json` and `bootstrap.json` into the data directory.

use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHasher, SaltString};
use herald_proto::keyfile::KeyFile;
use herald_store::{App, Bootstrap, Project, ServiceAccount, Store, StoreError};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::ids;
use crate::keys;

/// `bootstrap.json`: exactly these fields, for people and scripts.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BootstrapInfo {
    pub push_api_url: String,
    pub console_url: String,
    pub admin_username: String,
    pub admin_password: String,
    pub admin_token: String,
    pub project_id: String,
    pub client_id: String,
    pub package_name: String,
    pub service_account_file: String,
}

impl std::fmt::Debug for BootstrapInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapInfo")
            .field("push_api_url", &self.push_api_url)
            .field("project_id", &self.project_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Bootstrap failed; the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("store: {0}")]
    Store(#[from] herald_store::StoreError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(#[from] keys::KeyGenError),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("{0}")]
    Choice(String),
}

pub const SERVICE_ACCOUNT_FILE: &str = "service-account.json";
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
pub const PACKAGE_NAME: &str = "com.example.herald.demo";

/// The `token_uri` Herald writes into key files it issues.
pub fn token_uri(public_url: &str) -> String {
    format!("{}/oauth2/v3/token", public_url.trim_end_matches('/'))
}

/// What a first start may be told instead of making it up (`herald serve --emulator
/// --project-id … --client-id … --key-file …`, so that a CI configuration stays the same
/// from run to run). Nothing set: every id and the key are new.
#[derive(Debug, Clone, Default)]
pub struct Choices {
    pub project_id: Option<String>,
    pub client_id: Option<String>,
    /// An existing service-account key file (Huawei's layout) to serve instead of a new
    /// key: its `key_id`, `sub_account` and private key (whose public half is stored).
    pub key_file: Option<KeyFile>,
}

impl Choices {
    /// Check the choices agree with each other before anything is written.
    pub fn check(&self) -> Result<(), BootstrapError> {
        let bad = |why: String| Err(BootstrapError::Choice(why));
        if let Some(id) = &self.project_id
            && (id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return bad(format!("--project-id {id:?}: 1 to 64 letters or digits"));
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return bad(format!("--client-id {id:?}: 1 to 64 letters or digits"));
        }
        if let Some(key) = &self.key_file {
            if keys::public_pem_of(&key.private_key).is_none() {
                return bad("the key file's private_key is not a PKCS#8 RSA key in PEM".into());
            }
            if let Some(id) = &self.project_id
                && *id != key.project_id
            {
                return bad(format!(
                    "--project-id {id} differs from the key file's project_id {}",
                    key.project_id
                ));
            }
        }
        Ok(())
    }
}

/// Run the first-start bootstrap if the store is empty. Returns the info when this node
/// did it; `None` when the store was already bootstrapped, or another node starting at
/// the same moment won (the store answered `Conflict`).
pub async fn ensure(
    store: &dyn Store,
    data_dir: &Path,
    public_url: &str,
    now_ms: i64,
) -> Result<Option<BootstrapInfo>, BootstrapError> {
    ensure_with(store, data_dir, public_url, now_ms, &Choices::default()).await
}

/// [`ensure`] with ids or a key chosen by the operator.
pub async fn ensure_with(
    store: &dyn Store,
    data_dir: &Path,
    public_url: &str,
    now_ms: i64,
    choices: &Choices,
) -> Result<Option<BootstrapInfo>, BootstrapError> {
    choices.check()?;
    if store.is_bootstrapped().await? {
        tracing::info!(data_dir = %data_dir.display(), "The store is already bootstrapped; serving its project.");
        return Ok(None);
    }
    let given = choices.key_file.as_ref();
    let project_id = choices
        .project_id
        .clone()
        .or_else(|| given.map(|k| k.project_id.clone()))
        .unwrap_or_else(|| ids::numeric_id(18));
    let client_id = choices
        .client_id
        .clone()
        .unwrap_or_else(|| ids::numeric_id(19));
    let key_id = given.map_or_else(|| ids::hex_id(32), |k| k.key_id.clone());
    let sub_account = given.map_or_else(|| ids::numeric_id(17), |k| k.sub_account.clone());
    let key = match given {
        None => keys::generate()?,
        Some(k) => keys::GeneratedKey {
            private_key_pem: k.private_key.clone(),
            public_key_pem: keys::public_pem_of(&k.private_key)
                .ok_or_else(|| BootstrapError::Choice("unreadable private_key".into()))?,
        },
    };
    let admin_password = ids::secret(18);
    let admin_token = ids::secret(32);
    let password_hash = argon2::Argon2::default()
        .hash_password(
            admin_password.as_bytes(),
            &SaltString::encode_b64(&rand::rng().random::<[u8; 16]>())
                .map_err(|e| BootstrapError::Hash(e.to_string()))?,
        )
        .map_err(|e| BootstrapError::Hash(e.to_string()))?
        .to_string();
    // A given key keeps its own token URI: the `aud` its backends already sign.
    let token_uri = given.map_or_else(|| token_uri(public_url), |k| k.token_uri.clone());

    let key_file = given.cloned().unwrap_or_else(|| KeyFile {
        project_id: project_id.clone(),
        key_id: key_id.clone(),
        private_key: key.private_key_pem.clone(),
        sub_account: sub_account.clone(),
        auth_uri: format!("{}/oauth2/v3/authorize", public_url.trim_end_matches('/')),
        token_uri: token_uri.clone(),
        auth_provider_cert_uri: format!("{}/oauth2/v3/certs", public_url.trim_end_matches('/')),
        client_cert_uri: format!(
            "{}/oauth2/v3/x509?client_id=",
            public_url.trim_end_matches('/')
        ),
    });
    // Several nodes may race here against one shared store: the store lets exactly one
    // bootstrap through. Only that node writes the key file and bootstrap.json, and only
    // once the store has accepted them, so no node keeps a key the store does not know.
    let accepted = store
        .bootstrap(Bootstrap {
            admin_username: "admin".into(),
            admin_password_hash: password_hash,
            admin_token_hash: ids::sha256_hex(&admin_token),
            project: Project {
                project_id: project_id.clone(),
                name: "Default project".into(),
                created_at: now_ms,
                push_enabled: true,
            },
            app: App {
                client_id: client_id.clone(),
                project_id: project_id.clone(),
                package_name: PACKAGE_NAME.into(),
                name: "Demo app".into(),
                created_at: now_ms,
                app_category: "other".into(),
                overrides: Default::default(),
            },
            service_account: ServiceAccount {
                key_id,
                project_id: project_id.clone(),
                sub_account,
                public_key_pem: key.public_key_pem,
                token_uri,
                created_at: now_ms,
                revoked_at: None,
            },
        })
        .await;
    match accepted {
        Ok(()) => {}
        Err(StoreError::Conflict(why)) => {
            tracing::info!(
                data_dir = %data_dir.display(), why = %why,
                "The store is already bootstrapped (by another node starting at the same moment); serving its project."
            );
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    let key_path = data_dir.join(SERVICE_ACCOUNT_FILE);
    write_private_json(&key_path, &key_file)?;

    let info = BootstrapInfo {
        push_api_url: public_url.trim_end_matches('/').to_owned(),
        console_url: format!("{}/console", public_url.trim_end_matches('/')),
        admin_username: "admin".into(),
        admin_password,
        admin_token,
        project_id,
        client_id,
        package_name: PACKAGE_NAME.into(),
        service_account_file: absolute(&key_path).display().to_string(),
    };
    write_private_json(&data_dir.join(BOOTSTRAP_FILE), &info)?;
    Ok(Some(info))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Write JSON readable by the owner only (it holds a private key or a password).
fn write_private_json(path: &Path, value: &impl Serialize) -> Result<(), BootstrapError> {
    let err = |source| BootstrapError::Write {
        path: path.to_owned(),
        source,
    };
    let mut text = serde_json::to_string_pretty(value).map_err(|e| err(e.into()))?;
    text.push('\n');
    // A temporary name, then a rename: a reader never sees half a file.
    crate::storage::write_atomically(path, text.as_bytes(), 0o600).map_err(err)
}
