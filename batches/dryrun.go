package batches

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrDryRunGo is returned by DryRunTx for Go backfills.
var ErrDryRunGo = errors.New("dry run works for SQL backfills only: a Go backfill may have effects outside the database that a rollback cannot undo")

// DryRun is what DryRunTx found: the plan of a run and its first batch.
type DryRun struct {
	Definition *Definition
	Direction  Direction
	// Options are the options the run would use (Where is DownWhere for a
	// revert).
	Options Options
	Plan    *Plan
	// PartitionsWithRows counts the plan's partitions that hold at least one
	// key (matching Where), found before the batch ran.
	PartitionsWithRows int
	// Ran is false when no partition holds a key: there is nothing to do and
	// no batch ran.
	Ran bool
	// Batch is the first batch of the first partition with keys: its
	// partition, first and last key and the number of keys it covers.
	Batch Batch
	// RowsAffected is what the step reported for the batch.
	RowsAffected int64
	// Duration is how long the step took.
	Duration time.Duration
	// Loss is what the loss check found (loss.go), for a forward run of a
	// backfill with a lossy condition; nil otherwise.
	Loss *LossReport
}

// RowsEstimated is the planner's estimate of the rows the run will cover,
// raised to what the dry run found when the estimate is lower (a table never
// analysed is estimated at 0).
func (d *DryRun) RowsEstimated() int64 {
	found := int64(0)
	if d.Ran {
		found = d.Batch.Rows + int64(d.PartitionsWithRows-1)
	}
	return max(d.Plan.RowsEstimated, found)
}

// BatchesEstimated is the number of batches the run will take: the estimated
// rows over the batch size, rounded up, and at least one per partition that
// has keys.
func (d *DryRun) BatchesEstimated() int64 {
	size := int64(d.Options.BatchSize)
	return max((d.RowsEstimated()+size-1)/size, int64(d.PartitionsWithRows))
}

// ETAAtRate is how long the estimated rows take at the configured rate; ok
// is false when the run has no rate.
func (d *DryRun) ETAAtRate() (eta time.Duration, ok bool) {
	if d.Options.Rate <= 0 {
		return 0, false
	}
	return saturated(float64(d.RowsEstimated()) / d.Options.Rate * float64(time.Second)), true
}

// ETAFromBatch is how long the estimated batches take if each takes as long
// as the dry run's, worked one at a time and with parallel batches at once.
func (d *DryRun) ETAFromBatch(parallel int) time.Duration {
	return saturated(float64(d.Duration) * float64(d.BatchesEstimated()) / float64(max(parallel, 1)))
}

// saturated converts nanoseconds to a Duration, capped at the longest one
// (about 292 years) where a plain conversion would wrap around.
func saturated(ns float64) time.Duration {
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// DryRunTx plans a run of def in dir, checks its statement, and runs the
// first batch of the first partition that has keys in tx, as a worker would
// but without recording anything: no run, no partitions, no checkpoint. The
// caller must roll tx back, which undoes the batch.
//
// Go backfills are refused with ErrDryRunGo, since what they do outside the
// database would not be rolled back.
func DryRunTx(ctx context.Context, tx pgx.Tx, def *Definition, dir Direction) (*DryRun, error) {
	if def.IsGo() {
		return nil, fmt.Errorf("%s: %w", def.Label(), ErrDryRunGo)
	}
	step := def.Step(dir)
	if step == nil {
		return nil, fmt.Errorf("batches: %s has no %s step", def.Label(), dir)
	}
	opts := def.Options.ForDirection(dir)
	plan, err := PlanRun(ctx, tx, opts)
	if err != nil {
		return nil, err
	}
	if err := checkStatementTx(ctx, tx, def, dir); err != nil {
		return nil, err
	}
	d := &DryRun{Definition: def, Direction: dir, Options: opts, Plan: plan}
	if dir == DirectionUp && opts.Lossy != "" {
		loss, err := CheckLoss(ctx, tx, opts)
		if err != nil {
			return nil, err
		}
		d.Loss = &loss
	}
	keyset := newKeysetQueries(opts)
	// Every partition is probed before the batch runs: the batch may change
	// which rows match Where.
	for i, kr := range plan.Ranges {
		size := 1
		if !d.Ran {
			size = opts.BatchSize
		}
		first, last, n, ok, err := keyset.nextBatch(ctx, tx, size, kr.Lower, kr.Upper)
		if err != nil {
			return nil, fmt.Errorf("batches: cutting a batch of partition %d of %s: %w", i, def.Label(), withSQLState(err))
		}
		if !ok {
			continue
		}
		d.PartitionsWithRows++
		if !d.Ran {
			d.Ran = true
			d.Batch = Batch{Version: def.Version, Partition: i, First: first, Last: last, Rows: n}
		}
	}
	if !d.Ran {
		return d, nil
	}
	start := time.Now()
	affected, err := step(ctx, tx, d.Batch)
	d.Duration = time.Since(start)
	if err != nil {
		return nil, &BatchError{Batch: d.Batch, Err: err}
	}
	d.RowsAffected = affected
	return d, nil
}
