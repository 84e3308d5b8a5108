-- People: the projection of accounts, follows between them, who follows which playlist,
-- notifications, billing (provider events, payments, subscriptions), the mail queue, the
-- outbox and the processed-events inbox.

-- Accounts as `user.registered`, `user.updated` and `user.deleted` describe them (or as
-- the auth service answered for one whose event has not arrived yet).
CREATE TABLE users (
    id               UUID PRIMARY KEY,
    display_name     TEXT NOT NULL,
    email            TEXT NOT NULL,
    registered_at    TIMESTAMPTZ NOT NULL,
    presence_visible BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX users_by_email ON users (email);
CREATE INDEX users_by_name ON users (lower(display_name) text_pattern_ops);

CREATE TABLE follows (
    follower_id UUID NOT NULL,
    followee_id UUID NOT NULL,
    followed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
);
CREATE INDEX follows_by_followee ON follows (followee_id, followed_at DESC);
CREATE INDEX follows_by_follower ON follows (follower_id, followed_at DESC);

-- Who follows which public playlist, from `playlist.followed` and `playlist.unfollowed`.
CREATE TABLE playlist_followers (
    playlist_id UUID NOT NULL,
    user_id     UUID NOT NULL,
    PRIMARY KEY (playlist_id, user_id)
);
CREATE INDEX playlist_followers_by_user ON playlist_followers (user_id);

-- `count` grows while a notification about one playlist's changes stays unread, so a
-- busy playlist makes one line, not one per edit.
CREATE TABLE notifications (
    id            UUID PRIMARY KEY,
    user_id       UUID NOT NULL,
    kind          TEXT NOT NULL,
    actor_id      UUID NOT NULL,
    playlist_id   UUID,
    playlist_name TEXT,
    count         INTEGER NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    read_at       TIMESTAMPTZ
);
CREATE INDEX notifications_by_user ON notifications (user_id, updated_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id, kind, playlist_id) WHERE read_at IS NULL;

-- Every provider event id received, so a replayed webhook changes nothing.
CREATE TABLE billing_events (
    provider_event_id TEXT PRIMARY KEY,
    event_type        TEXT NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE payments (
    invoice_id   TEXT PRIMARY KEY,
    payment_id   UUID NOT NULL,
    user_id      UUID NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    paid_at      TIMESTAMPTZ NOT NULL,
    period_end   TIMESTAMPTZ NOT NULL,
    refunded_at  TIMESTAMPTZ
);
CREATE INDEX payments_by_user ON payments (user_id);

CREATE TABLE subscriptions (
    user_id       UUID PRIMARY KEY,
    premium_until TIMESTAMPTZ,
    cancelled_at  TIMESTAMPTZ,
    revision      BIGINT NOT NULL
);

-- Mail waiting to be sent, or sent. A sender claims a message for a while before it
-- talks to the relay, so two replicas never send one message at once.
CREATE TABLE outgoing_mail (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    claimed_until   TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ,
    last_error      TEXT
);
CREATE INDEX outgoing_mail_due ON outgoing_mail (next_attempt_at) WHERE sent_at IS NULL;

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
