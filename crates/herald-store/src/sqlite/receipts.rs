//! Receipt configurations and the outbox: a receipt is queued in the transaction of the
//! outcome it reports, for the configuration chosen in memory (no query per receipt),
//! and refers to its delivery by number.

use std::sync::Arc;

use async_trait::async_trait;
use herald_core::receipt::ReceiptFate;
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use super::{SqliteStore, Tx, state_count};
use crate::{
    ConfigEntry, ConfigIndex, DueReceipts, PendingReceipt, ReceiptConfig, ReceiptStore, Result,
};

const RECEIPT_CONFIG_COLUMNS: &str =
    "receipt_id, project_id, client_id, url, username, secret, version, created_at";

fn receipt_config_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReceiptConfig> {
    Ok(ReceiptConfig {
        receipt_id: r.get(0)?,
        project_id: r.get(1)?,
        client_id: r.get(2)?,
        url: r.get(3)?,
        username: r.get(4)?,
        secret: r.get(5)?,
        version: r.get(6)?,
        created_at: r.get(7)?,
    })
}

/// Outbox states.
const PENDING: i64 = 0;
const SENT: i64 = 1;
const DROPPED: i64 = 2;

fn state_name(state: i64) -> &'static str {
    match state {
        PENDING => "pending",
        SENT => "sent",
        _ => "dropped",
    }
}

impl ConfigIndex {
    /// Every configuration, oldest first (loaded by the writer on start and after every
    /// change to the configurations).
    pub(crate) fn load(conn: &Connection) -> rusqlite::Result<ConfigIndex> {
        let configs = conn
            .prepare_cached(
                "SELECT receipt_id, project_id, client_id FROM receipt_configs ORDER BY created_at, rowid",
            )?
            .query_map([], |r| {
                Ok(ConfigEntry {
                    receipt_id: Arc::from(r.get::<_, String>(0)?),
                    project_id: Arc::from(r.get::<_, String>(1)?),
                    client_id: r.get::<_, Option<String>>(2)?.map(Arc::from),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ConfigIndex::new(configs))
    }
}

/// One receipt to queue.
pub(crate) struct NewReceipt<'a> {
    pub receipt_id: Option<&'a str>,
    pub project_id: &'a str,
    pub client_id: Option<&'a str>,
    pub msg: i64,
    /// The token's number when known; else the token text.
    pub tok: Option<i64>,
    pub token: Option<&'a str>,
    pub code: u32,
    pub at: i64,
    /// When it may be posted (later than `at` while it waits for the device's report).
    pub due: i64,
}

impl Tx<'_> {
    /// After a change to the configurations: the jobs after this one in the same
    /// transaction choose from the new set (a receipt must never be queued for a
    /// configuration deleted before it), and the writer reloads again after the commit.
    fn reload_configs(&mut self) -> rusqlite::Result<()> {
        self.cache.configs = ConfigIndex::load(self.conn)?;
        self.configs_changed = true;
        Ok(())
    }

    /// Queue a receipt if a configuration applies.
    pub(crate) fn queue_receipt(&mut self, r: NewReceipt<'_>) -> rusqlite::Result<()> {
        let Some(config) = self
            .cache
            .configs
            .choose(r.receipt_id, r.project_id, r.client_id)
        else {
            return Ok(());
        };
        self.conn
            .prepare_cached(
                "INSERT INTO receipt (config, msg, tok, token, client_id, result, at, state, attempts,
                                      next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0, ?8, ?7, ?7)",
            )?
            .execute(params![
                &*config,
                r.msg,
                r.tok,
                r.token,
                r.client_id,
                r.code,
                r.at,
                r.due
            ])?;
        self.receipts += 1;
        Ok(())
    }

    /// The device reported on a delivery whose receipt waits for it: the receipt is due
    /// now, with the report's code if it has one (suppressed). A receipt already
    /// attempted is final and stays as it was.
    pub(crate) fn release_receipt(
        &mut self,
        id: crate::DeliveryId,
        code: Option<herald_core::ReceiptCode>,
        at: i64,
    ) -> rusqlite::Result<()> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE receipt SET result = COALESCE(?3, result),
                        at = CASE WHEN ?3 IS NULL THEN at ELSE ?4 END,
                        next_attempt_at = ?4, updated_at = ?4
                 WHERE msg = ?1 AND tok = ?2 AND state = 0 AND attempts = 0",
            )?
            .execute(params![id.message, id.token, code.map(|c| c.0), at])?;
        if n > 0 {
            self.receipts += 1;
        }
        Ok(())
    }
}

