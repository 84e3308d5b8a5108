-- Playlists and their entries, follows, likes, the projection of track summaries, the
-- outbox and the processed-events inbox.
-- Ids are UUIDs stored as 16-byte blobs; times are RFC 3339 text in UTC, which compares
-- in time order as long as every time is written through sqlx.

-- `version` counts changes to the track list (its text is the snapshot id) and
-- `tracks_total` is kept by those changes, so reading a playlist never counts entries.
CREATE TABLE playlists (
    id           BLOB PRIMARY KEY NOT NULL,
    owner_id     BLOB NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    public       INTEGER NOT NULL CHECK (public IN (0, 1)),
    version      INTEGER NOT NULL DEFAULT 0,
    tracks_total INTEGER NOT NULL DEFAULT 0 CHECK (tracks_total >= 0),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX playlists_by_owner ON playlists (owner_id, created_at);

-- The read side's copy of every published track, from `track.published` and
-- `track.deleted` (or fetched from the catalog when an event has not arrived yet).
CREATE TABLE track_summaries (
    track_id    BLOB PRIMARY KEY NOT NULL,
    title       TEXT NOT NULL,
    artist_id   BLOB NOT NULL,
    artist_name TEXT NOT NULL,
    album_id    BLOB NOT NULL,
    album_title TEXT NOT NULL,
    duration_ms INTEGER NOT NULL
);

-- A playlist's order is its entries' `sort_key` order; positions are ranks, never stored.
-- Keys are gapped (see `domain::positions`), so a change writes only the rows it adds or
-- moves. An entry refers to a summary the projection holds: `track.deleted` takes the
-- track's entries out before its summary.
CREATE TABLE playlist_entries (
    entry_id    BLOB PRIMARY KEY NOT NULL,
    playlist_id BLOB NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    track_id    BLOB NOT NULL REFERENCES track_summaries (track_id),
    sort_key    INTEGER NOT NULL,
    added_at    TEXT NOT NULL,
    UNIQUE (playlist_id, sort_key) -- also the index entries are read in order by
);
CREATE INDEX playlist_entries_by_track ON playlist_entries (track_id);

CREATE TABLE follows (
    user_id     BLOB NOT NULL,
    playlist_id BLOB NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    followed_at TEXT NOT NULL,
    PRIMARY KEY (user_id, playlist_id)
);
CREATE INDEX follows_by_playlist ON follows (playlist_id);

CREATE TABLE likes (
    user_id  BLOB NOT NULL,
    track_id BLOB NOT NULL,
    liked_at TEXT NOT NULL,
    PRIMARY KEY (user_id, track_id)
);
CREATE INDEX likes_by_user_recent ON likes (user_id, liked_at DESC, track_id);
CREATE INDEX likes_by_track ON likes (track_id);

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
