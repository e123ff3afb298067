package batches

import (
	"cmp"
	"time"
)

// StatusClock is the time and windows status is computed for. Tests pass a
// clock instead of waiting for real seconds to pass.
type StatusClock struct {
	// Now is the time status is computed at (the server's now() when zero).
	Now time.Time
	// SpeedWindow is how far back rows per second are measured
	// (SpeedWindowDefault when zero).
	SpeedWindow time.Duration
	// WaitingAfter is how long a ready job may wait for a worker before its
	// partition counts as waiting (WaitingAfterDefault when zero).
	WaitingAfter time.Duration
	// DeadAfter is the silence after which a worker is not counted alive
	// (WorkerDeadAfterDefault when zero).
	DeadAfter time.Duration
}

// Defaults of StatusClock.
const (
	SpeedWindowDefault  = time.Minute
	WaitingAfterDefault = 2 * time.Second
	// WorkerDeadAfterDefault is the silence after which a worker counts as
	// dead, for status and for the heartbeat that takes over its work.
	WorkerDeadAfterDefault = 10 * time.Second
)

func (c StatusClock) args() (now *time.Time, speed, waiting, deadAfter time.Duration) {
	if !c.Now.IsZero() {
		now = &c.Now
	}
	return now, cmp.Or(c.SpeedWindow, SpeedWindowDefault), cmp.Or(c.WaitingAfter, WaitingAfterDefault),
		cmp.Or(c.DeadAfter, WorkerDeadAfterDefault)
}

