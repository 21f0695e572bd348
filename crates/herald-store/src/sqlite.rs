//! The embedded SQLite backend: one writer thread that group-commits, a small reader pool.
//!
//! Why a dedicated writer thread: SQLite allows one writer at a time, and a cross-thread
//! hand-off costs ~50 µs on this class of machine while an insert costs ~2 µs. So every
//! write is a job sent to the writer, which drains whatever jobs are waiting (up to
//! [`MAX_BATCH`]), runs each in its own savepoint inside one transaction, commits once
//! (one fsync), then answers every job. Thousands of concurrent sends share a commit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use herald_core::Outcome;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};
use tokio::sync::{Notify, oneshot};

use crate::{
    Admin, App, AppUpdate, Bootstrap, DueReceipts, Enqueue, EnqueueResult, EventRecord,
    LiveViewKey, NewDevice, NewToken, PendingReceipt, Project, ReceiptConfig, Report, ReportFilter,
    ReportRow, Result, Revoke, RevokeResult, RightChange, RightEvent, RightRecord, ServiceAccount,
    Store, StoreError, StoredDelivery, TokenRecord,
};
use herald_core::live::LiveViewState;
use herald_core::quota::{CounterKey, LimitOverrides};
use herald_core::receipt::ReceiptFate;
use herald_core::rights::RightState;

/// Most jobs committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// Offline cache cap per token (Push Kit: 120 messages; older ones are replaced, receipt 15).
pub const OFFLINE_CACHE_CAP: i64 = 120;

const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../migrations/sqlite/001_init.sql")),
    M::up(include_str!("../migrations/sqlite/002_rights_quotas.sql")),
    M::up(include_str!("../migrations/sqlite/004_push_types.sql")),
    M::up(include_str!("../migrations/sqlite/005_receipts.sql")),
    M::up(include_str!("../migrations/sqlite/006_report.sql")),
];

const APP_COLUMNS: &str = "client_id, project_id, package_name, name, created_at, app_category, marketing_per_day, device_daily_total, send_rate_per_sec";

fn app_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        client_id: r.get(0)?,
        project_id: r.get(1)?,
        package_name: r.get(2)?,
        name: r.get(3)?,
        created_at: r.get(4)?,
        app_category: r.get(5)?,
        overrides: LimitOverrides {
            marketing_per_day: r.get(6)?,
            device_daily_total: r.get(7)?,
            send_rate_per_sec: r.get(8)?,
        },
    })
}

const RECEIPT_CONFIG_COLUMNS: &str =
    "receipt_id, project_id, client_id, url, username, secret, version, created_at";

fn receipt_config_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReceiptConfig> {
    Ok(ReceiptConfig {
        receipt_id: r.get(0)?,
        project_id: r.get(1)?,
        client_id: r.get(2)?,
        url: r.get(3)?,
        username: r.get(4)?,
        secret: r.get(5)?,
        version: r.get(6)?,
        created_at: r.get(7)?,
    })
}

const SA_COLUMNS: &str = "key_id, project_id, sub_account, public_key_pem, token_uri, created_at";

fn service_account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServiceAccount> {
    Ok(ServiceAccount {
        key_id: r.get(0)?,
        project_id: r.get(1)?,
        sub_account: r.get(2)?,
        public_key_pem: r.get(3)?,
        token_uri: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn right_state(s: String) -> rusqlite::Result<RightState> {
    RightState::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown right state {s:?}").into(),
        )
    })
}

fn insert_app(c: &Connection, app: &App) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO apps (client_id, project_id, package_name, name, created_at, app_category, marketing_per_day, device_daily_total, send_rate_per_sec)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            app.client_id,
            app.project_id,
            app.package_name,
            app.name,
            app.created_at,
            app.app_category,
            app.overrides.marketing_per_day,
            app.overrides.device_daily_total,
            app.overrides.send_rate_per_sec
        ],
    )?;
    Ok(())
}

fn insert_service_account(c: &Connection, sa: &ServiceAccount) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO service_accounts (key_id, project_id, sub_account, public_key_pem, token_uri, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![sa.key_id, sa.project_id, sa.sub_account, sa.public_key_pem, sa.token_uri, sa.created_at],
    )?;
    Ok(())
}

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a process crash (`kill -9`), not power loss.
    Normal,
}

type Completion = Box<dyn FnOnce(Option<String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    durability: Durability,
    receipts_queued: Arc<Notify>,
    /// Dropping the sender stops the checkpointer.
    checkpoint_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    checkpoint_thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The writer keeps the hot pages (queues, indexes) in memory instead of re-reading
    // them from the OS for every transaction.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints run on their own thread (`checkpointer`), not inside the writer's
    // commits, where they would stall every send that shares the commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// Page cache of the writer connection, KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Copy committed WAL frames into the database file every [`CHECKPOINT_EVERY`] with a
/// PASSIVE checkpoint (it never blocks the writer or readers), until `stop` is dropped;
/// then one last TRUNCATE checkpoint leaves a small WAL behind.
fn checkpointer(path: PathBuf, stop: std::sync::mpsc::Receiver<()>) {
    let conn = match Connection::open(&path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "The checkpointer could not open the database.");
            return;
        }
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    loop {
        match stop.recv_timeout(CHECKPOINT_EVERY) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "A WAL checkpoint failed.");
                }
            }
            _ => {
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                return;
            }
        }
    }
}

