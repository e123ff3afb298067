package batches

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// This file owns a run's life: its states, the changes allowed between them,
// and the functions that make each change. Nothing else writes
// backfill_runs.state.
//
// Lock order. Every transaction that locks both takes a run's partition rows
// first, in ascending partition order, and its run row last. The run row is
// only ever locked FOR NO KEY UPDATE (an UPDATE of a column that is not a key
// takes the same lock), never FOR UPDATE: the foreign keys of
// backfill_partitions and backfill_throughput share-lock it FOR KEY SHARE,
// which conflicts with FOR UPDATE but not with FOR NO KEY UPDATE. So a batch
// that records its throughput and then settles the run never waits for
// another batch doing the same, and two changes of one run always queue on
// the same first lock instead of deadlocking.

// State is a run's state in the version table.
type State string

const (
	// StatePending: enqueued, no batch ran yet.
	StatePending State = "pending"
	// StateRunning: workers are working its partitions.
	StateRunning State = "running"
	// StatePaused: stopped by "pause"; checkpoints kept, "resume" continues.
	StatePaused State = "paused"
	// StateFailed: a partition used up its attempts and nothing else is left;
	// "retry" resumes the failed partitions.
	StateFailed State = "failed"
	// StateCompleted: every partition is done. Final.
	StateCompleted State = "completed"
	// StateCancelled: stopped for good by "cancel". Final.
	StateCancelled State = "cancelled"
)

// Active reports whether a run in this state still has work queued.
func (s State) Active() bool { return s == StatePending || s == StateRunning }

// transition is one change of a run's state: a name for messages, the states
// it may start from, and where it leads.
type transition struct {
	name string
	from []State
	to   State
}

// The changes of a run's state. Completed and cancelled runs never change:
// running a version again creates a new run.
var (
	startRun    = transition{"start", []State{StatePending}, StateRunning}
	pauseRun    = transition{"pause", []State{StatePending, StateRunning}, StatePaused}
	resumeRun   = transition{"resume", []State{StatePaused}, StateRunning}
	cancelRun   = transition{"cancel", []State{StatePending, StateRunning, StatePaused, StateFailed}, StateCancelled}
	retryRun    = transition{"retry", []State{StateRunning, StateFailed}, StateRunning}
	completeRun = transition{"complete", []State{StatePending, StateRunning, StatePaused}, StateCompleted}
	failRun     = transition{"fail", []State{StatePending, StateRunning, StatePaused}, StateFailed}
)

// Errors of the changes of state, for callers that test for them.
var (
	// ErrWrongState is returned when a run is not in a state the change can
	// start from, such as pausing a completed run.
	ErrWrongState = errors.New("batches: run is in the wrong state")
	// ErrNothingToRetry is returned by RetryTx when no partition of the run
	// failed or lost its job.
	ErrNothingToRetry = errors.New("batches: run has no failed batches")
)

func (t transition) allows(s State) bool { return slices.Contains(t.from, s) }

func (t transition) refuse(run *Run) error {
	var hint string
	switch {
	case t.name == "retry" && run.State == StatePaused:
		hint = "; resume it first"
	case t.name == "retry" && run.State == StateCancelled, t.name == "resume" && run.State == StateCancelled:
		hint = "; a cancelled run can only be run again as a new run"
	}
	return fmt.Errorf("%w: %s is %s; only a run that is %s can %s%s", ErrWrongState, run.Label(), run.State, joinStates(t.from), t.name, hint)
}

