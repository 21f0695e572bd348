-- Herald's embedded schema, version 1. Times are milliseconds since the Unix epoch.

CREATE TABLE admins (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE admin_tokens (
    token_hash TEXT PRIMARY KEY,
    admin_id   INTEGER NOT NULL REFERENCES admins(id),
    created_at INTEGER NOT NULL
);

CREATE TABLE projects (
    project_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE apps (
    client_id    TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects(project_id),
    package_name TEXT NOT NULL,
    name         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE service_accounts (
    key_id         TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects(project_id),
    sub_account    TEXT NOT NULL,
    public_key_pem TEXT NOT NULL,
    token_uri      TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE devices (
    device_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE tokens (
    token      TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES devices(device_id),
    client_id  TEXT NOT NULL REFERENCES apps(client_id),
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX tokens_active ON tokens(device_id, client_id) WHERE deleted_at IS NULL;

CREATE TABLE requests (
    request_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    push_type  INTEGER NOT NULL,
    payload    TEXT NOT NULL,
    bi_tag     TEXT,
    receipt_id TEXT,
    test       INTEGER NOT NULL,
    ttl_secs   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- One row per (message, token). `state` is the latest outcome; `events` has them all.
CREATE TABLE deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   TEXT NOT NULL UNIQUE,
    request_id   TEXT NOT NULL REFERENCES requests(request_id),
    token        TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    state        TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    collapse_key INTEGER,
    notify_id    INTEGER,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX deliveries_queued_by_device ON deliveries(device_id, seq) WHERE state = 'queued';
CREATE INDEX deliveries_queued_by_token ON deliveries(token, collapse_key) WHERE state = 'queued';
CREATE INDEX deliveries_queued_by_expiry ON deliveries(expires_at) WHERE state = 'queued';

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    request_id TEXT,
    token      TEXT,
    outcome    TEXT NOT NULL,
    code       INTEGER,
    at         INTEGER NOT NULL
);
CREATE INDEX events_by_message ON events(message_id, id);