impl SqliteStore {
    /// Open (creating and migrating) the database at `path`.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path)?;
        configure(&conn, durability)?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;

        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let receipts_queued = Arc::new(Notify::new());
        let signal = ReceiptSignal {
            notify: receipts_queued.clone(),
            last_id: last_receipt_id(&conn)?,
        };
        let handle = std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, signal))?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let checkpoint_path = path.clone();
        let checkpoint_thread = std::thread::Builder::new()
            .name("herald-sqlite-checkpoint".into())
            .spawn(move || checkpointer(checkpoint_path, stopped))?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
            readers: Arc::new(Mutex::new(Vec::new())),
            durability,
            receipts_queued,
            checkpoint_stop: Mutex::new(Some(stop)),
            checkpoint_thread: Mutex::new(Some(checkpoint_thread)),
        })
    }

    /// Run `f` in the writer's next transaction; resolves once it is committed.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let outcome = in_savepoint(conn, f);
            Box::new(move |commit_error: Option<String>| {
                let outcome = match commit_error {
                    None => outcome,
                    Some(e) => Err(StoreError::Conflict(format!("commit failed: {e}"))),
                };
                let _ = tx.send(outcome);
            })
        });
        let sender = self
            .writer
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        sender.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Run `f` on a pooled read connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let durability = self.durability;
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    configure_reader(&c, durability)?;
                    c
                }
            };
            let out = f(&conn);
            if let Ok(mut p) = readers.lock()
                && p.len() < 8
            {
                p.push(conn);
            }
            out
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// The first row of `sql` (string parameters `args`), mapped by `map`.
    async fn read_one<T: Send + 'static>(
        &self,
        sql: String,
        args: Vec<String>,
        map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&sql)?
                .query_row(rusqlite::params_from_iter(&args), map)
                .optional()?)
        })
        .await
    }

    /// Every row of `sql` (string parameters `args`), mapped by `map`.
    async fn read_all<T: Send + 'static>(
        &self,
        sql: String,
        args: Vec<String>,
        map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(&args), map)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

/// `SELECT state, COUNT(*)` of a table, by state.
fn count_by_state(table: &str) -> String {
    format!("SELECT state, COUNT(*) FROM {table} GROUP BY state ORDER BY state")
}

fn state_count(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, u64)> {
    Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
}

fn configure_reader(conn: &Connection, _durability: Durability) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

/// The highest receipt outbox id ever assigned (AUTOINCREMENT keeps it in
/// `sqlite_sequence`, rolled back with the savepoint that inserted it).
fn last_receipt_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'receipts'), 0)",
    )?
    .query_row([], |r| r.get(0))
}

/// Tells the receipt dispatcher that a commit queued receipts. Comparing the outbox's
/// sequence before and after each commit counts exactly the committed rows, without
/// threading a counter through every write.
struct ReceiptSignal {
    notify: Arc<Notify>,
    last_id: i64,
}

impl ReceiptSignal {
    fn after_commit(&mut self, conn: &Connection) {
        match last_receipt_id(conn) {
            Ok(id) if id > self.last_id => {
                metrics::counter!("herald_receipts_queued_total")
                    .increment((id - self.last_id) as u64);
                self.last_id = id;
                self.notify.notify_one();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Could not read the receipt outbox sequence."),
        }
    }
}

fn writer_loop(conn: Connection, rx: std::sync::mpsc::Receiver<Job>, mut signal: ReceiptSignal) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = e.to_string();
            tracing::error!(error = %msg, "Could not begin a write transaction.");
            for job in jobs {
                // Run nothing; report the failure to every waiter.
                drop(job);
            }
            continue;
        }
        let completions: Vec<Completion> = jobs.into_iter().map(|job| job(&conn)).collect();
        let commit_error = conn.execute_batch("COMMIT").err().map(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, "Write transaction failed to commit.");
            e.to_string()
        });
        metrics::histogram!("herald_store_commit_batch_size").record(completions.len() as f64);
        if commit_error.is_none() {
            signal.after_commit(&conn);
        }
        for done in completions {
            done(commit_error.clone());
        }
    }
}

const DELIVERY_COLUMNS: &str =
    "d.seq, d.message_id, d.request_id, d.token, d.device_id, d.client_id,
    r.push_type, r.payload, r.bi_tag, r.test, r.created_at, d.expires_at, d.category, d.kind,
    d.notify_id, d.background_mode";

fn delivery_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDelivery> {
    Ok(StoredDelivery {
        seq: r.get(0)?,
        message_id: r.get(1)?,
        request_id: r.get(2)?,
        token: r.get(3)?,
        device_id: r.get(4)?,
        client_id: r.get(5)?,
        push_type: r.get(6)?,
        payload: r.get(7)?,
        bi_tag: r.get(8)?,
        test: r.get(9)?,
        created_at: r.get(10)?,
        expires_at: r.get(11)?,
        category: r.get(12)?,
        kind: r.get(13)?,
        notify_id: r.get(14)?,
        background_mode: r.get(15)?,
    })
}

