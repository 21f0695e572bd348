//! The emulator's clean slate on SQLite: every traffic table emptied in one write, and
//! the writer's caches of message facts and token apps forgotten with them (emptied
//! tables hand out their numbers again).

use async_trait::async_trait;

use super::SqliteStore;
use crate::{EmulatorStore, Result};

/// Every table of traffic; accounts, projects, apps, keys, rights and receipt
/// configurations are not in it.
const TRAFFIC_TABLES: [&str; 11] = [
    "delivery",
    "unknown_drop",
    "receipt",
    "message",
    "token",
    "device",
    "report_counter",
    "quota_usage",
    "live_views",
    "send_budget",
    // Registrations of tokens that go with them.
    "test_device",
];

#[async_trait]
impl EmulatorStore for SqliteStore {
    async fn forget_traffic(&self) -> Result<()> {
        self.write(|t| {
            for table in TRAFFIC_TABLES {
                t.conn.execute(&format!("DELETE FROM {table}"), [])?;
            }
            t.cache.messages.clear();
            t.cache.token_apps.clear();
            Ok(())
        })
        .await
    }
}
