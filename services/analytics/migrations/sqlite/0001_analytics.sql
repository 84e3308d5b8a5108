-- The analytics service's own records: its projection of the catalog's tracks, the plays
-- it accepted, the ledger of facts counted into ClickHouse, the outbox and the inbox.
-- (The embedded warehouse keeps its counts in a database of its own.)
-- Ids are UUIDs stored as 16-byte blobs; times are RFC 3339 text in UTC.

CREATE TABLE track_summaries (
    track_id    BLOB PRIMARY KEY NOT NULL,
    title       TEXT NOT NULL,
    artist_id   BLOB NOT NULL,
    artist_name TEXT NOT NULL,
    album_id    BLOB NOT NULL,
    album_title TEXT NOT NULL,
    duration_ms INTEGER NOT NULL
);

-- Every play id accepted through the API, so a client's retry is accepted again without
-- being published twice.
CREATE TABLE accepted_plays (
    play_id     BLOB PRIMARY KEY NOT NULL,
    user_id     BLOB NOT NULL,
    accepted_at TEXT NOT NULL
) WITHOUT ROWID;

-- The facts (play ids, request batch ids) already inserted into ClickHouse, which has no
-- unique keys: a redelivered event finds its id here and is not inserted again.
CREATE TABLE counted_facts (
    fact_id    BLOB PRIMARY KEY NOT NULL,
    counted_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE outbox (
    id           BLOB PRIMARY KEY NOT NULL,
    event_type   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    key          TEXT NOT NULL,
    payload      TEXT NOT NULL,
    headers      TEXT NOT NULL DEFAULT '{}',
    occurred_at  TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- The events this service has handled (see `bus::inbox`), so a redelivery changes nothing.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     BLOB NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_by_age ON processed_events (processed_at);
