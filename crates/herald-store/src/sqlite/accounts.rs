//! Users, their sessions, project membership and the audit log.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::apps::{insert_app, insert_service_account};
use crate::{
    AccountStore, AuditEntry, Bootstrap, Member, NewSession, NewUser, Result, Session, SessionKind,
    StoreError, User,
};

const USER_COLUMNS: &str = "a.id, a.username, a.instance_admin, a.created_at";

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        instance_admin: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn session_kind(s: String) -> rusqlite::Result<SessionKind> {
    SessionKind::parse(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown session kind {s:?}").into(),
        )
    })
}

fn member_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Member> {
    Ok(Member {
        project_id: r.get(0)?,
        user_id: r.get(1)?,
        username: r.get(2)?,
        role: r.get(3)?,
        added_at: r.get(4)?,
    })
}

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
                "INSERT INTO admins (username, password_hash, created_at, instance_admin) VALUES (?1, ?2, ?3, 1)",
                params![b.admin_username, b.admin_password_hash, now],
            )?;
            let admin_id = c.last_insert_rowid();
            c.execute(
                "INSERT INTO admin_tokens (token_hash, admin_id, created_at, kind, last_used_at) VALUES (?1, ?2, ?3, 'bootstrap', ?3)",
                params![b.admin_token_hash, admin_id, now],
            )?;
            c.execute(
                "INSERT INTO projects (project_id, name, created_at, push_enabled) VALUES (?1, ?2, ?3, ?4)",
                params![b.project.project_id, b.project.name, now, b.project.push_enabled],
            )?;
            c.execute(
                "INSERT INTO members (project_id, user_id, role, added_at) VALUES (?1, ?2, 'owner', ?3)",
                params![b.project.project_id, admin_id, now],
            )?;
            insert_app(c, &b.app)?;
            insert_service_account(c, &b.service_account)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        let hash = token_hash.to_owned();
        self.read(move |c| {
            let sql = format!(
                "SELECT {USER_COLUMNS}, t.kind, t.csrf_hash, t.created_at, COALESCE(t.last_used_at, t.created_at), t.expires_at, t.revoked_at
                 FROM admin_tokens t JOIN admins a ON a.id = t.admin_id WHERE t.token_hash = ?1"
            );
            Ok(c.prepare_cached(&sql)?
                .query_row([hash], |r| {
                    Ok(Session {
                        user: user_from_row(r)?,
                        kind: session_kind(r.get(4)?)?,
                        csrf_hash: r.get(5)?,
                        created_at: r.get(6)?,
                        last_used_at: r.get(7)?,
                        expires_at: r.get(8)?,
                        revoked_at: r.get(9)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn create_session(&self, s: NewSession) -> Result<()> {
        self.write_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO admin_tokens (token_hash, admin_id, created_at, kind, csrf_hash, expires_at, last_used_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?3)",
            )?
            .execute(params![
                s.token_hash,
                s.user_id,
                s.created_at,
                s.kind.as_str(),
                s.csrf_hash,
                s.expires_at
            ])?;
            c.prepare_cached(
                "UPDATE admin_tokens SET revoked_at = ?2
                 WHERE admin_id = ?1 AND kind <> 'bootstrap' AND revoked_at IS NULL
                   AND token_hash NOT IN (
                     SELECT token_hash FROM admin_tokens
                      WHERE admin_id = ?1 AND kind <> 'bootstrap' AND revoked_at IS NULL
                      ORDER BY created_at DESC, rowid DESC LIMIT ?3)",
            )?
            .execute(params![s.user_id, s.created_at, crate::MAX_SESSIONS_PER_USER])?;
            Ok(())
        })
        .await
    }

    async fn touch_session(&self, token_hash: &str, now_ms: i64) -> Result<()> {
        let hash = token_hash.to_owned();
        self.write_conn(move |c| {
            c.prepare_cached(
                "UPDATE admin_tokens SET last_used_at = ?2 WHERE token_hash = ?1 AND COALESCE(last_used_at, 0) < ?2",
            )?
            .execute(params![hash, now_ms])?;
            Ok(())
        })
        .await
    }

    async fn revoke_session(&self, token_hash: &str, now_ms: i64) -> Result<bool> {
        let hash = token_hash.to_owned();
        self.write_conn(move |c| {
            Ok(c.prepare_cached(
                "UPDATE admin_tokens SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
            )?
            .execute(params![hash, now_ms])?
                > 0)
        })
        .await
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<(User, String)>> {
        let sql =
            format!("SELECT {USER_COLUMNS}, a.password_hash FROM admins a WHERE a.username = ?1");
        self.read_one(sql, vec![username.to_owned()], |r| {
            Ok((user_from_row(r)?, r.get(4)?))
        })
        .await
    }

    async fn create_user(&self, u: NewUser) -> Result<Option<User>> {
        self.write_conn(move |c| {
            let inserted = c
                .prepare_cached(
                    "INSERT INTO admins (username, password_hash, created_at, instance_admin) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (username) DO NOTHING",
                )?
                .execute(params![u.username, u.password_hash, u.created_at, u.instance_admin])?;
            if inserted == 0 {
                return Ok(None);
            }
            Ok(Some(User {
                id: c.last_insert_rowid(),
                username: u.username,
                instance_admin: u.instance_admin,
                created_at: u.created_at,
            }))
        })
        .await
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM admins a ORDER BY a.username");
        self.read_all(sql, vec![], user_from_row).await
    }

    async fn set_password(
        &self,
        user_id: i64,
        password_hash: &str,
        keep_token_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let hash = password_hash.to_owned();
        let keep = keep_token_hash.map(str::to_owned);
        self.write_conn(move |c| {
            c.prepare_cached("UPDATE admins SET password_hash = ?2 WHERE id = ?1")?
                .execute(params![user_id, hash])?;
            c.prepare_cached(
                "UPDATE admin_tokens SET revoked_at = ?3
                 WHERE admin_id = ?1 AND revoked_at IS NULL AND kind <> 'bootstrap'
                   AND token_hash IS NOT ?2",
            )?
            .execute(params![user_id, keep, now_ms])?;
            Ok(())
        })
        .await
    }

    async fn set_member(
        &self,
        project_id: &str,
        user_id: i64,
        role: &str,
        now_ms: i64,
    ) -> Result<()> {
        let (project_id, role) = (project_id.to_owned(), role.to_owned());
        self.write_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO members (project_id, user_id, role, added_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
            )?
            .execute(params![project_id, user_id, role, now_ms])?;
            Ok(())
        })
        .await
    }

    async fn remove_member(&self, project_id: &str, user_id: i64) -> Result<bool> {
        let project_id = project_id.to_owned();
        self.write_conn(move |c| {
            Ok(
                c.prepare_cached("DELETE FROM members WHERE project_id = ?1 AND user_id = ?2")?
                    .execute(params![project_id, user_id])?
                    > 0,
            )
        })
        .await
    }

    async fn members(&self, project_id: &str) -> Result<Vec<Member>> {
        self.read_all(
            "SELECT m.project_id, m.user_id, a.username, m.role, m.added_at
             FROM members m JOIN admins a ON a.id = m.user_id
             WHERE m.project_id = ?1 ORDER BY a.username"
                .to_owned(),
            vec![project_id.to_owned()],
            member_from_row,
        )
        .await
    }

    async fn memberships(&self, user_id: i64) -> Result<Vec<Member>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT m.project_id, m.user_id, a.username, m.role, m.added_at
                     FROM members m JOIN admins a ON a.id = m.user_id
                     WHERE m.user_id = ?1 ORDER BY m.project_id",
                )?
                .query_map([user_id], member_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn append_audit(&self, e: AuditEntry) -> Result<()> {
        self.write_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO audit_log (project_id, actor, action, detail, address, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![e.project_id, e.actor, e.action, e.detail, e.address, e.at])?;
            Ok(())
        })
        .await
    }

    async fn audit(
        &self,
        project_id: Option<&str>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let project_id = project_id.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let before = before_ms.unwrap_or(i64::MAX);
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT project_id, actor, action, detail, address, at FROM audit_log
                     WHERE (?1 IS NULL OR project_id = ?1) AND at < ?2 ORDER BY id DESC LIMIT ?3",
                )?
                .query_map(params![project_id, before, limit], |r| {
                    Ok(AuditEntry {
                        project_id: r.get(0)?,
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        detail: r.get(3)?,
                        address: r.get(4)?,
                        at: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}
