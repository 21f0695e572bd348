//! Receipt configurations and the outbox. With several nodes each running a dispatcher,
//! `due_receipts` claims the rows it returns: `FOR UPDATE SKIP LOCKED` keeps two nodes
//! from taking the same row at the same moment, and the claim (`claimed_by`,
//! `claimed_until` = now + [`RECEIPT_LEASE_MS`]) keeps other nodes off it until this
//! node settles it or the lease runs out. The claiming node itself sees its claimed rows
//! again on its next pass (it waits for a batch to fill, and renews the lease), exactly
//! as the SQLite engine's read does; only other nodes are kept out.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use herald_core::receipt::ReceiptFate;
use tokio::sync::Notify;
use tokio_postgres::Row;

use super::{PgStore, RECEIPT_LEASE_MS, execute, in_tx, query, state_counts};
use crate::{DueReceipts, PendingReceipt, ReceiptConfig, ReceiptStore, Result};

const RECEIPT_CONFIG_COLUMNS: &str =
    "receipt_id, project_id, client_id, url, username, secret, version, created_at";

fn receipt_config_from_row(r: &Row) -> ReceiptConfig {
    ReceiptConfig {
        receipt_id: r.get(0),
        project_id: r.get(1),
        client_id: r.get(2),
        url: r.get(3),
        username: r.get(4),
        secret: r.get(5),
        version: r.get(6),
        created_at: r.get(7),
    }
}

/// Outbox states.
const PENDING: i16 = 0;
const SENT: i16 = 1;
const DROPPED: i16 = 2;

fn state_name(state: i64) -> &'static str {
    match state {
        0 => "pending",
        1 => "sent",
        _ => "dropped",
    }
}

/// Claim up to `$3` due rows per configuration for node `$2` at `$1` until `$4`, and
/// return them with what a callback reports.
const CLAIM_SQL: &str = "WITH picked AS (
   SELECT p.id FROM receipt_configs c
   CROSS JOIN LATERAL (
     SELECT r.id FROM receipt r
     WHERE r.config = c.receipt_id AND r.state = 0 AND r.next_attempt_at <= $1
       AND (r.claimed_until IS NULL OR r.claimed_until <= $1 OR r.claimed_by = $2)
     ORDER BY r.id LIMIT $3
     FOR UPDATE OF r SKIP LOCKED
   ) p
 ), claimed AS (
   UPDATE receipt r SET claimed_by = $2, claimed_until = $4
   FROM picked WHERE r.id = picked.id
   RETURNING r.id, r.config, r.msg, r.tok, r.token, r.client_id, r.result, r.at, r.attempts, r.created_at
 )
 SELECT r.id, r.config, COALESCE(m.request_id, ''),
        COALESCE(r.token, (SELECT token FROM token WHERE id = r.tok), ''),
        COALESCE(m.push_type, 0::int2), COALESCE(m.bi_tag, ''),
        COALESCE((SELECT package_name FROM apps WHERE client_id = r.client_id), ''),
        CASE WHEN m.push_type = 1 THEN m.form_id END,
        r.result, r.at, r.attempts, r.created_at
 FROM claimed r LEFT JOIN message m ON m.id = r.msg
 ORDER BY r.id";

fn pending_from_row(r: &Row) -> PendingReceipt {
    PendingReceipt {
        id: r.get(0),
        receipt_id: r.get(1),
        request_id: r.get(2),
        token: r.get(3),
        push_type: u8::try_from(r.get::<_, i16>(4)).unwrap_or_default(),
        bi_tag: r.get(5),
        app_package_name: r.get(6),
        form_id: r.get(7),
        result: u32::try_from(r.get::<_, i32>(8)).unwrap_or_default(),
        at: r.get(9),
        attempts: u32::try_from(r.get::<_, i32>(10)).unwrap_or_default(),
        created_at: r.get(11),
    }
}