fn upsert_live_view(
    conn: &Connection,
    key: &LiveViewKey,
    s: &LiveViewState,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO live_views (client_id, device_id, activity_id, event, status, version, rest_created, ended, created_at, updated_at, blocked_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (client_id, device_id, activity_id) DO UPDATE SET
           event = excluded.event, status = excluded.status, version = excluded.version,
           rest_created = excluded.rest_created, ended = excluded.ended, created_at = excluded.created_at,
           updated_at = excluded.updated_at, blocked_until = excluded.blocked_until",
    )?
    .execute(params![
        key.client_id,
        key.device_id,
        key.activity_id,
        s.event,
        s.status,
        s.version,
        s.rest_created,
        s.ended,
        s.created_at,
        s.updated_at,
        s.blocked_until
    ])?;
    Ok(())
}

fn revoke_in(conn: &Connection, rv: &Revoke) -> Result<RevokeResult> {
    let mut result = RevokeResult::default();
    conn.prepare_cached(
        "INSERT INTO requests (request_id, project_id, push_type, payload, bi_tag, receipt_id, test, ttl_secs, created_at)
         VALUES (?1, ?2, ?3, ?4, NULL, NULL, 0, ?5, ?6)",
    )?
    .execute(params![
        rv.request_id,
        rv.project_id,
        rv.push_type,
        serde_json::json!({"revoke": {"notifyId": rv.notify_id}}).to_string(),
        herald_core::send::MAX_TTL_SECS,
        rv.now
    ])?;
    for (i, (token, device_id, client_id)) in rv.tokens.iter().enumerate() {
        // Withdraw what is still queued (never delivered from now on); remember whether
        // anything may be on the device's screen.
        let matching: Vec<(String, String, String)> = conn
            .prepare_cached(
                "SELECT d.message_id, d.state, d.request_id FROM deliveries d JOIN requests r ON r.request_id = d.request_id
                 WHERE d.token = ?1 AND d.notify_id = ?2 AND d.kind = 'message' AND r.push_type = ?3
                   AND d.state IN ('queued', 'delivered', 'shown')",
            )?
            .query_map(params![token, rv.notify_id, rv.push_type], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        if matching.is_empty() {
            continue;
        }
        for (message_id, state, request_id) in &matching {
            if state == "queued" {
                conn.prepare_cached(
                    "UPDATE deliveries SET state = 'revoked', updated_at = ?2 WHERE message_id = ?1",
                )?
                .execute(params![message_id, rv.now])?;
                insert_event(
                    conn,
                    message_id,
                    Some(request_id),
                    Some(token),
                    Some(client_id),
                    Outcome::Revoked,
                    rv.now,
                )?;
                result.revoked.push(message_id.clone());
            }
        }
        // A queued message may already be on the wire to a connected device, so the
        // device is told in every case; it removes the notification if it shows it.
        let command_id = format!("{}-r{i}", rv.request_id);
        conn.prepare_cached(
            "INSERT INTO deliveries (message_id, request_id, token, device_id, client_id, state, expires_at, notify_id, updated_at, kind)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, 'revoke')",
        )?
        .execute(params![
            command_id,
            rv.request_id,
            token,
            device_id,
            client_id,
            rv.now + i64::from(herald_core::send::MAX_TTL_SECS) * 1000,
            rv.notify_id,
            rv.now
        ])?;
        let seq = conn.last_insert_rowid();
        let stored = conn
            .prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN requests r ON r.request_id = d.request_id WHERE d.seq = ?1"
            ))?
            .query_row([seq], delivery_from_row)?;
        result.commands.push((seq, stored));
    }
    Ok(result)
}

/// Record one lifecycle event. An event with a receipt code also queues its receipt, in
/// the same transaction, so no committed event loses its receipt (see [`queue_receipt`]).
fn insert_event(
    conn: &Connection,
    message_id: &str,
    request_id: Option<&str>,
    token: Option<&str>,
    client_id: Option<&str>,
    outcome: Outcome,
    at: i64,
) -> rusqlite::Result<()> {
    let code = outcome.receipt_code().map(|c| c.0);
    conn.prepare_cached(
        "INSERT INTO events (message_id, request_id, token, client_id, outcome, code, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        message_id,
        request_id,
        token,
        client_id,
        outcome.name(),
        code,
        at
    ])?;
    if let (Some(code), Some(request_id), Some(token)) = (code, request_id, token) {
        queue_receipt(
            conn,
            conn.last_insert_rowid(),
            request_id,
            token,
            client_id,
            code,
            at,
        )?;
    }
    Ok(())
}

