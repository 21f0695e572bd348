-- The push report reads events by time; sessions are more admin tokens.
CREATE INDEX events_by_time ON events(at);
