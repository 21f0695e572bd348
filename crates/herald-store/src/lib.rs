//! Herald's persistent state: small traits split by concern, implemented by each engine
//! (the embedded SQLite one in [`sqlite`], PostgreSQL for several nodes in [`postgres`]),
//! chosen from a URL by [`open_store`] and checked by one generic conformance story.
//!
//! Invariants: this crate knows nothing of HTTP or WebSocket, and its errors name no
//! engine. Every write a caller awaits is durable when the future resolves (engines
//! group-commit many callers' writes into one transaction and one fsync). A delivery is
//! one compact row keyed by integers; it only moves forward through
//! [`herald_core::DeliveryState`], and the push report reads counters kept in the same
//! transaction as each move.

mod charges;
mod codes;
mod console;
mod model;
mod open;
pub mod postgres;
mod receipt_choice;
mod rights_change;
pub mod sqlite;

use async_trait::async_trait;
use std::sync::Arc;

use herald_core::live::LiveViewState;
use herald_core::quota::CounterKey;
use herald_core::receipt::ReceiptFate;
use tokio::sync::Notify;

pub use console::*;
pub use model::*;
pub use open::{OpenOptions, StoreUrl, migrate_store, open_store};
pub use receipt_choice::{ConfigEntry, ConfigIndex};

