-- Search finds what anyone may play: only ready tracks stay indexed. Tracks still
-- processing are indexed once ready; those that failed never are.
DELETE FROM search_words WHERE track_id IN (SELECT id FROM tracks WHERE status <> 'ready');
