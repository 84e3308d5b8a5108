-- People: the projection of accounts, follows between them, who follows which playlist,
-- notifications, billing (provider events, payments, subscriptions), the mail queue, the
-- outbox and the processed-events inbox.
-- Ids are UUIDs stored as 16-byte blobs; times are RFC 3339 text in UTC, which compares
-- in time order as long as every time is written through sqlx.

-- Accounts as `user.registered`, `user.updated` and `user.deleted` describe them (or as
-- the auth service answered for one whose event has not arrived yet).
CREATE TABLE users (
    id               BLOB PRIMARY KEY NOT NULL,
    display_name     TEXT NOT NULL,
    email            TEXT NOT NULL,
    registered_at    TEXT NOT NULL,
    presence_visible INTEGER NOT NULL DEFAULT 1 CHECK (presence_visible IN (0, 1))
);
CREATE INDEX users_by_email ON users (email);
CREATE INDEX users_by_name ON users (display_name COLLATE NOCASE);

CREATE TABLE follows (
    follower_id BLOB NOT NULL,
    followee_id BLOB NOT NULL,
    followed_at TEXT NOT NULL,
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
CREATE INDEX follows_by_followee ON follows (followee_id, followed_at DESC);
CREATE INDEX follows_by_follower ON follows (follower_id, followed_at DESC);

-- Who follows which public playlist, from `playlist.followed` and `playlist.unfollowed`.
CREATE TABLE playlist_followers (
    playlist_id BLOB NOT NULL,
    user_id     BLOB NOT NULL,
    PRIMARY KEY (playlist_id, user_id)
);
CREATE INDEX playlist_followers_by_user ON playlist_followers (user_id);

-- `count` grows while a notification about one playlist's changes stays unread, so a
-- busy playlist makes one line, not one per edit.
CREATE TABLE notifications (
    id           BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL,
    kind         TEXT NOT NULL,
    actor_id     BLOB NOT NULL,
    playlist_id  BLOB,
    playlist_name TEXT,
    count        INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    read_at      TEXT
);
CREATE INDEX notifications_by_user ON notifications (user_id, updated_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id, kind, playlist_id) WHERE read_at IS NULL;

-- Every provider event id received, so a replayed webhook changes nothing.
CREATE TABLE billing_events (
    provider_event_id TEXT PRIMARY KEY NOT NULL,
    event_type        TEXT NOT NULL,
    received_at       TEXT NOT NULL
);

CREATE TABLE payments (
    invoice_id   TEXT PRIMARY KEY NOT NULL,
    payment_id   BLOB NOT NULL,
    user_id      BLOB NOT NULL,
    amount_cents INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    paid_at      TEXT NOT NULL,
    period_end   TEXT NOT NULL,
    refunded_at  TEXT
);
CREATE INDEX payments_by_user ON payments (user_id);

CREATE TABLE subscriptions (
    user_id       BLOB PRIMARY KEY NOT NULL,
    premium_until TEXT,
    cancelled_at  TEXT,
    revision      INTEGER NOT NULL
);

-- Mail waiting to be sent, or sent. A sender claims a message for a while before it
-- talks to the relay, so two replicas never send one message at once.
CREATE TABLE outgoing_mail (
    id              BLOB PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claimed_until   TEXT,
    sent_at         TEXT,
    last_error      TEXT
);
CREATE INDEX outgoing_mail_due ON outgoing_mail (next_attempt_at) WHERE sent_at IS NULL;

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