/// Storage failures. Callers log them and answer `81000001`; they never reach a client.
/// The engine's own error is kept as text: no caller may depend on which engine it was.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (I/O, constraint, corruption …); the text says how.
    #[error("storage engine: {0}")]
    Engine(String),
    /// The engine refused the write for lack of space.
    #[error("storage is full: {0}")]
    Full(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shut down")]
    Closed,
    #[error("conflict: {0}")]
    Conflict(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Live sessions one user may hold (the bootstrap token aside); the oldest is revoked
/// when another opens.
pub const MAX_SESSIONS_PER_USER: i64 = 64;

/// Send-budget rows are kept this many seconds past their second, then pruned.
pub const SEND_BUDGET_KEPT_SECS: i64 = 60;

/// Users, their sessions, project membership and the audit log.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Whether the first-start bootstrap has run.
    async fn is_bootstrapped(&self) -> Result<bool>;
    /// Create the first admin (the instance admin, with a session that never expires),
    /// project, app and service account in one transaction.
    /// Exactly one call succeeds per store, however many nodes try at the same moment:
    /// every other one fails with [`StoreError::Conflict`] and writes nothing (so a node
    /// that gets `Conflict` knows another one bootstrapped, and serves that project).
    async fn bootstrap(&self, b: Bootstrap) -> Result<()>;
    /// The session whose token hashes to `token_hash`, expired or revoked ones included
    /// (the caller decides), with its user.
    async fn session(&self, token_hash: &str) -> Result<Option<Session>>;
    /// Open a session. A user keeps at most [`MAX_SESSIONS_PER_USER`] live sessions
    /// besides the bootstrap one: opening another revokes their oldest.
    async fn create_session(&self, session: NewSession) -> Result<()>;
    /// Note that a request used the session at `now_ms` (for the idle expiry).
    async fn touch_session(&self, token_hash: &str, now_ms: i64) -> Result<()>;
    /// Revoke a session (a logout); `false` when there is no such live session.
    async fn revoke_session(&self, token_hash: &str, now_ms: i64) -> Result<bool>;
    /// A user and their password hash, for a login.
    async fn user_by_username(&self, username: &str) -> Result<Option<(User, String)>>;
    /// Create a user; `None` when the user name is taken.
    async fn create_user(&self, user: NewUser) -> Result<Option<User>>;
    /// Every user, by user name.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Replace a user's password hash and revoke their other sessions (every one but
    /// `keep_token_hash`, and the bootstrap one is kept too).
    async fn set_password(
        &self,
        user_id: i64,
        password_hash: &str,
        keep_token_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<()>;
    /// Make a user a member of a project with `role`, or change their role.
    async fn set_member(
        &self,
        project_id: &str,
        user_id: i64,
        role: &str,
        now_ms: i64,
    ) -> Result<()>;
    /// Remove a member; `false` when they were not one.
    async fn remove_member(&self, project_id: &str, user_id: i64) -> Result<bool>;
    /// A project's members, by user name.
    async fn members(&self, project_id: &str) -> Result<Vec<Member>>;
    /// The projects a user is a member of, with their role there.
    async fn memberships(&self, user_id: i64) -> Result<Vec<Member>>;
    /// Append to the audit log.
    async fn append_audit(&self, entry: AuditEntry) -> Result<()>;
    /// A project's audit log (`None`: every entry, instance-wide ones included), newest
    /// first, at most `limit` entries older than `before_ms` (all when `None`).
    async fn audit(
        &self,
        project_id: Option<&str>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>>;
}

/// Projects, apps, service-account keys and scenario rights.
#[async_trait]
pub trait AppStore: Send + Sync {
    async fn create_project(&self, project: Project) -> Result<()>;
    async fn project(&self, project_id: &str) -> Result<Option<Project>>;
    async fn list_projects(&self) -> Result<Vec<Project>>;
    /// Switch a project's push service on or off; `None` when there is no such project.
    async fn set_push_enabled(&self, project_id: &str, enabled: bool) -> Result<Option<Project>>;
    async fn create_app(&self, app: App) -> Result<()>;
    async fn app(&self, client_id: &str) -> Result<Option<App>>;
    async fn list_apps(&self, project_id: Option<&str>) -> Result<Vec<App>>;
    /// Apply `update`; `None` when there is no such app.
    async fn update_app(&self, client_id: &str, update: AppUpdate) -> Result<Option<App>>;
    async fn create_service_account(&self, account: ServiceAccount) -> Result<()>;
    async fn list_service_accounts(&self, project_id: &str) -> Result<Vec<ServiceAccount>>;
    /// A key, revoked or not (see [`ServiceAccount::revoked_at`]).
    async fn service_account(&self, key_id: &str) -> Result<Option<ServiceAccount>>;
    /// Revoke a key: no JWT it signed may be accepted from now on. It stays listed, with
    /// the time of its first revocation. `None` when there is no such key.
    async fn revoke_service_account(
        &self,
        key_id: &str,
        now_ms: i64,
    ) -> Result<Option<ServiceAccount>>;
    /// Current state of every right the app has ever requested or been granted.
    async fn rights(&self, client_id: &str) -> Result<Vec<RightRecord>>;
    /// The app's right history, oldest first.
    async fn right_history(&self, client_id: &str) -> Result<Vec<RightEvent>>;
    /// Apply an operator's action atomically; `Ok(Err(why))` when the action is not
    /// allowed from the right's current state (or a request's scenario is confirmed
    /// twice). A request records its scenario and sample message and clears the
    /// previous confirmation; a confirm records who confirmed.
    async fn change_right(
        &self,
        change: RightChange,
    ) -> Result<std::result::Result<RightRecord, String>>;
}

/// Devices and their push tokens, each with the server's own integer number.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Register a device; returns its number.
    async fn register_device(&self, device: NewDevice) -> Result<i64>;
    /// The device's number and secret hash, for a `hello`; marks it seen at `now_ms`
    /// (devices unseen for the retention period are pruned) and numbers the hello
    /// ([`DeviceAuth::session`], one more than the device's previous one, across nodes).
    async fn device_auth(&self, device_id: &str, now_ms: i64) -> Result<Option<DeviceAuth>>;
    /// The device's active token for the app, creating it from `candidate` when none
    /// exists; `None` when there is no such app.
    async fn token_for(
        &self,
        device: i64,
        client_id: &str,
        candidate: NewToken,
    ) -> Result<Option<TokenRecord>>;
    /// Mark the device's active token for the app deleted (ArkTS `deleteToken`); returns
    /// the token, or `None` when the app had none. The next `token_for` makes a new one.
    async fn delete_token(
        &self,
        device: i64,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Option<String>>;
    /// Active tokens among `tokens`, in any order; unknown or deleted ones are absent.
    async fn lookup_tokens(&self, tokens: &[String]) -> Result<Vec<TokenRecord>>;
}

/// Daily quota counters and Live View states (committed with the sends that change them).
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// Stored usage of the given daily counters (absent = 0).
    async fn quota_usage(&self, keys: &[CounterKey]) -> Result<Vec<(CounterKey, u32)>>;
    /// Stored Live View states of the given activities (absent ones are omitted).
    async fn live_views(&self, keys: &[LiveViewKey]) -> Result<Vec<(LiveViewKey, LiveViewState)>>;
    /// Take up to `want` requests of the app's send budget for `second` (Unix seconds),
    /// `limit` a second in all, shared by every node on this store; returns how many were
    /// granted (`0..=want`, 0 once the second's budget is spent). Atomic: callers racing
    /// on one second never get more than `limit` together.
    async fn take_send_budget(
        &self,
        client_id: &str,
        second: i64,
        want: u32,
        limit: u32,
    ) -> Result<u32>;
}

/// What a `take_send_budget` statement that added `want` and left `used` granted: the
/// part of `want` within `limit` (the stored count may pass the limit by less than `want`).
pub(crate) fn budget_granted(used: i64, want: u32, limit: u32) -> u32 {
    let before = used - i64::from(want);
    let room = (i64::from(limit) - before).max(0);
    u32::try_from(room.min(i64::from(want))).unwrap_or(0)
}

/// Messages and their deliveries: the send path's data plane.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Durably store one accepted request: its message once, one compact delivery per
    /// deliverable token, its drops, the quota usage and Live View states it took.
    /// Applies `collapseKey` replacement and the offline cache cap (for deliveries marked
    /// `offline`), returning what it replaced. Every outcome with a receipt code queues
    /// its receipt in the same transaction (see [`ReceiptStore`]).
    async fn enqueue(&self, batch: Enqueue) -> Result<EnqueueResult>;
    /// Queued, unexpired deliveries for the device, oldest first.
    async fn pending(&self, device: i64, now_ms: i64) -> Result<Vec<StoredDelivery>>;
    /// Apply what devices said (acks and reports) in one write. Each moves its delivery
    /// forward only (see [`herald_core::DeliveryState::advance`]); one that is not the
    /// device's, or not forward, changes nothing and queues no receipt. Returns how many
    /// moved a delivery.
    async fn record_device_reports(&self, reports: Vec<DeviceReport>) -> Result<u64>;
    /// End queued deliveries whose TTL has passed (at most `limit`); returns how many.
    async fn expire_due(&self, now_ms: i64, limit: usize) -> Result<u64>;
    /// Withdraw notifications: queued ones become `revoked`; devices that may show one
    /// get a revoke command queued like a message.
    async fn revoke(&self, revoke: Revoke) -> Result<RevokeResult>;
    /// The lifecycle of one delivery (by its wire id), oldest first.
    async fn events_for(&self, message_id: &str) -> Result<Vec<EventRecord>>;
    /// The lifecycle of every delivery (and drop) of a request, optionally of one
    /// token, oldest first.
    async fn events_of_request(
        &self,
        request_id: &str,
        token: Option<&str>,
    ) -> Result<Vec<EventRecord>>;
    /// Count of deliveries per state (for metrics and tests).
    async fn delivery_counts(&self) -> Result<Vec<(String, u64)>>;
}

/// Receipt configurations and the receipt outbox the dispatcher drains.
#[async_trait]
pub trait ReceiptStore: Send + Sync {
    async fn create_receipt_config(&self, config: ReceiptConfig) -> Result<()>;
    async fn receipt_config(&self, receipt_id: &str) -> Result<Option<ReceiptConfig>>;
    /// A project's receipt configurations, its apps' included, oldest first.
    async fn list_receipt_configs(&self, project_id: &str) -> Result<Vec<ReceiptConfig>>;
    /// Delete a configuration; its pending receipts are dropped. `None` when there is no
    /// such config, else how many pending receipts were dropped.
    async fn delete_receipt_config(&self, receipt_id: &str, now_ms: i64) -> Result<Option<u64>>;
    /// Pending receipts due at `now_ms`: up to `per_config` per configuration, oldest
    /// first, grouped by configuration. An engine shared by several nodes hands each row
    /// to one node at a time: it claims what it returns for a lease, during which only the
    /// same store handle (node) sees those rows again, until it settles them.
    async fn due_receipts(&self, now_ms: i64, per_config: usize) -> Result<Vec<DueReceipts>>;
    /// Record what became of callback attempts (pending receipts only; one attempt each).
    async fn settle_receipts(&self, fates: &[(i64, ReceiptFate)], now_ms: i64) -> Result<()>;
    /// Make every pending receipt that was already attempted due now (on start: they are
    /// sent at once); one still waiting for its device's report keeps its time.
    async fn retry_pending_receipts_now(&self, now_ms: i64) -> Result<u64>;
    /// How many receipts are pending.
    async fn pending_receipts(&self) -> Result<u64>;
    /// Count of receipts per state (`pending`, `sent`, `dropped`), for the report.
    async fn receipt_counts(&self) -> Result<Vec<(String, u64)>>;
    /// Signalled after every commit that queued receipts (the dispatcher waits on it); an
    /// engine shared by several nodes also signals, soon, the commits of other nodes.
    fn receipts_queued(&self) -> Arc<Notify>;
}

/// The push report, read from counters kept with every change.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Counts by outcome and receipt code since `since_ms`, optionally of one project or
    /// one app.
    async fn report(&self, filter: ReportFilter) -> Result<Vec<ReportRow>>;
    /// The same counters by hour (hours since the epoch), push type, category (`""`:
    /// none) and outcome, for the report's series over time.
    async fn report_series(&self, filter: ReportFilter) -> Result<Vec<SeriesRow>>;
}

