-- A partition's throughput of the second under way is kept in its own row,
-- which every batch updates anyway, and moves to backfill_throughput once
-- that second is over: one insert a second per partition instead of an
-- upsert with every batch. Readers of the per-second speed add these
-- tallies to backfill_throughput's buckets.
ALTER TABLE backfill_partitions
	ADD COLUMN tally_second timestamptz,
	ADD COLUMN tally_rows bigint NOT NULL DEFAULT 0,
	ADD COLUMN tally_busy_seconds double precision NOT NULL DEFAULT 0;
COMMENT ON COLUMN backfill_partitions.tally_second IS 'The second (truncated) of the partition''s latest batches whose keys are not yet in backfill_throughput (NULL: none). The first batch of a later second moves the tally there.';
COMMENT ON COLUMN backfill_partitions.tally_rows IS 'Keys done in tally_second, not yet in backfill_throughput.';
COMMENT ON COLUMN backfill_partitions.tally_busy_seconds IS 'How long the batches of tally_second kept the database busy, not yet in backfill_throughput.';
COMMENT ON TABLE backfill_throughput IS 'Keys done per run, partition and second: the measured speed that status and its ETA come from, with each partition''s tally of the second under way (backfill_partitions.tally_second). Buckets older than ten minutes are folded into backfill_throughput_minutes.';
