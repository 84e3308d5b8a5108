-- Trace context and other headers travel with each event; published rows are pruned by age.
ALTER TABLE outbox ADD COLUMN headers TEXT NOT NULL DEFAULT '{}';
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