/// Queue the receipt of event `event_id`, if a config applies: the request's `receiptId`
/// when it names a config of the request's project that is not another app's; else the
/// oldest config of the token's app; else the oldest project-level config. The status
/// fields (biTag, pushType, package name, widget formId) are copied now, so a receipt
/// reports what was true when its event happened.
fn queue_receipt(
    conn: &Connection,
    event_id: i64,
    request_id: &str,
    token: &str,
    client_id: Option<&str>,
    code: u32,
    at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO receipts (event_id, receipt_id, request_id, token, push_type, bi_tag, app_package_name,
                               form_id, result, at, state, attempts, next_attempt_at, created_at, updated_at)
         SELECT ?1, cfg.receipt_id, r.request_id, ?3, r.push_type, COALESCE(r.bi_tag, ''),
                COALESCE((SELECT package_name FROM apps WHERE client_id = ?4), ''),
                CASE WHEN r.push_type = 1 AND json_valid(r.payload)
                     THEN json_extract(r.payload, '$.formId') END,
                ?5, ?6, 'pending', 0, ?6, ?6, ?6
         FROM requests r
         JOIN receipt_configs cfg ON cfg.receipt_id = COALESCE(
             (SELECT c.receipt_id FROM receipt_configs c
               WHERE c.receipt_id = r.receipt_id AND c.project_id = r.project_id
                 AND (c.client_id IS NULL OR c.client_id IS ?4)),
             (SELECT c.receipt_id FROM receipt_configs c
               WHERE ?4 IS NOT NULL AND c.client_id = ?4 ORDER BY c.created_at, c.rowid LIMIT 1),
             (SELECT c.receipt_id FROM receipt_configs c
               WHERE c.project_id = r.project_id AND c.client_id IS NULL
               ORDER BY c.created_at, c.rowid LIMIT 1))
         WHERE r.request_id = ?2",
    )?
    .execute(params![event_id, request_id, token, client_id, code, at])?;
    Ok(())
}

/// Mark queued deliveries as replaced and record the event; returns their ids.
fn replace_queued(
    conn: &Connection,
    sql_selecting_message_ids: &str,
    args: &[&dyn rusqlite::ToSql],
    at: i64,
) -> rusqlite::Result<Vec<String>> {
    let ids: Vec<(String, String, String, String)> = conn
        .prepare_cached(sql_selecting_message_ids)?
        .query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, request_id, token, client_id) in &ids {
        conn.prepare_cached(
            "UPDATE deliveries SET state = 'replaced', updated_at = ?2 WHERE message_id = ?1",
        )?
        .execute(params![id, at])?;
        insert_event(
            conn,
            id,
            Some(request_id),
            Some(token),
            Some(client_id),
            Outcome::Replaced,
            at,
        )?;
    }
    Ok(ids.into_iter().map(|(id, ..)| id).collect())
}

fn enqueue_in(conn: &Connection, batch: &Enqueue) -> Result<EnqueueResult> {
    let r = &batch.request;
    let at = r.created_at;
    conn.prepare_cached(
        "INSERT INTO requests (request_id, project_id, push_type, payload, bi_tag, receipt_id, test, ttl_secs, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        r.request_id,
        r.project_id,
        r.push_type,
        r.payload,
        r.bi_tag,
        r.receipt_id,
        r.test,
        r.ttl_secs,
        r.created_at
    ])?;
    let mut result = EnqueueResult::default();
    for d in &batch.deliveries {
        if let Some(key) = d.collapse_key {
            result.replaced.extend(replace_queued(
                conn,
                "SELECT message_id, request_id, token, client_id FROM deliveries
                 WHERE token = ?1 AND collapse_key = ?2 AND state = 'queued' AND kind = 'message'",
                &[&d.token, &key],
                at,
            )?);
        }
        conn.prepare_cached(
            "INSERT INTO deliveries (message_id, request_id, token, device_id, client_id, state, expires_at, collapse_key, notify_id, updated_at, category, background_mode)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            d.message_id,
            r.request_id,
            d.token,
            d.device_id,
            d.client_id,
            d.expires_at,
            d.collapse_key,
            d.notify_id,
            at,
            d.category,
            d.background_mode
        ])?;
        result.seqs.push(conn.last_insert_rowid());
        insert_event(
            conn,
            &d.message_id,
            Some(&r.request_id),
            Some(&d.token),
            Some(&d.client_id),
            Outcome::Queued,
            at,
        )?;
        result.replaced.extend(replace_queued(
            conn,
            "SELECT message_id, request_id, token, client_id FROM deliveries
             WHERE token = ?1 AND state = 'queued' AND kind = 'message'
             ORDER BY seq DESC LIMIT -1 OFFSET ?2",
            &[&d.token, &OFFLINE_CACHE_CAP],
            at,
        )?);
    }
    for (key, state) in &batch.live_views {
        upsert_live_view(conn, key, state)?;
    }
    for (key, used) in &batch.usage {
        conn.prepare_cached(
            "INSERT INTO quota_usage (key, day, used) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET used = used + excluded.used",
        )?
        .execute(params![key.to_string(), key.day, used])?;
    }
    for drop in &batch.drops {
        insert_event(
            conn,
            &drop.message_id,
            Some(&r.request_id),
            Some(&drop.token),
            drop.client_id.as_deref(),
            drop.outcome,
            at,
        )?;
    }
    Ok(result)
}

#[async_trait]
impl Store for SqliteStore {
    async fn is_bootstrapped(&self) -> Result<bool> {
        self.read(|c| Ok(c.query_row("SELECT EXISTS (SELECT 1 FROM admins)", [], |r| r.get(0))?))
            .await
    }

    async fn bootstrap(&self, b: Bootstrap) -> Result<()> {
        self.write(move |c| {
            let now = b.project.created_at;
            c.execute(
                "INSERT INTO admins (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
                params![b.admin_username, b.admin_password_hash, now],
            )?;
            let admin_id = c.last_insert_rowid();
            c.execute(
                "INSERT INTO admin_tokens (token_hash, admin_id, created_at) VALUES (?1, ?2, ?3)",
                params![b.admin_token_hash, admin_id, now],
            )?;
            c.execute(
                "INSERT INTO projects (project_id, name, created_at) VALUES (?1, ?2, ?3)",
                params![b.project.project_id, b.project.name, now],
            )?;
            insert_app(c, &b.app)?;
            insert_service_account(c, &b.service_account)?;
            Ok(())
        })
        .await
    }

