-- Artists, albums, tracks and the outbox.
-- Names and titles are matched case-insensitively through their keys (lower-cased, trimmed).
-- Ids are UUIDs stored as 16-byte blobs; times are RFC 3339 text in UTC.
CREATE TABLE artists (
    id       BLOB PRIMARY KEY NOT NULL,
    name     TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE -- also the index artists are listed by
);

CREATE TABLE albums (
    id        BLOB PRIMARY KEY NOT NULL,
    artist_id BLOB NOT NULL REFERENCES artists (id),
    title     TEXT NOT NULL,
    title_key TEXT NOT NULL,
    year      INTEGER,
    UNIQUE (artist_id, title_key)
);
CREATE INDEX albums_by_title ON albums (title_key, id);

CREATE TABLE tracks (
    id            BLOB PRIMARY KEY NOT NULL,
    title         TEXT NOT NULL,
    artist_id     BLOB NOT NULL REFERENCES artists (id),
    album_id      BLOB NOT NULL REFERENCES albums (id),
    track_number  INTEGER,
    disc_number   INTEGER,
    year          INTEGER,
    genre         TEXT,
    duration_ms   INTEGER NOT NULL,
    content_hash  TEXT NOT NULL UNIQUE,
    format        TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'processing' CHECK (status IN ('processing', 'ready', 'failed')),
    error         TEXT,
    loudness_lufs REAL,
    uploaded_by   BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX tracks_by_created ON tracks (created_at, id);
CREATE INDEX tracks_by_title ON tracks (lower(title), id);
CREATE INDEX tracks_by_album ON tracks (album_id);
CREATE INDEX tracks_by_artist ON tracks (artist_id);

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
