-- The search index: every word of a track's title, artist and album, and the trigrams
-- of every indexed word, so a query finds candidates by index, never by a table scan.
CREATE TABLE search_words (
    word     TEXT NOT NULL,
    track_id BLOB NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    field    INTEGER NOT NULL,
    PRIMARY KEY (word, track_id, field)
);
CREATE INDEX search_words_by_track ON search_words (track_id);

CREATE TABLE search_grams (
    gram TEXT NOT NULL,
    word TEXT NOT NULL,
    PRIMARY KEY (gram, word)
);
