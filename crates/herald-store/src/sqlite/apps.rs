//! Projects, apps, service-account keys and scenario rights.

use async_trait::async_trait;
use herald_core::quota::LimitOverrides;
use herald_core::rights::RightState;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::rights_change::{PreviousRight, next_right};
use crate::{
    App, AppStore, AppUpdate, Project, Result, RightChange, RightEvent, RightRecord, ServiceAccount,
};

const APP_COLUMNS: &str = "client_id, project_id, package_name, name, created_at, app_category, marketing_per_day, device_daily_total, send_rate_per_sec";

fn app_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        client_id: r.get(0)?,
        project_id: r.get(1)?,
        package_name: r.get(2)?,
        name: r.get(3)?,
        created_at: r.get(4)?,
        app_category: r.get(5)?,
        overrides: LimitOverrides {
            marketing_per_day: r.get(6)?,
            device_daily_total: r.get(7)?,
            send_rate_per_sec: r.get(8)?,
        },
    })
}

const SA_COLUMNS: &str =
    "key_id, project_id, sub_account, public_key_pem, token_uri, created_at, revoked_at";

fn service_account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ServiceAccount> {
    Ok(ServiceAccount {
        key_id: r.get(0)?,
        project_id: r.get(1)?,
        sub_account: r.get(2)?,
        public_key_pem: r.get(3)?,
        token_uri: r.get(4)?,
        created_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

fn project_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        project_id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        push_enabled: r.get(3)?,
    })
}

fn right_state(s: String) -> rusqlite::Result<RightState> {
    RightState::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown right state {s:?}").into(),
        )
    })
}

pub(super) fn insert_app(c: &Connection, app: &App) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO apps (client_id, project_id, package_name, name, created_at, app_category, marketing_per_day, device_daily_total, send_rate_per_sec)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            app.client_id,
            app.project_id,
            app.package_name,
            app.name,
            app.created_at,
            app.app_category,
            app.overrides.marketing_per_day,
            app.overrides.device_daily_total,
            app.overrides.send_rate_per_sec
        ],
    )?;
    Ok(())
}

