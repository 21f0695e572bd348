//! The PostgreSQL engine: a pool of `tokio-postgres` connections, each call one short
//! transaction, writes batched into multi-row statements, safe with several Herald nodes
//! on one database.
//!
//! Why no writer thread as in SQLite: PostgreSQL takes concurrent writers itself and
//! group-commits their fsyncs, so each call simply runs its own transaction on a pooled
//! connection; the pool bounds how many run at once ([`PgOptions::max_connections`]).
//! Round trips, not rows, are what cost here, so every hot call writes each kind of row
//! with one statement over arrays (`INSERT … SELECT … FROM unnest($1::bigint[], …)`).
//!
//! Several nodes: migrations and the bootstrap each run under a transaction-level
//! advisory lock; a receipt is claimed by one node at a time (`FOR UPDATE SKIP LOCKED`
//! plus a lease, see [`RECEIPT_LEASE_MS`]); rows other nodes may touch at the same moment
//! are locked in a fixed order, and a transaction that still deadlocks is retried.

mod accounts;
mod apps;
mod console;
mod devices;
mod emulator;
mod maintenance;
mod messages;
mod receipts;
mod report;
mod wake;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::Notify;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::{Result, StoreError};

/// The migration files, in order (each applied once, recorded in `herald_migrations`).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "001_init.sql",
        include_str!("../../migrations/postgres/001_init.sql"),
    ),
    (
        2,
        "002_cluster.sql",
        include_str!("../../migrations/postgres/002_cluster.sql"),
    ),
    (
        3,
        "003_accounts.sql",
        include_str!("../../migrations/postgres/003_accounts.sql"),
    ),
    (
        4,
        "004_console.sql",
        include_str!("../../migrations/postgres/004_console.sql"),
    ),
];

/// The migration files, for the documentation test.
pub const MIGRATION_FILES: [&str; 4] = [
    "001_init.sql",
    "002_cluster.sql",
    "003_accounts.sql",
    "004_console.sql",
];

/// Advisory lock keys (`pg_advisory_xact_lock`); any two distinct 64-bit numbers would
/// do, these spell "HERALD" and a purpose.
const MIGRATION_LOCK: i64 = 0x4845_5241_4c44_0001;
pub(crate) const BOOTSTRAP_LOCK: i64 = 0x4845_5241_4c44_0002;

/// How long a receipt claimed by one node's `due_receipts` stays out of other nodes'
/// reach (ms). The node renews its claims on every pass and releases them when it settles
/// them; if it dies, another node takes them once the lease has run out. Longer than any
/// callback timeout, so a slow endpoint never gets a receipt from two nodes.
pub const RECEIPT_LEASE_MS: i64 = 60_000;

/// A transaction that hit a deadlock or a serialization failure is run again this many
/// times before the error is returned.
const RETRIES: u32 = 3;

/// How to open a PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Pool size: at most this many transactions at once.
    pub max_connections: usize,
    /// Keep every table in this schema (created if missing) instead of the connection's
    /// default `search_path`; set on each connection through its startup options. Letters,
    /// digits and `_` only. The conformance story gives each test its own.
    pub schema: Option<String>,
    /// How long a call waits for a free connection, or for a new one to be made.
    pub connect_timeout: Duration,
    /// This node's name on the receipts it claims. A node that keeps its name across a
    /// restart takes its own claimed receipts back at once; without one, a random name
    /// is used and they come back when their lease ends ([`RECEIPT_LEASE_MS`]).
    pub node_name: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            schema: None,
            connect_timeout: Duration::from_secs(10),
            node_name: None,
        }
    }
}

/// Internal failures: the driver's error is kept until the transaction decides whether
/// to retry; callers only ever see [`StoreError`].
#[derive(Debug)]
pub(crate) enum Fault {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

pub(crate) type PgResult<T> = std::result::Result<T, Fault>;

impl From<tokio_postgres::Error> for Fault {
    fn from(e: tokio_postgres::Error) -> Self {
        Fault::Db(e)
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        Fault::Store(e)
    }
}

impl Fault {
    /// A deadlock or serialization failure: running the transaction again may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Fault::Db(e) if e.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        }))
    }
}

