package jobs

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/backfill/backfill/batches"
)

// Pause pauses version's latest run across the whole worker pool: each
// worker finishes or rolls back its batch in flight and stops, within about
// a second. The checkpoints stay, and Resume continues from them.
func (e *Enqueuer) Pause(ctx context.Context, version int64) (*batches.Run, error) {
	var run *batches.Run
	err := e.timeouts.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var err error
		run, err = batches.PauseTx(ctx, tx, version)
		return err
	})
	return run, err
}

// Resume continues version's paused run from its checkpoints.
func (e *Enqueuer) Resume(ctx context.Context, version int64) (*batches.Run, error) {
	var run *batches.Run
	err := e.timeouts.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var (
			parts []int
			err   error
		)
		if run, parts, err = batches.ResumeTx(ctx, tx, version); err != nil {
			return err
		}
		return e.insertJobsTx(ctx, tx, run, parts)
	})
	return run, err
}

// Cancel stops version's latest run for good; it can be run again only as
// a new run ("run --again"). Batches already done stay done.
func (e *Enqueuer) Cancel(ctx context.Context, version int64) (*batches.Run, error) {
	var run *batches.Run
	err := e.timeouts.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var err error
		run, err = batches.CancelTx(ctx, tx, version)
		return err
	})
	return run, err
}

// Throttle changes the rate or batch size of version's latest unfinished
// run; every worker applies it at its next batch, and a job waiting on the
// rate limit within a second. actor is recorded as who did it.
func (e *Enqueuer) Throttle(ctx context.Context, version int64, change batches.Throttle, actor string) (*batches.ThrottleChange, error) {
	var res *batches.ThrottleChange
	err := e.timeouts.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var err error
		res, err = batches.ThrottleTx(ctx, tx, version, change, actor)
		return err
	})
	return res, err
}
