-- The embedded warehouse: the raw facts, and the rollups that `record_plays` keeps in the
-- same transaction, for the plays that were new. Ids are UUIDs stored as 16-byte blobs, which
-- compare in byte order as the charts' ties need; times are milliseconds since the Unix
-- epoch; `hour` and `day` count whole UTC hours and days since it (floored, like
-- `Bucketing::start_of`, also before 1970).

CREATE TABLE plays (
    play_id      BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL,
    track_id     BLOB NOT NULL,
    played_at_ms INTEGER NOT NULL,
    played_ms    INTEGER NOT NULL,
    stream       INTEGER NOT NULL
) WITHOUT ROWID;
-- A user's history, newest first, is a backwards walk of this index.
CREATE INDEX plays_by_user ON plays (user_id, played_at_ms, play_id);

-- Plays and streams per track: by the hour for the first day of a window and the hourly
-- series, by the day for everything else.
CREATE TABLE track_hours (
    hour     INTEGER NOT NULL,
    track_id BLOB NOT NULL,
    plays    INTEGER NOT NULL,
    streams  INTEGER NOT NULL,
    PRIMARY KEY (hour, track_id)
) WITHOUT ROWID;

CREATE TABLE track_days (
    day      INTEGER NOT NULL,
    track_id BLOB NOT NULL,
    plays    INTEGER NOT NULL,
    streams  INTEGER NOT NULL,
    PRIMARY KEY (day, track_id)
) WITHOUT ROWID;

-- Who played a track in which hour: distinct listeners over any whole hours. Hour first,
-- so that new plays land at the end of the table rather than all over it; a track's
-- listeners are read with a seek per hour.
CREATE TABLE track_listeners (
    hour     INTEGER NOT NULL,
    track_id BLOB NOT NULL,
    user_id  BLOB NOT NULL,
    PRIMARY KEY (hour, track_id, user_id)
) WITHOUT ROWID;

-- Who played anything in which hour, and on which day: listeners per bucket of the play
-- series. Days have their own rows, since a day's distinct users taken from its hours
-- would mean deduplicating every play of the day.
CREATE TABLE hour_listeners (
    hour    INTEGER NOT NULL,
    user_id BLOB NOT NULL,
    PRIMARY KEY (hour, user_id)
) WITHOUT ROWID;

CREATE TABLE day_listeners (
    day     INTEGER NOT NULL,
    user_id BLOB NOT NULL,
    PRIMARY KEY (day, user_id)
) WITHOUT ROWID;

-- Who was active on which day, from plays and from other activity.
CREATE TABLE active_days (
    day     INTEGER NOT NULL,
    user_id BLOB NOT NULL,
    PRIMARY KEY (day, user_id)
) WITHOUT ROWID;

-- Request batches already counted, so a redelivered batch counts once.
CREATE TABLE request_batches (
    batch_id BLOB PRIMARY KEY NOT NULL
) WITHOUT ROWID;

-- Every request, since percentiles need every duration.
CREATE TABLE requests (
    at_ms       INTEGER NOT NULL,
    method      TEXT NOT NULL,
    route       TEXT NOT NULL,
    status      INTEGER NOT NULL,
    duration_us INTEGER NOT NULL
);
CREATE INDEX requests_by_time ON requests (at_ms);