// statusQuery computes every run's status ($1: a version, or NULL for all;
// $2: now, or NULL for the server's; $3: the speed window; $4: how long a
// ready job may wait before its partition counts as waiting for workers; $5:
// the silence after which a worker is not counted alive).
// A run's counters are sums over its partitions, so that batches in
// parallel never contend on one row.
const statusQuery = `
WITH clock AS (SELECT coalesce($2::timestamptz, now()) AS now),
alive AS (SELECT count(*) AS workers,
		-- How the live workers hold rates: "redis", "share: ...", or both.
		coalesce(string_agg(DISTINCT nullif(rate_limit, ''), ', '), '') AS rate_limit,
		-- How many batches they can work at once.
		coalesce(sum(concurrency), 0)::bigint AS slots
	FROM backfill_workers, clock
	WHERE heartbeat_at >= clock.now - $5::interval AND heartbeat_at <= clock.now + interval '1 minute')
SELECT r.version, r.name, r.mode, r.direction, r.run_number, r.state,
	coalesce(p.rows_done, 0)::bigint AS rows_done,
	coalesce(p.rows_affected, 0)::bigint AS rows_affected,
	-- The planner's estimate until the run is done; then the truth.
	CASE WHEN r.state = 'completed' THEN coalesce(p.rows_done, 0)
		ELSE greatest(r.rows_estimated, coalesce(p.rows_done, 0)) END::bigint AS rows_estimated,
	coalesce(p.batches_done, 0)::bigint AS batches_done,
	-- A partition of an active run whose job is gone counts as failed
	-- until a worker's heartbeat takes it over; idle partitions of a paused
	-- or cancelled run are not failures.
	coalesce(p.failed + CASE WHEN r.state IN ('pending', 'running') THEN p.stalled ELSE 0 END, 0)::bigint AS batches_failed,
	coalesce(p.partitions, 0)::bigint AS partitions,
	coalesce(p.live, 0)::bigint AS partitions_active,
	coalesce(r.last_error, p.last_error) AS last_error,
	r.checksum, r.enqueued_by, r.enqueued_at, r.started_at, r.finished_at,
	coalesce(p.running, 0)::bigint AS partitions_running,
	coalesce(p.waiting, 0)::bigint AS partitions_waiting,
	-- What the speed and the ETA are estimated from (see speedSample): the
	-- speed window up to now (or up to the run's end), or the run's whole
	-- life or the time since its last resume when that is shorter: its
	-- seconds, and the rows and busy seconds of the buckets from w.since on;
	CASE WHEN w.began IS NULL THEN 0 ELSE extract(epoch FROM w.upto - ws.start) END::float8 AS span_seconds,
	coalesce(tp.rows, 0)::float8 AS span_rows,
	coalesce(tp.busy, 0)::float8 AS span_busy,
	-- the same from ws.steady on, after the warm-up;
	CASE WHEN w.began IS NULL THEN 0 ELSE extract(epoch FROM w.upto - ws.steady) END::float8 AS steady_seconds,
	coalesce(tp.steady_rows, 0)::float8 AS steady_rows,
	coalesce(tp.steady_busy, 0)::float8 AS steady_busy,
	-- and of its whole seconds, before the one going on: how many, their
	-- rows, and the sum of each one's rows squared (their spread).
	CASE WHEN w.began IS NULL THEN 0 ELSE greatest(extract(epoch FROM date_trunc('second', w.upto) - ws.steady), 0) END::float8 AS whole_seconds,
	coalesce(tp.whole_rows, 0)::float8 AS whole_rows,
	coalesce(tp.whole_squares, 0)::float8 AS whole_squares,
	alive.slots,
	-- The rate and batch size in force: an operator's throttle wins.
	coalesce((r.throttle->>'rate')::float8, (r.definition->'options'->>'rate')::float8, 0) AS rate,
	-- Off (0, or negative since the gentle default) shows as 0.
	greatest(coalesce((r.throttle->>'duty_cycle')::float8, (r.definition->'options'->>'duty_cycle')::float8, 0), 0) AS duty_cycle,
	coalesce((r.throttle->>'batch')::int, (r.definition->'options'->>'batch')::int, 0) AS batch_size,
	(greatest(coalesce((r.throttle->>'batch_time')::bigint, (r.definition->'options'->>'batch_time')::bigint, 0), 0) / 1000000)::bigint AS batch_time_ms,
	ev.actor AS throttled_by, ev.at AS throttled_at,
	coalesce(p.max_attempts, 0)::int AS retrying_attempt,
	coalesce((r.definition->'options'->>'attempts')::int, 0) AS max_attempts,
	alive.workers, alive.rate_limit,
	-- The last reading of the health signals, while fresh (see health.go).
	CASE WHEN r.state IN ('pending', 'running') AND (r.health->>'checked_at')::timestamptz > clock.now - interval '1 minute'
		THEN r.health END AS health
FROM backfill_runs r
CROSS JOIN clock
CROSS JOIN alive
LEFT JOIN LATERAL (
	SELECT count(*) AS partitions,
		sum(x.rows_done) AS rows_done,
		sum(x.rows_affected) AS rows_affected,
		sum(x.batches_done) AS batches_done,
		count(*) FILTER (WHERE x.state = 'failed') AS failed,
		count(*) FILTER (WHERE x.state IN ('pending', 'running') AND NOT x.live) AS stalled,
		count(*) FILTER (WHERE x.state IN ('pending', 'running') AND x.live) AS live,
		count(*) FILTER (WHERE x.state IN ('pending', 'running') AND x.job_state = ` + jobRunning + `) AS running,
		-- Jobs ready for a while that no worker took.
		count(*) FILTER (WHERE x.state IN ('pending', 'running') AND x.job_state = ` + jobAvailable + ` AND x.job_ready < clock.now - $4::interval) AS waiting,
		max(x.attempts) FILTER (WHERE x.state IN ('pending', 'running')) AS max_attempts,
		(array_agg(x.last_error ORDER BY x.updated_at DESC) FILTER (WHERE x.last_error IS NOT NULL))[1] AS last_error
	FROM (
		SELECT bp.*, j.state::text AS job_state, j.scheduled_at AS job_ready,
			coalesce(j.state IN (` + liveJobStates + `), false) AS live
		FROM backfill_partitions bp LEFT JOIN ` + riverJobs + ` j ON j.id = bp.job_id
		WHERE bp.run_id = r.id
	) x
) p ON true
CROSS JOIN LATERAL (
	SELECT coalesce(r.finished_at, clock.now) AS upto,
		-- Whole buckets: they start on whole seconds, so the window must
		-- too, or its first second's rows are left out of the count but not
		-- of the time. From the last resume or retry on, when that is later
		-- (greatest ignores a NULL resumed_at).
		greatest(date_trunc('second', coalesce(r.finished_at, clock.now)) - $3::interval,
			date_trunc('second', r.resumed_at)) AS since,
		-- When the run began. A run paused before any worker took it and
		-- then resumed has no started_at while it runs and gets its
		-- finished_at as started_at at the end; its first bucket is the start.
		CASE WHEN r.started_at IS NULL OR r.started_at >= r.finished_at
			THEN (SELECT min(t.second) FROM ` + throughputBuckets + ` t WHERE t.run_id = r.id)
			ELSE r.started_at END AS began
) w
CROSS JOIN LATERAL (
	SELECT greatest(w.since, w.began) AS start,
		-- A window that starts with the run or its last resume (not cut by
		-- the speed window) leaves its first second out of the steady part:
		-- the warm-up, when every partition's first batch runs before its
		-- time is paid to the duty cycle.
		CASE WHEN greatest(w.since, w.began) > date_trunc('second', w.upto) - $3::interval
			THEN date_trunc('second', greatest(w.since, w.began)) + interval '1 second'
			ELSE w.since END AS steady
) ws
LEFT JOIN LATERAL (
	SELECT sum(s.rows) AS rows, sum(s.busy) AS busy,
		sum(s.rows) FILTER (WHERE s.second >= ws.steady) AS steady_rows,
		sum(s.busy) FILTER (WHERE s.second >= ws.steady) AS steady_busy,
		sum(s.rows) FILTER (WHERE s.second >= ws.steady AND s.second < date_trunc('second', w.upto)) AS whole_rows,
		sum(s.rows * s.rows) FILTER (WHERE s.second >= ws.steady AND s.second < date_trunc('second', w.upto)) AS whole_squares
	FROM (
		-- Per second, over the partitions.
		SELECT t.second, sum(t.rows) AS rows, sum(t.busy_seconds) AS busy FROM ` + throughputBuckets + ` t
		WHERE t.run_id = r.id AND t.second >= w.since AND t.second <= w.upto
		GROUP BY t.second
	) s
) tp ON true
LEFT JOIN LATERAL (
	SELECT e.actor, e.at FROM backfill_events e WHERE e.run_id = r.id AND e.action = 'throttle'
	ORDER BY e.id DESC LIMIT 1
) ev ON true
WHERE $1::bigint IS NULL OR r.version = $1
ORDER BY r.version, r.run_number`
