//! Operators: the instance admin and their bearer tokens.

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use super::apps::{insert_app, insert_service_account};
use crate::{AccountStore, Admin, Bootstrap, Result, StoreError};

#[async_trait]
impl AccountStore for SqliteStore {
    async fn is_bootstrapped(&self) -> Result<bool> {
        self.read(|c| Ok(c.query_row("SELECT EXISTS (SELECT 1 FROM admins)", [], |r| r.get(0))?))
            .await
    }

    async fn bootstrap(&self, b: Bootstrap) -> Result<()> {
        self.write_conn(move |c| {
            // The single writer runs jobs one at a time, so this check cannot race.
            if c.query_row("SELECT EXISTS (SELECT 1 FROM admins)", [], |r| r.get(0))? {
                return Err(StoreError::Conflict(
                    "the store is already bootstrapped".into(),
                ));
            }
            let now = b.project.created_at;
            c.execute(
                "INSERT INTO admins (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
                params![b.admin_username, b.admin_password_hash, now],
            )?;
            let admin_id = c.last_insert_rowid();
            c.execute(
                "INSERT INTO admin_tokens (token_hash, admin_id, created_at) VALUES (?1, ?2, ?3)",
                params![b.admin_token_hash, admin_id, now],
            )?;
            c.execute(
                "INSERT INTO projects (project_id, name, created_at) VALUES (?1, ?2, ?3)",
                params![b.project.project_id, b.project.name, now],
            )?;
            insert_app(c, &b.app)?;
            insert_service_account(c, &b.service_account)?;
            Ok(())
        })
        .await
    }

    async fn admin_by_token_hash(&self, token_hash: &str) -> Result<Option<Admin>> {
        let sql = "SELECT a.id, a.username FROM admin_tokens t JOIN admins a ON a.id = t.admin_id WHERE t.token_hash = ?1".to_owned();
        self.read_one(sql, vec![token_hash.to_owned()], |r| {
            Ok(Admin {
                id: r.get(0)?,
                username: r.get(1)?,
            })
        })
        .await
    }

    async fn admin_by_username(&self, username: &str) -> Result<Option<(Admin, String)>> {
        let sql = "SELECT id, username, password_hash FROM admins WHERE username = ?1".to_owned();
        self.read_one(sql, vec![username.to_owned()], |r| {
            Ok((
                Admin {
                    id: r.get(0)?,
                    username: r.get(1)?,
                },
                r.get(2)?,
            ))
        })
        .await
    }

    async fn create_admin_token(&self, admin_id: i64, token_hash: &str, now_ms: i64) -> Result<()> {
        let hash = token_hash.to_owned();
        self.write_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO admin_tokens (token_hash, admin_id, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![hash, admin_id, now_ms])?;
            Ok(())
        })
        .await
    }
}
