-- How long each run's batches kept the database busy, per second: what its
-- duty cycle spends, so status can say when the duty cycle sets the pace.
ALTER TABLE backfill_throughput ADD COLUMN busy_seconds double precision NOT NULL DEFAULT 0;
COMMENT ON COLUMN backfill_throughput.busy_seconds IS 'How long the batches of this partition that checkpointed in this second took, from the start of their work to their checkpoint: the database time the run''s duty cycle counts.';