// applyTx records the change on the run row, which the caller has locked,
// and in the run's events as done by ctx's actor.
func (t transition) applyTx(ctx context.Context, tx pgx.Tx, run *Run) error {
	set := "state = $2"
	switch {
	case t.name == startRun.name:
		set += ", started_at = coalesce(started_at, now())"
	case t.to == StateRunning:
		// Speed is measured from here, not across the time it stood still.
		set += ", finished_at = NULL, resumed_at = now()"
		if t.name == retryRun.name {
			set += ", last_error = NULL"
		}
	case t.to == StateCancelled:
		set += ", finished_at = now()"
	case t.to == StateCompleted, t.to == StateFailed:
		// When the last batch's work was done, not when its transaction
		// began: the run's speed counts every batch. A run resumed before
		// any worker took it has no start time.
		set += ", finished_at = clock_timestamp(), started_at = coalesce(started_at, now())"
	}
	if _, err := tx.Exec(ctx, inSchema(`UPDATE backfill_runs SET `+set+` WHERE id = $1`), run.ID, t.to); err != nil {
		return fmt.Errorf("batches: %s %s: %w", t.name, run.Label(), err)
	}
	// The run's history, in the same transaction as the change itself.
	detail := fmt.Sprintf(`{"from": %q, "to": %q}`, run.State, t.to)
	if err := RecordEventTx(ctx, tx, run.ID, ActorOf(ctx, "unknown"), t.name, detail); err != nil {
		return err
	}
	run.State = t.to
	return nil
}

// lockRunTx locks a run row FOR NO KEY UPDATE (see the lock order above) and
// returns its state.
func lockRunTx(ctx context.Context, tx pgx.Tx, runID int64) (State, error) {
	var s State
	if err := tx.QueryRow(ctx, inSchema(`SELECT state FROM backfill_runs WHERE id = $1 FOR NO KEY UPDATE`), runID).Scan(&s); err != nil {
		return "", fmt.Errorf("batches: locking run %d: %w", runID, err)
	}
	return s, nil
}

// changeLatestTx applies t to version's latest run. It locks the run's
// unfinished partitions first when lockParts is set (see the lock order).
func changeLatestTx(ctx context.Context, tx pgx.Tx, version int64, t transition, lockParts string) (*Run, error) {
	run, err := LatestRun(ctx, tx, version, false)
	if err != nil {
		return nil, err
	}
	if lockParts != "" {
		if _, err := tx.Exec(ctx, inSchema(`SELECT 1 FROM backfill_partitions WHERE run_id = $1 AND state IN (`+lockParts+`)
ORDER BY partition FOR UPDATE`), run.ID); err != nil {
			return nil, fmt.Errorf("batches: locking partitions of %s: %w", run.Label(), err)
		}
	}
	if run.State, err = lockRunTx(ctx, tx, run.ID); err != nil {
		return nil, err
	}
	if !t.allows(run.State) {
		return nil, t.refuse(run)
	}
	return run, t.applyTx(ctx, tx, run)
}

// PauseTx pauses version's latest run. Workers finish or roll back the batch
// in flight and stop; the partitions keep their checkpoints.
func PauseTx(ctx context.Context, tx pgx.Tx, version int64) (*Run, error) {
	return changeLatestTx(ctx, tx, version, pauseRun, "")
}

// CancelTx stops version's latest run for good: it can only be run again
// (a new run). Work already done stays done.
func CancelTx(ctx context.Context, tx pgx.Tx, version int64) (*Run, error) {
	return changeLatestTx(ctx, tx, version, cancelRun, "")
}

// ResumeTx puts version's paused run back to running. Every unfinished
// partition gets a new owner, whatever its old job is doing: a job that saw
// the pause may still be finishing, and only a new owner is certain to run.
// The old jobs find they no longer own their partitions and stop. It returns
// the partitions that need a new job (AssignJobTx from 0).
func ResumeTx(ctx context.Context, tx pgx.Tx, version int64) (*Run, []int, error) {
	run, err := changeLatestTx(ctx, tx, version, resumeRun, `'pending', 'running'`)
	if err != nil {
		return nil, nil, err
	}
	parts, err := releaseTx(ctx, tx, run.ID, `bp.state IN ('pending', 'running')`)
	return run, parts, err
}

