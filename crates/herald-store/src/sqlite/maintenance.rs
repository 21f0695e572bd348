//! Retention: records past their keep-time are deleted in small batches, each its own
//! short write between the sends, so the database levels off instead of growing.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use crate::{Maintenance, Pruned, Result, Retention};

#[async_trait]
impl Maintenance for SqliteStore {
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
        // deliveries; a message at a time until `batch` rows went.
        let (deliveries, messages) = self
            .write_conn(move |c| {
                let old: Vec<i64> = c
                    .prepare_cached(
                        "SELECT id FROM message m WHERE created_at < ?1
                           AND (open = 0 OR NOT EXISTS
                                 (SELECT 1 FROM delivery d WHERE d.msg = m.id AND d.state = 0))
                           AND NOT EXISTS (SELECT 1 FROM receipt r WHERE r.msg = m.id AND r.state = 0)
                         ORDER BY created_at LIMIT ?2",
                    )?
                    .query_map(params![now_ms - r.deliveries_ms, limit], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let (mut deliveries, mut messages) = (0u64, 0u64);
                for id in old {
                    deliveries += c
                        .prepare_cached("DELETE FROM delivery WHERE msg = ?1")?
                        .execute([id])? as u64;
                    c.prepare_cached("DELETE FROM unknown_drop WHERE msg = ?1")?
                        .execute([id])?;
                    messages += c
                        .prepare_cached("DELETE FROM message WHERE id = ?1")?
                        .execute([id])? as u64;
                    if deliveries >= limit as u64 {
                        break;
                    }
                }
                Ok((deliveries, messages))
            })
            .await?;
        pruned.deliveries = deliveries;
        pruned.messages = messages;

        pruned.receipts = self
            .write_conn(move |c| {
                Ok(c.prepare_cached(
                    "DELETE FROM receipt WHERE id IN
                       (SELECT id FROM receipt WHERE state != 0 AND updated_at < ?1 LIMIT ?2)",
                )?
                .execute(params![now_ms - r.receipts_ms, limit])? as u64)
            })
            .await?;

        pruned.report_rows = self
            .write_conn(move |c| {
                Ok(
                    c.prepare_cached("DELETE FROM report_counter WHERE hour < ?1")?
                        .execute([(now_ms - r.report_ms).div_euclid(3_600_000)])?
                        as u64,
                )
            })
            .await?;

        pruned.quota_rows = self
            .write_conn(move |c| {
                Ok(c.prepare_cached(
                    "DELETE FROM quota_usage WHERE key IN
                       (SELECT key FROM quota_usage WHERE day < ?1 LIMIT ?2)",
                )?
                .execute(params![quota_cutoff_day, limit])? as u64)
            })
            .await?;

        pruned.send_budget_rows = self
            .write_conn(move |c| {
                Ok(
                    c.prepare_cached("DELETE FROM send_budget WHERE second < ?1")?
                        .execute([now_ms.div_euclid(1000) - crate::SEND_BUDGET_KEPT_SECS])?
                        as u64,
                )
            })
            .await?;

        // Devices not seen for the retention period, with every token they had; tokens
        // deleted longer ago than that.
        let (devices, tokens) = self
            .write_conn(move |c| {
                let cutoff = now_ms - r.idle_devices_ms;
                let idle: Vec<i64> = c
                    .prepare_cached("SELECT id FROM device WHERE seen_at < ?1 LIMIT ?2")?
                    .query_map(params![cutoff, limit], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let (mut devices, mut tokens) = (0u64, 0u64);
                for id in idle {
                    tokens += c
                        .prepare_cached("DELETE FROM token WHERE device = ?1")?
                        .execute([id])? as u64;
                    devices += c
                        .prepare_cached("DELETE FROM device WHERE id = ?1")?
                        .execute([id])? as u64;
                }
                tokens += c
                    .prepare_cached(
                        "DELETE FROM token WHERE id IN
                           (SELECT id FROM token WHERE deleted_at < ?1 LIMIT ?2)",
                    )?
                    .execute(params![cutoff, limit])? as u64;
                Ok((devices, tokens))
            })
            .await?;
        pruned.devices = devices;
        pruned.tokens = tokens;

        pruned.audit_rows = self
            .write_conn(move |c| {
                Ok(c.prepare_cached(
                    "DELETE FROM audit_log WHERE id IN
                       (SELECT id FROM audit_log WHERE at < ?1 LIMIT ?2)",
                )?
                .execute(params![now_ms - r.audit_ms, limit])? as u64)
            })
            .await?;

        // Sessions that ended: revoked, or past their expiry (an idle one ends sooner for
        // the server, and is deleted at its expiry at the latest). The bootstrap token has
        // no expiry and stays unless revoked.
        pruned.sessions = self
            .write_conn(move |c| {
                Ok(c.prepare_cached(
                    "DELETE FROM admin_tokens WHERE token_hash IN
                       (SELECT token_hash FROM admin_tokens
                         WHERE revoked_at < ?1 OR expires_at < ?1 LIMIT ?2)",
                )?
                .execute(params![now_ms, limit])? as u64)
            })
            .await?;
        Ok(pruned)
    }

    async fn size_on_disk(&self) -> Result<u64> {
        let path = self.path().to_path_buf();
        let size = |suffix: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        };
        Ok(size("") + size("-wal"))
    }

    async fn close(&self) {
        self.shut_down().await;
    }
}
