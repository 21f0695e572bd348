-- Accounts, roles and an audit trail (issue 16). The `admins` table now holds every
-- user (the bootstrap admin is the instance admin); `admin_tokens` every session.

ALTER TABLE admins ADD COLUMN instance_admin boolean NOT NULL DEFAULT false;
UPDATE admins SET instance_admin = true;

-- kind: 'bootstrap' (the token in bootstrap.json: never expires), 'bearer' (a login for
-- scripts) or 'cookie' (a console login, with its CSRF token's hash).
ALTER TABLE admin_tokens ADD COLUMN kind text NOT NULL DEFAULT 'bearer';
ALTER TABLE admin_tokens ADD COLUMN expires_at bigint;
ALTER TABLE admin_tokens ADD COLUMN last_used_at bigint;
ALTER TABLE admin_tokens ADD COLUMN revoked_at bigint;
ALTER TABLE admin_tokens ADD COLUMN csrf_hash text;
-- Each admin's first token is the bootstrap one; the console tokens logins made before
-- sessions expired end now.
UPDATE admin_tokens SET kind = 'bootstrap'
 WHERE created_at = (SELECT MIN(created_at) FROM admin_tokens o WHERE o.admin_id = admin_tokens.admin_id);
UPDATE admin_tokens SET expires_at = created_at WHERE kind = 'bearer';
UPDATE admin_tokens SET last_used_at = created_at;
CREATE INDEX admin_tokens_by_user ON admin_tokens (admin_id);

-- One role per member and project.
CREATE TABLE members (
    project_id text NOT NULL,
    user_id    bigint NOT NULL,
    role       text NOT NULL,
    added_at   bigint NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
-- Every project so far was made by the bootstrap admin: it is their owner.
INSERT INTO members (project_id, user_id, role, added_at)
SELECT p.project_id, a.id, 'owner', p.created_at
  FROM projects p, (SELECT MIN(id) AS id FROM admins) a
 WHERE a.id IS NOT NULL;
CREATE INDEX members_by_user ON members (user_id);

-- Every change: who, what, when, from which address (pruned after its retention).
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id text,
    actor      text NOT NULL,
    action     text NOT NULL,
    detail     text NOT NULL,
    address    text NOT NULL,
    at         bigint NOT NULL
);
CREATE INDEX audit_log_by_project ON audit_log (project_id, id);
CREATE INDEX audit_log_by_time ON audit_log (at);

ALTER TABLE projects ADD COLUMN push_enabled boolean NOT NULL DEFAULT true;

-- A request carries its scenario and a sample message; product confirms the scenario.
ALTER TABLE rights ADD COLUMN scenario text;
ALTER TABLE rights ADD COLUMN sample_message text;
ALTER TABLE rights ADD COLUMN confirmed_by text;
ALTER TABLE rights ADD COLUMN confirmed_at bigint;
ALTER TABLE right_events ADD COLUMN scenario text;
ALTER TABLE right_events ADD COLUMN sample_message text;