// RetryTx resumes the failed partitions of version's latest run from their
// checkpoints, and those whose job was lost without recording a failure, and
// puts the run back to running. It returns the partitions that need a new
// job, and ErrNothingToRetry when there are none.
func RetryTx(ctx context.Context, tx pgx.Tx, version int64) (*Run, []int, error) {
	run, err := LatestRun(ctx, tx, version, false)
	if err != nil {
		return nil, nil, err
	}
	// Partitions first, then the run (the lock order); the state is checked
	// once both are held.
	parts, err := releaseTx(ctx, tx, run.ID, `(bp.state = 'failed' OR (bp.state IN ('pending', 'running') AND NOT `+liveJob+`))`)
	if err != nil {
		return nil, nil, err
	}
	if run.State, err = lockRunTx(ctx, tx, run.ID); err != nil {
		return nil, nil, err
	}
	if !retryRun.allows(run.State) && run.State != StateCompleted {
		return nil, nil, retryRun.refuse(run)
	}
	if len(parts) == 0 || run.State == StateCompleted {
		return nil, nil, fmt.Errorf("%w: %s is %s", ErrNothingToRetry, run.Label(), run.State)
	}
	if _, err := tx.Exec(ctx, inSchema(`UPDATE backfill_partitions SET state = 'pending' WHERE run_id = $1 AND state = 'failed'`), run.ID); err != nil {
		return nil, nil, fmt.Errorf("batches: retrying %s: %w", run.Label(), err)
	}
	return run, parts, retryRun.applyTx(ctx, tx, run)
}

// The engine's only knowledge of River's tables, used by the queries of
// lifecycle.go, workers.go and status_query.go: a job is a row of river_job,
// attempted_by names the clients that fetched it (the last is working it),
// and these are the states it may be in while it may still run.
const (
	riverJobs      = `river_job`
	liveJobStates  = `'available', 'pending', 'retryable', 'running', 'scheduled'`
	jobRunning     = `'running'`   // a worker is working it
	jobAvailable   = `'available'` // ready for a worker to take
	jobLastAttempt = `j.attempted_by[array_length(j.attempted_by, 1)]`
)

// liveJob is true when a partition's owning queue job may still run.
const liveJob = `EXISTS (SELECT 1 FROM ` + riverJobs + ` j WHERE j.id = bp.job_id AND j.state IN (` + liveJobStates + `))`

// releaseTx locks the partitions of a run that match cond, in partition
// order, and takes their owner away (keeping their checkpoints and clearing
// their attempts), so that new jobs can be assigned. It returns them.
func releaseTx(ctx context.Context, tx pgx.Tx, runID int64, cond string) ([]int, error) {
	rows, err := tx.Query(ctx, inSchema(`
WITH locked AS (
	SELECT bp.partition FROM backfill_partitions bp WHERE bp.run_id = $1 AND `+cond+`
	ORDER BY bp.partition FOR UPDATE
)
UPDATE backfill_partitions bp
SET job_id = NULL, attempts = 0, failed_first = NULL, failed_last = NULL, updated_at = now()
FROM locked WHERE bp.run_id = $1 AND bp.partition = locked.partition
RETURNING bp.partition`), runID)
	if err != nil {
		return nil, fmt.Errorf("batches: releasing partitions of run %d: %w", runID, err)
	}
	parts, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("batches: releasing partitions of run %d: %w", runID, err)
	}
	slices.Sort(parts)
	return parts, nil
}

// MarkStarted moves a pending run to running and stamps its start time; it
// reports whether this call started the run. A run resumed before any worker
// took it is running without a start time, and gets one too.
func MarkStarted(ctx context.Context, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, runID int64) (bool, error) {
	// One statement: the start and its event commit together.
	tag, err := db.Exec(ctx, inSchema(`WITH started AS (
	UPDATE backfill_runs
	SET state = CASE WHEN state = $2 THEN $3 ELSE state END, started_at = coalesce(started_at, now())
	WHERE id = $1 AND (state = $2 OR (state = $3 AND started_at IS NULL))
	RETURNING id
)
INSERT INTO backfill_events (run_id, actor, action, detail)
SELECT id, $4, $5, jsonb_build_object('to', $3::text) FROM started`), runID, startRun.from[0], startRun.to, ActorOf(ctx, "worker"), startRun.name)
	if err != nil {
		return false, fmt.Errorf("batches: starting run %d: %w", runID, err)
	}
	return tag.RowsAffected() > 0, nil
}

