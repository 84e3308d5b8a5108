-- The embedded warehouse: the raw facts, and rollups that a trigger keeps in the same
-- transaction as each play that was new. Ids are UUIDs stored as 16-byte blobs, which
-- compare in byte order as the charts' ties need; times are milliseconds since the Unix
-- epoch; `hour` and `day` count whole UTC hours and days since it (floored, like
-- `Bucketing::start_of`, also before 1970).

CREATE TABLE plays (
    play_id      BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL,
    track_id     BLOB NOT NULL,
    played_at_ms INTEGER NOT NULL,
    played_ms    INTEGER NOT NULL,
    stream       INTEGER NOT NULL,
    -- Floored buckets of `played_at_ms`, computed when read and never stored.
    hour INTEGER GENERATED ALWAYS AS
        ((played_at_ms - ((played_at_ms % 3600000) + 3600000) % 3600000) / 3600000) VIRTUAL,
    day INTEGER GENERATED ALWAYS AS
        ((played_at_ms - ((played_at_ms % 86400000) + 86400000) % 86400000) / 86400000) VIRTUAL
) WITHOUT ROWID;
-- A user's history, newest first, is a backwards walk of this index.
CREATE INDEX plays_by_user ON plays (user_id, played_at_ms, play_id);

-- Plays and streams per track: by the hour for a window's partial first day and the hourly
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

-- Who played a track in which hour: distinct listeners over any whole-hour window, read
-- for one page of tracks at a time (hence track first).
CREATE TABLE track_listeners (
    track_id BLOB NOT NULL,
    hour     INTEGER NOT NULL,
    user_id  BLOB NOT NULL,
    PRIMARY KEY (track_id, hour, user_id)
) WITHOUT ROWID;

-- Who played anything in which hour: listeners per bucket of the play series.
CREATE TABLE hour_listeners (
    hour    INTEGER NOT NULL,
    user_id BLOB NOT NULL,
    PRIMARY KEY (hour, user_id)
) WITHOUT ROWID;

-- Who was active on which day, from plays and from other activity.
CREATE TABLE active_days (
    day     INTEGER NOT NULL,
    user_id BLOB NOT NULL,
    PRIMARY KEY (day, user_id)
) WITHOUT ROWID;

-- Fires only for rows the insert really wrote: a play ignored as a duplicate is counted
-- nowhere.
CREATE TRIGGER plays_roll_up AFTER INSERT ON plays BEGIN
    INSERT INTO track_hours (hour, track_id, plays, streams)
    VALUES (NEW.hour, NEW.track_id, 1, NEW.stream)
    ON CONFLICT (hour, track_id)
    DO UPDATE SET plays = plays + 1, streams = streams + excluded.streams;
    INSERT INTO track_days (day, track_id, plays, streams)
    VALUES (NEW.day, NEW.track_id, 1, NEW.stream)
    ON CONFLICT (day, track_id)
    DO UPDATE SET plays = plays + 1, streams = streams + excluded.streams;
    INSERT OR IGNORE INTO track_listeners (track_id, hour, user_id)
    VALUES (NEW.track_id, NEW.hour, NEW.user_id);
    INSERT OR IGNORE INTO hour_listeners (hour, user_id) VALUES (NEW.hour, NEW.user_id);
    INSERT OR IGNORE INTO active_days (day, user_id) VALUES (NEW.day, NEW.user_id);
END;

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
