//! Projects, apps, service-account keys and scenario rights.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use herald_core::quota::LimitOverrides;
use herald_core::rights::RightState;
use tokio_postgres::Row;

use super::{PgResult, PgStore, execute, in_tx, query_opt};
use crate::rights_change::{PreviousRight, next_right};
use crate::{
    App, AppStore, AppUpdate, Project, Result, RightChange, RightEvent, RightRecord,
    ServiceAccount, StoreError,
};

const APP_COLUMNS: &str = "client_id, project_id, package_name, name, created_at, app_category, marketing_per_day, device_daily_total, send_rate_per_sec";

/// A stored limit (bigint) back to its type; out-of-range values are corrupt data.
fn limit(r: &Row, i: usize) -> Result<Option<u32>> {
    r.get::<_, Option<i64>>(i)
        .map(|v| {
            u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("limit {v} out of range")))
        })
        .transpose()
}

fn app_from_row(r: &Row) -> Result<App> {
    Ok(App {
        client_id: r.get(0),
        project_id: r.get(1),
        package_name: r.get(2),
        name: r.get(3),
        created_at: r.get(4),
        app_category: r.get(5),
        overrides: LimitOverrides {
            marketing_per_day: limit(r, 6)?,
            device_daily_total: limit(r, 7)?,
            send_rate_per_sec: limit(r, 8)?,
        },
    })
}

const SA_COLUMNS: &str =
    "key_id, project_id, sub_account, public_key_pem, token_uri, created_at, revoked_at";

fn service_account_from_row(r: &Row) -> ServiceAccount {
    ServiceAccount {
        key_id: r.get(0),
        project_id: r.get(1),
        sub_account: r.get(2),
        public_key_pem: r.get(3),
        token_uri: r.get(4),
        created_at: r.get(5),
        revoked_at: r.get(6),
    }
}

fn project_from_row(r: &Row) -> Project {
    Project {
        project_id: r.get(0),
        name: r.get(1),
        created_at: r.get(2),
        push_enabled: r.get(3),
    }
}

fn right_state(s: &str) -> Result<RightState> {
    RightState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown right state {s:?}")))
}

