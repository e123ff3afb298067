package batches

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Event is something that happened to a run, from backfill_events: a change
// of its state, an operator's action, a failed batch.
type Event struct {
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	// Detail is the action's values as JSON, e.g. a throttle before and after.
	Detail json.RawMessage `json:"detail"`
}

// RecordEventTx records an action on a run, with who did it; detail is JSON.
func RecordEventTx(ctx context.Context, tx pgx.Tx, runID int64, actor, action, detail string) error {
	if _, err := tx.Exec(ctx, inSchema(`INSERT INTO backfill_events (run_id, actor, action, detail) VALUES ($1, $2, $3, $4::jsonb)`),
		runID, actor, action, detail); err != nil {
		return fmt.Errorf("batches: recording %s of run %d: %w", action, runID, err)
	}
	return nil
}

// RunEvents lists a run's events, oldest first (the newest historyLimit).
func RunEvents(ctx context.Context, q Querier, runID int64) ([]Event, error) {
	return runEvents(ctx, q, runID, "true", "ASC")
}

// batchFailure is the detail of a batch_failed event.
type batchFailure struct {
	Partition   int    `json:"partition"`
	Attempt     int    `json:"attempt"`
	MaxAttempts int    `json:"max_attempts"`
	Final       bool   `json:"final"`
	SQLState    string `json:"sqlstate,omitempty"`
	Message     string `json:"message"`
	FirstKey    string `json:"first_key,omitempty"`
	LastKey     string `json:"last_key,omitempty"`
}

// recordBatchFailureTx records a failed try of a partition's batch in the
// run's history, with its SQLSTATE when the database gave one.
func recordBatchFailureTx(ctx context.Context, tx pgx.Tx, p BatchParams, failure error, first, last *string, message string, f *Failure, maxAttempts int) error {
	d := batchFailure{Partition: p.Partition, Attempt: f.Attempt, MaxAttempts: maxAttempts, Final: f.Final,
		Message: message, FirstKey: deref(first), LastKey: deref(last)}
	var pgErr *pgconn.PgError
	if errors.As(failure, &pgErr) {
		d.SQLState = pgErr.Code
	}
	detail, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("batches: %w", err)
	}
	return RecordEventTx(ctx, tx, p.Run.ID, ActorOf(ctx, "worker"), "batch_failed", string(detail))
}
