-- Playlists and their entries, follows, likes, the projection of track summaries, the
-- outbox and the processed-events inbox.

-- `version` counts changes to the track list (its text is the snapshot id) and
-- `tracks_total` is kept by those changes, so reading a playlist never counts entries.
CREATE TABLE playlists (
    id           UUID PRIMARY KEY,
    owner_id     UUID NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    public       BOOLEAN NOT NULL,
    version      BIGINT NOT NULL DEFAULT 0,
    tracks_total INTEGER NOT NULL DEFAULT 0 CHECK (tracks_total >= 0),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX playlists_by_owner ON playlists (owner_id, created_at);

-- The read side's copy of every published track, from `track.published` and
-- `track.deleted` (or fetched from the catalog when an event has not arrived yet).
CREATE TABLE track_summaries (
    track_id    UUID PRIMARY KEY,
    title       TEXT NOT NULL,
    artist_id   UUID NOT NULL,
    artist_name TEXT NOT NULL,
    album_id    UUID NOT NULL,
    album_title TEXT NOT NULL,
    duration_ms BIGINT NOT NULL
);

-- A playlist's order is its entries' `sort_key` order; positions are ranks, never stored.
-- Keys are gapped (see `domain::positions`), so a change writes only the rows it adds or
-- moves. An entry refers to a summary the projection holds: `track.deleted` takes the
-- track's entries out before its summary.
CREATE TABLE playlist_entries (
    entry_id    UUID PRIMARY KEY,
    playlist_id UUID NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    track_id    UUID NOT NULL REFERENCES track_summaries (track_id),
    sort_key    BIGINT NOT NULL,
    added_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (playlist_id, sort_key) -- also the index entries are read in order by
);
CREATE INDEX playlist_entries_by_track ON playlist_entries (track_id);

CREATE TABLE follows (
    user_id     UUID NOT NULL,
    playlist_id UUID NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    followed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, playlist_id)
);
CREATE INDEX follows_by_playlist ON follows (playlist_id);

CREATE TABLE likes (
    user_id  UUID NOT NULL,
    track_id UUID NOT NULL,
    liked_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, track_id)
);
CREATE INDEX likes_by_user_recent ON likes (user_id, liked_at DESC, track_id);
CREATE INDEX likes_by_track ON likes (track_id);

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