pub(super) async fn insert_app<C: GenericClient>(c: &C, app: &App) -> PgResult<()> {
    let o = &app.overrides;
    execute(
        c,
        "INSERT INTO apps (client_id, project_id, package_name, name, created_at, app_category, marketing_per_day, device_daily_total, send_rate_per_sec)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &app.client_id,
            &app.project_id,
            &app.package_name,
            &app.name,
            &app.created_at,
            &app.app_category,
            &o.marketing_per_day.map(i64::from),
            &o.device_daily_total.map(i64::from),
            &o.send_rate_per_sec.map(i64::from),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn insert_service_account<C: GenericClient>(
    c: &C,
    sa: &ServiceAccount,
) -> PgResult<()> {
    execute(
        c,
        "INSERT INTO service_accounts (key_id, project_id, sub_account, public_key_pem, token_uri, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&sa.key_id, &sa.project_id, &sa.sub_account, &sa.public_key_pem, &sa.token_uri, &sa.created_at],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl AppStore for PgStore {
    async fn create_project(&self, project: Project) -> Result<()> {
        self.write(
            "INSERT INTO projects (project_id, name, created_at, push_enabled) VALUES ($1, $2, $3, $4)",
            &[&project.project_id, &project.name, &project.created_at, &project.push_enabled],
        )
        .await?;
        Ok(())
    }

    async fn project(&self, project_id: &str) -> Result<Option<Project>> {
        let row = self
            .read_opt(
                "SELECT project_id, name, created_at, push_enabled FROM projects WHERE project_id = $1",
                &[&project_id],
            )
            .await?;
        Ok(row.as_ref().map(project_from_row))
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = self
            .read(
                "SELECT project_id, name, created_at, push_enabled FROM projects ORDER BY created_at, project_id COLLATE \"C\"",
                &[],
            )
            .await?;
        Ok(rows.iter().map(project_from_row).collect())
    }

    async fn set_push_enabled(&self, project_id: &str, enabled: bool) -> Result<Option<Project>> {
        let row = self
            .write_returning(
                "UPDATE projects SET push_enabled = $2 WHERE project_id = $1
                 RETURNING project_id, name, created_at, push_enabled",
                &[&project_id, &enabled],
            )
            .await?;
        Ok(row.as_ref().map(project_from_row))
    }

    async fn create_app(&self, app: App) -> Result<()> {
        in_tx!(self, |tx| insert_app(tx, &app).await)
    }

    async fn app(&self, client_id: &str) -> Result<Option<App>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE client_id = $1");
        self.read_opt(&sql, &[&client_id])
            .await?
            .as_ref()
            .map(app_from_row)
            .transpose()
    }

    async fn list_apps(&self, project_id: Option<&str>) -> Result<Vec<App>> {
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE $1::text IS NULL OR project_id = $1 ORDER BY created_at, client_id COLLATE \"C\""
        );
        self.read(&sql, &[&project_id])
            .await?
            .iter()
            .map(app_from_row)
            .collect()
    }

    async fn update_app(&self, client_id: &str, update: AppUpdate) -> Result<Option<App>> {
        let select = format!("SELECT {APP_COLUMNS} FROM apps WHERE client_id = $1 FOR UPDATE");
        in_tx!(self, |tx| {
            async {
            let Some(row) = query_opt(tx, &select, &[&client_id]).await? else {
                return Ok(None);
            };
            let mut app = app_from_row(&row)?;
            let update = update.clone();
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
            let o = &app.overrides;
            execute(
                tx,
                "UPDATE apps SET app_category = $2, marketing_per_day = $3, device_daily_total = $4, send_rate_per_sec = $5 WHERE client_id = $1",
                &[
                    &client_id,
                    &app.app_category,
                    &o.marketing_per_day.map(i64::from),
                    &o.device_daily_total.map(i64::from),
                    &o.send_rate_per_sec.map(i64::from),
                ],
            )
            .await?;
            Ok(Some(app))
        }
        .await
        })
    }

    async fn create_service_account(&self, account: ServiceAccount) -> Result<()> {
        in_tx!(self, |tx| insert_service_account(tx, &account).await)
    }

    async fn list_service_accounts(&self, project_id: &str) -> Result<Vec<ServiceAccount>> {
        let sql = format!(
            "SELECT {SA_COLUMNS} FROM service_accounts WHERE project_id = $1 ORDER BY created_at"
        );
        let rows = self.read(&sql, &[&project_id]).await?;
        Ok(rows.iter().map(service_account_from_row).collect())
    }

    async fn service_account(&self, key_id: &str) -> Result<Option<ServiceAccount>> {
        let sql = format!("SELECT {SA_COLUMNS} FROM service_accounts WHERE key_id = $1");
        let row = self.read_opt(&sql, &[&key_id]).await?;
        Ok(row.as_ref().map(service_account_from_row))
    }

    async fn revoke_service_account(
        &self,
        key_id: &str,
        now_ms: i64,
    ) -> Result<Option<ServiceAccount>> {
        // The first revocation's time is kept.
        let sql = format!(
            "UPDATE service_accounts SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1
             RETURNING {SA_COLUMNS}"
        );
        let row = self.write_returning(&sql, &[&key_id, &now_ms]).await?;
        Ok(row.as_ref().map(service_account_from_row))
    }

    async fn rights(&self, client_id: &str) -> Result<Vec<RightRecord>> {
        let rows = self
            .read(
                "SELECT client_id, name, state, reason, updated_at, scenario, sample_message, confirmed_by, confirmed_at FROM rights WHERE client_id = $1 ORDER BY name COLLATE \"C\"",
                &[&client_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RightRecord {
                    client_id: r.get(0),
                    name: r.get(1),
                    state: right_state(r.get(2))?,
                    reason: r.get(3),
                    updated_at: r.get(4),
                    scenario: r.get(5),
                    sample_message: r.get(6),
                    confirmed_by: r.get(7),
                    confirmed_at: r.get(8),
                })
            })
            .collect()
    }

    async fn right_history(&self, client_id: &str) -> Result<Vec<RightEvent>> {
        let rows = self
            .read(
                "SELECT client_id, name, action, state, reason, actor, at, scenario, sample_message FROM right_events WHERE client_id = $1 ORDER BY id",
                &[&client_id],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RightEvent {
                    client_id: r.get(0),
                    name: r.get(1),
                    action: r.get(2),
                    state: right_state(r.get(3))?,
                    reason: r.get(4),
                    actor: r.get(5),
                    at: r.get(6),
                    scenario: r.get(7),
                    sample_message: r.get(8),
                })
            })
            .collect()
    }

    async fn change_right(
        &self,
        change: RightChange,
    ) -> Result<std::result::Result<RightRecord, String>> {
        in_tx!(self, |tx| {
            async {
            // Row lock: two operators acting on one right at once apply one after the other.
            let current = query_opt(
                tx,
                "SELECT state, reason, scenario, sample_message, confirmed_by, confirmed_at FROM rights WHERE client_id = $1 AND name = $2 FOR UPDATE",
                &[&change.client_id, &change.name],
            )
            .await?;
            let from = current
                .as_ref()
                .map(|r| right_state(r.get(0)))
                .transpose()?;
            let state = match change.action.apply(from) {
                Ok(s) => s,
                Err(why) => return Ok(Err(why.to_owned())),
            };
            let before = current.map(|r| PreviousRight {
                reason: r.get(1),
                scenario: r.get(2),
                sample_message: r.get(3),
                confirmed_by: r.get(4),
                confirmed_at: r.get(5),
            });
            let next = match next_right(&change, before) {
                Ok(next) => next,
                Err(why) => return Ok(Err(why)),
            };
            execute(
                tx,
                "INSERT INTO rights (client_id, name, state, reason, updated_at, scenario, sample_message, confirmed_by, confirmed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (client_id, name) DO UPDATE SET state = excluded.state, reason = excluded.reason, updated_at = excluded.updated_at,
                   scenario = excluded.scenario, sample_message = excluded.sample_message, confirmed_by = excluded.confirmed_by, confirmed_at = excluded.confirmed_at",
                &[
                    &change.client_id,
                    &change.name,
                    &state.as_str(),
                    &next.reason,
                    &change.at,
                    &next.scenario,
                    &next.sample_message,
                    &next.confirmed_by,
                    &next.confirmed_at,
                ],
            )
            .await?;
            execute(
                tx,
                "INSERT INTO right_events (client_id, name, action, state, reason, actor, at, scenario, sample_message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &change.client_id,
                    &change.name,
                    &change.action.as_str(),
                    &state.as_str(),
                    &change.reason,
                    &change.actor,
                    &change.at,
                    &change.scenario,
                    &change.sample_message,
                ],
            )
            .await?;
            Ok(Ok(RightRecord {
                client_id: change.client_id.clone(),
                name: change.name.clone(),
                state,
                reason: next.reason,
                updated_at: change.at,
                scenario: next.scenario,
                sample_message: next.sample_message,
                confirmed_by: next.confirmed_by,
                confirmed_at: next.confirmed_at,
            }))
        }
        .await
        })
    }
}
