package batches

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Event is something an operator did to a run, from backfill_events.
type Event struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	// Detail is the action's values as JSON, e.g. a throttle before and after.
	Detail string `json:"detail"`
}

// RecordEventTx records an action on a run, with who did it; detail is JSON.
func RecordEventTx(ctx context.Context, tx pgx.Tx, runID int64, actor, action, detail string) error {
	if _, err := tx.Exec(ctx, inSchema(`INSERT INTO backfill_events (run_id, actor, action, detail) VALUES ($1, $2, $3, $4::jsonb)`),
		runID, actor, action, detail); err != nil {
		return fmt.Errorf("batches: recording %s of run %d: %w", action, runID, err)
	}
	return nil
}

// RunEvents lists a run's events, oldest first.
func RunEvents(ctx context.Context, q Querier, runID int64) ([]Event, error) {
	rows, err := q.Query(ctx, inSchema(`SELECT at, actor, action, detail::text FROM backfill_events WHERE run_id = $1 ORDER BY id`), runID)
	if err != nil {
		return nil, fmt.Errorf("batches: reading the events of run %d: %w", runID, err)
	}
	events, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Event])
	if err != nil {
		return nil, fmt.Errorf("batches: reading the events of run %d: %w", runID, err)
	}
	return events, nil
}
