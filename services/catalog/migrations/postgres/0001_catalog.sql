-- Artists, albums, tracks and the outbox.
-- Names and titles are matched case-insensitively through their keys (lower-cased, trimmed).
CREATE TABLE artists (
    id       UUID PRIMARY KEY,
    name     TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE -- also the index artists are listed by
);

CREATE TABLE albums (
    id        UUID PRIMARY KEY,
    artist_id UUID NOT NULL REFERENCES artists (id),
    title     TEXT NOT NULL,
    title_key TEXT NOT NULL,
    year      INTEGER,
    UNIQUE (artist_id, title_key)
);
CREATE INDEX albums_by_title ON albums (title_key, id);

CREATE TABLE tracks (
    id            UUID PRIMARY KEY,
    title         TEXT NOT NULL,
    artist_id     UUID NOT NULL REFERENCES artists (id),
    album_id      UUID NOT NULL REFERENCES albums (id),
    track_number  INTEGER,
    disc_number   INTEGER,
    year          INTEGER,
    genre         TEXT,
    duration_ms   BIGINT NOT NULL,
    content_hash  TEXT NOT NULL UNIQUE,
    format        TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'processing' CHECK (status IN ('processing', 'ready', 'failed')),
    error         TEXT,
    loudness_lufs DOUBLE PRECISION,
    uploaded_by   UUID NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX tracks_by_created ON tracks (created_at, id);
CREATE INDEX tracks_by_title ON tracks (lower(title), id);
CREATE INDEX tracks_by_album ON tracks (album_id);
CREATE INDEX tracks_by_artist ON tracks (artist_id);

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
