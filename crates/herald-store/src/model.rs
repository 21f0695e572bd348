//! Records the store reads and writes. Plain data; policy lives in `herald-core`.

use herald_core::live::LiveViewState;
use herald_core::policy::Charge;
use herald_core::quota::{CounterKey, LimitOverrides};
use herald_core::rights::{RightAction, RightState};
use herald_core::{Category, Outcome, ReceiptCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub project_id: String,
    pub name: String,
    pub created_at: i64,
    /// Whether the project may send and revoke (`false`: both answer 80300002).
    pub push_enabled: bool,
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
    /// The scenario text and sample message of the latest request.
    pub scenario: Option<String>,
    pub sample_message: Option<String>,
    /// Who confirmed the latest request's scenario matches the category, and when.
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<i64>,
}

/// One step in a right's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightEvent {
    pub client_id: String,
    pub name: String,
    pub action: String,
    pub state: RightState,
    pub reason: Option<String>,
    /// The user name of whoever took the step.
    pub actor: String,
    pub at: i64,
    /// With a request: its scenario text and sample message.
    pub scenario: Option<String>,
    pub sample_message: Option<String>,
}

/// An operator's action on a right.
#[derive(Debug, Clone, Default)]
pub struct RightChange {
    pub client_id: String,
    pub name: String,
    pub action: RightAction,
    pub reason: Option<String>,
    pub actor: String,
    pub at: i64,
    /// With a request: the scenario text and a sample message.
    pub scenario: Option<String>,
    pub sample_message: Option<String>,
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
    /// When an operator revoked the key; a revoked key authenticates nothing.
    pub revoked_at: Option<i64>,
}

/// A user: the instance admin (the bootstrap one, and any other made one) or a person
/// who holds roles in projects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub instance_admin: bool,
    pub created_at: i64,
}

/// A user to create; `password_hash` is an argon2 PHC string.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password_hash: String,
    pub instance_admin: bool,
    pub created_at: i64,
}

/// How a session was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// The token written to `bootstrap.json`: never expires (revocable).
    Bootstrap,
    /// A login's bearer token, for scripts.
    Bearer,
    /// A console login: an HttpOnly cookie with a CSRF token.
    Cookie,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Bootstrap => "bootstrap",
            SessionKind::Bearer => "bearer",
            SessionKind::Cookie => "cookie",
        }
    }

    pub fn parse(s: &str) -> Option<SessionKind> {
        Some(match s {
            "bootstrap" => SessionKind::Bootstrap,
            "bearer" => SessionKind::Bearer,
            "cookie" => SessionKind::Cookie,
            _ => return None,
        })
    }
}

/// A session to open: the SHA-256 of its secret token, never the token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: String,
    pub user_id: i64,
    pub kind: SessionKind,
    /// SHA-256 of the CSRF token (cookie sessions).
    pub csrf_hash: Option<String>,
    pub created_at: i64,
    /// `None`: never (the bootstrap token only).
    pub expires_at: Option<i64>,
}

/// A stored session with its user; the caller decides whether it is still valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub kind: SessionKind,
    pub csrf_hash: Option<String>,
    pub created_at: i64,
    /// Last time a request used it (updated at most once a minute).
    pub last_used_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A project member: a user and their one role there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub project_id: String,
    pub user_id: i64,
    pub username: String,
    /// `owner`, `operations`, `product`, `backend_developer` or `app_developer`.
    pub role: String,
    pub added_at: i64,
}

/// One entry of the audit log: who did what, when, from which address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The project it concerns; `None` for instance-wide changes (users).
    pub project_id: Option<String>,
    /// The user name.
    pub actor: String,
    /// What was done, e.g. `member.add`, `key.revoke`, `right.grant`.
    pub action: String,
    /// On what, and how (a sentence or `key=value` pairs).
    pub detail: String,
    /// The client address the request came from.
    pub address: String,
    pub at: i64,
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

/// What a `hello` with a credential needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    /// The server's number for the device.
    pub device: i64,
    pub secret_hash: String,
    /// This hello's number among the device's hellos (1, 2, …; its registration is 0):
    /// the connection with the highest is the device's current one, on whichever node.
    pub session: i64,
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
    /// The server's number for the token (deliveries are keyed by it).
    pub token_num: i64,
    /// The server's number for the device.
    pub device: i64,
    pub device_id: String,
    pub client_id: String,
    pub project_id: String,
}