/// The driver's error with its cause (its own `Display` says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl From<Fault> for StoreError {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Store(e) => e,
            Fault::Db(e) => match e.code() {
                Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::OUT_OF_MEMORY => {
                    StoreError::Full(describe(&e))
                }
                Some(c) if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => {
                    StoreError::Corrupt(describe(&e))
                }
                _ if e.is_closed() => {
                    StoreError::Engine(format!("connection lost: {}", describe(&e)))
                }
                _ => StoreError::Engine(describe(&e)),
            },
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Fault::Db(e).into()
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    pool: Pool,
    closed: AtomicBool,
    receipts_queued: Arc<Notify>,
    /// Tells other nodes' dispatchers, and hears theirs (see [`wake`]).
    wake: wake::Wake,
    /// The task listening for other nodes' wake-ups; started by [`PgStore::open`].
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// This node's name on the receipts it claimed.
    node: String,
    schema: Option<String>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .field("node", &self.node)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// A schema name safe to put in a statement and in connection options unquoted.
fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// A random name for this store's claims (no RNG crate: the standard library's random
/// hasher keys, the time and the process id are enough to tell nodes apart).
fn random_node_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("node-{:016x}", h.finish())
}

impl PgStore {
    /// Connect to `url` (`postgres://user@host/db`), create the schema if asked, and
    /// apply the migrations that have not run yet.
    pub async fn open(url: &str, options: PgOptions) -> Result<PgStore> {
        let store = PgStore::connect(url, options)?;
        let applied = store.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, "PostgreSQL schema migrated.");
        }
        let listener = store.wake.listen(store.receipts_queued.clone());
        if let Ok(mut slot) = store.listener.lock() {
            *slot = Some(listener);
        }
        Ok(store)
    }

    /// The pool for `url`, without touching the database yet.
    pub(crate) fn connect(url: &str, options: PgOptions) -> Result<PgStore> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Engine(format!("bad PostgreSQL URL: {e}")))?;
        if let Some(schema) = &options.schema {
            if !valid_schema(schema) {
                return Err(StoreError::Engine(format!(
                    "schema name {schema:?} must be lower-case letters, digits and _"
                )));
            }
            let extra = format!("-c search_path={schema}");
            let merged = match config.get_options() {
                Some(o) if !o.is_empty() => format!("{o} {extra}"),
                _ => extra,
            };
            config.options(merged);
        }
        if config.get_application_name().is_none() {
            config.application_name("herald");
        }
        config.connect_timeout(options.connect_timeout);
        let wake = wake::Wake::new(config.clone(), options.schema.as_deref());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Engine(format!("connection pool: {e}")))?;
        Ok(PgStore {
            pool,
            closed: AtomicBool::new(false),
            receipts_queued: Arc::new(Notify::new()),
            wake,
            listener: Mutex::new(None),
            node: options.node_name.unwrap_or_else(random_node_name),
            schema: options.schema,
        })
    }

    /// Apply the migrations this database lacks, under an advisory lock so that nodes
    /// starting together apply each exactly once. Returns the files applied.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        if let Some(schema) = &self.schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS herald_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
        let done: HashSet<i32> = tx
            .query("SELECT version FROM herald_migrations", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let known: HashSet<i32> = MIGRATIONS.iter().map(|(v, ..)| *v).collect();
        if let Some(newer) = done.iter().filter(|v| !known.contains(v)).max() {
            return Err(StoreError::Engine(format!(
                "the database has migration {newer}, which this Herald does not know: \
                 it was migrated by a newer version"
            )));
        }
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            tx.batch_execute(sql)
                .await
                .map_err(|e| StoreError::Engine(format!("migration {name}: {}", describe(&e))))?;
            tx.execute(
                "INSERT INTO herald_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            applied.push((*name).to_owned());
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// A pooled connection, unless the store is closed.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Closed => StoreError::Closed,
            deadpool_postgres::PoolError::Backend(e) => {
                StoreError::Engine(format!("could not connect: {}", describe(&e)))
            }
            other => StoreError::Engine(format!("could not get a connection: {other}")),
        })
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// Tell this process's receipt dispatcher that receipts were committed, and the other
    /// nodes' (at most every [`wake::ANNOUNCE_EVERY`]).
    pub(crate) fn receipts_committed(&self, n: u64) {
        if n > 0 {
            metrics::counter!("herald_receipts_queued_total").increment(n);
            self.receipts_queued.notify_one();
            self.wake.announce(&self.pool);
        }
    }

    pub(crate) fn receipts_signal(&self) -> Arc<Notify> {
        self.receipts_queued.clone()
    }

    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    pub(crate) fn shut_down(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop_listening();
        self.pool.close();
    }

    fn stop_listening(&self) {
        if let Some(task) = self.listener.lock().ok().and_then(|mut l| l.take()) {
            task.abort();
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

/// Run `$body` (an expression that may `.await` and use `$tx`, a
/// `&deadpool_postgres::Transaction`, and evaluates to a `PgResult`) in one transaction
/// on a pooled connection; commit, and retry the whole transaction on a deadlock or a
/// serialization failure. Evaluates to `crate::Result`. Metrics:
/// `herald_store_transaction_seconds` (committed transactions, retries included) and
/// `herald_store_transaction_retries_total`.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let store: &$crate::postgres::PgStore = $store;
        let mut attempt = 0u32;
        let started = std::time::Instant::now();
        loop {
            let mut client = match store.client().await {
                Ok(c) => c,
                Err(e) => break Err(e),
            };
            let begun = client.transaction().await;
            // A pooled connection the server closed (a restart, an idle timeout) fails at
            // BEGIN, before anything was sent: safe to run again on a fresh connection.
            if let Err(e) = &begun {
                if e.is_closed() && attempt < $crate::postgres::retries() {
                    attempt += 1;
                    continue;
                }
            }
            let outcome: $crate::postgres::PgResult<_> = async {
                let $tx = begun?;
                let value: $crate::postgres::PgResult<_> = {
                    let $tx = &$tx;
                    $body
                };
                let value = value?;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match outcome {
                Ok(v) => {
                    metrics::histogram!("herald_store_transaction_seconds")
                        .record(started.elapsed().as_secs_f64());
                    break Ok(v);
                }
                Err(f) if f.is_retryable() && attempt < $crate::postgres::retries() => {
                    attempt += 1;
                    metrics::counter!("herald_store_transaction_retries_total").increment(1);
                    tracing::debug!(
                        attempt,
                        "A PostgreSQL transaction is retried after a deadlock."
                    );
                }
                Err(f) => break Err($crate::StoreError::from(f)),
            }
        }
    }};
}
pub(crate) use in_tx;