#[async_trait]
impl ReceiptStore for PgStore {
    async fn create_receipt_config(&self, config: ReceiptConfig) -> Result<()> {
        self.write(
            "INSERT INTO receipt_configs (receipt_id, project_id, client_id, url, username, secret, version, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &config.receipt_id,
                &config.project_id,
                &config.client_id,
                &config.url,
                &config.username,
                &config.secret,
                &config.version,
                &config.created_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn receipt_config(&self, receipt_id: &str) -> Result<Option<ReceiptConfig>> {
        let sql =
            format!("SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs WHERE receipt_id = $1");
        let row = self.read_opt(&sql, &[&receipt_id]).await?;
        Ok(row.as_ref().map(receipt_config_from_row))
    }

    async fn list_receipt_configs(&self, project_id: &str) -> Result<Vec<ReceiptConfig>> {
        let sql = format!(
            "SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs WHERE project_id = $1 ORDER BY created_at, seq"
        );
        let rows = self.read(&sql, &[&project_id]).await?;
        Ok(rows.iter().map(receipt_config_from_row).collect())
    }

    async fn delete_receipt_config(&self, receipt_id: &str, now_ms: i64) -> Result<Option<u64>> {
        in_tx!(self, |tx| {
            async {
            let deleted = execute(
                tx,
                "DELETE FROM receipt_configs WHERE receipt_id = $1",
                &[&receipt_id],
            )
            .await?;
            if deleted == 0 {
                return Ok(None);
            }
            let dropped = execute(
                tx,
                "UPDATE receipt SET state = $3, updated_at = $2, claimed_by = NULL, claimed_until = NULL
                 WHERE config = $1 AND state = 0",
                &[&receipt_id, &now_ms, &DROPPED],
            )
            .await?;
            Ok(Some(dropped))
        }
        .await
        })
    }

    async fn due_receipts(&self, now_ms: i64, per_config: usize) -> Result<Vec<DueReceipts>> {
        let limit = i64::try_from(per_config).unwrap_or(i64::MAX);
        let node = self.node();
        let until = now_ms.saturating_add(RECEIPT_LEASE_MS);
        let config_sql = format!(
            "SELECT {RECEIPT_CONFIG_COLUMNS} FROM receipt_configs ORDER BY created_at, seq"
        );
        let (configs, rows) = in_tx!(self, |tx| async {
            let rows = query(tx, CLAIM_SQL, &[&now_ms, &node, &limit, &until]).await?;
            if rows.is_empty() {
                return Ok((Vec::new(), rows));
            }
            let configs = query(tx, &config_sql, &[]).await?;
            Ok((configs, rows))
        }
        .await)?;
        let mut by_config: HashMap<String, Vec<PendingReceipt>> = HashMap::new();
        for r in &rows {
            let p = pending_from_row(r);
            by_config.entry(p.receipt_id.clone()).or_default().push(p);
        }
        let mut out = Vec::new();
        for row in &configs {
            let config = receipt_config_from_row(row);
            if let Some(receipts) = by_config.remove(&config.receipt_id) {
                out.push(DueReceipts { config, receipts });
            }
        }
        Ok(out)
    }

    async fn settle_receipts(&self, fates: &[(i64, ReceiptFate)], now_ms: i64) -> Result<()> {
        if fates.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(fates.len());
        let mut states = Vec::with_capacity(fates.len());
        let mut nexts = Vec::with_capacity(fates.len());
        for (id, fate) in fates {
            let (state, next) = match fate {
                ReceiptFate::Sent => (SENT, now_ms),
                ReceiptFate::Dropped => (DROPPED, now_ms),
                ReceiptFate::Retry { next_attempt_at } => (PENDING, *next_attempt_at),
            };
            ids.push(*id);
            states.push(state);
            nexts.push(next);
        }
        self.write(
            "UPDATE receipt r SET state = u.state, next_attempt_at = u.next, attempts = r.attempts + 1,
                 updated_at = $4, claimed_by = NULL, claimed_until = NULL
             FROM unnest($1::int8[], $2::int2[], $3::int8[]) AS u(id, state, next)
             WHERE r.id = u.id AND r.state = 0",
            &[&ids, &states, &nexts, &now_ms],
        )
        .await?;
        Ok(())
    }

    async fn retry_pending_receipts_now(&self, now_ms: i64) -> Result<u64> {
        self.write(
            "UPDATE receipt SET next_attempt_at = $1
             WHERE state = 0 AND attempts > 0 AND next_attempt_at > $1",
            &[&now_ms],
        )
        .await
    }

    async fn pending_receipts(&self) -> Result<u64> {
        let rows = self
            .read("SELECT COUNT(*) FROM receipt WHERE state = 0", &[])
            .await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    async fn receipt_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = self
            .read(
                "SELECT state, COUNT(*) FROM receipt GROUP BY state ORDER BY state",
                &[],
            )
            .await?;
        let mut out: Vec<(String, u64)> = state_counts(&rows)
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