#[async_trait]
impl ReceiptStore for SqliteStore {
    async fn create_receipt_config(&self, config: ReceiptConfig) -> Result<()> {
        self.write(move |t| {
            t.conn
                .prepare_cached(
                    "INSERT INTO receipt_configs (receipt_id, project_id, client_id, url, username, secret, version, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    config.receipt_id,
                    config.project_id,
                    config.client_id,
                    config.url,
                    config.username,
                    config.secret,
                    config.version,
                    config.created_at
                ])?;
            t.reload_configs()?;
            Ok(())
        })
        .await
    }

    async fn receipt_config(&self, receipt_id: &str) -> Result<Option<ReceiptConfig>> {
        let sql =
            format!("SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs WHERE receipt_id = ?1");
        self.read_one(sql, vec![receipt_id.to_owned()], receipt_config_from_row)
            .await
    }

    async fn list_receipt_configs(&self, project_id: &str) -> Result<Vec<ReceiptConfig>> {
        let sql = format!(
            "SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs WHERE project_id = ?1 ORDER BY created_at, rowid"
        );
        self.read_all(sql, vec![project_id.to_owned()], receipt_config_from_row)
            .await
    }

    async fn delete_receipt_config(&self, receipt_id: &str, now_ms: i64) -> Result<Option<u64>> {
        let id = receipt_id.to_owned();
        self.write(move |t| {
            if t.conn
                .prepare_cached("DELETE FROM receipt_configs WHERE receipt_id = ?1")?
                .execute([&id])?
                == 0
            {
                return Ok(None);
            }
            t.reload_configs()?;
            let dropped = t
                .conn
                .prepare_cached(
                    "UPDATE receipt SET state = 2, updated_at = ?2 WHERE config = ?1 AND state = 0",
                )?
                .execute(params![id, now_ms])?;
            Ok(Some(dropped as u64))
        })
        .await
    }

    async fn due_receipts(&self, now_ms: i64, per_config: usize) -> Result<Vec<DueReceipts>> {
        let limit = i64::try_from(per_config).unwrap_or(i64::MAX);
        self.read(move |c| {
            // Configs are few; each one's due rows come from the partial index in id order.
            let configs = c
                .prepare_cached(&format!(
                    "SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs ORDER BY created_at, rowid"
                ))?
                .query_map([], receipt_config_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut stmt = c.prepare_cached(
                "SELECT r.id, r.config, COALESCE(m.request_id, ''),
                        COALESCE(r.token, (SELECT token FROM token WHERE id = r.tok), ''),
                        COALESCE(m.push_type, 0), COALESCE(m.bi_tag, ''),
                        COALESCE((SELECT package_name FROM apps WHERE client_id = r.client_id), ''),
                        CASE WHEN m.push_type = 1 THEN m.form_id END,
                        r.result, r.at, r.attempts, r.created_at
                 FROM receipt r LEFT JOIN message m ON m.id = r.msg
                 WHERE r.config = ?1 AND r.state = 0 AND r.next_attempt_at <= ?2
                 ORDER BY r.id LIMIT ?3",
            )?;
            let mut out = Vec::new();
            for config in configs {
                let receipts = stmt
                    .query_map(params![config.receipt_id, now_ms, limit], |r| {
                        Ok(PendingReceipt {
                            id: r.get(0)?,
                            receipt_id: r.get(1)?,
                            request_id: r.get(2)?,
                            token: r.get(3)?,
                            push_type: r.get(4)?,
                            bi_tag: r.get(5)?,
                            app_package_name: r.get(6)?,
                            form_id: r.get(7)?,
                            result: r.get(8)?,
                            at: r.get(9)?,
                            attempts: r.get(10)?,
                            created_at: r.get(11)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if !receipts.is_empty() {
                    out.push(DueReceipts { config, receipts });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn settle_receipts(&self, fates: &[(i64, ReceiptFate)], now_ms: i64) -> Result<()> {
        let fates = fates.to_vec();
        self.write_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE receipt SET state = ?2, next_attempt_at = ?3, attempts = attempts + 1, updated_at = ?4
                 WHERE id = ?1 AND state = 0",
            )?;
            for (id, fate) in &fates {
                let (state, next) = match fate {
                    ReceiptFate::Sent => (SENT, now_ms),
                    ReceiptFate::Dropped => (DROPPED, now_ms),
                    ReceiptFate::Retry { next_attempt_at } => (PENDING, *next_attempt_at),
                };
                stmt.execute(params![id, state, next, now_ms])?;
            }
            Ok(())
        })
        .await
    }

    async fn retry_pending_receipts_now(&self, now_ms: i64) -> Result<u64> {
        self.write_conn(move |c| {
            Ok(c.prepare_cached(
                "UPDATE receipt SET next_attempt_at = ?1
                 WHERE state = 0 AND attempts > 0 AND next_attempt_at > ?1",
            )?
            .execute([now_ms])? as u64)
        })
        .await
    }

    async fn pending_receipts(&self) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM receipt WHERE state = 0")?
                .query_row([], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn receipt_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = self
            .read_all(
                "SELECT state, COUNT(*) FROM receipt GROUP BY state ORDER BY state".to_owned(),
                vec![],
                state_count,
            )
            .await?;
        let mut out: Vec<(String, u64)> = rows
            .into_iter()
            .map(|(s, n)| (state_name(s).to_owned(), n))
            .collect();
        out.sort();
        Ok(out)
    }

    fn receipts_queued(&self) -> Arc<Notify> {
        self.receipts_signal()
    }
}
