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

#[cfg(test)]
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
}