pub(crate) const fn retries() -> u32 {
    RETRIES
}

/// Run `sql` through the connection's statement cache.
pub(crate) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> PgResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

/// [`query`] for at most one row.
pub(crate) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> PgResult<Option<Row>> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

/// [`query`] for a statement without rows; returns how many rows it changed.
pub(crate) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> PgResult<u64> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

impl PgStore {
    /// Run one read statement on a pooled connection (autocommit).
    pub(crate) async fn read(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let client = self.client().await?;
        Ok(query(&client, sql, params).await?)
    }

    /// [`PgStore::read`] for at most one row.
    pub(crate) async fn read_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let client = self.client().await?;
        Ok(query_opt(&client, sql, params).await?)
    }
}

impl PgStore {
    /// Run one writing statement on its own: autocommit makes it its own transaction,
    /// committed when it returns, without the round trips of `BEGIN` and `COMMIT`.
    /// Retried like [`in_tx!`].
    pub(crate) async fn write(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let mut attempt = 0;
        loop {
            let client = self.client().await?;
            match execute(&client, sql, params).await {
                Err(f) if f.is_retryable() && attempt < RETRIES => attempt += 1,
                done => return Ok(done?),
            }
        }
    }

    /// [`PgStore::write`] for a statement that returns at most one row.
    pub(crate) async fn write_returning(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let mut attempt = 0;
        loop {
            let client = self.client().await?;
            match query_opt(&client, sql, params).await {
                Err(f) if f.is_retryable() && attempt < RETRIES => attempt += 1,
                done => return Ok(done?),
            }
        }
    }
}

/// `SELECT state, COUNT(*)` rows, by state.
pub(crate) fn state_counts(rows: &[Row]) -> Vec<(i64, u64)> {
    rows.iter()
        .map(|r| {
            (
                i64::from(r.get::<_, i16>(0)),
                r.get::<_, i64>(1).max(0) as u64,
            )
        })
        .collect()
}
