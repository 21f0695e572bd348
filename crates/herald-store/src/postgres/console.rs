//! Test devices and the integration checklist's facts, on PostgreSQL.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PgStore, execute, in_tx, query_opt};
use crate::{
    ChecklistFacts, ConsoleStore, MAX_TEST_DEVICES_PER_APP, Result, TestDevice, TestDeviceAdded,
};

const COLUMNS: &str = "id, project_id, client_id, token, name, added_by, created_at";

fn test_device(r: &Row) -> TestDevice {
    TestDevice {
        id: r.get(0),
        project_id: r.get(1),
        client_id: r.get(2),
        token: r.get(3),
        name: r.get(4),
        added_by: r.get(5),
        created_at: r.get(6),
    }
}

#[async_trait]
impl ConsoleStore for PgStore {
    async fn add_test_device(&self, device: TestDevice) -> Result<TestDeviceAdded> {
        let existing_sql =
            format!("SELECT {COLUMNS} FROM test_device WHERE client_id = $1 AND token = $2");
        let insert_sql =
            format!("INSERT INTO test_device ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        in_tx!(self, |tx| {
            async {
                // Nodes adding to the same app take turns (the app's row is the lock), so the
                // count and the insert cannot interleave.
                execute(
                    tx,
                    "SELECT 1 FROM apps WHERE client_id = $1 FOR UPDATE",
                    &[&device.client_id],
                )
                .await?;
                if let Some(row) =
                    query_opt(tx, &existing_sql, &[&device.client_id, &device.token]).await?
                {
                    return Ok(TestDeviceAdded::Exists(test_device(&row)));
                }
                let count: i64 = query_opt(
                    tx,
                    "SELECT COUNT(*) FROM test_device WHERE client_id = $1",
                    &[&device.client_id],
                )
                .await?
                .map_or(0, |r| r.get(0));
                if count >= MAX_TEST_DEVICES_PER_APP as i64 {
                    return Ok(TestDeviceAdded::Full);
                }
                execute(
                    tx,
                    &insert_sql,
                    &[
                        &device.id,
                        &device.project_id,
                        &device.client_id,
                        &device.token,
                        &device.name,
                        &device.added_by,
                        &device.created_at,
                    ],
                )
                .await?;
                Ok(TestDeviceAdded::Added(device.clone()))
            }
            .await
        })
    }

    async fn test_devices(&self, client_id: &str) -> Result<Vec<TestDevice>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM test_device WHERE client_id = $1 ORDER BY created_at, id"
        );
        let rows = self.read(&sql, &[&client_id]).await?;
        Ok(rows.iter().map(test_device).collect())
    }

    async fn remove_test_device(&self, client_id: &str, id: &str) -> Result<bool> {
        let n = self
            .write(
                "DELETE FROM test_device WHERE client_id = $1 AND id = $2",
                &[&client_id, &id],
            )
            .await?;
        Ok(n > 0)
    }

    async fn checklist_facts(&self, project_id: &str) -> Result<ChecklistFacts> {
        let Some(r) = self.read_opt(CHECKLIST_SQL, &[&project_id]).await? else {
            return Ok(ChecklistFacts::default());
        };
        let hour = |i: usize| r.get::<_, Option<i64>>(i).map(|h| h * 3_600_000);
        Ok(ChecklistFacts {
            project_created_at: r.get(0),
            right_requested_at: r.get(1),
            right_confirmed_at: r.get(2),
            right_granted_at: r.get(3),
            key_created_at: r.get(4),
            receipt_configured_at: r.get(5),
            receipt_answered_at: r.get(6),
            token_at: r.get(7),
            test_device_at: r.get(8),
            sent_at: hour(9),
            shown_at: hour(10),
            clicked_at: hour(11),
        })
    }
}

/// Each step's first time (see the SQLite engine's twin).
const CHECKLIST_SQL: &str = "SELECT
    (SELECT created_at FROM projects WHERE project_id = $1),
    (SELECT MIN(e.at) FROM right_events e JOIN apps a ON a.client_id = e.client_id
      WHERE a.project_id = $1 AND e.action = 'request'),
    (SELECT MIN(e.at) FROM right_events e JOIN apps a ON a.client_id = e.client_id
      WHERE a.project_id = $1 AND e.action = 'confirm'),
    (SELECT MIN(e.at) FROM right_events e JOIN apps a ON a.client_id = e.client_id
      WHERE a.project_id = $1 AND e.action = 'grant'),
    (SELECT MIN(created_at) FROM service_accounts WHERE project_id = $1),
    (SELECT MIN(created_at) FROM receipt_configs WHERE project_id = $1),
    (SELECT r.updated_at FROM receipt r WHERE r.state = 1
       AND r.config IN (SELECT receipt_id FROM receipt_configs WHERE project_id = $1)
     ORDER BY r.updated_at LIMIT 1),
    (SELECT t.created_at FROM token t
      WHERE t.client_id IN (SELECT client_id FROM apps WHERE project_id = $1)
      ORDER BY t.id LIMIT 1),
    (SELECT MIN(created_at) FROM test_device WHERE project_id = $1),
    (SELECT MIN(hour) FROM report_counter WHERE project_id = $1 AND outcome = 'queued'),
    (SELECT MIN(hour) FROM report_counter WHERE project_id = $1 AND outcome = 'shown'),
    (SELECT MIN(hour) FROM report_counter WHERE project_id = $1 AND outcome = 'clicked')";
