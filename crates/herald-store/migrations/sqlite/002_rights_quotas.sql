-- Scenario rights with their history, app quota settings, daily quota counters, and the
-- effective category of each delivery.

ALTER TABLE apps ADD COLUMN app_category TEXT NOT NULL DEFAULT 'other';
ALTER TABLE apps ADD COLUMN marketing_per_day INTEGER;
ALTER TABLE apps ADD COLUMN device_daily_total INTEGER;
ALTER TABLE apps ADD COLUMN send_rate_per_sec INTEGER;

CREATE TABLE rights (
    client_id  TEXT NOT NULL REFERENCES apps(client_id),
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, name)
);

CREATE TABLE right_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    action    TEXT NOT NULL,
    state     TEXT NOT NULL,
    reason    TEXT,
    actor     TEXT NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX right_events_by_app ON right_events(client_id, id);

-- key: "<counter>:<scope>:<YYYYMMDD>"
CREATE TABLE quota_usage (
    key  TEXT PRIMARY KEY,
    day  INTEGER NOT NULL,
    used INTEGER NOT NULL
);
CREATE INDEX quota_usage_by_day ON quota_usage(day);

ALTER TABLE deliveries ADD COLUMN category TEXT;
