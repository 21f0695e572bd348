-- The console: test devices, the push tokens an app's developers registered to receive
-- test messages (`POST /api/v1/apps/{client_id}/test-messages` sends only to these).
-- Bounded: at most 100 per app (MAX_TEST_DEVICES_PER_APP), checked as each is added.
CREATE TABLE test_device (
    id         text PRIMARY KEY,
    project_id text NOT NULL,
    client_id  text NOT NULL,
    token      text NOT NULL,
    name       text NOT NULL,
    added_by   text NOT NULL,
    created_at bigint NOT NULL,
    UNIQUE (client_id, token)
);
CREATE INDEX test_device_by_project ON test_device (project_id, created_at);
