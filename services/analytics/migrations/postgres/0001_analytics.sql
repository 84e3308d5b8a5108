-- The analytics service's own records: its projection of the catalog's tracks, the plays
-- it accepted, the ledger of facts counted into ClickHouse, the outbox and the inbox.

CREATE TABLE track_summaries (
    track_id    UUID PRIMARY KEY,
    title       TEXT NOT NULL,
    artist_id   UUID NOT NULL,
    artist_name TEXT NOT NULL,
    album_id    UUID NOT NULL,
    album_title TEXT NOT NULL,
    duration_ms BIGINT NOT NULL
);

-- Every play id accepted through the API, so a client's retry is accepted again without
-- being published twice.
CREATE TABLE accepted_plays (
    play_id     UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    accepted_at TIMESTAMPTZ NOT NULL
);

-- The facts (play ids, request batch ids) already inserted into ClickHouse, which has no
-- unique keys: a redelivered event finds its id here and is not inserted again.
CREATE TABLE counted_facts (
    fact_id    UUID PRIMARY KEY,
    counted_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE outbox (
    id           UUID PRIMARY KEY,
    event_type   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    key          TEXT NOT NULL,
    payload      JSONB NOT NULL,
    headers      JSONB NOT NULL DEFAULT '{}',
    occurred_at  TIMESTAMPTZ NOT NULL,
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- The events this service has handled (see `bus::inbox`), so a redelivery changes nothing.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_by_age ON processed_events (processed_at);
