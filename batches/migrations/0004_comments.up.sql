-- Say what every table and column an operator may read holds.
COMMENT ON TABLE backfill_runs IS 'The version table: one row per run of a backfill version (run 1 is enqueued once, ever; later runs by "run --again" or "revert"). Its state changes only through batches/lifecycle.go.';
COMMENT ON COLUMN backfill_runs.id IS 'The run''s id, referenced by its partitions, throughput and queue jobs.';
COMMENT ON COLUMN backfill_runs.version IS 'The backfill''s version: the leading digits of its file name, or a Go backfill''s Version().';
COMMENT ON COLUMN backfill_runs.run_number IS '1 for the first run of the version, then 2, 3 ... (unique with version).';
COMMENT ON COLUMN backfill_runs.name IS 'The backfill''s name.';
COMMENT ON COLUMN backfill_runs.mode IS 'auto (enqueued by "pending" after a deploy) or manual (only by "run").';
COMMENT ON COLUMN backfill_runs.direction IS 'up (the statement) or down (the revert).';
COMMENT ON COLUMN backfill_runs.checksum IS 'Checksum of the definition when it was enqueued; status warns when the file changed since.';
COMMENT ON COLUMN backfill_runs.definition IS 'What workers execute: the options and statements as enqueued, whatever the file says now.';
COMMENT ON COLUMN backfill_runs.key_type IS 'The key column''s type, as the planner saw it.';
COMMENT ON COLUMN backfill_runs.state IS 'pending, running, paused, failed, completed or cancelled.';
COMMENT ON COLUMN backfill_runs.rows_estimated IS 'The planner''s estimate of the rows to do, taken at enqueue.';
COMMENT ON COLUMN backfill_runs.last_error IS 'Why the run failed (SQLSTATE, message, key range), once it did.';
COMMENT ON COLUMN backfill_runs.enqueued_by IS 'The host that enqueued the run.';
COMMENT ON COLUMN backfill_runs.enqueued_at IS 'When the run was enqueued.';
COMMENT ON COLUMN backfill_runs.started_at IS 'When a worker took its first batch.';
COMMENT ON COLUMN backfill_runs.resumed_at IS 'When it was last resumed or retried: its speed is measured from then.';
COMMENT ON COLUMN backfill_runs.finished_at IS 'When it completed, failed or was cancelled.';

COMMENT ON TABLE backfill_partitions IS 'A run''s key ranges, each walked in key order by one queue job at a time, with its checkpoint and counters.';
COMMENT ON COLUMN backfill_partitions.run_id IS 'The run (backfill_runs.id).';
COMMENT ON COLUMN backfill_partitions.partition IS 'The partition''s number in the run, from 0.';
COMMENT ON COLUMN backfill_partitions.lower_key IS 'Keys greater than this (NULL: from the start of the key space), in the key''s text form.';
COMMENT ON COLUMN backfill_partitions.upper_key IS 'Keys up to and including this (NULL: to the end).';
COMMENT ON COLUMN backfill_partitions.cursor_key IS 'The checkpoint: the last key done (NULL before the first batch).';
COMMENT ON COLUMN backfill_partitions.state IS 'pending, running, done or failed.';
COMMENT ON COLUMN backfill_partitions.job_id IS 'The queue job that owns the partition: a fencing token, only that job may apply a batch.';
COMMENT ON COLUMN backfill_partitions.rows_done IS 'Keys processed so far.';
COMMENT ON COLUMN backfill_partitions.rows_affected IS 'Rows the statements changed so far.';
COMMENT ON COLUMN backfill_partitions.batches_done IS 'Batches committed so far.';
COMMENT ON COLUMN backfill_partitions.attempts IS 'Failed tries of the current batch (0 after a success).';
COMMENT ON COLUMN backfill_partitions.last_error IS 'The last failure of the current batch (SQLSTATE, message, key range).';
COMMENT ON COLUMN backfill_partitions.failed_first IS 'The first key of the batch that failed.';
COMMENT ON COLUMN backfill_partitions.failed_last IS 'The last key of the batch that failed.';
COMMENT ON COLUMN backfill_partitions.updated_at IS 'When the partition last changed.';

COMMENT ON TABLE backfill_throughput IS 'Keys done per run, partition and second: the measured speed that status and its ETA come from. Buckets older than ten minutes are deleted.';
COMMENT ON COLUMN backfill_throughput.run_id IS 'The run (backfill_runs.id).';
COMMENT ON COLUMN backfill_throughput.partition IS 'The partition whose batches these were.';
COMMENT ON COLUMN backfill_throughput.second IS 'The second (truncated) the batches committed in.';
COMMENT ON COLUMN backfill_throughput.rows IS 'Keys done in that second.';

COMMENT ON COLUMN backfill_workers.host IS 'The worker''s host name.';
COMMENT ON COLUMN backfill_workers.pid IS 'The worker''s process id on that host.';
COMMENT ON COLUMN backfill_workers.concurrency IS 'How many batches the worker works at once.';
COMMENT ON COLUMN backfill_workers.started_at IS 'When the worker started.';

COMMENT ON COLUMN backfill_schema_version.version IS 'The migration''s number (batches/migrations/NNNN_name.up.sql).';
COMMENT ON COLUMN backfill_schema_version.name IS 'The migration''s name.';
COMMENT ON COLUMN backfill_schema_version.checksum IS 'Checksum of the file that was applied; a binary with another refuses to work.';
COMMENT ON COLUMN backfill_schema_version.applied_at IS 'When it was applied.';

COMMENT ON COLUMN backfill_migrate_lock.id IS 'Always 1: there is one lock.';
COMMENT ON COLUMN backfill_migrate_lock.holder IS 'The migrating process: host, pid and a random part.';
COMMENT ON COLUMN backfill_migrate_lock.acquired_at IS 'When it took the lock.';
COMMENT ON COLUMN backfill_migrate_lock.expires_at IS 'When the lease runs out unless renewed; after that another migrator may take it.';
