//! Choosing and opening the engine a store URL names: `sqlite:PATH` (or a plain path) is
//! the embedded SQLite file, `postgres://…` / `postgresql://…` a PostgreSQL database.

use std::path::PathBuf;
use std::sync::Arc;

use crate::postgres::{PgOptions, PgStore};
use crate::sqlite::{Durability, SqliteStore};
use crate::{Result, Store, StoreError};

/// The engine and place a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL, as given.
    Postgres(String),
}

impl StoreUrl {
    /// `sqlite:PATH`, `sqlite://PATH` or a plain path → SQLite; `postgres://…` or
    /// `postgresql://…` → PostgreSQL; any other `scheme://` is refused.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let url = url.trim();
        if url.is_empty() {
            return Err(StoreError::Engine("the store URL is empty".into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::Engine("the sqlite: URL names no file".into()));
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::Engine(format!(
                "unknown store engine {scheme:?}: use sqlite:PATH or postgres://…"
            )));
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(url)))
    }
}

/// Engine settings [`open_store`] passes on; each engine reads its own.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// SQLite: how hard each commit is pushed to disk.
    pub sqlite_durability: Durability,
    /// PostgreSQL: pool size, schema, timeouts.
    pub postgres: PgOptions,
}

/// Open (creating and migrating) the store `url` names; see [`StoreUrl::parse`].
pub async fn open_store(url: &str, options: &OpenOptions) -> Result<Arc<dyn Store>> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => {
            let durability = options.sqlite_durability;
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path, durability))
                .await
                .map_err(|e| StoreError::Engine(format!("opening SQLite: {e}")))??;
            Ok(Arc::new(store))
        }
        StoreUrl::Postgres(url) => Ok(Arc::new(
            PgStore::open(&url, options.postgres.clone()).await?,
        )),
    }
}

/// Apply the migrations the store at `url` lacks and close it (what `herald migrate
/// --store URL` does); returns the migration files applied, oldest first (empty when it
/// was up to date).
pub async fn migrate_store(url: &str, options: &OpenOptions) -> Result<Vec<String>> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => {
            let durability = options.sqlite_durability;
            let (before, store) = tokio::task::spawn_blocking(move || {
                let before = sqlite_schema_version(&path)?;
                SqliteStore::open(&path, durability).map(|s| (before, s))
            })
            .await
            .map_err(|e| StoreError::Engine(format!("opening SQLite: {e}")))??;
            crate::Maintenance::close(&store).await;
            Ok(crate::sqlite::MIGRATION_FILES
                .iter()
                .skip(before)
                .map(|f| (*f).to_owned())
                .collect())
        }
        StoreUrl::Postgres(url) => {
            let store = PgStore::connect(&url, options.postgres.clone())?;
            let applied = store.migrate().await;
            crate::Maintenance::close(&store).await;
            applied
        }
    }
}

/// How many migrations the SQLite file at `path` has had (0 when there is no file yet):
/// `rusqlite_migration` keeps the count in `user_version`.
fn sqlite_schema_version(path: &std::path::Path) -> Result<usize> {
    if !path.exists() {
        return Ok(0);
    }
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(usize::try_from(version).unwrap_or(0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests panic on the unexpected by design
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_engine() {
        let sqlite = |p: &str| Some(StoreUrl::Sqlite(PathBuf::from(p)));
        assert_eq!(
            StoreUrl::parse("sqlite:/var/lib/herald/herald.db").ok(),
            sqlite("/var/lib/herald/herald.db")
        );
        assert_eq!(
            StoreUrl::parse("sqlite://data/h.db").ok(),
            sqlite("data/h.db")
        );
        assert_eq!(StoreUrl::parse("data/h.db").ok(), sqlite("data/h.db"));
        assert_eq!(
            StoreUrl::parse("postgres://u@127.0.0.1/db").ok(),
            Some(StoreUrl::Postgres("postgres://u@127.0.0.1/db".into()))
        );
        assert_eq!(
            StoreUrl::parse("postgresql://u@h/db").ok(),
            Some(StoreUrl::Postgres("postgresql://u@h/db".into()))
        );
        assert!(StoreUrl::parse("mysql://u@h/db").is_err());
        assert!(StoreUrl::parse("sqlite:").is_err());
        assert!(StoreUrl::parse("  ").is_err());
    }

    #[tokio::test]
    async fn migrating_sqlite_applies_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("h.db").display());
        let options = OpenOptions::default();
        let first = migrate_store(&url, &options).await.unwrap();
        assert_eq!(first, crate::sqlite::MIGRATION_FILES.to_vec());
        assert!(migrate_store(&url, &options).await.unwrap().is_empty());
        let store = open_store(&url, &options).await.unwrap();
        assert!(!store.is_bootstrapped().await.unwrap());
        store.close().await;
    }
}
