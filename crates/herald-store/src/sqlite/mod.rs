//! The embedded SQLite engine: one writer thread that group-commits, a small reader pool,
//! and a checkpointer that keeps the write-ahead log bounded.
//!
//! Why a dedicated writer thread: SQLite allows one writer at a time, and a cross-thread
//! hand-off costs ~50 µs on this class of machine while an insert costs ~2 µs. So every
//! write is a job sent to the writer, which drains whatever jobs are waiting (up to
//! [`MAX_BATCH`]), runs each in its own savepoint inside one transaction, adds the push
//! report's counters the jobs moved, commits once (one fsync), then answers every job.
//! The queue to the writer is bounded ([`WRITE_QUEUE`]): when it is full, writers wait
//! (backpressure) instead of growing memory.

mod accounts;
mod apps;
mod console;
mod devices;
mod emulator;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod maintenance;
mod messages;
mod receipts;
mod report;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use rusqlite_migration::{M, Migrations};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::{Result, StoreError};

pub use crate::ConfigIndex;

/// Most jobs committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer at most; further writers wait for room.
pub const WRITE_QUEUE: usize = 4096;
/// Offline cache cap per token (Push Kit: 120 messages; older ones are replaced, receipt 15).
pub const OFFLINE_CACHE_CAP: i64 = 120;
/// The write-ahead log is reset once it grows past this (bytes).
pub const WAL_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/sqlite/001_init.sql")),
    M::up(include_str!(
        "../../migrations/sqlite/002_rights_quotas.sql"
    )),
    M::up(include_str!("../../migrations/sqlite/004_push_types.sql")),
    M::up(include_str!("../../migrations/sqlite/005_receipts.sql")),
    M::up(include_str!("../../migrations/sqlite/006_report.sql")),
    M::up(include_str!("../../migrations/sqlite/007_data_plane.sql")),
    M::up(include_str!("../../migrations/sqlite/008_cluster.sql")),
    M::up(include_str!("../../migrations/sqlite/009_accounts.sql")),
    M::up(include_str!("../../migrations/sqlite/010_console.sql")),
];

/// The migration files, for the documentation test.
pub const MIGRATION_FILES: [&str; 9] = [
    "001_init.sql",
    "002_rights_quotas.sql",
    "004_push_types.sql",
    "005_receipts.sql",
    "006_report.sql",
    "007_data_plane.sql",
    "008_cluster.sql",
    "009_accounts.sql",
    "010_console.sql",
];

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full(e.to_string()),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Engine(e.to_string()),
        }
    }
}

impl From<rusqlite_migration::Error> for StoreError {
    fn from(e: rusqlite_migration::Error) -> Self {
        StoreError::Engine(format!("migration: {e}"))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Engine(format!("io: {e}"))
    }
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

/// What a job sees: the connection, and what it adds to the commit.
pub(crate) struct Tx<'a> {
    pub conn: &'a Connection,
    pub cache: &'a mut WriterCache,
    /// Report counters this job moved (merged into the commit if the job succeeds).
    pub counters: HashMap<report::CounterRow, i64>,
    /// Receipts this job queued.
    pub receipts: u64,
    /// The job changed receipt configurations: reload the index after it.
    pub configs_changed: bool,
}

/// What the writer remembers between jobs. Every map is bounded (cleared when full): it
/// only saves lookups, the database is the truth.
#[derive(Default)]
pub(crate) struct WriterCache {
    pub configs: ConfigIndex,
    pub messages: HashMap<i64, Arc<messages::MessageInfo>>,
    pub token_apps: HashMap<i64, Arc<str>>,
}

const CACHED_MESSAGES: usize = 4096;
const CACHED_TOKENS: usize = 200_000;

type Completion = Box<dyn FnOnce(Option<String>) + Send>;
type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (Completion, JobEffects) + Send>;

