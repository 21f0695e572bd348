//! Fault injection for tests (the `fault-injection` feature; never in a release build):
//! a full disk, simulated with SQLite's `max_page_count` on the writer's connection.
//!
//! A test caps a database at its current size plus a few pages, runs sends until they
//! fail with `SQLITE_FULL` (the error a full disk gives), then lifts the cap as if
//! space came back. The cap is read by the writer before each transaction, so it
//! applies to the real write path; nothing else changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::Connection;

/// SQLite's own default `max_page_count` (no cap).
const UNCAPPED: u64 = 4_294_967_294;

/// Caps by database file, and whether the writer has applied the latest one.
static CAPS: Mutex<Option<HashMap<PathBuf, (u64, bool)>>> = Mutex::new(None);

/// Cap the database at `path` to `extra_pages` pages beyond its size when the writer
/// next begins a transaction; `None` lifts the cap ("space came back").
pub fn cap_growth(path: &Path, extra_pages: Option<u64>) {
    let mut caps = CAPS.lock().unwrap_or_else(|p| p.into_inner());
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    // The extra pages are resolved by the writer, which knows the current size.
    caps.get_or_insert_with(HashMap::new)
        .insert(key, (extra_pages.unwrap_or(u64::MAX), false));
}

/// Called by the writer before each transaction: apply a cap set since the last call.
pub(crate) fn apply(conn: &Connection) {
    let Some(path) = conn.path().map(PathBuf::from) else {
        return;
    };
    let key = std::fs::canonicalize(&path).unwrap_or(path);
    let mut caps = CAPS.lock().unwrap_or_else(|p| p.into_inner());
    let Some((extra, applied)) = caps.as_mut().and_then(|c| c.get_mut(&key)) else {
        return;
    };
    if *applied {
        return;
    }
    *applied = true;
    let pages = if *extra == u64::MAX {
        UNCAPPED
    } else {
        let size: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap_or(0);
        size.max(0) as u64 + *extra
    };
    if let Err(e) = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())) {
        tracing::warn!(error = %e, "Could not set max_page_count.");
    }
}
