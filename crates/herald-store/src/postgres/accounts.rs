//! Operators: the instance admin and their bearer tokens; the bootstrap, run once per
//! database however many nodes start together.

use async_trait::async_trait;

use super::apps::{insert_app, insert_service_account};
use super::{BOOTSTRAP_LOCK, PgStore, execute, in_tx, query_opt};
use crate::{AccountStore, Admin, Bootstrap, Result, StoreError};

#[async_trait]
impl AccountStore for PgStore {
    async fn is_bootstrapped(&self) -> Result<bool> {
        let row = self
            .read_opt("SELECT EXISTS (SELECT 1 FROM admins)", &[])
            .await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    /// Nodes starting together all try; the advisory lock lets one in at a time and the
    /// check under it makes every later one fail with [`StoreError::Conflict`].
    async fn bootstrap(&self, b: Bootstrap) -> Result<()> {
        in_tx!(self, |tx| {
            async {
            execute(tx, "SELECT pg_advisory_xact_lock($1)", &[&BOOTSTRAP_LOCK]).await?;
            let done = query_opt(tx, "SELECT EXISTS (SELECT 1 FROM admins)", &[])
                .await?
                .is_some_and(|r| r.get::<_, bool>(0));
            if done {
                return Err(StoreError::Conflict("the store is already bootstrapped".into()).into());
            }
            let now = b.project.created_at;
            let admin: i64 = query_opt(
                tx,
                "INSERT INTO admins (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
                &[&b.admin_username, &b.admin_password_hash, &now],
            )
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Engine("no admin id returned".into()))?;
            execute(
                tx,
                "INSERT INTO admin_tokens (token_hash, admin_id, created_at) VALUES ($1, $2, $3)",
                &[&b.admin_token_hash, &admin, &now],
            )
            .await?;
            execute(
                tx,
                "INSERT INTO projects (project_id, name, created_at) VALUES ($1, $2, $3)",
                &[&b.project.project_id, &b.project.name, &now],
            )
            .await?;
            insert_app(tx, &b.app).await?;
            insert_service_account(tx, &b.service_account).await?;
            Ok(())
        }
        .await
        })
    }

    async fn admin_by_token_hash(&self, token_hash: &str) -> Result<Option<Admin>> {
        let row = self
            .read_opt(
                "SELECT a.id, a.username FROM admin_tokens t JOIN admins a ON a.id = t.admin_id WHERE t.token_hash = $1",
                &[&token_hash],
            )
            .await?;
        Ok(row.map(|r| Admin {
            id: r.get(0),
            username: r.get(1),
        }))
    }

    async fn admin_by_username(&self, username: &str) -> Result<Option<(Admin, String)>> {
        let row = self
            .read_opt(
                "SELECT id, username, password_hash FROM admins WHERE username = $1",
                &[&username],
            )
            .await?;
        Ok(row.map(|r| {
            (
                Admin {
                    id: r.get(0),
                    username: r.get(1),
                },
                r.get(2),
            )
        }))
    }

    async fn create_admin_token(&self, admin_id: i64, token_hash: &str, now_ms: i64) -> Result<()> {
        self.write(
            "INSERT INTO admin_tokens (token_hash, admin_id, created_at) VALUES ($1, $2, $3)",
            &[&token_hash, &admin_id, &now_ms],
        )
        .await?;
        Ok(())
    }
}
