-- A heartbeat of live worker processes, so that the partitions of a worker
-- that died are recognised in seconds.
CREATE TABLE backfill_workers (
	id           text        PRIMARY KEY,
	host         text        NOT NULL,
	pid          int         NOT NULL,
	concurrency  int         NOT NULL,
	started_at   timestamptz NOT NULL DEFAULT now(),
	heartbeat_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE backfill_workers IS 'Live worker processes: each refreshes its heartbeat every few seconds and deletes its row when it stops. A worker whose heartbeat is older than its dead-after time is taken for dead, and its partitions are given to new jobs.';
COMMENT ON COLUMN backfill_workers.id IS 'The River client id of the process (river_job.attempted_by names it).';
COMMENT ON COLUMN backfill_workers.heartbeat_at IS 'When the process last said it was alive.';