/// One delivery: a message for one token. On the wire it is `"<message>.<token>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId {
    pub message: i64,
    pub token: i64,
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.message, self.token)
    }
}

impl std::str::FromStr for DeliveryId {
    type Err = ();

    /// The wire form; anything else (including non-canonical numbers) is not an id.
    fn from_str(s: &str) -> Result<Self, ()> {
        let (m, t) = s.split_once('.').ok_or(())?;
        let canonical = |p: &str| {
            !p.is_empty()
                && p.len() <= 18
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'))
        };
        if !canonical(m) || !canonical(t) {
            return Err(());
        }
        Ok(DeliveryId {
            message: m.parse().map_err(|_| ())?,
            token: t.parse().map_err(|_| ())?,
        })
    }
}

/// One accepted request: its message stored once, one delivery per deliverable token.
#[derive(Debug, Clone)]
pub struct Enqueue {
    pub message: NewMessage,
    pub deliveries: Vec<NewDelivery>,
    /// Tokens dropped before queueing (unknown token → 5, quotas → 256 …).
    pub drops: Vec<NewDrop>,
    /// Counters the request takes once, whatever its tokens (the project's test
    /// messages). The store takes them with the deliveries' own [`NewDelivery::charges`]
    /// in the same transaction, each only while it stays within its limit; when one of
    /// these does not fit, every delivery is dropped with its code instead.
    pub charges: Vec<Charge>,
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

/// What a stored message is to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A Push Kit message.
    Message,
    /// A `messages:revoke` command (withdraw `notify_id`); no lifecycle, no receipt.
    Revoke,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Message => "message",
            MessageKind::Revoke => "revoke",
        }
    }
}

/// A message, stored once for all its tokens.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub request_id: String,
    pub project_id: String,
    pub push_type: u8,
    pub kind: MessageKind,
    /// The normalised payload JSON forwarded to devices.
    pub payload: String,
    pub bi_tag: Option<String>,
    pub receipt_id: Option<String>,
    pub test: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub collapse_key: Option<u8>,
    pub notify_id: Option<u32>,
    /// Widgets (push type 1): the `formId` receipts report.
    pub form_id: Option<i64>,
    /// One final receipt per delivery: when set, the receipt of an ack waits this long
    /// (ms) for the device's report, which then decides it (shown → 0, suppressed → its
    /// code); with no report in time, 0 is posted. `None`: the ack posts 0 at once and a
    /// later report posts its own code.
    pub receipt_hold_ms: Option<i64>,
}

/// One token of a message.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub token: i64,
    pub device: i64,
    pub client_id: String,
    /// The effective category after any downgrade, for notifications.
    pub category: Option<Category>,
    /// For background messages: the effective `backgroundMode` (1 only with the right).
    pub background_mode: Option<u8>,
    /// The device is not connected: enforce the offline cache cap for its token.
    pub offline: bool,
    /// The quota counters this delivery takes, in the policy's order
    /// ([`herald_core::policy::QuotaContext::charges`]). The store takes all of them or
    /// none ([`herald_core::policy::take_all`]) in the transaction that queues the
    /// delivery: a counter another request (on any node) filled meanwhile turns the
    /// delivery into a drop with that charge's code (MARKETING → 256), reported in
    /// [`EnqueueResult::refused`].
    pub charges: Vec<Charge>,
}

/// A token dropped before queueing.
#[derive(Debug, Clone)]
pub struct NewDrop {
    /// The token as sent (receipts report it).
    pub token: String,
    /// `(token number, device number)` when the token is known.
    pub known: Option<(i64, i64)>,
    /// The token's app, when known (its receipt goes to that app's configuration).
    pub client_id: Option<String>,
    pub code: ReceiptCode,
}

/// What `enqueue` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueResult {
    /// The message's number (each delivery's id is `(message, token)`).
    pub message: i64,
    /// Earlier queued deliveries this batch replaced (receipt 15).
    pub replaced: Vec<DeliveryId>,
    /// Deliveries the store dropped instead of queueing because a counter they charge
    /// was full when the request committed (filled by another request meanwhile, on
    /// this node or another): `(token number, receipt code)`. Never route these.
    pub refused: Vec<(i64, ReceiptCode)>,
    /// Every counter the request charged, as the commit left it: the stored count when
    /// the request took it, its limit when it was full. A node's cache of counters
    /// catches up with other nodes' sends from these.
    pub counters: Vec<(CounterKey, u32)>,
}

