-- The shapes the PostgreSQL engine needs for several nodes, kept alike in the embedded
-- store: an app's send budget per second, revoked service-account keys, and the number
-- of a device's latest hello.

CREATE TABLE send_budget (
    client_id TEXT NOT NULL,
    second    INTEGER NOT NULL,
    used      INTEGER NOT NULL,
    PRIMARY KEY (client_id, second)
) WITHOUT ROWID;

ALTER TABLE service_accounts ADD COLUMN revoked_at INTEGER;

ALTER TABLE device ADD COLUMN sessions INTEGER NOT NULL DEFAULT 0;
