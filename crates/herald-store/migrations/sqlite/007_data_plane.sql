-- The compact data plane. Devices and tokens get integer numbers; a message is stored
-- once; each of its tokens costs one small row keyed by (message, token) numbers; the
-- push report reads counters kept in the same transaction; the receipt outbox refers to
-- deliveries by number. Message history of the first schema is not carried over (it had
-- no retention); devices, tokens and every configuration are.

CREATE TABLE device (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    seen_at     INTEGER NOT NULL
);
INSERT INTO device (device_id, secret_hash, created_at, seen_at)
    SELECT device_id, secret_hash, created_at, created_at FROM devices ORDER BY rowid;
CREATE INDEX device_by_seen ON device(seen_at);

CREATE TABLE token (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token      TEXT NOT NULL UNIQUE,
    device     INTEGER NOT NULL,
    client_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
INSERT INTO token (token, device, client_id, created_at, deleted_at)
    SELECT t.token, d.id, t.client_id, t.created_at, t.deleted_at
    FROM tokens t JOIN device d ON d.device_id = t.device_id ORDER BY t.rowid;
CREATE UNIQUE INDEX token_active ON token(device, client_id) WHERE deleted_at IS NULL;
CREATE INDEX token_deleted ON token(deleted_at) WHERE deleted_at IS NOT NULL;

DROP TABLE receipts;
DROP TABLE events;
DROP TABLE deliveries;
DROP TABLE requests;
DROP TABLE tokens;
DROP TABLE devices;

-- One row per request (and per revoke command). `open`: may still have queued deliveries.
CREATE TABLE message (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    push_type    INTEGER NOT NULL,
    kind         INTEGER NOT NULL,
    payload      TEXT NOT NULL,
    bi_tag       TEXT,
    receipt_id   TEXT,
    test         INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    collapse_key INTEGER,
    notify_id    INTEGER,
    form_id      INTEGER,
    -- How long a delivered message's receipt waits for the device's report (ms).
    receipt_hold_ms INTEGER,
    open         INTEGER NOT NULL
);
CREATE INDEX message_by_request ON message(request_id);
CREATE INDEX message_by_time ON message(created_at);
CREATE INDEX message_open_by_expiry ON message(expires_at) WHERE open = 1;
CREATE INDEX message_by_notify ON message(project_id, notify_id) WHERE notify_id IS NOT NULL;

-- One row per (message, token). `state`: herald_core::DeliveryState codes; `code`: the
-- receipt code of a suppressed or dropped delivery; `category`: index into
-- herald_core::Category::ALL (the effective category); `bg`: effective backgroundMode.
CREATE TABLE delivery (
    msg          INTEGER NOT NULL,
    tok          INTEGER NOT NULL,
    device       INTEGER NOT NULL,
    state        INTEGER NOT NULL,
    code         INTEGER,
    category     INTEGER,
    bg           INTEGER,
    delivered_at INTEGER,
    shown_at     INTEGER,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (msg, tok)
) WITHOUT ROWID;
-- Only queued deliveries are indexed by device: acked ones leave the index.
CREATE INDEX delivery_queued ON delivery(device, tok, msg) WHERE state = 0;

-- Tokens the server does not know, dropped with receipt 5 (kept for the history).
CREATE TABLE unknown_drop (
    msg   INTEGER NOT NULL,
    token TEXT NOT NULL,
    code  INTEGER NOT NULL,
    PRIMARY KEY (msg, token)
) WITHOUT ROWID;

-- The receipt outbox. `state`: 0 pending, 1 sent, 2 dropped. `token` only for unknown
-- tokens (known ones are read through `tok`).
CREATE TABLE receipt (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    config          TEXT NOT NULL,
    msg             INTEGER NOT NULL,
    tok             INTEGER,
    token           TEXT,
    client_id       TEXT,
    result          INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    state           INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX receipt_pending_by_config ON receipt(config, id) WHERE state = 0;
CREATE INDEX receipt_pending_by_time ON receipt(next_attempt_at) WHERE state = 0;
CREATE INDEX receipt_pending_by_msg ON receipt(msg) WHERE state = 0;
CREATE INDEX receipt_ended ON receipt(updated_at) WHERE state != 0;

-- The push report: transitions counted per hour, app, push type, category, outcome and
-- receipt code ('' / -1 when there is none), updated in the transaction of each change.
CREATE TABLE report_counter (
    hour       INTEGER NOT NULL,
    project_id TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    push_type  INTEGER NOT NULL,
    category   TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    code       INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (hour, project_id, client_id, push_type, category, outcome, code)
) WITHOUT ROWID;
