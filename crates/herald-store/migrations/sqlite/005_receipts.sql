-- Delivery receipts: callback configurations, and the outbox the dispatcher drains.
-- An outbox row is written in the same transaction as the event it reports, so a
-- committed event with a receipt code always has its receipt queued (or no config).

-- The app of the event's token (drops of unknown tokens have none).
ALTER TABLE events ADD COLUMN client_id TEXT;

-- Project-level configs have no client_id; app-level ones win over them.
CREATE TABLE receipt_configs (
    receipt_id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(project_id),
    client_id  TEXT REFERENCES apps(client_id),
    url        TEXT NOT NULL,
    username   TEXT,
    secret     TEXT NOT NULL,
    version    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX receipt_configs_by_project ON receipt_configs(project_id, created_at);
CREATE INDEX receipt_configs_by_app ON receipt_configs(client_id, created_at);

-- One row per status to report. `state`: pending → sent | dropped.
CREATE TABLE receipts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         INTEGER NOT NULL UNIQUE,
    receipt_id       TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    token            TEXT NOT NULL,
    push_type        INTEGER NOT NULL,
    bi_tag           TEXT NOT NULL,
    app_package_name TEXT NOT NULL,
    form_id          INTEGER,
    result           INTEGER NOT NULL,
    at               INTEGER NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX receipts_pending_by_config ON receipts(receipt_id, id) WHERE state = 'pending';
CREATE INDEX receipts_pending_by_time ON receipts(next_attempt_at) WHERE state = 'pending';
