package batches

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The heartbeat of worker processes (backfill_workers). River notices a
// crashed worker's jobs only after its rescue-after time and then on its
// rescuer's 30-second round; the heartbeat lets live workers see in seconds
// that a peer is gone and give its partitions to new jobs. The fencing token
// keeps this safe when the peer was only frozen: if it wakes up, its jobs
// find they no longer own their partitions.

// WorkerInfo describes a worker process in the heartbeat table.
type WorkerInfo struct {
	// ID is the process's River client id, the name river_job.attempted_by
	// records for the jobs it works.
	ID          string
	Host        string
	PID         int
	Concurrency int
	// RateLimit says how the worker holds runs' rates now: "redis", or
	// "share: ..." with the reason.
	RateLimit string
}

// Execer runs a statement; a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Heartbeat records that the worker is alive now.
func Heartbeat(ctx context.Context, db Execer, w WorkerInfo) error {
	_, err := db.Exec(ctx, inSchema(`INSERT INTO backfill_workers (id, host, pid, concurrency, rate_limit) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), rate_limit = excluded.rate_limit`), w.ID, w.Host, w.PID, w.Concurrency, w.RateLimit)
	if err != nil {
		return fmt.Errorf("batches: heartbeat of worker %s: %w", w.ID, err)
	}
	return nil
}

// ForgetWorker removes a worker that stops, and the rows of workers dead for
// longer than an hour.
func ForgetWorker(ctx context.Context, db Execer, id string) error {
	if _, err := db.Exec(ctx, inSchema(`DELETE FROM backfill_workers WHERE id = $1 OR heartbeat_at < now() - interval '1 hour'`), id); err != nil {
		return fmt.Errorf("batches: forgetting worker %s: %w", id, err)
	}
	return nil
}

// LostPartition is an unfinished partition of an active run that nobody
// will work: its job was running on a worker that stopped beating, or its
// job is gone (River discarded it, say).
type LostPartition struct {
	RunID     int64
	Partition int
	// JobID is the lost job (0: none).
	JobID int64
	// Worker, Host and PID name the silent worker; empty for a gone job.
	Worker string
	Host   string
	PID    int
	// Silent is how long the worker has not beaten.
	Silent time.Duration
	// JobState is River's state of a gone job ("discarded"), or "missing".
	JobState string
}

// Failures recorded for lost partitions.
var (
	// ErrWorkerLost: the worker died with the partition's job running.
	ErrWorkerLost = errors.New("batches: the worker running the job stopped answering")
	// ErrJobLost: the partition's queue job ended (or vanished) first.
	ErrJobLost = errors.New("batches: the partition's job is gone")
)

// LostPartitions finds the unfinished partitions of active runs whose job is
// running on a worker silent for longer than deadAfter, or has ended.
func LostPartitions(ctx context.Context, q Querier, deadAfter time.Duration) ([]LostPartition, error) {
	rows, err := q.Query(ctx, inSchema(`
SELECT bp.run_id, bp.partition, coalesce(bp.job_id, 0), coalesce(w.id, ''), coalesce(w.host, ''), coalesce(w.pid, 0),
	coalesce(extract(epoch FROM now() - w.heartbeat_at)::float8, 0), coalesce(j.state::text, 'missing')
FROM backfill_partitions bp
JOIN backfill_runs r ON r.id = bp.run_id AND r.state IN ('pending', 'running')
LEFT JOIN `+riverJobs+` j ON j.id = bp.job_id
LEFT JOIN backfill_workers w ON j.state = `+jobRunning+` AND w.id = `+jobLastAttempt+`
WHERE bp.state IN ('pending', 'running') AND (
	w.heartbeat_at < now() - $1::interval
	-- Every change of owner commits with the new job, so an active run's
	-- partition whose job has ended is an orphan.
	OR j.id IS NULL OR j.state NOT IN (`+liveJobStates+`))
ORDER BY bp.run_id, bp.partition`), deadAfter)
	if err != nil {
		return nil, fmt.Errorf("batches: looking for partitions of dead workers: %w", err)
	}
	lost, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LostPartition, error) {
		var (
			l      LostPartition
			silent float64
		)
		err := r.Scan(&l.RunID, &l.Partition, &l.JobID, &l.Worker, &l.Host, &l.PID, &silent, &l.JobState)
		l.Silent = time.Duration(silent * float64(time.Second))
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("batches: looking for partitions of dead workers: %w", err)
	}
	return lost, nil
}

// Error describes the loss for the partition's last_error.
func (l LostPartition) Error() string {
	if l.Worker == "" {
		return fmt.Sprintf("%v: its job %d is %s without having finished the partition", ErrJobLost, l.JobID, l.JobState)
	}
	return fmt.Sprintf("%v: worker %s (pid %d on %s) silent for %s while running job %d",
		ErrWorkerLost, l.Worker, l.PID, l.Host, l.Silent.Round(time.Second), l.JobID)
}

func (l LostPartition) Unwrap() error {
	if l.Worker == "" {
		return ErrJobLost
	}
	return ErrWorkerLost
}

// RunWorkerCounts is how many live workers there are, and which of them run
// each active run's jobs now: in share mode each takes an equal part of the
// run's rate.
type RunWorkerCounts struct {
	Live int
	Runs map[int64]RunWorkers
}

// RunWorkers counts the live workers running a run's jobs.
type RunWorkers struct {
	Workers int
	// IncludesSelf is true when the asking worker is one of them.
	IncludesSelf bool
}

// CountRunWorkers counts, for the worker self, the live workers (heard from
// within deadAfter) and those running each active run's jobs.
func CountRunWorkers(ctx context.Context, q Querier, self string, deadAfter time.Duration) (*RunWorkerCounts, error) {
	c := &RunWorkerCounts{Runs: map[int64]RunWorkers{}}
	rows, err := q.Query(ctx, inSchema(`
WITH live AS (SELECT id FROM backfill_workers WHERE heartbeat_at >= now() - $2::interval)
SELECT 0::bigint, (SELECT count(*) FROM live), false
UNION ALL
SELECT bp.run_id, count(DISTINCT w.id), bool_or(w.id = $1)
FROM backfill_partitions bp
JOIN backfill_runs r ON r.id = bp.run_id AND r.state IN ('pending', 'running')
JOIN `+riverJobs+` j ON j.id = bp.job_id AND j.state = `+jobRunning+`
JOIN live w ON w.id = `+jobLastAttempt+`
WHERE bp.state IN ('pending', 'running')
GROUP BY bp.run_id`), self, deadAfter)
	if err != nil {
		return nil, fmt.Errorf("batches: counting the workers of runs: %w", err)
	}
	var (
		runID        int64
		workers      int
		includesSelf bool
	)
	_, err = pgx.ForEachRow(rows, []any{&runID, &workers, &includesSelf}, func() error {
		if runID == 0 {
			c.Live = workers
		} else {
			c.Runs[runID] = RunWorkers{Workers: workers, IncludesSelf: includesSelf}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("batches: counting the workers of runs: %w", err)
	}
	return c, nil
}
