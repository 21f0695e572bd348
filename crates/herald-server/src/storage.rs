//! Which store a node opens: the `store` URL (default: the embedded SQLite file in the
//! data directory), the engine options it implies, and the node's stable name.

use std::io::Write;
use std::path::{Path, PathBuf};

use herald_store::sqlite::Durability;
use herald_store::{OpenOptions, StoreUrl};

use crate::config::Config;
use crate::{DATABASE_FILE, ServerError, ids};

/// The file in the data directory that keeps this node's name across restarts.
pub const NODE_ID_FILE: &str = "node-id";

/// A store URL resolved for [`herald_store::open_store`]: the URL the engine reads and
/// the options that go with it.
#[derive(Debug, Clone)]
pub struct StoreTarget {
    /// What the engine connects to (a PostgreSQL URL without Herald's own `schema`
    /// parameter, or `sqlite:PATH`).
    pub url: String,
    pub options: OpenOptions,
}

impl StoreTarget {
    /// Whether this is a store several nodes may share.
    pub fn is_shared(&self) -> bool {
        matches!(StoreUrl::parse(&self.url), Ok(StoreUrl::Postgres(_)))
    }

    /// The URL for logs: the password, if any, replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

/// Resolve `store` (empty: `DATA_DIR/herald.db`) with the node's durability setting and
/// name. A PostgreSQL URL may carry `schema=NAME` among its parameters: Herald keeps its
/// tables in that schema (created if missing) and passes the rest to the driver.
pub fn target(
    store: &str,
    data_dir: &Path,
    durability: Durability,
    node_name: Option<String>,
) -> Result<StoreTarget, ServerError> {
    let mut options = OpenOptions {
        sqlite_durability: durability,
        ..OpenOptions::default()
    };
    let store = store.trim();
    if store.is_empty() {
        let path = data_dir.join(DATABASE_FILE);
        return Ok(StoreTarget {
            url: format!("sqlite:{}", path.display()),
            options,
        });
    }
    let url = match StoreUrl::parse(store)? {
        StoreUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
        StoreUrl::Postgres(url) => {
            let (url, schema) = take_schema(&url);
            options.postgres.schema = schema;
            options.postgres.node_name = node_name;
            url
        }
    };
    Ok(StoreTarget { url, options })
}

/// The node's durability setting from `sqlite_synchronous`.
pub fn durability(config: &Config) -> Result<Durability, ServerError> {
    match config.sqlite_synchronous.as_str() {
        "full" => Ok(Durability::Full),
        "normal" => Ok(Durability::Normal),
        other => Err(ServerError::Config(format!(
            "sqlite_synchronous must be \"full\" or \"normal\", not {other:?}"
        ))),
    }
}

/// The store a configuration names; a shared one with this node's name from its data
/// directory (the embedded default leaves the data directory as it always was).
pub fn target_for(config: &Config) -> Result<StoreTarget, ServerError> {
    let durability = durability(config)?;
    let mut target = target(&config.store, &config.data_dir, durability, None)?;
    if target.is_shared() {
        target.options.postgres.node_name = Some(node_id(&config.data_dir)?);
    }
    Ok(target)
}

/// Apply the migrations the store lacks (as `herald migrate` does); returns the files
/// applied, oldest first.
pub async fn migrate(target: &StoreTarget) -> Result<Vec<String>, ServerError> {
    Ok(herald_store::migrate_store(&target.url, &target.options).await?)
}

/// Split Herald's `schema=NAME` parameter off a PostgreSQL URL.
fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

/// `scheme://user:secret@host…` → `scheme://user:***@host…`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// This node's name: read from `DATA_DIR/node-id`, or made up and written there on
/// first start (so a restarted node takes its own receipt claims back at once).
pub fn node_id(data_dir: &Path) -> Result<String, ServerError> {
    let path = data_dir.join(NODE_ID_FILE);
    let io = |source| ServerError::DataDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if valid_node_id(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {
            return Err(ServerError::Config(format!(
                "{} must hold one name of letters, digits, - and _ (at most 64)",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let name = format!("node-{}", ids::hex_id(16));
    write_atomically(&path, format!("{name}\n").as_bytes(), 0o644).map_err(io)?;
    Ok(name)
}

fn valid_node_id(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Write `bytes` to a temporary file beside `path`, flush it, and rename it over `path`:
/// readers see the old file or the whole new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp: PathBuf = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        path.with_file_name(name)
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests panic on the unexpected by design
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_embedded_file_in_the_data_dir() {
        let t = target("", Path::new("/d"), Durability::Full, None).unwrap();
        assert_eq!(t.url, "sqlite:/d/herald.db");
        assert!(!t.is_shared());
    }

    #[test]
    fn a_postgres_url_gives_up_its_schema_parameter() {
        let t = target(
            "postgres://u:pw@127.0.0.1/test?schema=herald_a&connect_timeout=5",
            Path::new("/d"),
            Durability::Full,
            Some("node-1".into()),
        )
        .unwrap();
        assert_eq!(t.url, "postgres://u:pw@127.0.0.1/test?connect_timeout=5");
        assert_eq!(t.options.postgres.schema.as_deref(), Some("herald_a"));
        assert_eq!(t.options.postgres.node_name.as_deref(), Some("node-1"));
        assert!(t.is_shared());
        assert_eq!(
            t.redacted(),
            "postgres://u:***@127.0.0.1/test?connect_timeout=5"
        );
        let plain = target(
            "postgres://u@h/db?schema=s",
            Path::new("/d"),
            Durability::Full,
            None,
        )
        .unwrap();
        assert_eq!(plain.url, "postgres://u@h/db");
        assert!(target("mysql://h/db", Path::new("/d"), Durability::Full, None).is_err());
    }

    #[test]
    fn the_node_id_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = node_id(dir.path()).unwrap();
        assert!(first.starts_with("node-"));
        assert_eq!(node_id(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join(NODE_ID_FILE), "bad name!\n").unwrap();
        assert!(node_id(dir.path()).is_err());
    }
}
