//! Herald's persistent state behind one `Store` trait, with the embedded SQLite backend.
//!
//! Invariant: this crate knows nothing of HTTP or WebSocket. Every write that a caller
//! awaits is durable when the future resolves (the SQLite backend group-commits many
//! callers' writes into one transaction and one fsync).

mod model;
pub mod sqlite;

use async_trait::async_trait;
use std::sync::Arc;

use herald_core::quota::CounterKey;
use herald_core::receipt::ReceiptFate;
use tokio::sync::Notify;

pub use model::*;

/// Storage failures. Callers log them and answer `81000001`; they never reach a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the store is shut down")]
    Closed,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything Herald keeps. Implementations: [`sqlite::SqliteStore`] (embedded default).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Whether the first-start bootstrap has run.
    async fn is_bootstrapped(&self) -> Result<bool>;
    /// Create the first admin, project, app and service account in one transaction.
    async fn bootstrap(&self, b: Bootstrap) -> Result<()>;

    async fn create_project(&self, project: Project) -> Result<()>;
    async fn create_app(&self, app: App) -> Result<()>;
    async fn project(&self, project_id: &str) -> Result<Option<Project>>;
    async fn list_projects(&self) -> Result<Vec<Project>>;
    async fn app(&self, client_id: &str) -> Result<Option<App>>;
    async fn list_apps(&self, project_id: Option<&str>) -> Result<Vec<App>>;
    /// Apply `update`; `None` when there is no such app.
    async fn update_app(&self, client_id: &str, update: AppUpdate) -> Result<Option<App>>;
    async fn create_service_account(&self, account: ServiceAccount) -> Result<()>;
    async fn list_service_accounts(&self, project_id: &str) -> Result<Vec<ServiceAccount>>;
    async fn service_account(&self, key_id: &str) -> Result<Option<ServiceAccount>>;

    /// Current state of every right the app has ever requested or been granted.
    async fn rights(&self, client_id: &str) -> Result<Vec<RightRecord>>;
    /// The app's right history, oldest first.
    async fn right_history(&self, client_id: &str) -> Result<Vec<RightEvent>>;
    /// Apply an operator's action atomically; `Ok(Err(why))` when the action is not
    /// allowed from the right's current state.
    async fn change_right(
        &self,
        change: RightChange,
    ) -> Result<std::result::Result<RightRecord, String>>;

    /// Stored usage of the given daily counters (absent = 0).
    async fn quota_usage(&self, keys: &[CounterKey]) -> Result<Vec<(CounterKey, u32)>>;
    /// Stored Live View states of the given activities (absent ones are omitted).
    async fn live_views(
        &self,
        keys: &[LiveViewKey],
    ) -> Result<Vec<(LiveViewKey, herald_core::live::LiveViewState)>>;
    /// Withdraw notifications: queued ones become `revoked`; devices that may show one
    /// get a revoke command queued like a message.
    async fn revoke(&self, revoke: Revoke) -> Result<RevokeResult>;
    /// The admin whose bearer token hashes to `token_hash`.
    async fn admin_by_token_hash(&self, token_hash: &str) -> Result<Option<Admin>>;
    /// An admin and their password hash, for a login.
    async fn admin_by_username(&self, username: &str) -> Result<Option<(Admin, String)>>;
    /// Another bearer token for an admin (a console login).
    async fn create_admin_token(&self, admin_id: i64, token_hash: &str, now_ms: i64) -> Result<()>;
    /// Event counts by outcome and receipt code since `since_ms`, optionally of one
    /// project or one app: the push report.
    async fn report(&self, filter: ReportFilter) -> Result<Vec<ReportRow>>;

    async fn register_device(&self, device: NewDevice) -> Result<()>;
    async fn device_secret_hash(&self, device_id: &str) -> Result<Option<String>>;
    /// The device's active token for the app, creating it from `candidate` when none exists.
    async fn token_for(
        &self,
        device_id: &str,
        client_id: &str,
        candidate: NewToken,
    ) -> Result<String>;
    /// Mark the device's active token for the app deleted at `now_ms` (ArkTS
    /// `deleteToken`); returns the token, or `None` when the app had none. The next
    /// `token_for` creates a new one.
    async fn delete_token(
        &self,
        device_id: &str,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Option<String>>;
    /// Active tokens among `tokens`, in any order; unknown or deleted ones are absent.
    async fn lookup_tokens(&self, tokens: &[String]) -> Result<Vec<TokenRecord>>;

    /// Durably store one accepted request, its queued deliveries and its drop events.
    /// Applies `collapseKey` replacement and the offline cache cap, returning what it
    /// replaced so the caller can report it.
    ///
    /// Every event with a receipt code (here and in `ack`, `record_reports`,
    /// `expire_due`) queues its receipt in the same transaction, for the config chosen by
    /// `requests.receipt_id` (if it exists in the project and is not another app's), else
    /// the oldest config of the token's app, else the oldest project-level config.
    async fn enqueue(&self, batch: Enqueue) -> Result<EnqueueResult>;
    /// Queued, unexpired deliveries for the device, oldest first.
    async fn pending(&self, device_id: &str, now_ms: i64) -> Result<Vec<StoredDelivery>>;
    /// Mark deliveries acknowledged by the device (ignores ids that are not its own or not
    /// queued) and record `delivered` events.
    async fn ack(&self, device_id: &str, message_ids: &[String], now_ms: i64) -> Result<()>;
    /// Record device-reported outcomes (shown, suppressed, clicked) for the device's messages.
    async fn record_reports(&self, device_id: &str, reports: &[Report]) -> Result<()>;
    /// Expire queued deliveries whose TTL has ended; returns how many.
    async fn expire_due(&self, now_ms: i64) -> Result<u64>;
    /// The lifecycle of one delivery, oldest first (for tests, reports and receipts).
    async fn events_for(&self, message_id: &str) -> Result<Vec<EventRecord>>;
    /// Count of deliveries per state (for metrics and the report).
    async fn delivery_counts(&self) -> Result<Vec<(String, u64)>>;

    /// Add a receipt configuration.
    async fn create_receipt_config(&self, config: ReceiptConfig) -> Result<()>;
    async fn receipt_config(&self, receipt_id: &str) -> Result<Option<ReceiptConfig>>;
    /// A project's receipt configurations, its apps' included, oldest first.
    async fn list_receipt_configs(&self, project_id: &str) -> Result<Vec<ReceiptConfig>>;
    /// Delete a configuration; its pending receipts are dropped. `None` when there is no
    /// such config, else how many pending receipts were dropped.
    async fn delete_receipt_config(&self, receipt_id: &str, now_ms: i64) -> Result<Option<u64>>;
    /// Pending receipts due at `now_ms`: up to `per_config` per configuration, oldest
    /// first, grouped by configuration.
    async fn due_receipts(&self, now_ms: i64, per_config: usize) -> Result<Vec<DueReceipts>>;
    /// Record what became of callback attempts (pending receipts only; one attempt each).
    async fn settle_receipts(&self, fates: &[(i64, ReceiptFate)], now_ms: i64) -> Result<()>;
    /// Make every pending receipt due now (on start: pending receipts are sent at once).
    async fn retry_pending_receipts_now(&self, now_ms: i64) -> Result<u64>;
    /// How many receipts are pending.
    async fn pending_receipts(&self) -> Result<u64>;
    /// Count of receipts per state (`pending`, `sent`, `dropped`), for the report.
    async fn receipt_counts(&self) -> Result<Vec<(String, u64)>>;
    /// Signalled after every commit that queued receipts (the dispatcher waits on it).
    fn receipts_queued(&self) -> Arc<Notify>;

    /// Flush and stop background work; later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}