/// What a finished job leaves for the commit.
pub(crate) struct JobEffects {
    ok: bool,
    counters: HashMap<report::CounterRow, i64>,
    receipts: u64,
    configs_changed: bool,
}

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    receipts_queued: Arc<Notify>,
    /// Dropping the sender stops the checkpointer.
    checkpoint_stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    checkpoint_thread: Mutex<Option<JoinHandle<()>>>,
    durability: Durability,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// Page cache of the writer connection, KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

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
    // Integrity is kept by the code that writes (one writer, in transactions); foreign
    // key checks would cost a lookup per delivery row on the hot path.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // The writer keeps the hot pages (queues, indexes) in memory instead of re-reading
    // them from the OS for every transaction.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints run on their own thread (`checkpointer`), not inside the writer's
    // commits, where they would stall every send that shares the commit.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // After a checkpoint resets the log, truncate the file back to this size.
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Prepared statements kept per connection. The writer runs a few dozen distinct
/// statements (sends, acks, counters, receipts, the pruner); with rusqlite's default of
/// 16 they evicted each other and SQLite re-parsed SQL on the hot path.
const STATEMENT_CACHE: usize = 128;

fn wal_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// Copy committed WAL frames into the database file every [`CHECKPOINT_EVERY`] with a
/// PASSIVE checkpoint (it never blocks the writer or readers). Readers holding old
/// snapshots can keep a passive checkpoint from ever resetting the log, so once the log
/// passes [`WAL_LIMIT_BYTES`] a TRUNCATE checkpoint (which waits for them, briefly
/// blocking the writer) brings it back to zero: the log stays bounded under any load.
/// When `stop` is dropped, one last TRUNCATE leaves a small WAL behind.
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
                let mode = if wal_size(&path) > WAL_LIMIT_BYTES {
                    "TRUNCATE"
                } else {
                    "PASSIVE"
                };
                if let Err(e) =
                    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
                {
                    tracing::warn!(error = %e, mode, "A WAL checkpoint failed.");
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

        let (tx, rx) = mpsc::channel::<Job>(WRITE_QUEUE);
        let receipts_queued = Arc::new(Notify::new());
        let cache = WriterCache {
            configs: ConfigIndex::load(&conn)?,
            ..Default::default()
        };
        let signal = receipts_queued.clone();
        let handle = std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, cache, signal))?;
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
            receipts_queued,
            checkpoint_stop: Mutex::new(Some(stop)),
            checkpoint_thread: Mutex::new(Some(checkpoint_thread)),
            durability,
        })
    }

    /// Run `f` in the writer's next transaction; resolves once it is committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |t: &mut Tx<'_>| {
            let outcome = in_savepoint(t, f);
            let effects = JobEffects {
                ok: outcome.is_ok(),
                counters: std::mem::take(&mut t.counters),
                receipts: std::mem::take(&mut t.receipts),
                configs_changed: std::mem::take(&mut t.configs_changed),
            };
            let done: Completion = Box::new(move |commit_error: Option<String>| {
                let outcome = match commit_error {
                    None => outcome,
                    Some(e) => Err(StoreError::Engine(format!("commit failed: {e}"))),
                };
                let _ = tx.send(outcome);
            });
            (done, effects)
        });
        let sender = self
            .writer
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        sender.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`SqliteStore::write`] for jobs that only need the connection.
    pub(crate) async fn write_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write(move |t| f(t.conn)).await
    }

    /// Run `f` on a pooled read connection on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        // A closed store answers nothing, reads included (the contract of `close`).
        if !self.writer.lock().is_ok_and(|w| w.is_some()) {
            return Err(StoreError::Closed);
        }
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut p| p.pop());
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(std::time::Duration::from_secs(5))?;
                    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
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
    pub(crate) async fn read_one<T: Send + 'static>(
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
    pub(crate) async fn read_all<T: Send + 'static>(
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

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn receipts_signal(&self) -> Arc<Notify> {
        self.receipts_queued.clone()
    }

    /// Stop the writer (after it drained its queue) and the checkpointer.
    pub(crate) async fn shut_down(&self) {
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

/// `SELECT state, COUNT(*)` of a table, by state.
pub(crate) fn state_count(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, u64)> {
    Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64))
}