/// Retention and lifecycle of the store itself.
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Delete at most `batch` records of each kind that are past their retention at
    /// `now_ms` (quota counters: of days before `quota_cutoff_day`, `YYYYMMDD`). Small
    /// batches, each its own short write, so sends never stall behind it.
    async fn prune(
        &self,
        retention: &Retention,
        now_ms: i64,
        quota_cutoff_day: i32,
        batch: usize,
    ) -> Result<Pruned>;
    /// Size of the database on disk in bytes (main file plus write-ahead log).
    async fn size_on_disk(&self) -> Result<u64>;
    /// Flush and stop background work; later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}

/// What the emulator (`herald serve --emulator`) needs beyond the rest: a clean slate
/// between a backend's tests.
#[async_trait]
pub trait EmulatorStore: Send + Sync {
    /// Forget all traffic in one transaction: devices, tokens (and the test devices
    /// registered with them), messages, deliveries,
    /// drops, receipts, report counters, quota counters, Live View states and send
    /// budgets. Admins, projects, apps, keys, rights and receipt configurations stay.
    async fn forget_traffic(&self) -> Result<()>;
}

/// Everything Herald keeps: every concern above, from one engine.
pub trait Store:
    AccountStore
    + AppStore
    + DeviceStore
    + QuotaStore
    + MessageStore
    + ReceiptStore
    + ReportStore
    + ConsoleStore
    + Maintenance
    + EmulatorStore
    + std::fmt::Debug
    + 'static
{
}

impl<T> Store for T where
    T: AccountStore
        + AppStore
        + DeviceStore
        + QuotaStore
        + MessageStore
        + ReceiptStore
        + ReportStore
        + ConsoleStore
        + Maintenance
        + EmulatorStore
        + std::fmt::Debug
        + 'static
{
}
