//! The store as the node sees it, timed: every store call is recorded in the
//! `herald_store_call_seconds{op}` histogram (and a failed one in
//! `herald_store_call_errors_total{op}`), whichever engine answers it. A wrapper around
//! the engine, so that the engines stay free of the server's metrics and every call
//! (reads included) is measured the same way.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use herald_core::live::LiveViewState;
use herald_core::quota::CounterKey;
use herald_core::receipt::ReceiptFate;
use herald_store::*;
use tokio::sync::Notify;

/// A store whose calls are timed.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        MeteredStore { inner }
    }
}

/// Await `call`, recording how long it took under `op`.
async fn timed<T>(op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let out = call.await;
    metrics::histogram!("herald_store_call_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
    if out.is_err() {
        metrics::counter!("herald_store_call_errors_total", "op" => op).increment(1);
    }
    out
}

#[async_trait]
impl AccountStore for MeteredStore {
    async fn is_bootstrapped(&self) -> Result<bool> {
        timed("is_bootstrapped", self.inner.is_bootstrapped()).await
    }

    async fn bootstrap(&self, b: Bootstrap) -> Result<()> {
        timed("bootstrap", self.inner.bootstrap(b)).await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        timed("session", self.inner.session(token_hash)).await
    }

    async fn create_session(&self, session: NewSession) -> Result<()> {
        timed("create_session", self.inner.create_session(session)).await
    }

    async fn touch_session(&self, token_hash: &str, now_ms: i64) -> Result<()> {
        timed(
            "touch_session",
            self.inner.touch_session(token_hash, now_ms),
        )
        .await
    }

    async fn revoke_session(&self, token_hash: &str, now_ms: i64) -> Result<bool> {
        timed(
            "revoke_session",
            self.inner.revoke_session(token_hash, now_ms),
        )
        .await
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<(User, String)>> {
        timed("user_by_username", self.inner.user_by_username(username)).await
    }

    async fn create_user(&self, user: NewUser) -> Result<Option<User>> {
        timed("create_user", self.inner.create_user(user)).await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        timed("list_users", self.inner.list_users()).await
    }

    async fn set_password(
        &self,
        user_id: i64,
        password_hash: &str,
        keep_token_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        timed(
            "set_password",
            self.inner
                .set_password(user_id, password_hash, keep_token_hash, now_ms),
        )
        .await
    }

    async fn set_member(
        &self,
        project_id: &str,
        user_id: i64,
        role: &str,
        now_ms: i64,
    ) -> Result<()> {
        timed(
            "set_member",
            self.inner.set_member(project_id, user_id, role, now_ms),
        )
        .await
    }

    async fn remove_member(&self, project_id: &str, user_id: i64) -> Result<bool> {
        timed(
            "remove_member",
            self.inner.remove_member(project_id, user_id),
        )
        .await
    }

    async fn members(&self, project_id: &str) -> Result<Vec<Member>> {
        timed("members", self.inner.members(project_id)).await
    }

    async fn memberships(&self, user_id: i64) -> Result<Vec<Member>> {
        timed("memberships", self.inner.memberships(user_id)).await
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        timed("append_audit", self.inner.append_audit(entry)).await
    }

    async fn audit(
        &self,
        project_id: Option<&str>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        timed("audit", self.inner.audit(project_id, before_ms, limit)).await
    }
}

#[async_trait]
impl AppStore for MeteredStore {
    async fn create_project(&self, project: Project) -> Result<()> {
        timed("create_project", self.inner.create_project(project)).await
    }

    async fn project(&self, project_id: &str) -> Result<Option<Project>> {
        timed("project", self.inner.project(project_id)).await
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        timed("list_projects", self.inner.list_projects()).await
    }

    async fn set_push_enabled(&self, project_id: &str, enabled: bool) -> Result<Option<Project>> {
        timed(
            "set_push_enabled",
            self.inner.set_push_enabled(project_id, enabled),
        )
        .await
    }

    async fn create_app(&self, app: App) -> Result<()> {
        timed("create_app", self.inner.create_app(app)).await
    }

    async fn app(&self, client_id: &str) -> Result<Option<App>> {
        timed("app", self.inner.app(client_id)).await
    }

    async fn list_apps(&self, project_id: Option<&str>) -> Result<Vec<App>> {
        timed("list_apps", self.inner.list_apps(project_id)).await
    }

    async fn update_app(&self, client_id: &str, update: AppUpdate) -> Result<Option<App>> {
        timed("update_app", self.inner.update_app(client_id, update)).await
    }

    async fn create_service_account(&self, account: ServiceAccount) -> Result<()> {
        timed(
            "create_service_account",
            self.inner.create_service_account(account),
        )
        .await
    }

    async fn list_service_accounts(&self, project_id: &str) -> Result<Vec<ServiceAccount>> {
        timed(
            "list_service_accounts",
            self.inner.list_service_accounts(project_id),
        )
        .await
    }

    async fn service_account(&self, key_id: &str) -> Result<Option<ServiceAccount>> {
        timed("service_account", self.inner.service_account(key_id)).await
    }

    async fn revoke_service_account(
        &self,
        key_id: &str,
        now_ms: i64,
    ) -> Result<Option<ServiceAccount>> {
        timed(
            "revoke_service_account",
            self.inner.revoke_service_account(key_id, now_ms),
        )
        .await
    }

    async fn rights(&self, client_id: &str) -> Result<Vec<RightRecord>> {
        timed("rights", self.inner.rights(client_id)).await
    }

    async fn right_history(&self, client_id: &str) -> Result<Vec<RightEvent>> {
        timed("right_history", self.inner.right_history(client_id)).await
    }

    async fn change_right(
        &self,
        change: RightChange,
    ) -> Result<std::result::Result<RightRecord, String>> {
        timed("change_right", self.inner.change_right(change)).await
    }
}

#[async_trait]
impl DeviceStore for MeteredStore {
    async fn register_device(&self, device: NewDevice) -> Result<i64> {
        timed("register_device", self.inner.register_device(device)).await
    }

    async fn device_auth(&self, device_id: &str, now_ms: i64) -> Result<Option<DeviceAuth>> {
        timed("device_auth", self.inner.device_auth(device_id, now_ms)).await
    }

    async fn token_for(
        &self,
        device: i64,
        client_id: &str,
        candidate: NewToken,
    ) -> Result<Option<TokenRecord>> {
        timed(
            "token_for",
            self.inner.token_for(device, client_id, candidate),
        )
        .await
    }

    async fn delete_token(
        &self,
        device: i64,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Option<String>> {
        timed(
            "delete_token",
            self.inner.delete_token(device, client_id, now_ms),
        )
        .await
    }

    async fn lookup_tokens(&self, tokens: &[String]) -> Result<Vec<TokenRecord>> {
        timed("lookup_tokens", self.inner.lookup_tokens(tokens)).await
    }
}

#[async_trait]
impl QuotaStore for MeteredStore {
    async fn quota_usage(&self, keys: &[CounterKey]) -> Result<Vec<(CounterKey, u32)>> {
        timed("quota_usage", self.inner.quota_usage(keys)).await
    }

    async fn live_views(&self, keys: &[LiveViewKey]) -> Result<Vec<(LiveViewKey, LiveViewState)>> {
        timed("live_views", self.inner.live_views(keys)).await
    }

    async fn take_send_budget(
        &self,
        client_id: &str,
        second: i64,
        want: u32,
        limit: u32,
    ) -> Result<u32> {
        timed(
            "take_send_budget",
            self.inner.take_send_budget(client_id, second, want, limit),
        )
        .await
    }
}

#[async_trait]
impl MessageStore for MeteredStore {
    async fn enqueue(&self, batch: Enqueue) -> Result<EnqueueResult> {
        timed("enqueue", self.inner.enqueue(batch)).await
    }

    async fn pending(&self, device: i64, now_ms: i64) -> Result<Vec<StoredDelivery>> {
        timed("pending", self.inner.pending(device, now_ms)).await
    }

    async fn record_device_reports(&self, reports: Vec<DeviceReport>) -> Result<u64> {
        timed(
            "record_device_reports",
            self.inner.record_device_reports(reports),
        )
        .await
    }

    async fn expire_due(&self, now_ms: i64, limit: usize) -> Result<u64> {
        timed("expire_due", self.inner.expire_due(now_ms, limit)).await
    }

    async fn revoke(&self, revoke: Revoke) -> Result<RevokeResult> {
        timed("revoke", self.inner.revoke(revoke)).await
    }

    async fn events_for(&self, message_id: &str) -> Result<Vec<EventRecord>> {
        timed("events_for", self.inner.events_for(message_id)).await
    }

    async fn events_of_request(
        &self,
        request_id: &str,
        token: Option<&str>,
    ) -> Result<Vec<EventRecord>> {
        timed(
            "events_of_request",
            self.inner.events_of_request(request_id, token),
        )
        .await
    }

    async fn delivery_counts(&self) -> Result<Vec<(String, u64)>> {
        timed("delivery_counts", self.inner.delivery_counts()).await
    }
}

#[async_trait]
impl ReceiptStore for MeteredStore {
    async fn create_receipt_config(&self, config: ReceiptConfig) -> Result<()> {
        timed(
            "create_receipt_config",
            self.inner.create_receipt_config(config),
        )
        .await
    }

    async fn receipt_config(&self, receipt_id: &str) -> Result<Option<ReceiptConfig>> {
        timed("receipt_config", self.inner.receipt_config(receipt_id)).await
    }

    async fn list_receipt_configs(&self, project_id: &str) -> Result<Vec<ReceiptConfig>> {
        timed(
            "list_receipt_configs",
            self.inner.list_receipt_configs(project_id),
        )
        .await
    }

    async fn delete_receipt_config(&self, receipt_id: &str, now_ms: i64) -> Result<Option<u64>> {
        timed(
            "delete_receipt_config",
            self.inner.delete_receipt_config(receipt_id, now_ms),
        )
        .await
    }

    async fn due_receipts(&self, now_ms: i64, per_config: usize) -> Result<Vec<DueReceipts>> {
        timed("due_receipts", self.inner.due_receipts(now_ms, per_config)).await
    }

    async fn settle_receipts(&self, fates: &[(i64, ReceiptFate)], now_ms: i64) -> Result<()> {
        timed("settle_receipts", self.inner.settle_receipts(fates, now_ms)).await
    }

    async fn retry_pending_receipts_now(&self, now_ms: i64) -> Result<u64> {
        timed(
            "retry_pending_receipts_now",
            self.inner.retry_pending_receipts_now(now_ms),
        )
        .await
    }

    async fn pending_receipts(&self) -> Result<u64> {
        timed("pending_receipts", self.inner.pending_receipts()).await
    }

    async fn receipt_counts(&self) -> Result<Vec<(String, u64)>> {
        timed("receipt_counts", self.inner.receipt_counts()).await
    }

    fn receipts_queued(&self) -> Arc<Notify> {
        self.inner.receipts_queued()
    }
}

#[async_trait]
impl ReportStore for MeteredStore {
    async fn report(&self, filter: ReportFilter) -> Result<Vec<ReportRow>> {
        timed("report", self.inner.report(filter)).await
    }

    async fn report_series(&self, filter: ReportFilter) -> Result<Vec<SeriesRow>> {
        timed("report_series", self.inner.report_series(filter)).await
    }
}

#[async_trait]
impl ConsoleStore for MeteredStore {
    async fn add_test_device(&self, device: TestDevice) -> Result<TestDeviceAdded> {
        timed("add_test_device", self.inner.add_test_device(device)).await
    }

    async fn test_devices(&self, client_id: &str) -> Result<Vec<TestDevice>> {
        timed("test_devices", self.inner.test_devices(client_id)).await
    }

    async fn remove_test_device(&self, client_id: &str, id: &str) -> Result<bool> {
        timed(
            "remove_test_device",
            self.inner.remove_test_device(client_id, id),
        )
        .await
    }

    async fn checklist_facts(&self, project_id: &str) -> Result<ChecklistFacts> {
        timed("checklist_facts", self.inner.checklist_facts(project_id)).await
    }
}

#[async_trait]
impl Maintenance for MeteredStore {
    async fn prune(
        &self,
        retention: &Retention,
        now_ms: i64,
        quota_cutoff_day: i32,
        batch: usize,
    ) -> Result<Pruned> {
        timed(
            "prune",
            self.inner.prune(retention, now_ms, quota_cutoff_day, batch),
        )
        .await
    }

    async fn size_on_disk(&self) -> Result<u64> {
        timed("size_on_disk", self.inner.size_on_disk()).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

#[async_trait]
impl EmulatorStore for MeteredStore {
    async fn forget_traffic(&self) -> Result<()> {
        timed("forget_traffic", self.inner.forget_traffic()).await
    }
}
