-- The AI service's own records, for recommendations: the tracks it recommends (from
-- `track.published`, each with its content embedding), what each listener played and
-- liked, and the inbox.

-- A track's embedding is its unit-length MiniLM vector as little-endian 32-bit floats;
-- NULL until it is computed (the model may arrive after the track).
CREATE TABLE tracks (
    track_id     UUID PRIMARY KEY,
    title        TEXT NOT NULL,
    artist_id    UUID NOT NULL,
    artist_name  TEXT NOT NULL,
    album_id     UUID NOT NULL,
    album_title  TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    genre        TEXT,
    embedding    BYTEA,
    published_at TIMESTAMPTZ NOT NULL
);

-- One row per listener and track they played or liked. `play_weight` adds up each play's
-- completed fraction of the track; `liked_changed_at` orders likes and unlikes however
-- late their events arrive.
CREATE TABLE listening (
    user_id          UUID NOT NULL,
    track_id         UUID NOT NULL,
    plays            BIGINT NOT NULL DEFAULT 0,
    play_weight      DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_played_at   TIMESTAMPTZ,
    liked            BOOLEAN NOT NULL DEFAULT FALSE,
    liked_changed_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, track_id)
);
CREATE INDEX listening_by_track ON listening (track_id);

-- Each listener's count of changes to their listening, which keys their cached
-- recommendations, and when they were last active, which picks whose are precomputed.
CREATE TABLE listeners (
    user_id   UUID PRIMARY KEY,
    revision  BIGINT NOT NULL,
    active_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX listeners_by_activity ON listeners (active_at);

-- The events this service has handled (see `bus::inbox`), so a redelivery changes nothing.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_by_age ON processed_events (processed_at);