/// A `messages:revoke` call: withdraw the notifications with `notify_id` of the given
/// push type from these tokens.
#[derive(Debug, Clone)]
pub struct Revoke {
    /// The revoke request's own id (its commands are stored under it).
    pub request_id: String,
    pub project_id: String,
    pub push_type: u8,
    pub notify_id: u32,
    pub tokens: Vec<TokenRecord>,
    pub now: i64,
}

impl Revoke {
    /// The command message a revoke stores (once, for every token it reaches): the
    /// payload devices read, kept until the longest TTL.
    pub fn command(&self) -> NewMessage {
        NewMessage {
            request_id: self.request_id.clone(),
            project_id: self.project_id.clone(),
            push_type: self.push_type,
            kind: MessageKind::Revoke,
            payload: serde_json::json!({"revoke": {"notifyId": self.notify_id}}).to_string(),
            bi_tag: None,
            receipt_id: None,
            test: false,
            created_at: self.now,
            expires_at: self.now + i64::from(herald_core::send::MAX_TTL_SECS) * 1000,
            collapse_key: None,
            notify_id: Some(self.notify_id),
            form_id: None,
            receipt_hold_ms: None,
        }
    }
}

/// What a revoke did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevokeResult {
    /// Queued messages that will now never be delivered.
    pub revoked: Vec<DeliveryId>,
    /// Delivered or shown (not tapped) notifications the devices are told to remove.
    pub withdrawn: Vec<DeliveryId>,
    /// Revoke commands queued for devices that may show the notification (deliver them
    /// like messages).
    pub commands: Vec<StoredDelivery>,
}

/// A queued delivery, with what the device needs to receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDelivery {
    pub id: DeliveryId,
    pub request_id: String,
    pub token: String,
    pub device: i64,
    pub client_id: String,
    pub push_type: u8,
    pub kind: MessageKind,
    pub payload: String,
    pub bi_tag: Option<String>,
    pub test: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub category: Option<Category>,
    pub notify_id: Option<u32>,
    pub background_mode: Option<u8>,
}

/// Something a device said about one of its deliveries: an ack (`Delivered`) or a report
/// (shown, suppressed, clicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceReport {
    pub device: i64,
    pub id: DeliveryId,
    pub outcome: Outcome,
    pub at: i64,
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// The delivery's wire id (`""` for a drop of an unknown token).
    pub message_id: String,
    pub outcome: Outcome,
    pub at: i64,
}

/// How long each kind of record is kept, in milliseconds. Queued deliveries are kept
/// until their TTL regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Deliveries that ended (or were delivered) and their messages, counted from the
    /// message's creation.
    pub deliveries_ms: i64,
    /// Receipts sent or dropped.
    pub receipts_ms: i64,
    /// Push report counters.
    pub report_ms: i64,
    /// Quota counters of past days.
    pub quota_days: i32,
    /// Devices (and their tokens) not seen for this long; deleted tokens after it too.
    pub idle_devices_ms: i64,
    /// Audit log entries.
    pub audit_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: i64 = 86_400_000;
        Retention {
            deliveries_ms: 7 * DAY,
            receipts_ms: 7 * DAY,
            report_ms: 90 * DAY,
            quota_days: 2,
            idle_devices_ms: 270 * DAY,
            audit_ms: 365 * DAY,
        }
    }
}

/// How many records one `prune` call deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deliveries: u64,
    pub messages: u64,
    pub receipts: u64,
    pub report_rows: u64,
    pub quota_rows: u64,
    /// Send-budget rows of seconds long past.
    pub send_budget_rows: u64,
    pub devices: u64,
    pub tokens: u64,
    /// Audit log entries past their retention.
    pub audit_rows: u64,
    /// Sessions that expired or were revoked.
    pub sessions: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.deliveries
            + self.messages
            + self.receipts
            + self.report_rows
            + self.quota_rows
            + self.send_budget_rows
            + self.devices
            + self.tokens
            + self.audit_rows
            + self.sessions
    }
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

/// One counter of the report's series: how many reached `outcome` in `hour` (hours since
/// the epoch) for messages of `push_type` and `category` (`""` when none applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRow {
    pub hour: i64,
    pub push_type: u8,
    pub category: String,
    pub outcome: String,
    pub count: u64,
}