pub(super) fn insert_service_account(c: &Connection, sa: &ServiceAccount) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO service_accounts (key_id, project_id, sub_account, public_key_pem, token_uri, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![sa.key_id, sa.project_id, sa.sub_account, sa.public_key_pem, sa.token_uri, sa.created_at],
    )?;
    Ok(())
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn create_project(&self, project: Project) -> Result<()> {
        self.write_conn(move |c| {
            c.execute(
                "INSERT INTO projects (project_id, name, created_at, push_enabled) VALUES (?1, ?2, ?3, ?4)",
                params![project.project_id, project.name, project.created_at, project.push_enabled],
            )?;
            Ok(())
        })
        .await
    }

    async fn project(&self, project_id: &str) -> Result<Option<Project>> {
        let id = project_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT project_id, name, created_at, push_enabled FROM projects WHERE project_id = ?1",
            )?
            .query_row([id], project_from_row)
            .optional()?)
        })
        .await
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        self.read(|c| {
            let rows = c
                .prepare_cached("SELECT project_id, name, created_at, push_enabled FROM projects ORDER BY created_at, project_id")?
                .query_map([], project_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn set_push_enabled(&self, project_id: &str, enabled: bool) -> Result<Option<Project>> {
        let id = project_id.to_owned();
        self.write_conn(move |c| {
            c.prepare_cached("UPDATE projects SET push_enabled = ?2 WHERE project_id = ?1")?
                .execute(params![id, enabled])?;
            Ok(c.prepare_cached(
                "SELECT project_id, name, created_at, push_enabled FROM projects WHERE project_id = ?1",
            )?
            .query_row([id], project_from_row)
            .optional()?)
        })
        .await
    }

    async fn create_app(&self, app: App) -> Result<()> {
        self.write_conn(move |c| Ok(insert_app(c, &app)?)).await
    }

    async fn app(&self, client_id: &str) -> Result<Option<App>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE client_id = ?1");
        self.read_one(sql, vec![client_id.to_owned()], app_from_row)
            .await
    }

    async fn list_apps(&self, project_id: Option<&str>) -> Result<Vec<App>> {
        let project_id = project_id.map(str::to_owned);
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE ?1 IS NULL OR project_id = ?1 ORDER BY created_at, client_id"
                ))?
                .query_map([project_id], app_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_app(&self, client_id: &str, update: AppUpdate) -> Result<Option<App>> {
        let id = client_id.to_owned();
        self.write_conn(move |c| {
            let Some(mut app) = c
                .prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE client_id = ?1"))?
                .query_row([&id], app_from_row)
                .optional()?
            else {
                return Ok(None);
            };
            if let Some(cat) = update.app_category {
                app.app_category = cat;
            }
            if let Some(v) = update.marketing_per_day {
                app.overrides.marketing_per_day = v;
            }
            if let Some(v) = update.device_daily_total {
                app.overrides.device_daily_total = v;
            }
            if let Some(v) = update.send_rate_per_sec {
                app.overrides.send_rate_per_sec = v;
            }
            c.prepare_cached(
                "UPDATE apps SET app_category = ?2, marketing_per_day = ?3, device_daily_total = ?4, send_rate_per_sec = ?5 WHERE client_id = ?1",
            )?
            .execute(params![
                id,
                app.app_category,
                app.overrides.marketing_per_day,
                app.overrides.device_daily_total,
                app.overrides.send_rate_per_sec
            ])?;
            Ok(Some(app))
        })
        .await
    }

    async fn create_service_account(&self, account: ServiceAccount) -> Result<()> {
        self.write_conn(move |c| Ok(insert_service_account(c, &account)?))
            .await
    }

    async fn list_service_accounts(&self, project_id: &str) -> Result<Vec<ServiceAccount>> {
        let sql = format!(
            "SELECT {SA_COLUMNS} FROM service_accounts WHERE project_id = ?1 ORDER BY created_at"
        );
        self.read_all(sql, vec![project_id.to_owned()], service_account_from_row)
            .await
    }

    async fn service_account(&self, key_id: &str) -> Result<Option<ServiceAccount>> {
        let sql = format!("SELECT {SA_COLUMNS} FROM service_accounts WHERE key_id = ?1");
        self.read_one(sql, vec![key_id.to_owned()], service_account_from_row)
            .await
    }

    async fn revoke_service_account(
        &self,
        key_id: &str,
        now_ms: i64,
    ) -> Result<Option<ServiceAccount>> {
        let key_id = key_id.to_owned();
        // The first revocation's time is kept.
        let sql = format!(
            "UPDATE service_accounts SET revoked_at = COALESCE(revoked_at, ?2) WHERE key_id = ?1
             RETURNING {SA_COLUMNS}"
        );
        self.write_conn(move |c| {
            Ok(c.prepare_cached(&sql)?
                .query_row(params![key_id, now_ms], service_account_from_row)
                .optional()?)
        })
        .await
    }

    async fn rights(&self, client_id: &str) -> Result<Vec<RightRecord>> {
        let id = client_id.to_owned();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT client_id, name, state, reason, updated_at, scenario, sample_message, confirmed_by, confirmed_at FROM rights WHERE client_id = ?1 ORDER BY name",
                )?
                .query_map([id], |r| {
                    Ok(RightRecord {
                        client_id: r.get(0)?,
                        name: r.get(1)?,
                        state: right_state(r.get(2)?)?,
                        reason: r.get(3)?,
                        updated_at: r.get(4)?,
                        scenario: r.get(5)?,
                        sample_message: r.get(6)?,
                        confirmed_by: r.get(7)?,
                        confirmed_at: r.get(8)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn right_history(&self, client_id: &str) -> Result<Vec<RightEvent>> {
        let id = client_id.to_owned();
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT client_id, name, action, state, reason, actor, at, scenario, sample_message FROM right_events WHERE client_id = ?1 ORDER BY id",
                )?
                .query_map([id], |r| {
                    Ok(RightEvent {
                        client_id: r.get(0)?,
                        name: r.get(1)?,
                        action: r.get(2)?,
                        state: right_state(r.get(3)?)?,
                        reason: r.get(4)?,
                        actor: r.get(5)?,
                        at: r.get(6)?,
                        scenario: r.get(7)?,
                        sample_message: r.get(8)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn change_right(
        &self,
        change: RightChange,
    ) -> Result<std::result::Result<RightRecord, String>> {
        self.write_conn(move |c| {
            type Current = (String, Option<String>, Option<String>, Option<String>, Option<String>, Option<i64>);
            let current: Option<Current> = c
                .prepare_cached("SELECT state, reason, scenario, sample_message, confirmed_by, confirmed_at FROM rights WHERE client_id = ?1 AND name = ?2")?
                .query_row(params![change.client_id, change.name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })
                .optional()?;
            let from = current
                .as_ref()
                .map(|cur| right_state(cur.0.clone()))
                .transpose()?;
            let state = match change.action.apply(from) {
                Ok(s) => s,
                Err(why) => return Ok(Err(why.to_owned())),
            };
            let before = current.map(|(_, reason, scenario, sample, by, at)| PreviousRight {
                reason,
                scenario,
                sample_message: sample,
                confirmed_by: by,
                confirmed_at: at,
            });
            let next = match next_right(&change, before) {
                Ok(next) => next,
                Err(why) => return Ok(Err(why)),
            };
            c.prepare_cached(
                "INSERT INTO rights (client_id, name, state, reason, updated_at, scenario, sample_message, confirmed_by, confirmed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (client_id, name) DO UPDATE SET state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at,
                   scenario = excluded.scenario, sample_message = excluded.sample_message, confirmed_by = excluded.confirmed_by, confirmed_at = excluded.confirmed_at",
            )?
            .execute(params![
                change.client_id,
                change.name,
                state.as_str(),
                next.reason,
                change.at,
                next.scenario,
                next.sample_message,
                next.confirmed_by,
                next.confirmed_at
            ])?;
            c.prepare_cached(
                "INSERT INTO right_events (client_id, name, action, state, reason, actor, at, scenario, sample_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                change.client_id,
                change.name,
                change.action.as_str(),
                state.as_str(),
                change.reason,
                change.actor,
                change.at,
                change.scenario,
                change.sample_message
            ])?;
            Ok(Ok(RightRecord {
                client_id: change.client_id,
                name: change.name,
                state,
                reason: next.reason,
                updated_at: change.at,
                scenario: next.scenario,
                sample_message: next.sample_message,
                confirmed_by: next.confirmed_by,
                confirmed_at: next.confirmed_at,
            }))
        })
        .await
    }
}
