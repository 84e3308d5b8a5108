-- What streaming made of each track (a JSON array of {bitrate_kbps, codec}), and the
-- transcode results this service has applied, so a redelivered result changes nothing.
ALTER TABLE tracks ADD COLUMN renditions TEXT NOT NULL DEFAULT '[]';

CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     BLOB NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_by_age ON processed_events (processed_at);