fn in_savepoint<T>(t: &mut Tx<'_>, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
    t.conn.execute_batch("SAVEPOINT job")?;
    match f(t) {
        Ok(v) => {
            t.conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            t.conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    mut cache: WriterCache,
    receipts_queued: Arc<Notify>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        #[cfg(feature = "fault-injection")]
        fault::apply(&conn);
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "Could not begin a write transaction.");
            // Dropping the jobs drops their answer channels: every waiter gets an error.
            continue;
        }
        let mut completions: Vec<Completion> = Vec::with_capacity(jobs.len());
        let mut counters: HashMap<report::CounterRow, i64> = HashMap::new();
        let mut receipts = 0;
        let mut configs_changed = false;
        // SQLite rolls a whole transaction back on some errors (a full disk, I/O): the
        // jobs after that would run outside any transaction, persist, and be reported as
        // failed. The batch stops there; the jobs not run are dropped (their waiters get
        // an error) and the ones run are reported failed, as they were rolled back.
        let mut rolled_back = false;
        for job in jobs.drain(..) {
            if rolled_back {
                continue;
            }
            let mut tx = Tx {
                conn: &conn,
                cache: &mut cache,
                counters: HashMap::new(),
                receipts: 0,
                configs_changed: false,
            };
            let (done, effects) = job(&mut tx);
            if effects.ok {
                for (k, n) in effects.counters {
                    *counters.entry(k).or_insert(0) += n;
                }
                receipts += effects.receipts;
                configs_changed |= effects.configs_changed;
            } else {
                // A rolled-back job may have cached rows that no longer exist.
                cache.messages.clear();
                cache.token_apps.clear();
                rolled_back = conn.is_autocommit();
            }
            completions.push(done);
        }
        let commit_error = if rolled_back {
            tracing::error!("A write transaction was rolled back by SQLite; its batch failed.");
            Some("the write transaction was rolled back".to_owned())
        } else {
            report::add_counters(&conn, &counters)
                .and_then(|()| conn.execute_batch("COMMIT"))
                .err()
                .map(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    tracing::error!(error = %e, "Write transaction failed to commit.");
                    e.to_string()
                })
        };
        metrics::histogram!("herald_store_commit_batch_size").record(completions.len() as f64);
        if commit_error.is_some() {
            cache.messages.clear();
            cache.token_apps.clear();
        }
        if configs_changed || commit_error.is_some() {
            match ConfigIndex::load(&conn) {
                Ok(index) => cache.configs = index,
                Err(e) => tracing::error!(error = %e, "Could not reload receipt configurations."),
            }
        }
        if commit_error.is_none() && receipts > 0 {
            metrics::counter!("herald_receipts_queued_total").increment(receipts);
            receipts_queued.notify_one();
        }
        if cache.messages.len() > CACHED_MESSAGES {
            cache.messages.clear();
        }
        if cache.token_apps.len() > CACHED_TOKENS {
            cache.token_apps.clear();
        }
        for done in completions {
            done(commit_error.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(store: &SqliteStore) -> Vec<i64> {
        let c = Connection::open(&store.path).expect("open");
        let mut stmt = c
            .prepare("SELECT x FROM scratch ORDER BY x")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    /// A job after which SQLite has rolled the whole transaction back (as it does on a
    /// full disk) ends its batch: nothing of the batch persists, and every job of it —
    /// before, at and after the failure — is answered with an error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_sqlite_rolled_back_fails_its_whole_batch_and_persists_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("t.db"), Durability::Full).expect("open");
        store
            .write_conn(|c| Ok(c.execute_batch("CREATE TABLE scratch (x INTEGER)")?))
            .await
            .expect("create");
        // Hold the writer so that the next three jobs queue up and share one batch.
        let store = Arc::new(store);
        let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let hold = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write_conn(move |_| {
                        let _ = started_tx.send(());
                        let _ = held_rx.recv();
                        Ok(())
                    })
                    .await
            }
        });
        started_rx.await.expect("the writer runs the holding job");
        let insert = |x: i64| {
            store.write_conn(move |c| Ok(c.execute("INSERT INTO scratch (x) VALUES (?1)", [x])?))
        };
        let rollback = store.write_conn(|c| {
            c.execute_batch("ROLLBACK")?;
            Ok(0)
        });
        let release = async {
            tokio::task::yield_now().await;
            let _ = held_tx.send(());
        };
        let (before, failed, after, ()) = tokio::join!(insert(1), rollback, insert(2), release);
        hold.await.expect("task").expect("the holding job");
        assert!(
            before.is_err(),
            "the job before the rollback is reported failed"
        );
        assert!(failed.is_err());
        assert!(
            after.is_err(),
            "the job after the rollback is not run outside a transaction"
        );
        assert_eq!(rows(&store), Vec::<i64>::new());
        // The writer goes on: the next batch commits.
        insert(3).await.expect("a later write");
        assert_eq!(rows(&store), vec![3]);
    }
}
