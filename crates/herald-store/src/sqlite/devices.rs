//! Devices and their push tokens, each with an integer number deliveries are keyed by.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::{DeviceAuth, DeviceStore, NewDevice, NewToken, QuotaStore, Result, TokenRecord};
use herald_core::live::LiveViewState;
use herald_core::quota::CounterKey;

const TOKEN_COLUMNS: &str = "t.token, t.id, t.device, d.device_id, t.client_id, a.project_id
     FROM token t JOIN device d ON d.id = t.device JOIN apps a ON a.client_id = t.client_id";

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        token: r.get(0)?,
        token_num: r.get(1)?,
        device: r.get(2)?,
        device_id: r.get(3)?,
        client_id: r.get(4)?,
        project_id: r.get(5)?,
    })
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn register_device(&self, device: NewDevice) -> Result<i64> {
        self.write_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO device (device_id, secret_hash, created_at, seen_at) VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![device.device_id, device.secret_hash, device.created_at])?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn device_auth(&self, device_id: &str, now_ms: i64) -> Result<Option<DeviceAuth>> {
        let id = device_id.to_owned();
        self.write_conn(move |c| {
            Ok(c.prepare_cached(
                "UPDATE device SET seen_at = ?2, sessions = sessions + 1 WHERE device_id = ?1
                 RETURNING id, secret_hash, sessions",
            )?
            .query_row(params![id, now_ms], |r| {
                Ok(DeviceAuth {
                    device: r.get(0)?,
                    secret_hash: r.get(1)?,
                    session: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn token_for(
        &self,
        device: i64,
        client_id: &str,
        candidate: NewToken,
    ) -> Result<Option<TokenRecord>> {
        let client_id = client_id.to_owned();
        self.write_conn(move |c| {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} WHERE t.device = ?1 AND t.client_id = ?2 AND t.deleted_at IS NULL"
            );
            let existing = c
                .prepare_cached(&sql)?
                .query_row(params![device, client_id], token_from_row)
                .optional()?;
            if existing.is_some() {
                return Ok(existing);
            }
            let app_exists: bool = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM apps WHERE client_id = ?1)")?
                .query_row([&client_id], |r| r.get(0))?;
            if !app_exists {
                return Ok(None);
            }
            c.prepare_cached(
                "INSERT INTO token (token, device, client_id, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![candidate.token, device, client_id, candidate.created_at])?;
            let id = c.last_insert_rowid();
            Ok(c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} WHERE t.id = ?1"))?
                .query_row([id], token_from_row)
                .optional()?)
        })
        .await
    }

    async fn delete_token(
        &self,
        device: i64,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Option<String>> {
        let client_id = client_id.to_owned();
        self.write_conn(move |c| {
            // At most one row matches: `token_active` is unique on (device, app) among
            // undeleted tokens, and a deleted row leaves that index.
            Ok(c.prepare_cached(
                "UPDATE token SET deleted_at = ?3
                 WHERE device = ?1 AND client_id = ?2 AND deleted_at IS NULL
                 RETURNING token",
            )?
            .query_row(params![device, client_id, now_ms], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn lookup_tokens(&self, tokens: &[String]) -> Result<Vec<TokenRecord>> {
        let tokens = tokens.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} WHERE t.token = ?1 AND t.deleted_at IS NULL"
            ))?;
            let mut found = Vec::with_capacity(tokens.len());
            for t in &tokens {
                if let Some(rec) = stmt.query_row([t], token_from_row).optional()? {
                    found.push(rec);
                }
            }
            Ok(found)
        })
        .await
    }
}

#[async_trait]
impl QuotaStore for SqliteStore {
    async fn quota_usage(&self, keys: &[CounterKey]) -> Result<Vec<(CounterKey, u32)>> {
        let keys = keys.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT used FROM quota_usage WHERE key = ?1")?;
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let used: Option<i64> = stmt.query_row([k.to_string()], |r| r.get(0)).optional()?;
                out.push((k, used.unwrap_or(0).max(0) as u32));
            }
            Ok(out)
        })
        .await
    }

    async fn take_send_budget(
        &self,
        client_id: &str,
        second: i64,
        want: u32,
        limit: u32,
    ) -> Result<u32> {
        let client_id = client_id.to_owned();
        let used: Option<i64> = self
            .write_conn(move |c| {
                Ok(c.prepare_cached(
                    "INSERT INTO send_budget (client_id, second, used) VALUES (?1, ?2, ?3)
                     ON CONFLICT (client_id, second) DO UPDATE SET used = used + excluded.used
                     WHERE used < ?4
                     RETURNING used",
                )?
                .query_row(params![client_id, second, want, limit], |r| r.get(0))
                .optional()?)
            })
            .await?;
        Ok(used.map_or(0, |u| crate::budget_granted(u, want, limit)))
    }

    async fn live_views(
        &self,
        keys: &[crate::LiveViewKey],
    ) -> Result<Vec<(crate::LiveViewKey, LiveViewState)>> {
        let keys = keys.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT event, status, version, rest_created, ended, created_at, updated_at, blocked_until
                 FROM live_views WHERE client_id = ?1 AND device_id = ?2 AND activity_id = ?3",
            )?;
            let mut out = Vec::new();
            for k in keys {
                let state = stmt
                    .query_row(params![k.client_id, k.device_id, k.activity_id], |r| {
                        Ok(LiveViewState {
                            event: r.get(0)?,
                            status: r.get(1)?,
                            version: r.get(2)?,
                            rest_created: r.get(3)?,
                            ended: r.get(4)?,
                            created_at: r.get(5)?,
                            updated_at: r.get(6)?,
                            blocked_until: r.get(7)?,
                        })
                    })
                    .optional()?;
                if let Some(state) = state {
                    out.push((k, state));
                }
            }
            Ok(out)
        })
        .await
    }
}
