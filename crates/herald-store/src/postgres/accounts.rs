//! Users, their sessions, project membership and the audit log; the bootstrap, run
//! once per database however many nodes start together.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::apps::{insert_app, insert_service_account};
use super::{BOOTSTRAP_LOCK, PgStore, execute, in_tx, query_opt};
use crate::{
    AccountStore, AuditEntry, Bootstrap, Member, NewSession, NewUser, Result, Session, SessionKind,
    StoreError, User,
};

const USER_COLUMNS: &str = "a.id, a.username, a.instance_admin, a.created_at";

fn user_from_row(r: &Row) -> User {
    User {
        id: r.get(0),
        username: r.get(1),
        instance_admin: r.get(2),
        created_at: r.get(3),
    }
}

fn member_from_row(r: &Row) -> Member {
    Member {
        project_id: r.get(0),
        user_id: r.get(1),
        username: r.get(2),
        role: r.get(3),
        added_at: r.get(4),
    }
}

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
                "INSERT INTO admins (username, password_hash, created_at, instance_admin) VALUES ($1, $2, $3, true) RETURNING id",
                &[&b.admin_username, &b.admin_password_hash, &now],
            )
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Engine("no admin id returned".into()))?;
            execute(
                tx,
                "INSERT INTO admin_tokens (token_hash, admin_id, created_at, kind, last_used_at) VALUES ($1, $2, $3, 'bootstrap', $3)",
                &[&b.admin_token_hash, &admin, &now],
            )
            .await?;
            execute(
                tx,
                "INSERT INTO projects (project_id, name, created_at, push_enabled) VALUES ($1, $2, $3, $4)",
                &[&b.project.project_id, &b.project.name, &now, &b.project.push_enabled],
            )
            .await?;
            execute(
                tx,
                "INSERT INTO members (project_id, user_id, role, added_at) VALUES ($1, $2, 'owner', $3)",
                &[&b.project.project_id, &admin, &now],
            )
            .await?;
            insert_app(tx, &b.app).await?;
            insert_service_account(tx, &b.service_account).await?;
            Ok(())
        }
        .await
        })
    }

    async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        let sql = format!(
            "SELECT {USER_COLUMNS}, t.kind, t.csrf_hash, t.created_at, COALESCE(t.last_used_at, t.created_at), t.expires_at, t.revoked_at
             FROM admin_tokens t JOIN admins a ON a.id = t.admin_id WHERE t.token_hash = $1"
        );
        let Some(r) = self.read_opt(&sql, &[&token_hash]).await? else {
            return Ok(None);
        };
        let kind: String = r.get(4);
        Ok(Some(Session {
            user: user_from_row(&r),
            kind: SessionKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown session kind {kind:?}")))?,
            csrf_hash: r.get(5),
            created_at: r.get(6),
            last_used_at: r.get(7),
            expires_at: r.get(8),
            revoked_at: r.get(9),
        }))
    }

    async fn create_session(&self, s: NewSession) -> Result<()> {
        in_tx!(self, |tx| {
            async {
                execute(
                    tx,
                    "INSERT INTO admin_tokens (token_hash, admin_id, created_at, kind, csrf_hash, expires_at, last_used_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $3)",
                    &[
                        &s.token_hash,
                        &s.user_id,
                        &s.created_at,
                        &s.kind.as_str(),
                        &s.csrf_hash,
                        &s.expires_at,
                    ],
                )
                .await?;
                execute(
                    tx,
                    "UPDATE admin_tokens SET revoked_at = $2
                     WHERE admin_id = $1 AND kind <> 'bootstrap' AND revoked_at IS NULL
                       AND token_hash NOT IN (
                         SELECT token_hash FROM admin_tokens
                          WHERE admin_id = $1 AND kind <> 'bootstrap' AND revoked_at IS NULL
                          ORDER BY created_at DESC, token_hash DESC LIMIT $3)",
                    &[&s.user_id, &s.created_at, &crate::MAX_SESSIONS_PER_USER],
                )
                .await?;
                Ok(())
            }
            .await
        })
    }

    async fn touch_session(&self, token_hash: &str, now_ms: i64) -> Result<()> {
        self.write(
            "UPDATE admin_tokens SET last_used_at = $2 WHERE token_hash = $1 AND COALESCE(last_used_at, 0) < $2",
            &[&token_hash, &now_ms],
        )
        .await?;
        Ok(())
    }

    async fn revoke_session(&self, token_hash: &str, now_ms: i64) -> Result<bool> {
        Ok(self
            .write(
                "UPDATE admin_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
                &[&token_hash, &now_ms],
            )
            .await?
            > 0)
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<(User, String)>> {
        let sql =
            format!("SELECT {USER_COLUMNS}, a.password_hash FROM admins a WHERE a.username = $1");
        let row = self.read_opt(&sql, &[&username]).await?;
        Ok(row.map(|r| (user_from_row(&r), r.get(4))))
    }

    async fn create_user(&self, u: NewUser) -> Result<Option<User>> {
        let row = self
            .write_returning(
                "INSERT INTO admins (username, password_hash, created_at, instance_admin) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (username) DO NOTHING RETURNING id",
                &[&u.username, &u.password_hash, &u.created_at, &u.instance_admin],
            )
            .await?;
        Ok(row.map(|r| User {
            id: r.get(0),
            username: u.username,
            instance_admin: u.instance_admin,
            created_at: u.created_at,
        }))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM admins a ORDER BY a.username COLLATE \"C\"");
        Ok(self
            .read(&sql, &[])
            .await?
            .iter()
            .map(user_from_row)
            .collect())
    }

    async fn set_password(
        &self,
        user_id: i64,
        password_hash: &str,
        keep_token_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        in_tx!(self, |tx| {
            async {
                execute(
                    tx,
                    "UPDATE admins SET password_hash = $2 WHERE id = $1",
                    &[&user_id, &password_hash],
                )
                .await?;
                execute(
                    tx,
                    "UPDATE admin_tokens SET revoked_at = $3
                     WHERE admin_id = $1 AND revoked_at IS NULL AND kind <> 'bootstrap'
                       AND token_hash IS DISTINCT FROM $2",
                    &[&user_id, &keep_token_hash, &now_ms],
                )
                .await?;
                Ok(())
            }
            .await
        })
    }

    async fn set_member(
        &self,
        project_id: &str,
        user_id: i64,
        role: &str,
        now_ms: i64,
    ) -> Result<()> {
        self.write(
            "INSERT INTO members (project_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
            &[&project_id, &user_id, &role, &now_ms],
        )
        .await?;
        Ok(())
    }

    async fn remove_member(&self, project_id: &str, user_id: i64) -> Result<bool> {
        Ok(self
            .write(
                "DELETE FROM members WHERE project_id = $1 AND user_id = $2",
                &[&project_id, &user_id],
            )
            .await?
            > 0)
    }

    async fn members(&self, project_id: &str) -> Result<Vec<Member>> {
        let rows = self
            .read(
                "SELECT m.project_id, m.user_id, a.username, m.role, m.added_at
                 FROM members m JOIN admins a ON a.id = m.user_id
                 WHERE m.project_id = $1 ORDER BY a.username COLLATE \"C\"",
                &[&project_id],
            )
            .await?;
        Ok(rows.iter().map(member_from_row).collect())
    }

    async fn memberships(&self, user_id: i64) -> Result<Vec<Member>> {
        let rows = self
            .read(
                "SELECT m.project_id, m.user_id, a.username, m.role, m.added_at
                 FROM members m JOIN admins a ON a.id = m.user_id
                 WHERE m.user_id = $1 ORDER BY m.project_id COLLATE \"C\"",
                &[&user_id],
            )
            .await?;
        Ok(rows.iter().map(member_from_row).collect())
    }

    async fn append_audit(&self, e: AuditEntry) -> Result<()> {
        self.write(
            "INSERT INTO audit_log (project_id, actor, action, detail, address, at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&e.project_id, &e.actor, &e.action, &e.detail, &e.address, &e.at],
        )
        .await?;
        Ok(())
    }

    async fn audit(
        &self,
        project_id: Option<&str>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let before = before_ms.unwrap_or(i64::MAX);
        let rows = self
            .read(
                "SELECT project_id, actor, action, detail, address, at FROM audit_log
                 WHERE ($1::text IS NULL OR project_id = $1) AND at < $2 ORDER BY id DESC LIMIT $3",
                &[&project_id, &before, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                project_id: r.get(0),
                actor: r.get(1),
                action: r.get(2),
                detail: r.get(3),
                address: r.get(4),
                at: r.get(5),
            })
            .collect())
    }
}
