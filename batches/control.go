package batches

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrWrongState is returned when a run is not in a state the command can
// change, such as pausing a completed run.
var ErrWrongState = errors.New("batches: run is in the wrong state")

// PauseTx pauses version's latest run. Workers finish or roll back the batch
// in flight and stop; the partitions keep their checkpoints.
func PauseTx(ctx context.Context, tx pgx.Tx, version int64) (*Run, error) {
	return changeStateTx(ctx, tx, version, StatePaused, StatePending, StateRunning)
}

// CancelTx stops version's latest run for good: it can only be run again
// (a new run). Work already done stays done.
func CancelTx(ctx context.Context, tx pgx.Tx, version int64) (*Run, error) {
	return changeStateTx(ctx, tx, version, StateCancelled, StatePending, StateRunning, StatePaused, StateFailed)
}

// ResumeTx puts version's paused run back to running and returns the
// partitions that need a new job to continue from their checkpoints.
func ResumeTx(ctx context.Context, tx pgx.Tx, version int64) (*Run, []int, error) {
	run, err := changeStateTx(ctx, tx, version, StateRunning, StatePaused)
	if err != nil {
		return nil, nil, err
	}
	parts, err := reopenTx(ctx, tx, run.ID, false)
	return run, parts, err
}

func changeStateTx(ctx context.Context, tx pgx.Tx, version int64, to State, from ...State) (*Run, error) {
	run, err := LatestRun(ctx, tx, version, true)
	if err != nil {
		return nil, err
	}
	allowed := false
	for _, f := range from {
		allowed = allowed || run.State == f
	}
	if !allowed {
		return nil, fmt.Errorf("%w: %s is %s; only a run that is %s can be made %s", ErrWrongState, run.Label(), run.State, joinStates(from), to)
	}
	finished, resumed := "finished_at", "resumed_at"
	switch to {
	case StateCancelled:
		finished = "now()"
	case StateRunning:
		resumed = "now()"
	}
	if _, err := tx.Exec(ctx, `UPDATE backfill_runs SET state = $2, finished_at = `+finished+`, resumed_at = `+resumed+` WHERE id = $1`, run.ID, to); err != nil {
		return nil, fmt.Errorf("batches: changing the state of %s: %w", run.Label(), err)
	}
	run.State = to
	return run, nil
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

// reopenTx returns the partitions of a run that have work left and no live
// job, releasing their owner so that new jobs can take them; with failed,
// failed partitions are reopened too.
func reopenTx(ctx context.Context, tx pgx.Tx, runID int64, failed bool) ([]int, error) {
	rows, err := tx.Query(ctx, `
UPDATE backfill_partitions bp
SET state = CASE WHEN bp.state = 'failed' THEN 'pending' ELSE bp.state END,
	job_id = NULL, attempts = 0, failed_first = NULL, failed_last = NULL, updated_at = now()
WHERE bp.run_id = $1 AND (
	-- A failed partition's job may still be winding down: the new owner
	-- fences it out.
	($2 AND bp.state = 'failed')
	OR (bp.state IN ('pending', 'running') AND NOT EXISTS (
		SELECT 1 FROM river_job j WHERE j.id = bp.job_id AND j.state IN ('available', 'pending', 'retryable', 'running', 'scheduled'))))
RETURNING bp.partition`, runID, failed)
	if err != nil {
		return nil, fmt.Errorf("batches: reopening partitions of run %d: %w", runID, err)
	}
	parts, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("batches: reopening partitions of run %d: %w", runID, err)
	}
	return parts, nil
}
