//! The emulator's clean slate on PostgreSQL: every traffic table emptied in one
//! transaction.

use async_trait::async_trait;

use super::{PgStore, execute, in_tx};
use crate::{EmulatorStore, Result};

#[async_trait]
impl EmulatorStore for PgStore {
    async fn forget_traffic(&self) -> Result<()> {
        // DELETE rather than TRUNCATE: no ACCESS EXCLUSIVE lock against other nodes'
        // readers, and the tables of a test run are small.
        in_tx!(self, |tx| async {
            for table in [
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
                "test_device",
            ] {
                execute(tx, &format!("DELETE FROM {table}"), &[]).await?;
            }
            Ok(())
        }
        .await)
    }
}
