-- Paid premium: until when, and the revision of the subscription that said so (from
-- `payment.completed` and `subscription.changed`, which may arrive out of order). The
-- inbox records the events applied, so a redelivery changes nothing.
ALTER TABLE users ADD COLUMN premium_until TEXT;
ALTER TABLE users ADD COLUMN premium_revision INTEGER NOT NULL DEFAULT 0;

CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     BLOB NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_by_age ON processed_events (processed_at);
