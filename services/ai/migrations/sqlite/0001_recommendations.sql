-- The AI service's own records, for recommendations: the tracks it recommends (from
-- `track.published`, each with its content embedding), what each listener played and
-- liked, and the inbox. Ids are UUIDs stored as 16-byte blobs; times are RFC 3339 text in
-- UTC.

-- A track's embedding is its unit-length MiniLM vector as little-endian 32-bit floats;
-- NULL until it is computed (the model may arrive after the track).
CREATE TABLE tracks (
    track_id     BLOB PRIMARY KEY NOT NULL,
    title        TEXT NOT NULL,
    artist_id    BLOB NOT NULL,
    artist_name  TEXT NOT NULL,
    album_id     BLOB NOT NULL,
    album_title  TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    genre        TEXT,
    embedding    BLOB,
    published_at TEXT NOT NULL
);

-- One row per listener and track they played or liked. `play_weight` adds up each play's
-- completed fraction of the track; `liked_changed_at` orders likes and unlikes however
-- late their events arrive.
CREATE TABLE listening (
    user_id          BLOB NOT NULL,
    track_id         BLOB NOT NULL,
    plays            INTEGER NOT NULL DEFAULT 0,
    play_weight      REAL NOT NULL DEFAULT 0,
    last_played_at   TEXT,
    liked            INTEGER NOT NULL DEFAULT 0,
    liked_changed_at TEXT,
    PRIMARY KEY (user_id, track_id)
) WITHOUT ROWID;
CREATE INDEX listening_by_track ON listening (track_id);

-- Each listener's count of changes to their listening, which keys their cached
-- recommendations, and when they were last active, which picks whose are precomputed.
CREATE TABLE listeners (
    user_id   BLOB PRIMARY KEY NOT NULL,
    revision  INTEGER NOT NULL,
    active_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX listeners_by_activity ON listeners (active_at);

-- The events this service has handled (see `bus::inbox`), so a redelivery changes nothing.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     BLOB NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_by_age ON processed_events (processed_at);