// FoldThroughput moves a partition's per-second buckets older than ten
// minutes, which status no longer reads, into its run's per-minute history.
// Each job folds its own partition's, so jobs never contend on a bucket.
func FoldThroughput(ctx context.Context, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, runID int64, partition int) error {
	if _, err := db.Exec(ctx, inSchema(`WITH gone AS (
	DELETE FROM backfill_throughput WHERE run_id = $1 AND partition = $2 AND second < now() - interval '10 minutes'
	RETURNING second, rows, busy_seconds
)
INSERT INTO backfill_throughput_minutes AS m (run_id, minute, rows, busy_seconds)
SELECT $1, date_trunc('minute', second), sum(rows), sum(busy_seconds) FROM gone GROUP BY 2 ORDER BY 2
ON CONFLICT (run_id, minute) DO UPDATE SET rows = m.rows + excluded.rows, busy_seconds = m.busy_seconds + excluded.busy_seconds`), runID, partition); err != nil {
		return fmt.Errorf("batches: folding the throughput of partition %d of run %d into minutes: %w", partition, runID, err)
	}
	return nil
}

// StateOf reads a run's state.
func StateOf(ctx context.Context, q Querier, runID int64) (State, error) {
	var s State
	if err := q.QueryRow(ctx, inSchema(`SELECT state FROM backfill_runs WHERE id = $1`), runID).Scan(&s); err != nil {
		return "", fmt.Errorf("batches: reading the state of run %d: %w", runID, err)
	}
	return s, nil
}

// settleRunTx finishes a run whose partitions are all done or failed. The
// caller holds the lock of the partition it just finished; the run row comes
// after it (the lock order), so two partitions finishing at once queue on the
// run row and the second sees the first's partition finished.
func settleRunTx(ctx context.Context, tx pgx.Tx, r *Run) (State, error) {
	state, err := lockRunTx(ctx, tx, r.ID)
	if err != nil {
		return "", err
	}
	// A copy: the caller's run must not change before the commit.
	run := *r
	run.State = state
	var active, failed int
	if err := tx.QueryRow(ctx, inSchema(`SELECT count(*) FILTER (WHERE state IN ('pending', 'running')), count(*) FILTER (WHERE state = 'failed') FROM backfill_partitions WHERE run_id = $1`),
		run.ID).Scan(&active, &failed); err != nil {
		return "", fmt.Errorf("batches: settling %s: %w", run.Label(), err)
	}
	t := completeRun
	if failed > 0 {
		t = failRun
	}
	if active > 0 || !t.allows(state) {
		return state, nil
	}
	if failed == 0 {
		// Rows whose key became NULL after the run was enqueued were never
		// visited: the run must not say it completed.
		uncovered, err := nullKeyRows(ctx, tx, run.Options.ForDirection(run.Direction), 1001)
		if err != nil {
			return "", err
		}
		if uncovered > 0 {
			t = failRun
			msg := fmt.Sprintf("%d rows", uncovered)
			if uncovered > 1000 {
				msg = "more than 1000 rows"
			}
			msg += fmt.Sprintf(" of %s have a NULL %s and were never visited; give them keys (or leave them out with where), then cancel and run again",
				quoteQualified(run.Options.Table), pgx.Identifier{run.Options.Key}.Sanitize())
			if _, err := tx.Exec(ctx, inSchema(`UPDATE backfill_runs SET last_error = $2 WHERE id = $1`), run.ID, msg); err != nil {
				return "", fmt.Errorf("batches: settling %s: %w", run.Label(), err)
			}
		}
	}
	if err := t.applyTx(ctx, tx, &run); err != nil {
		return "", err
	}
	return t.to, nil
}

func joinStates(states []State) string {
	s := ""
	for i, st := range states {
		switch {
		case i == 0:
		case i == len(states)-1:
			s += " or "
		default:
			s += ", "
		}
		s += string(st)
	}
	return s
}
