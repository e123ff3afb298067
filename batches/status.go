package batches

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RunStatus is one run as status shows it (the backfill_status view).
type RunStatus struct {
	Version          int64      `json:"version"`
	Name             string     `json:"name"`
	Mode             Mode       `json:"mode"`
	Direction        Direction  `json:"direction"`
	RunNumber        int        `json:"run"`
	State            State      `json:"state"`
	RowsDone         int64      `json:"rows_done"`
	RowsAffected     int64      `json:"rows_affected"`
	RowsEstimated    int64      `json:"rows_estimated"`
	BatchesDone      int64      `json:"batches_done"`
	BatchesFailed    int64      `json:"batches_failed"`
	Partitions       int64      `json:"partitions"`
	PartitionsActive int64      `json:"partitions_active"`
	LastError        *string    `json:"last_error"`
	Checksum         string     `json:"checksum"`
	EnqueuedBy       string     `json:"enqueued_by"`
	EnqueuedAt       time.Time  `json:"enqueued_at"`
	StartedAt        *time.Time `json:"started_at"`
	FinishedAt       *time.Time `json:"finished_at"`
	// Drift is set by callers that know the current definition, when its
	// checksum differs from the one recorded with the run.
	Drift string `json:"drift,omitempty"`
}

// ListStatus returns every run, oldest version first, or only the runs of
// version when it is not nil.
func ListStatus(ctx context.Context, q Querier, version *int64) ([]RunStatus, error) {
	rows, err := q.Query(ctx, `
SELECT version, name, mode, direction, run_number, state, rows_done, rows_affected, rows_estimated,
	batches_done, batches_failed, partitions, partitions_active, last_error, checksum,
	enqueued_by, enqueued_at, started_at, finished_at
FROM backfill_status
WHERE $1::bigint IS NULL OR version = $1
ORDER BY version, run_number`, version)
	if err != nil {
		return nil, fmt.Errorf("batches: reading status: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RunStatus, error) {
		var s RunStatus
		err := r.Scan(&s.Version, &s.Name, &s.Mode, &s.Direction, &s.RunNumber, &s.State, &s.RowsDone, &s.RowsAffected,
			&s.RowsEstimated, &s.BatchesDone, &s.BatchesFailed, &s.Partitions, &s.PartitionsActive, &s.LastError,
			&s.Checksum, &s.EnqueuedBy, &s.EnqueuedAt, &s.StartedAt, &s.FinishedAt)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("batches: reading status: %w", err)
	}
	return list, nil
}

// RecordedChecksums returns, per version, the checksum recorded with its
// newest run.
func RecordedChecksums(ctx context.Context, q Querier) (map[int64]string, error) {
	rows, err := q.Query(ctx, `SELECT DISTINCT ON (version) version, checksum FROM backfill_runs ORDER BY version, run_number DESC`)
	if err != nil {
		return nil, fmt.Errorf("batches: reading the version table: %w", err)
	}
	out := map[int64]string{}
	var (
		v   int64
		sum string
	)
	_, err = pgx.ForEachRow(rows, []any{&v, &sum}, func() error {
		out[v] = sum
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("batches: reading the version table: %w", err)
	}
	return out, nil
}
