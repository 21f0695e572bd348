//! Retention: records past their keep-time are deleted in small batches, each its own
//! short transaction, so sends never wait behind a long delete.

use async_trait::async_trait;

use super::{PgStore, execute, in_tx, query};
use crate::SEND_BUDGET_KEPT_SECS;
use crate::{Maintenance, Pruned, Result, Retention};

#[async_trait]
impl Maintenance for PgStore {
    async fn prune(
        &self,
        retention: &Retention,
        now_ms: i64,
        quota_cutoff_day: i32,
        batch: usize,
    ) -> Result<Pruned> {
        let r = *retention;
        let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut pruned = Pruned::default();

        // Messages past retention with nothing queued and no receipt waiting, with their
        // deliveries; whole messages, oldest first, until `batch` deliveries went.
        let cutoff = now_ms - r.deliveries_ms;
        let (deliveries, messages) = in_tx!(self, |tx| async {
            let old = query(
                tx,
                "SELECT m.id, (SELECT count(*) FROM delivery d WHERE d.msg = m.id)
                 FROM message m WHERE m.created_at < $1
                   AND (NOT m.open OR NOT EXISTS
                         (SELECT 1 FROM delivery d WHERE d.msg = m.id AND d.state = 0))
                   AND NOT EXISTS (SELECT 1 FROM receipt r WHERE r.msg = m.id AND r.state = 0)
                 ORDER BY m.created_at LIMIT $2
                 FOR UPDATE OF m SKIP LOCKED",
                &[&cutoff, &limit],
            )
            .await?;
            let mut ids = Vec::new();
            let mut counted = 0i64;
            for row in &old {
                ids.push(row.get::<_, i64>(0));
                counted += row.get::<_, i64>(1);
                if counted >= limit {
                    break;
                }
            }
            if ids.is_empty() {
                return Ok((0, 0));
            }
            let deliveries =
                execute(tx, "DELETE FROM delivery WHERE msg = ANY($1)", &[&ids]).await?;
            execute(tx, "DELETE FROM unknown_drop WHERE msg = ANY($1)", &[&ids]).await?;
            let messages = execute(tx, "DELETE FROM message WHERE id = ANY($1)", &[&ids]).await?;
            Ok((deliveries, messages))
        }
        .await)?;
        pruned.deliveries = deliveries;
        pruned.messages = messages;

        let cutoff = now_ms - r.receipts_ms;
        pruned.receipts = self
            .write(
                "DELETE FROM receipt WHERE id IN
               (SELECT id FROM receipt WHERE state <> 0 AND updated_at < $1 LIMIT $2)",
                &[&cutoff, &limit],
            )
            .await?;

        let hour = (now_ms - r.report_ms).div_euclid(3_600_000);
        pruned.report_rows = self
            .write("DELETE FROM report_counter WHERE hour < $1", &[&hour])
            .await?;

        pruned.quota_rows = self
            .write(
                "DELETE FROM quota_usage WHERE key IN
               (SELECT key FROM quota_usage WHERE day < $1 LIMIT $2)",
                &[&quota_cutoff_day, &limit],
            )
            .await?;

        pruned.send_budget_rows = self
            .write(
                "DELETE FROM send_budget WHERE second < $1",
                &[&(now_ms.div_euclid(1000) - SEND_BUDGET_KEPT_SECS)],
            )
            .await?;

        // Devices not seen for the retention period, with every token they had; tokens
        // deleted longer ago than that.
        let cutoff = now_ms - r.idle_devices_ms;
        let (devices, tokens) = in_tx!(self, |tx| async {
            let idle: Vec<i64> = query(
                tx,
                "SELECT id FROM device WHERE seen_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
                &[&cutoff, &limit],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
            let mut tokens = 0;
            let mut devices = 0;
            if !idle.is_empty() {
                tokens += execute(tx, "DELETE FROM token WHERE device = ANY($1)", &[&idle]).await?;
                devices += execute(tx, "DELETE FROM device WHERE id = ANY($1)", &[&idle]).await?;
            }
            tokens += execute(
                tx,
                "DELETE FROM token WHERE id IN
                   (SELECT id FROM token WHERE deleted_at < $1 LIMIT $2)",
                &[&cutoff, &limit],
            )
            .await?;
            Ok((devices, tokens))
        }
        .await)?;
        pruned.devices = devices;
        pruned.tokens = tokens;

        let cutoff = now_ms - r.audit_ms;
        pruned.audit_rows = self
            .write(
                "DELETE FROM audit_log WHERE id IN
               (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)",
                &[&cutoff, &limit],
            )
            .await?;

        // Sessions that ended: revoked, or past their expiry (an idle one ends sooner for
        // the server, and is deleted at its expiry at the latest). The bootstrap token has
        // no expiry and stays unless revoked.
        pruned.sessions = self
            .write(
                "DELETE FROM admin_tokens WHERE token_hash IN
               (SELECT token_hash FROM admin_tokens WHERE revoked_at < $1 OR expires_at < $1 LIMIT $2)",
                &[&now_ms, &limit],
            )
            .await?;
        Ok(pruned)
    }

    /// The size of this store's tables with their indexes and TOAST data (in its own
    /// schema when it has one).
    async fn size_on_disk(&self) -> Result<u64> {
        let schema = self.schema().map(str::to_owned);
        let rows = self
            .read(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::int8
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'm')
                   AND n.nspname = COALESCE($1::text, current_schema())",
                &[&schema],
            )
            .await?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
    }

    async fn close(&self) {
        self.shut_down();
    }
}
