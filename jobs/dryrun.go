package jobs

import (
	"context"

	"github.com/backfill/backfill/batches"
)

// DryRun plans a run of version and runs its first batch in a transaction
// that is always rolled back: nothing is recorded in the version table, no job
// is queued, and the batch's changes are undone. It works whatever state the
// version's runs are in, and refuses Go backfills (batches.ErrDryRunGo).
func (e *Enqueuer) DryRun(ctx context.Context, version int64) (*batches.DryRun, error) {
	def, err := e.registry.Get(version)
	if err != nil {
		return nil, err
	}
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := e.timeouts.SetTx(ctx, tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	// Without cancel: the rollback must be sent even when ctx is done (pgx
	// closes the connection if it cannot, which rolls back too).
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	return batches.DryRunTx(ctx, tx, def, batches.DirectionUp)
}
