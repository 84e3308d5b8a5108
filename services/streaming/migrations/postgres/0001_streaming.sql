-- Transcode jobs (a durable queue with leases), URL signing keys, the outbox and the
-- processed-events inbox.

-- One job per track. A job is runnable when queued and due (`next_attempt_at`), or when
-- running under a lease that has lapsed (`lease_until`, its worker died).
CREATE TABLE transcode_jobs (
    track_id        UUID PRIMARY KEY,
    source_key      TEXT NOT NULL,
    format          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until     TIMESTAMPTZ,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    error           TEXT,
    packaged        JSONB, -- once done
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
-- What claiming looks through: the due queue and the leases that may lapse.
CREATE INDEX transcode_jobs_due ON transcode_jobs (next_attempt_at) WHERE status = 'queued';
CREATE INDEX transcode_jobs_leased ON transcode_jobs (lease_until) WHERE status = 'running';

CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
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
