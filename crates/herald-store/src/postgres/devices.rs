//! Devices and their push tokens (each with an integer number deliveries are keyed by),
//! daily quota counters and Live View states.

use std::collections::HashMap;

use async_trait::async_trait;
use herald_core::live::LiveViewState;
use herald_core::quota::CounterKey;
use tokio_postgres::Row;

use super::{PgStore, in_tx, query_opt};
use crate::{
    DeviceAuth, DeviceStore, LiveViewKey, NewDevice, NewToken, QuotaStore, Result, StoreError,
    TokenRecord,
};

const TOKEN_COLUMNS: &str = "t.token, t.id, t.device, d.device_id, t.client_id, a.project_id
     FROM token t JOIN device d ON d.id = t.device JOIN apps a ON a.client_id = t.client_id";

fn token_from_row(r: &Row) -> TokenRecord {
    TokenRecord {
        token: r.get(0),
        token_num: r.get(1),
        device: r.get(2),
        device_id: r.get(3),
        client_id: r.get(4),
        project_id: r.get(5),
    }
}

#[async_trait]
impl DeviceStore for PgStore {
    async fn register_device(&self, device: NewDevice) -> Result<i64> {
        in_tx!(self, |tx| async {
            let row = query_opt(
                tx,
                "INSERT INTO device (device_id, secret_hash, created_at, seen_at) VALUES ($1, $2, $3, $3) RETURNING id",
                &[&device.device_id, &device.secret_hash, &device.created_at],
            )
            .await?;
            Ok(row.map(|r| r.get::<_, i64>(0)))
        }
        .await)?
        .ok_or_else(|| StoreError::Engine("no device id returned".into()))
    }

    async fn device_auth(&self, device_id: &str, now_ms: i64) -> Result<Option<DeviceAuth>> {
        let row = self
            .write_returning(
                "UPDATE device SET seen_at = $2, sessions = sessions + 1 WHERE device_id = $1
                 RETURNING id, secret_hash, sessions",
                &[&device_id, &now_ms],
            )
            .await?;
        Ok(row.map(|r| DeviceAuth {
            device: r.get(0),
            secret_hash: r.get(1),
            session: r.get(2),
        }))
    }

    async fn token_for(
        &self,
        device: i64,
        client_id: &str,
        candidate: NewToken,
    ) -> Result<Option<TokenRecord>> {
        let active = format!(
            "SELECT {TOKEN_COLUMNS} WHERE t.device = $1 AND t.client_id = $2 AND t.deleted_at IS NULL"
        );
        in_tx!(self, |tx| async {
            if let Some(row) = query_opt(tx, &active, &[&device, &client_id]).await? {
                return Ok(Some(token_from_row(&row)));
            }
            let app_exists =
                query_opt(tx, "SELECT 1 FROM apps WHERE client_id = $1", &[&client_id])
                    .await?
                    .is_some();
            if !app_exists {
                return Ok(None);
            }
            // Another node may create the device's token for this app at the same moment:
            // whichever commits first wins and the other reads it.
            query_opt(
                tx,
                "INSERT INTO token (token, device, client_id, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING RETURNING id",
                &[&candidate.token, &device, &client_id, &candidate.created_at],
            )
            .await?;
            match query_opt(tx, &active, &[&device, &client_id]).await? {
                Some(row) => Ok(Some(token_from_row(&row))),
                None => Err(StoreError::Conflict(
                    "the new token collides with an existing one".into(),
                )
                .into()),
            }
        }
        .await)
    }

    async fn delete_token(
        &self,
        device: i64,
        client_id: &str,
        now_ms: i64,
    ) -> Result<Option<String>> {
        // At most one row matches: `token_active` is unique on (device, app) among
        // undeleted tokens, and a deleted row leaves that index.
        let row = self
            .write_returning(
                "UPDATE token SET deleted_at = $3
             WHERE device = $1 AND client_id = $2 AND deleted_at IS NULL
             RETURNING token",
                &[&device, &client_id, &now_ms],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn lookup_tokens(&self, tokens: &[String]) -> Result<Vec<TokenRecord>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT {TOKEN_COLUMNS} WHERE t.token = ANY($1) AND t.deleted_at IS NULL");
        let rows = self.read(&sql, &[&tokens]).await?;
        Ok(rows.iter().map(token_from_row).collect())
    }
}

#[async_trait]
impl QuotaStore for PgStore {
    async fn quota_usage(&self, keys: &[CounterKey]) -> Result<Vec<(CounterKey, u32)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys.iter().map(CounterKey::to_string).collect();
        let rows = self
            .read(
                "SELECT key, used FROM quota_usage WHERE key = ANY($1)",
                &[&names],
            )
            .await?;
        let used: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(keys
            .iter()
            .zip(&names)
            .map(|(k, name)| {
                let n = used.get(name).copied().unwrap_or(0);
                (k.clone(), u32::try_from(n.max(0)).unwrap_or(u32::MAX))
            })
            .collect())
    }

    async fn take_send_budget(
        &self,
        client_id: &str,
        second: i64,
        want: u32,
        limit: u32,
    ) -> Result<u32> {
        // One statement: the row of a busy second is locked only for its own increment.
        let row = self
            .write_returning(
                "INSERT INTO send_budget AS b (client_id, second, used) VALUES ($1, $2, $3)
                 ON CONFLICT (client_id, second) DO UPDATE SET used = b.used + excluded.used
                 WHERE b.used < $4
                 RETURNING used",
                &[&client_id, &second, &i64::from(want), &i64::from(limit)],
            )
            .await?;
        Ok(row.map_or(0, |r| crate::budget_granted(r.get(0), want, limit)))
    }

    async fn live_views(&self, keys: &[LiveViewKey]) -> Result<Vec<(LiveViewKey, LiveViewState)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let clients: Vec<&str> = keys.iter().map(|k| k.client_id.as_str()).collect();
        let devices: Vec<&str> = keys.iter().map(|k| k.device_id.as_str()).collect();
        let activities: Vec<i32> = keys.iter().map(|k| k.activity_id).collect();
        let rows = self
            .read(
                "SELECT u.ord, v.event, v.status, v.version, v.rest_created, v.ended, v.created_at, v.updated_at, v.blocked_until
                 FROM unnest($1::text[], $2::text[], $3::int4[]) WITH ORDINALITY AS u(client_id, device_id, activity_id, ord)
                 JOIN live_views v ON v.client_id = u.client_id AND v.device_id = u.device_id AND v.activity_id = u.activity_id
                 ORDER BY u.ord",
                &[&clients, &devices, &activities],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let ord: i64 = r.get(0);
                let key = usize::try_from(ord - 1)
                    .ok()
                    .and_then(|i| keys.get(i))
                    .ok_or_else(|| StoreError::Engine("live view key out of range".into()))?;
                let version: Option<i64> = r.get(3);
                Ok((
                    key.clone(),
                    LiveViewState {
                        event: r.get(1),
                        status: r.get(2),
                        version: version.map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
                        rest_created: r.get(4),
                        ended: r.get(5),
                        created_at: r.get(6),
                        updated_at: r.get(7),
                        blocked_until: r.get(8),
                    },
                ))
            })
            .collect()
    }
}
