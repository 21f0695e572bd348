//! Records the store reads and writes. Plain data; policy lives in `herald-core`.

use herald_core::Outcome;
use herald_core::live::LiveViewState;
use herald_core::quota::{CounterKey, LimitOverrides};
use herald_core::rights::{RightAction, RightState};

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
    /// `news` or `other` (decides the MARKETING quota).
    pub app_category: String,
    pub overrides: LimitOverrides,
}

/// A change to an app's settings; `None` leaves a field as it is, `Some(None)` clears an
/// override back to the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppUpdate {
    pub app_category: Option<String>,
    pub marketing_per_day: Option<Option<u32>>,
    pub device_daily_total: Option<Option<u32>>,
    pub send_rate_per_sec: Option<Option<u32>>,
}

/// Where one right of one app stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightRecord {
    pub client_id: String,
    pub name: String,
    pub state: RightState,
    /// The scenario given with the latest request (or the latest action's reason).
    pub reason: Option<String>,
    pub updated_at: i64,
}

/// One step in a right's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightEvent {
    pub client_id: String,
    pub name: String,
    pub action: String,
    pub state: RightState,
    pub reason: Option<String>,
    pub actor: String,
    pub at: i64,
}

/// An operator's action on a right.
#[derive(Debug, Clone)]
pub struct RightChange {
    pub client_id: String,
    pub name: String,
    pub action: RightAction,
    pub reason: Option<String>,
    pub actor: String,
    pub at: i64,
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
    /// Quota counters this request consumed, committed with it.
    pub usage: Vec<(CounterKey, u32)>,
    /// Live View states this request changed, committed with it.
    pub live_views: Vec<(LiveViewKey, LiveViewState)>,
}

/// One activity on one device of one app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LiveViewKey {
    pub client_id: String,
    pub device_id: String,
    pub activity_id: i32,
}

/// A `messages:revoke` call: withdraw the notifications with `notify_id` of the given
/// push types from these tokens.
#[derive(Debug, Clone)]
pub struct Revoke {
    /// The revoke request's own id (its commands are stored under it).
    pub request_id: String,
    pub project_id: String,
    pub push_type: u8,
    pub notify_id: u32,
    /// (token, device_id, client_id) of each token to revoke on.
    pub tokens: Vec<(String, String, String)>,
    pub now: i64,
}

/// What a revoke did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevokeResult {
    /// Queued messages that will now never be delivered.
    pub revoked: Vec<String>,
    /// Revoke commands queued for devices that may show the notification, with their
    /// sequence numbers (deliver them like messages).
    pub commands: Vec<(i64, StoredDelivery)>,
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
    /// The effective category after any downgrade, for notifications.
    pub category: Option<String>,
    /// For background messages: the effective `backgroundMode` (1 only with the right).
    pub background_mode: Option<u8>,
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
    pub category: Option<String>,
    /// `message`, or `revoke` for a revoke command.
    pub kind: String,
    pub notify_id: Option<u32>,
    pub background_mode: Option<u8>,
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

/// Where an app's (or a whole project's) delivery receipts go.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceiptConfig {
    pub receipt_id: String,
    pub project_id: String,
    /// `Some` for an app-level config (wins over the project's).
    pub client_id: Option<String>,
    pub url: String,
    pub username: Option<String>,
    /// Base64 of the HMAC key for configs Herald generated; see `herald-server::receipts`.
    pub secret: String,
    /// Always `V2`.
    pub version: String,
    pub created_at: i64,
}

impl std::fmt::Debug for ReceiptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptConfig")
            .field("receipt_id", &self.receipt_id)
            .field("project_id", &self.project_id)
            .field("client_id", &self.client_id)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// One queued receipt status, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReceipt {
    /// Outbox id (ascending = queue order).
    pub id: i64,
    pub receipt_id: String,
    pub request_id: String,
    pub token: String,
    pub push_type: u8,
    /// `""` when the request had none.
    pub bi_tag: String,
    /// `""` when the token belongs to no known app.
    pub app_package_name: String,
    /// Widgets (push type 1): the payload's `formId`.
    pub form_id: Option<i64>,
    /// The receipt code.
    pub result: u32,
    /// When the event happened (ms).
    pub at: i64,
    /// Callback attempts so far.
    pub attempts: u32,
    pub created_at: i64,
}

/// The due receipts of one config, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReceipts {
    pub config: ReceiptConfig,
    pub receipts: Vec<PendingReceipt>,
}

/// What the push report counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFilter {
    pub project_id: Option<String>,
    pub client_id: Option<String>,
    pub since_ms: i64,
}

/// One line of the push report: how many (message, token) pairs reached `outcome` (with
/// receipt `code`) in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub outcome: String,
    pub code: Option<u32>,
    pub count: u64,
}
