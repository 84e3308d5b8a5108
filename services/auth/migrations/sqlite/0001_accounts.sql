-- Accounts, sessions, refresh-token families, signing keys and the outbox.
-- Ids are UUIDs stored as 16-byte blobs; times are RFC 3339 text in UTC.
CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    tier          TEXT NOT NULL DEFAULT 'free' CHECK (tier IN ('free', 'premium')),
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE sessions (
    id           BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    user_agent   TEXT,
    revoked_at   TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    session_id BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    rotated_at TEXT
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY NOT NULL,
    private_key_pem TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    created_at      TEXT NOT NULL
);

CREATE TABLE outbox (
    id           BLOB PRIMARY KEY NOT NULL,
    event_type   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    key          TEXT NOT NULL,
    payload      TEXT NOT NULL,
    occurred_at  TEXT NOT NULL,
    published_at TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
