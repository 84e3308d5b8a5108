-- A deleted account's accepted plays are found by user (`user.deleted`), without scanning
-- every play ever accepted while holding the write lock.
CREATE INDEX accepted_plays_by_user ON accepted_plays (user_id);
