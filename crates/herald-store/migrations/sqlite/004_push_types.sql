-- Every push type and revoke: Live View state per activity per device, the kind of each
-- delivery (a message, or a revoke command for the device) and background mode.

CREATE TABLE live_views (
    client_id     TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    activity_id   INTEGER NOT NULL,
    event         TEXT NOT NULL,
    status        TEXT,
    version       INTEGER,
    rest_created  INTEGER NOT NULL,
    ended         INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    blocked_until INTEGER,
    PRIMARY KEY (client_id, device_id, activity_id)
);

ALTER TABLE deliveries ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
ALTER TABLE deliveries ADD COLUMN background_mode INTEGER;
CREATE INDEX deliveries_by_token_notify ON deliveries(token, notify_id);
