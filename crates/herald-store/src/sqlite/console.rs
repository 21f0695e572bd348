//! Test devices and the integration checklist's facts, on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::{
    ChecklistFacts, ConsoleStore, MAX_TEST_DEVICES_PER_APP, Result, TestDevice, TestDeviceAdded,
};

const COLUMNS: &str = "id, project_id, client_id, token, name, added_by, created_at";

fn test_device(r: &rusqlite::Row<'_>) -> rusqlite::Result<TestDevice> {
    Ok(TestDevice {
        id: r.get(0)?,
        project_id: r.get(1)?,
        client_id: r.get(2)?,
        token: r.get(3)?,
        name: r.get(4)?,
        added_by: r.get(5)?,
        created_at: r.get(6)?,
    })
}

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn add_test_device(&self, device: TestDevice) -> Result<TestDeviceAdded> {
        // One writer: the count and the insert cannot interleave with another add.
        self.write_conn(move |c| {
            let existing = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM test_device WHERE client_id = ?1 AND token = ?2"
                ))?
                .query_row(params![device.client_id, device.token], test_device)
                .optional()?;
            if let Some(existing) = existing {
                return Ok(TestDeviceAdded::Exists(existing));
            }
            let count: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM test_device WHERE client_id = ?1")?
                .query_row(params![device.client_id], |r| r.get(0))?;
            if count >= MAX_TEST_DEVICES_PER_APP as i64 {
                return Ok(TestDeviceAdded::Full);
            }
            c.prepare_cached(&format!(
                "INSERT INTO test_device ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                device.id,
                device.project_id,
                device.client_id,
                device.token,
                device.name,
                device.added_by,
                device.created_at
            ])?;
            Ok(TestDeviceAdded::Added(device))
        })
        .await
    }

    async fn test_devices(&self, client_id: &str) -> Result<Vec<TestDevice>> {
        self.read_all(
            format!(
                "SELECT {COLUMNS} FROM test_device WHERE client_id = ?1 ORDER BY created_at, id"
            ),
            vec![client_id.to_owned()],
            test_device,
        )
        .await
    }

    async fn remove_test_device(&self, client_id: &str, id: &str) -> Result<bool> {
        let (client_id, id) = (client_id.to_owned(), id.to_owned());
        self.write_conn(move |c| {
            let n = c
                .prepare_cached("DELETE FROM test_device WHERE client_id = ?1 AND id = ?2")?
                .execute(params![client_id, id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn checklist_facts(&self, project_id: &str) -> Result<ChecklistFacts> {
        let project_id = project_id.to_owned();
        self.read(move |c| {
            let facts = c
                .prepare_cached(CHECKLIST_SQL)?
                .query_row(params![project_id], |r| {
                    let hour = |i: usize| -> rusqlite::Result<Option<i64>> {
                        Ok(r.get::<_, Option<i64>>(i)?.map(|h| h * 3_600_000))
                    };
                    Ok(ChecklistFacts {
                        project_created_at: r.get(0)?,
                        right_requested_at: r.get(1)?,
                        right_confirmed_at: r.get(2)?,
                        right_granted_at: r.get(3)?,
                        key_created_at: r.get(4)?,
                        receipt_configured_at: r.get(5)?,
                        receipt_answered_at: r.get(6)?,
                        token_at: r.get(7)?,
                        test_device_at: r.get(8)?,
                        sent_at: hour(9)?,
                        shown_at: hour(10)?,
                        clicked_at: hour(11)?,
                    })
                })?;
            Ok(facts)
        })
        .await
    }
}

/// Each step's first time. The receipt and token look-ups walk an index (or the table)
/// in time order and stop at the first row of the project.
const CHECKLIST_SQL: &str = "SELECT
    (SELECT created_at FROM projects WHERE project_id = ?1),
    (SELECT MIN(e.at) FROM right_events e JOIN apps a ON a.client_id = e.client_id
      WHERE a.project_id = ?1 AND e.action = 'request'),
    (SELECT MIN(e.at) FROM right_events e JOIN apps a ON a.client_id = e.client_id
      WHERE a.project_id = ?1 AND e.action = 'confirm'),
    (SELECT MIN(e.at) FROM right_events e JOIN apps a ON a.client_id = e.client_id
      WHERE a.project_id = ?1 AND e.action = 'grant'),
    (SELECT MIN(created_at) FROM service_accounts WHERE project_id = ?1),
    (SELECT MIN(created_at) FROM receipt_configs WHERE project_id = ?1),
    (SELECT r.updated_at FROM receipt r WHERE r.state = 1
       AND r.config IN (SELECT receipt_id FROM receipt_configs WHERE project_id = ?1)
     ORDER BY r.updated_at LIMIT 1),
    (SELECT t.created_at FROM token t
      WHERE t.client_id IN (SELECT client_id FROM apps WHERE project_id = ?1)
      ORDER BY t.id LIMIT 1),
    (SELECT MIN(created_at) FROM test_device WHERE project_id = ?1),
    (SELECT MIN(hour) FROM report_counter WHERE project_id = ?1 AND outcome = 'queued'),
    (SELECT MIN(hour) FROM report_counter WHERE project_id = ?1 AND outcome = 'shown'),
    (SELECT MIN(hour) FROM report_counter WHERE project_id = ?1 AND outcome = 'clicked')";
