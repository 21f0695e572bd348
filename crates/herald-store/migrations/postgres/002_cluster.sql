-- What several nodes must agree on beyond the data plane: an app's send budget per second
-- (shared by every node), revoked service-account keys, and which connection of a device
-- is the newest (its hello's number).

-- Requests of an app's send rate taken in one second, by all nodes together; a node takes
-- a slice of the budget at a time. Rows of past seconds are pruned.
CREATE TABLE send_budget (
    client_id text NOT NULL,
    second    bigint NOT NULL,
    used      bigint NOT NULL,
    PRIMARY KEY (client_id, second)
);

-- A revoked key stays listed (as revoked); no JWT it signed is accepted any more.
ALTER TABLE service_accounts ADD COLUMN revoked_at bigint;

-- Each hello with the device's credential takes the next number: the highest is the
-- device's current connection, and a node holding an older one closes it.
ALTER TABLE device ADD COLUMN sessions bigint NOT NULL DEFAULT 0;