    async fn create_project(&self, project: Project) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO projects (project_id, name, created_at) VALUES (?1, ?2, ?3)",
                params![project.project_id, project.name, project.created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_app(&self, app: App) -> Result<()> {
        self.write(move |c| Ok(insert_app(c, &app)?)).await
    }

    async fn project(&self, project_id: &str) -> Result<Option<Project>> {
        let id = project_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT project_id, name, created_at FROM projects WHERE project_id = ?1",
            )?
            .query_row([id], |r| {
                Ok(Project {
                    project_id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn app(&self, client_id: &str) -> Result<Option<App>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE client_id = ?1");
        self.read_one(sql, vec![client_id.to_owned()], app_from_row)
            .await
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        self.read(|c| {
            let rows = c
                .prepare_cached("SELECT project_id, name, created_at FROM projects ORDER BY created_at, project_id")?
                .query_map([], |r| {
                    Ok(Project {
                        project_id: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn list_apps(&self, project_id: Option<&str>) -> Result<Vec<App>> {
        let project_id = project_id.map(str::to_owned);
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE ?1 IS NULL OR project_id = ?1 ORDER BY created_at, client_id"
                ))?
                .query_map([project_id], app_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_app(&self, client_id: &str, update: AppUpdate) -> Result<Option<App>> {
        let id = client_id.to_owned();
        self.write(move |c| {
            let Some(mut app) = c
                .prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE client_id = ?1"))?
                .query_row([&id], app_from_row)
                .optional()?
            else {
                return Ok(None);
            };
            if let Some(cat) = update.app_category {
                app.app_category = cat;
            }
            if let Some(v) = update.marketing_per_day {
                app.overrides.marketing_per_day = v;
            }
            if let Some(v) = update.device_daily_total {
                app.overrides.device_daily_total = v;
            }
            if let Some(v) = update.send_rate_per_sec {
                app.overrides.send_rate_per_sec = v;
            }
            c.prepare_cached(
                "UPDATE apps SET app_category = ?2, marketing_per_day = ?3, device_daily_total = ?4, send_rate_per_sec = ?5 WHERE client_id = ?1",
            )?
            .execute(params![
                id,
                app.app_category,
                app.overrides.marketing_per_day,
                app.overrides.device_daily_total,
                app.overrides.send_rate_per_sec
            ])?;
            Ok(Some(app))
        })
        .await
    }

    async fn create_service_account(&self, account: ServiceAccount) -> Result<()> {
        self.write(move |c| Ok(insert_service_account(c, &account)?))
            .await
    }

    async fn list_service_accounts(&self, project_id: &str) -> Result<Vec<ServiceAccount>> {
        let sql = format!(
            "SELECT {SA_COLUMNS} FROM service_accounts WHERE project_id = ?1 ORDER BY created_at"
        );
        self.read_all(sql, vec![project_id.to_owned()], service_account_from_row)
            .await
    }

    async fn rights(&self, client_id: &str) -> Result<Vec<RightRecord>> {
        let id = client_id.to_owned();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT client_id, name, state, reason, updated_at FROM rights WHERE client_id = ?1 ORDER BY name",
                )?
                .query_map([id], |r| {
                    Ok(RightRecord {
                        client_id: r.get(0)?,
                        name: r.get(1)?,
                        state: right_state(r.get(2)?)?,
                        reason: r.get(3)?,
                        updated_at: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn right_history(&self, client_id: &str) -> Result<Vec<RightEvent>> {
        let id = client_id.to_owned();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT client_id, name, action, state, reason, actor, at FROM right_events WHERE client_id = ?1 ORDER BY id",
                )?
                .query_map([id], |r| {
                    Ok(RightEvent {
                        client_id: r.get(0)?,
                        name: r.get(1)?,
                        action: r.get(2)?,
                        state: right_state(r.get(3)?)?,
                        reason: r.get(4)?,
                        actor: r.get(5)?,
                        at: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn change_right(
        &self,
        change: RightChange,
    ) -> Result<std::result::Result<RightRecord, String>> {
        self.write(move |c| {
            let current: Option<(String, Option<String>)> = c
                .prepare_cached("SELECT state, reason FROM rights WHERE client_id = ?1 AND name = ?2")?
                .query_row(params![change.client_id, change.name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let from = current
                .as_ref()
                .map(|(s, _)| right_state(s.clone()))
                .transpose()?;
            let state = match change.action.apply(from) {
                Ok(s) => s,
                Err(why) => return Ok(Err(why.to_owned())),
            };
            // The scenario given with the request stays the right's reason unless the
            // new action gives its own.
            let reason = change
                .reason
                .clone()
                .or_else(|| current.and_then(|(_, r)| r));
            c.prepare_cached(
                "INSERT INTO rights (client_id, name, state, reason, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (client_id, name) DO UPDATE SET state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at",
            )?
            .execute(params![change.client_id, change.name, state.as_str(), reason, change.at])?;
            c.prepare_cached(
                "INSERT INTO right_events (client_id, name, action, state, reason, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                change.client_id,
                change.name,
                change.action.as_str(),
                state.as_str(),
                change.reason,
                change.actor,
                change.at
            ])?;
            Ok(Ok(RightRecord {
                client_id: change.client_id,
                name: change.name,
                state,
                reason,
                updated_at: change.at,
            }))
        })
        .await
    }

    async fn quota_usage(&self, keys: &[CounterKey]) -> Result<Vec<(CounterKey, u32)>> {
        let keys = keys.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT used FROM quota_usage WHERE key = ?1")?;
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let used: Option<i64> = stmt.query_row([k.to_string()], |r| r.get(0)).optional()?;
                out.push((k, used.unwrap_or(0).max(0) as u32));
            }
            Ok(out)
        })
        .await
    }

    async fn service_account(&self, key_id: &str) -> Result<Option<ServiceAccount>> {
        let sql = format!("SELECT {SA_COLUMNS} FROM service_accounts WHERE key_id = ?1");
        self.read_one(sql, vec![key_id.to_owned()], service_account_from_row)
            .await
    }

    async fn admin_by_token_hash(&self, token_hash: &str) -> Result<Option<Admin>> {
        let sql = "SELECT a.id, a.username FROM admin_tokens t JOIN admins a ON a.id = t.admin_id WHERE t.token_hash = ?1".to_owned();
        self.read_one(sql, vec![token_hash.to_owned()], |r| {
            Ok(Admin {
                id: r.get(0)?,
                username: r.get(1)?,
            })
        })
        .await
    }

    async fn admin_by_username(&self, username: &str) -> Result<Option<(Admin, String)>> {
        let sql = "SELECT id, username, password_hash FROM admins WHERE username = ?1".to_owned();
        self.read_one(sql, vec![username.to_owned()], |r| {
            Ok((
                Admin {
                    id: r.get(0)?,
                    username: r.get(1)?,
                },
                r.get(2)?,
            ))
        })
        .await
    }

    async fn create_admin_token(&self, admin_id: i64, token_hash: &str, now_ms: i64) -> Result<()> {
        let hash = token_hash.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO admin_tokens (token_hash, admin_id, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![hash, admin_id, now_ms])?;
            Ok(())
        })
        .await
    }

    async fn report(&self, filter: ReportFilter) -> Result<Vec<ReportRow>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT e.outcome, e.code, COUNT(*) FROM events e
                     LEFT JOIN requests r ON r.request_id = e.request_id
                     WHERE e.at >= ?1
                       AND (?2 IS NULL OR r.project_id = ?2)
                       AND (?3 IS NULL OR e.client_id = ?3)
                     GROUP BY e.outcome, e.code ORDER BY e.outcome, e.code",
                )?
                .query_map(
                    params![filter.since_ms, filter.project_id, filter.client_id],
                    |r| {
                        Ok(ReportRow {
                            outcome: r.get(0)?,
                            code: r.get(1)?,
                            count: r.get::<_, i64>(2)?.max(0) as u64,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn register_device(&self, device: NewDevice) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO devices (device_id, secret_hash, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                device.device_id,
                device.secret_hash,
                device.created_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn device_secret_hash(&self, device_id: &str) -> Result<Option<String>> {
        let sql = "SELECT secret_hash FROM devices WHERE device_id = ?1".to_owned();
        self.read_one(sql, vec![device_id.to_owned()], |r| r.get(0))
            .await
    }

    async fn token_for(
        &self,
        device_id: &str,
        client_id: &str,
        candidate: NewToken,
    ) -> Result<String> {
        let (device_id, client_id) = (device_id.to_owned(), client_id.to_owned());
        self.write(move |c| {
            let existing: Option<String> = c
                .prepare_cached(
                    "SELECT token FROM tokens WHERE device_id = ?1 AND client_id = ?2 AND deleted_at IS NULL",
                )?
                .query_row(params![device_id, client_id], |r| r.get(0))
                .optional()?;
            if let Some(token) = existing {
                return Ok(token);
            }
            c.prepare_cached(
                "INSERT INTO tokens (token, device_id, client_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![candidate.token, device_id, client_id, candidate.created_at])?;
            Ok(candidate.token)
        })
        .await
    }

    async fn delete_token(
        &self,
        device_id: &str,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Option<String>> {
        let (device_id, client_id) = (device_id.to_owned(), client_id.to_owned());
        self.write(move |c| {
            // At most one row matches: `tokens_active` is unique on (device, app) among
            // undeleted tokens, and a deleted row leaves that index.
            Ok(c.prepare_cached(
                "UPDATE tokens SET deleted_at = ?3
                 WHERE device_id = ?1 AND client_id = ?2 AND deleted_at IS NULL
                 RETURNING token",
            )?
            .query_row(params![device_id, client_id, now_ms], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn lookup_tokens(&self, tokens: &[String]) -> Result<Vec<TokenRecord>> {
        let tokens = tokens.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT t.token, t.device_id, t.client_id, a.project_id
                 FROM tokens t JOIN apps a ON a.client_id = t.client_id
                 WHERE t.token = ?1 AND t.deleted_at IS NULL",
            )?;
            let mut found = Vec::with_capacity(tokens.len());
            for t in &tokens {
                if let Some(rec) = stmt
                    .query_row([t], |r| {
                        Ok(TokenRecord {
                            token: r.get(0)?,
                            device_id: r.get(1)?,
                            client_id: r.get(2)?,
                            project_id: r.get(3)?,
                        })
                    })
                    .optional()?
                {
                    found.push(rec);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn enqueue(&self, batch: Enqueue) -> Result<EnqueueResult> {
        self.write(move |c| enqueue_in(c, &batch)).await
    }

    async fn pending(&self, device_id: &str, now_ms: i64) -> Result<Vec<StoredDelivery>> {
        let id = device_id.to_owned();
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS}
                         FROM deliveries d JOIN requests r ON r.request_id = d.request_id
                         WHERE d.device_id = ?1 AND d.state = 'queued' AND d.expires_at > ?2
                         ORDER BY d.seq"
                ))?
                .query_map(params![id, now_ms], delivery_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn ack(&self, device_id: &str, message_ids: &[String], now_ms: i64) -> Result<()> {
        let (device_id, ids) = (device_id.to_owned(), message_ids.to_vec());
        self.write(move |c| {
            for id in &ids {
                let row: Option<(String, String, String, String)> = c
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'delivered', updated_at = ?3
                         WHERE message_id = ?1 AND device_id = ?2 AND state = 'queued'
                         RETURNING request_id, token, client_id, kind",
                    )?
                    .query_row(params![id, device_id, now_ms], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()?;
                // A revoke command is not a message: it has no lifecycle and no receipt.
                if let Some((request_id, token, client_id, kind)) = row
                    && kind == "message"
                {
                    insert_event(
                        c,
                        id,
                        Some(&request_id),
                        Some(&token),
                        Some(&client_id),
                        Outcome::Delivered,
                        now_ms,
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn record_reports(&self, device_id: &str, reports: &[Report]) -> Result<()> {
        let (device_id, reports) = (device_id.to_owned(), reports.to_vec());
        self.write(move |c| {
            for rep in &reports {
                let row: Option<(String, String, String, String)> = c
                    .prepare_cached(
                        "SELECT request_id, token, state, client_id FROM deliveries
                         WHERE message_id = ?1 AND device_id = ?2
                           AND kind = 'message' AND state IN ('queued', 'delivered', 'shown', 'suppressed', 'clicked')",
                    )?
                    .query_row(params![rep.message_id, device_id], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()?;
                let Some((request_id, token, state, client_id)) = row else {
                    continue;
                };
                // A report implies delivery, even if the device's ack has not landed yet.
                if state == "queued" {
                    insert_event(
                        c,
                        &rep.message_id,
                        Some(&request_id),
                        Some(&token),
                        Some(&client_id),
                        Outcome::Delivered,
                        rep.at,
                    )?;
                }
                c.prepare_cached(
                    "UPDATE deliveries SET state = ?2, updated_at = ?3 WHERE message_id = ?1",
                )?
                .execute(params![rep.message_id, rep.outcome.name(), rep.at])?;
                insert_event(
                    c,
                    &rep.message_id,
                    Some(&request_id),
                    Some(&token),
                    Some(&client_id),
                    rep.outcome,
                    rep.at,
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn expire_due(&self, now_ms: i64) -> Result<u64> {
        self.write(move |c| {
            let expired: Vec<(String, String, String, String, String)> = c
                .prepare_cached(
                    "UPDATE deliveries SET state = 'expired', updated_at = ?1
                     WHERE state = 'queued' AND expires_at <= ?1
                     RETURNING message_id, request_id, token, client_id, kind",
                )?
                .query_map([now_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            // Revoke commands expire silently: they are not messages.
            let expired: Vec<_> = expired
                .into_iter()
                .filter(|(.., kind)| kind == "message")
                .map(|(id, request_id, token, client_id, _)| (id, request_id, token, client_id))
                .collect();
            for (id, request_id, token, client_id) in &expired {
                insert_event(
                    c,
                    id,
                    Some(request_id),
                    Some(token),
                    Some(client_id),
                    Outcome::Expired,
                    now_ms,
                )?;
            }
            Ok(expired.len() as u64)
        })
        .await
    }

    async fn events_for(&self, message_id: &str) -> Result<Vec<EventRecord>> {
        let id = message_id.to_owned();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT message_id, outcome, code, at FROM events WHERE message_id = ?1 ORDER BY id",
                )?
                .query_map([id], |r| {
                    let name: String = r.get(1)?;
                    let code: Option<u32> = r.get(2)?;
                    Ok((r.get::<_, String>(0)?, name, code, r.get::<_, i64>(3)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(message_id, name, code, at)| {
                    Outcome::from_parts(&name, code).map(|outcome| EventRecord {
                        message_id,
                        outcome,
                        at,
                    })
                })
                .collect())
        })
        .await
    }

    async fn delivery_counts(&self) -> Result<Vec<(String, u64)>> {
        self.read_all(count_by_state("deliveries"), vec![], state_count)
            .await
    }

    async fn live_views(&self, keys: &[LiveViewKey]) -> Result<Vec<(LiveViewKey, LiveViewState)>> {
        let keys = keys.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT event, status, version, rest_created, ended, created_at, updated_at, blocked_until
                 FROM live_views WHERE client_id = ?1 AND device_id = ?2 AND activity_id = ?3",
            )?;
            let mut out = Vec::new();
            for k in keys {
                let state = stmt
                    .query_row(params![k.client_id, k.device_id, k.activity_id], |r| {
                        Ok(LiveViewState {
                            event: r.get(0)?,
                            status: r.get(1)?,
                            version: r.get(2)?,
                            rest_created: r.get(3)?,
                            ended: r.get(4)?,
                            created_at: r.get(5)?,
                            updated_at: r.get(6)?,
                            blocked_until: r.get(7)?,
                        })
                    })
                    .optional()?;
                if let Some(state) = state {
                    out.push((k, state));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn create_receipt_config(&self, config: ReceiptConfig) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO receipt_configs (receipt_id, project_id, client_id, url, username, secret, version, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                config.receipt_id,
                config.project_id,
                config.client_id,
                config.url,
                config.username,
                config.secret,
                config.version,
                config.created_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn receipt_config(&self, receipt_id: &str) -> Result<Option<ReceiptConfig>> {
        let sql =
            format!("SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs WHERE receipt_id = ?1");
        self.read_one(sql, vec![receipt_id.to_owned()], receipt_config_from_row)
            .await
    }

    async fn list_receipt_configs(&self, project_id: &str) -> Result<Vec<ReceiptConfig>> {
        let sql = format!(
            "SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs WHERE project_id = ?1 ORDER BY created_at, rowid"
        );
        self.read_all(sql, vec![project_id.to_owned()], receipt_config_from_row)
            .await
    }

    async fn delete_receipt_config(&self, receipt_id: &str, now_ms: i64) -> Result<Option<u64>> {
        let id = receipt_id.to_owned();
        self.write(move |c| {
            if c.prepare_cached("DELETE FROM receipt_configs WHERE receipt_id = ?1")?
                .execute([&id])?
                == 0
            {
                return Ok(None);
            }
            let dropped = c
                .prepare_cached(
                    "UPDATE receipts SET state = 'dropped', updated_at = ?2
                     WHERE receipt_id = ?1 AND state = 'pending'",
                )?
                .execute(params![id, now_ms])?;
            Ok(Some(dropped as u64))
        })
        .await
    }

    async fn due_receipts(&self, now_ms: i64, per_config: usize) -> Result<Vec<DueReceipts>> {
        let limit = i64::try_from(per_config).unwrap_or(i64::MAX);
        self.read(move |c| {
            // Configs are few; each one's due rows come from the partial index in id order.
            let configs = c
                .prepare_cached(&format!(
                    "SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs ORDER BY created_at, rowid"
                ))?
                .query_map([], receipt_config_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = c.prepare_cached(
                "SELECT id, receipt_id, request_id, token, push_type, bi_tag, app_package_name, form_id,
                        result, at, attempts, created_at
                 FROM receipts
                 WHERE receipt_id = ?1 AND state = 'pending' AND next_attempt_at <= ?2
                 ORDER BY id LIMIT ?3",
            )?;
            let mut out = Vec::new();
            for config in configs {
                let receipts = stmt
                    .query_map(params![config.receipt_id, now_ms, limit], |r| {
                        Ok(PendingReceipt {
                            id: r.get(0)?,
                            receipt_id: r.get(1)?,
                            request_id: r.get(2)?,
                            token: r.get(3)?,
                            push_type: r.get(4)?,
                            bi_tag: r.get(5)?,
                            app_package_name: r.get(6)?,
                            form_id: r.get(7)?,
                            result: r.get(8)?,
                            at: r.get(9)?,
                            attempts: r.get(10)?,
                            created_at: r.get(11)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if !receipts.is_empty() {
                    out.push(DueReceipts { config, receipts });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn revoke(&self, revoke: Revoke) -> Result<RevokeResult> {
        self.write(move |c| revoke_in(c, &revoke)).await
    }

    async fn settle_receipts(&self, fates: &[(i64, ReceiptFate)], now_ms: i64) -> Result<()> {
        let fates = fates.to_vec();
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE receipts SET state = ?2, next_attempt_at = ?3, attempts = attempts + 1, updated_at = ?4
                 WHERE id = ?1 AND state = 'pending'",
            )?;
            for (id, fate) in &fates {
                let (state, next) = match fate {
                    ReceiptFate::Sent => ("sent", now_ms),
                    ReceiptFate::Dropped => ("dropped", now_ms),
                    ReceiptFate::Retry { next_attempt_at } => ("pending", *next_attempt_at),
                };
                stmt.execute(params![id, state, next, now_ms])?;
            }
            Ok(())
        })
        .await
    }

    async fn retry_pending_receipts_now(&self, now_ms: i64) -> Result<u64> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE receipts SET next_attempt_at = ?1 WHERE state = 'pending' AND next_attempt_at > ?1",
            )?
            .execute([now_ms])? as u64)
        })
        .await
    }

    async fn pending_receipts(&self) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM receipts WHERE state = 'pending'")?
                .query_row([], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn receipt_counts(&self) -> Result<Vec<(String, u64)>> {
        self.read_all(count_by_state("receipts"), vec![], state_count)
            .await
    }

    fn receipts_queued(&self) -> Arc<Notify> {
        self.receipts_queued.clone()
    }

    async fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        let handle = self.writer_thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        if let Ok(mut s) = self.checkpoint_stop.lock() {
            s.take();
        }
        let handle = self
            .checkpoint_thread
            .lock()
            .ok()
            .and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}
