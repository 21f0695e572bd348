//! Records the store reads and writes. Plain data; policy lives in `herald-core`.

use herald_core::Outcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub project_id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub client_id: String,
    pub project_id: String,
    pub package_name: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub key_id: String,
    pub project_id: String,
    pub sub_account: String,
    /// SPKI PEM. The private key is shown once and never stored.
    pub public_key_pem: String,
    /// The `token_uri` written into the key file; accepted as a JWT `aud`.
    pub token_uri: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub id: i64,
    pub username: String,
}

/// Everything the first start creates.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub admin_username: String,
    pub admin_password_hash: String,
    pub admin_token_hash: String,
    pub project: Project,
    pub app: App,
    pub service_account: ServiceAccount,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub device_id: String,
    /// SHA-256 of the device secret, hex. Secrets are 256-bit random, so a fast hash is
    /// enough; a slow password hash would only cost every reconnect.
    pub secret_hash: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: String,
    pub created_at: i64,
}

/// An active token and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token: String,
    pub device_id: String,
    pub client_id: String,
    pub project_id: String,
}

/// One accepted request: stored once, with one delivery per deliverable token.
#[derive(Debug, Clone)]
pub struct Enqueue {
    pub request: NewRequest,
    pub deliveries: Vec<NewDelivery>,
    /// Tokens dropped before queueing (unknown token → 5, quotas → 256 …).
    pub drops: Vec<NewDrop>,
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub request_id: String,
    pub project_id: String,
    pub push_type: u8,
    /// The normalised payload JSON forwarded to devices.
    pub payload: String,
    pub bi_tag: Option<String>,
    pub receipt_id: Option<String>,
    pub test: bool,
    pub ttl_secs: u32,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub message_id: String,
    pub token: String,
    pub device_id: String,
    pub client_id: String,
    pub expires_at: i64,
    pub collapse_key: Option<u8>,
    pub notify_id: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct NewDrop {
    pub message_id: String,
    pub token: String,
    pub client_id: Option<String>,
    pub outcome: Outcome,
}

/// What `enqueue` did beyond inserting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueResult {
    /// Sequence numbers assigned to the new deliveries, in input order.
    pub seqs: Vec<i64>,
    /// Message ids of earlier queued deliveries replaced by this batch (receipt 15).
    pub replaced: Vec<String>,
}

/// A queued delivery, with what the device needs to receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDelivery {
    pub seq: i64,
    pub message_id: String,
    pub request_id: String,
    pub token: String,
    pub device_id: String,
    pub client_id: String,
    pub push_type: u8,
    pub payload: String,
    pub bi_tag: Option<String>,
    pub test: bool,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A device-reported outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub message_id: String,
    pub outcome: Outcome,
    pub at: i64,
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub message_id: String,
    pub outcome: Outcome,
    pub at: i64,
}
