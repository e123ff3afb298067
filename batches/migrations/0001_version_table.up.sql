-- The version table (backfill_runs), its partitions, the measured throughput
-- and the status view. Shipped as schema step 1: never edit it.
CREATE TABLE backfill_runs (
	id             bigserial PRIMARY KEY,
	version        bigint      NOT NULL CHECK (version > 0),
	run_number     int         NOT NULL CHECK (run_number > 0),
	name           text        NOT NULL,
	mode           text        NOT NULL CHECK (mode IN ('auto', 'manual')),
	direction      text        NOT NULL CHECK (direction IN ('up', 'down')),
	checksum       text        NOT NULL,
	definition     jsonb       NOT NULL,
	key_type       text        NOT NULL,
	state          text        NOT NULL CHECK (state IN ('pending', 'running', 'paused', 'failed', 'completed', 'cancelled')),
	rows_estimated bigint      NOT NULL DEFAULT 0,
	last_error     text,
	enqueued_by    text        NOT NULL,
	enqueued_at    timestamptz NOT NULL DEFAULT now(),
	started_at     timestamptz,
	-- When the run was last resumed or retried: its speed is measured from
	-- then, not across the time it stood still.
	resumed_at     timestamptz,
	finished_at    timestamptz,
	-- One row per run of a version: "pending" inserts run 1 and so can never
	-- enqueue a version twice, whatever state its run is in.
	UNIQUE (version, run_number)
);

CREATE TABLE backfill_partitions (
	run_id        bigint      NOT NULL REFERENCES backfill_runs (id) ON DELETE CASCADE,
	partition     int         NOT NULL,
	lower_key     text,         -- exclusive; NULL is the start of the key space
	upper_key     text,         -- inclusive; NULL is the end of the key space
	cursor_key    text,         -- the checkpoint: last key done, NULL before the first batch
	state         text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
	job_id        bigint,       -- the queue job that owns the partition (a fencing token)
	rows_done     bigint      NOT NULL DEFAULT 0,
	rows_affected bigint      NOT NULL DEFAULT 0,
	batches_done  bigint      NOT NULL DEFAULT 0,
	attempts      int         NOT NULL DEFAULT 0,
	last_error    text,
	failed_first  text,
	failed_last   text,
	updated_at    timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (run_id, partition)
);

-- Rows done per run, partition and second: the measured speed that progress
-- and ETA come from. One row per partition, so parallel batches never
-- contend; workers delete buckets older than ten minutes.
CREATE TABLE backfill_throughput (
	run_id    bigint      NOT NULL REFERENCES backfill_runs (id) ON DELETE CASCADE,
	partition int         NOT NULL,
	second    timestamptz NOT NULL,
	rows      bigint      NOT NULL,
	PRIMARY KEY (run_id, partition, second)
);

-- A run's counters are sums over its partitions, so batches in parallel never
-- contend on one row. A partition whose queue job is gone (discarded after
-- its last attempt was lost in a crash) counts as failed.
CREATE VIEW backfill_status AS
SELECT r.id, r.version, r.run_number, r.name, r.mode, r.direction, r.checksum,
	CASE WHEN r.state IN ('pending', 'running') AND p.stalled > 0 AND p.live = 0 THEN 'failed' ELSE r.state END AS state,
	coalesce(p.rows_done, 0)::bigint AS rows_done,
	coalesce(p.rows_affected, 0)::bigint AS rows_affected,
	-- The planner's estimate until the run is done; then the truth.
	CASE WHEN r.state = 'completed' THEN coalesce(p.rows_done, 0)
		ELSE greatest(r.rows_estimated, coalesce(p.rows_done, 0)) END::bigint AS rows_estimated,
	coalesce(p.batches_done, 0)::bigint AS batches_done,
	-- Idle partitions of a paused or cancelled run are not failures.
	coalesce(p.failed + CASE WHEN r.state IN ('pending', 'running') THEN p.stalled ELSE 0 END, 0)::bigint AS batches_failed,
	coalesce(p.partitions, 0)::bigint AS partitions,
	coalesce(p.live, 0)::bigint AS partitions_active,
	coalesce(r.last_error, p.last_error) AS last_error,
	coalesce(p.running, 0)::bigint AS partitions_running,
	coalesce(p.waiting, 0)::bigint AS partitions_waiting,
	coalesce(p.max_attempts, 0)::int AS retrying_attempt,
	coalesce((r.definition->'options'->>'rate')::float8, 0) AS rate,
	coalesce((r.definition->'options'->>'attempts')::int, 0) AS max_attempts,
	-- Rows per second over the last minute of the run (up to now, or up to
	-- its end), or over its whole life when that is shorter: the rows of the
	-- buckets from w.since on, over the time from w.since (or the start) to
	-- w.upto.
	CASE WHEN w.began IS NULL THEN 0 ELSE coalesce(tp.rows, 0) / greatest(extract(epoch FROM
		w.upto - greatest(w.since, w.began)), 0.001)
	END::float8 AS rows_per_second,
	r.enqueued_by, r.enqueued_at, r.started_at, r.finished_at
FROM backfill_runs r
LEFT JOIN LATERAL (
	SELECT count(*) AS partitions,
		sum(x.rows_done) AS rows_done,
		sum(x.rows_affected) AS rows_affected,
		sum(x.batches_done) AS batches_done,
		count(*) FILTER (WHERE x.state = 'failed') AS failed,
		count(*) FILTER (WHERE x.state IN ('pending', 'running') AND NOT x.live) AS stalled,
		count(*) FILTER (WHERE x.state IN ('pending', 'running') AND x.live) AS live,
		count(*) FILTER (WHERE x.state IN ('pending', 'running') AND x.job_state = 'running') AS running,
		-- Jobs ready for a couple of seconds that no worker took.
		count(*) FILTER (WHERE x.state IN ('pending', 'running') AND x.job_state = 'available' AND x.job_ready < now() - interval '2 seconds') AS waiting,
		max(x.attempts) FILTER (WHERE x.state IN ('pending', 'running')) AS max_attempts,
		(array_agg(x.last_error ORDER BY x.updated_at DESC) FILTER (WHERE x.last_error IS NOT NULL))[1] AS last_error
	FROM (
		SELECT bp.*, j.state::text AS job_state, j.scheduled_at AS job_ready,
			coalesce(j.state::text IN ('available', 'pending', 'retryable', 'running', 'scheduled'), false) AS live
		FROM backfill_partitions bp LEFT JOIN river_job j ON j.id = bp.job_id
		WHERE bp.run_id = r.id
	) x
) p ON true
CROSS JOIN LATERAL (
	SELECT coalesce(r.finished_at, now()) AS upto,
		-- A whole bucket: buckets start on whole seconds, so the window must
		-- too, or its first second's rows are left out of the count but not
		-- of the time.
		-- From the last resume or retry on, when that is later (greatest
		-- ignores a NULL resumed_at).
		greatest(date_trunc('second', coalesce(r.finished_at, now())) - interval '60 seconds',
			date_trunc('second', r.resumed_at)) AS since,
		-- When the run began. A run paused before any worker took it and then
		-- resumed has no started_at while it runs and gets its finished_at as
		-- started_at at the end; its first bucket of throughput is the start.
		CASE WHEN r.started_at IS NULL OR r.started_at >= r.finished_at
			THEN (SELECT min(t.second) FROM backfill_throughput t WHERE t.run_id = r.id)
			ELSE r.started_at END AS began
) w
LEFT JOIN LATERAL (
	SELECT sum(t.rows) AS rows FROM backfill_throughput t
	WHERE t.run_id = r.id AND t.second >= w.since
) tp ON true;
