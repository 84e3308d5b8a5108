-- Tracks deleted from the catalog (`track.deleted`): top tracks and histories leave their
-- plays out, in their pages and totals alike. The plays and rollups themselves stay, so
-- series still count listening that happened.
CREATE TABLE deleted_tracks (
    track_id BLOB PRIMARY KEY NOT NULL
) WITHOUT ROWID;

-- A deleted account's days of activity (`user.deleted`), found without a scan of every
-- day of every user. Its other rows are found through its plays (`plays_by_user`): every
-- presence row comes from one of them.
CREATE INDEX active_days_by_user ON active_days (user_id);
