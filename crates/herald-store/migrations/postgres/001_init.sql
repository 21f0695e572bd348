-- Herald's PostgreSQL schema, the current shape of the SQLite one (migrations/sqlite/,
-- through 007_data_plane.sql) in one step. Times are milliseconds since the Unix epoch.
-- As in SQLite, integrity is kept by the code that writes (in transactions): no foreign
-- keys, which would cost a lookup per delivery row on the send path.

CREATE TABLE admins (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    created_at    bigint NOT NULL
);

CREATE TABLE admin_tokens (
    token_hash text PRIMARY KEY,
    admin_id   bigint NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE projects (
    project_id text PRIMARY KEY,
    name       text NOT NULL,
    created_at bigint NOT NULL
);

CREATE TABLE apps (
    client_id          text PRIMARY KEY,
    project_id         text NOT NULL,
    package_name       text NOT NULL,
    name               text NOT NULL,
    created_at         bigint NOT NULL,
    app_category       text NOT NULL DEFAULT 'other',
    marketing_per_day  bigint,
    device_daily_total bigint,
    send_rate_per_sec  bigint
);

CREATE TABLE service_accounts (
    key_id         text PRIMARY KEY,
    project_id     text NOT NULL,
    sub_account    text NOT NULL,
    public_key_pem text NOT NULL,
    token_uri      text NOT NULL,
    created_at     bigint NOT NULL
);

CREATE TABLE rights (
    client_id  text NOT NULL,
    name       text NOT NULL,
    state      text NOT NULL,
    reason     text,
    updated_at bigint NOT NULL,
    PRIMARY KEY (client_id, name)
);

CREATE TABLE right_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id text NOT NULL,
    name      text NOT NULL,
    action    text NOT NULL,
    state     text NOT NULL,
    reason    text,
    actor     text NOT NULL,
    at        bigint NOT NULL
);
CREATE INDEX right_events_by_app ON right_events (client_id, id);

-- key: "<counter>:<scope>:<YYYYMMDD>"
CREATE TABLE quota_usage (
    key  text PRIMARY KEY,
    day  integer NOT NULL,
    used bigint NOT NULL
);
CREATE INDEX quota_usage_by_day ON quota_usage (day);

CREATE TABLE live_views (
    client_id     text NOT NULL,
    device_id     text NOT NULL,
    activity_id   integer NOT NULL,
    event         text NOT NULL,
    status        text,
    version       bigint,
    rest_created  boolean NOT NULL,
    ended         boolean NOT NULL,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL,
    blocked_until bigint,
    PRIMARY KEY (client_id, device_id, activity_id)
);

-- Project-level configs have no client_id; app-level ones win over them. `seq` orders
-- configurations created in the same millisecond (SQLite's rowid).
CREATE TABLE receipt_configs (
    receipt_id text PRIMARY KEY,
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    project_id text NOT NULL,
    client_id  text,
    url        text NOT NULL,
    username   text,
    secret     text NOT NULL,
    version    text NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX receipt_configs_by_project ON receipt_configs (project_id, created_at);

CREATE TABLE device (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text NOT NULL UNIQUE,
    secret_hash text NOT NULL,
    created_at  bigint NOT NULL,
    seen_at     bigint NOT NULL
);
CREATE INDEX device_by_seen ON device (seen_at);

CREATE TABLE token (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token      text NOT NULL UNIQUE,
    device     bigint NOT NULL,
    client_id  text NOT NULL,
    created_at bigint NOT NULL,
    deleted_at bigint
);
CREATE UNIQUE INDEX token_active ON token (device, client_id) WHERE deleted_at IS NULL;
CREATE INDEX token_deleted ON token (deleted_at) WHERE deleted_at IS NOT NULL;

-- One row per request (and per revoke command). `kind`: 0 message, 1 revoke command.
-- `open`: may still have queued deliveries.
CREATE TABLE message (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   text NOT NULL,
    project_id   text NOT NULL,
    push_type    smallint NOT NULL,
    kind         smallint NOT NULL,
    payload      text NOT NULL,
    bi_tag       text,
    receipt_id   text,
    test         boolean NOT NULL,
    created_at   bigint NOT NULL,
    expires_at   bigint NOT NULL,
    collapse_key smallint,
    notify_id    bigint,
    form_id      bigint,
    -- How long a delivered message's receipt waits for the device's report (ms).
    receipt_hold_ms bigint,
    open         boolean NOT NULL
);
CREATE INDEX message_by_request ON message (request_id);
CREATE INDEX message_by_time ON message (created_at);
CREATE INDEX message_open_by_expiry ON message (expires_at) WHERE open;
CREATE INDEX message_by_notify ON message (project_id, notify_id) WHERE notify_id IS NOT NULL;

-- One row per (message, token). `state`: herald_core::DeliveryState codes; `code`: the
-- receipt code of a suppressed or dropped delivery; `category`: index into
-- herald_core::Category::ALL (the effective category); `bg`: effective backgroundMode.
CREATE TABLE delivery (
    msg          bigint NOT NULL,
    tok          bigint NOT NULL,
    device       bigint NOT NULL,
    state        smallint NOT NULL,
    code         integer,
    category     smallint,
    bg           smallint,
    delivered_at bigint,
    shown_at     bigint,
    updated_at   bigint NOT NULL,
    PRIMARY KEY (msg, tok)
);
-- Only queued deliveries are indexed by device: acked ones leave the index.
CREATE INDEX delivery_queued ON delivery (device, tok, msg) WHERE state = 0;

-- Tokens the server does not know, dropped with receipt 5 (kept for the history).
CREATE TABLE unknown_drop (
    msg   bigint NOT NULL,
    token text NOT NULL,
    code  integer NOT NULL,
    PRIMARY KEY (msg, token)
);

-- The receipt outbox. `state`: 0 pending, 1 sent, 2 dropped. `token` only for unknown
-- tokens (known ones are read through `tok`). `claimed_by`, `claimed_until`: the node
-- whose dispatcher claimed the row (`due_receipts`); no other node takes it before then.
CREATE TABLE receipt (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    config          text NOT NULL,
    msg             bigint NOT NULL,
    tok             bigint,
    token           text,
    client_id       text,
    result          integer NOT NULL,
    at              bigint NOT NULL,
    state           smallint NOT NULL,
    attempts        integer NOT NULL,
    next_attempt_at bigint NOT NULL,
    claimed_by      text,
    claimed_until   bigint,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
CREATE INDEX receipt_pending_by_config ON receipt (config, id) WHERE state = 0;
CREATE INDEX receipt_pending_by_time ON receipt (next_attempt_at) WHERE state = 0;
CREATE INDEX receipt_pending_by_msg ON receipt (msg) WHERE state = 0;
CREATE INDEX receipt_ended ON receipt (updated_at) WHERE state <> 0;

-- The push report: transitions counted per hour, app, push type, category, outcome and
-- receipt code ('' / -1 when there is none), updated in the transaction of each change.
CREATE TABLE report_counter (
    hour       bigint NOT NULL,
    project_id text NOT NULL,
    client_id  text NOT NULL,
    push_type  smallint NOT NULL,
    category   text NOT NULL,
    outcome    text NOT NULL,
    code       integer NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (hour, project_id, client_id, push_type, category, outcome, code)
);
