package batches

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// State is a run's state in the version table.
type State string

const (
	StatePending   State = "pending"
	StateRunning   State = "running"
	StatePaused    State = "paused"
	StateFailed    State = "failed"
	StateCompleted State = "completed"
	StateCancelled State = "cancelled"
)

// Active reports whether a run in this state still has work queued.
func (s State) Active() bool { return s == StatePending || s == StateRunning }

// Run is one row of the version table as the engine needs it to work batches.
type Run struct {
	ID        int64
	Version   int64
	RunNumber int
	Name      string
	Mode      Mode
	Direction Direction
	State     State
	KeyType   string
	Checksum  string
	Options   Options
	UpSQL     string
	DownSQL   string
	Source    string

	keyset *keysetQueries
}

// Label names the run in messages: "20260301120000_fill_prices run 2 (down)".
func (r *Run) Label() string {
	s := fmt.Sprintf("%d_%s run %d", r.Version, r.Name, r.RunNumber)
	if r.Direction == DirectionDown {
		s += " (revert)"
	}
	return s
}

// Step returns the batch function of a run of a SQL file: the statement that
// was enqueued. Go backfills' steps come from the registry.
func (r *Run) Step() BatchFunc {
	if r.Direction == DirectionDown {
		return sqlStep(r.DownSQL)
	}
	return sqlStep(r.UpSQL)
}

// Errors returned when enqueuing; each says which command refused.
var (
	// ErrAlreadyEnqueued is returned by CreateRunTx when the run number is taken.
	ErrAlreadyEnqueued = errors.New("batches: this run of the version is already enqueued")
	// ErrRunNotFound is returned by LoadRun and LatestRun.
	ErrRunNotFound = errors.New("batches: no such run")
)

// NewRunParams are the inputs of CreateRunTx.
type NewRunParams struct {
	Definition *Definition
	Direction  Direction
	// RunNumber is 1 for the first run of a version; later runs take the next.
	RunNumber  int
	EnqueuedBy string
}

// CreateRunTx plans a run and inserts it with its partitions. When the run
// number is already taken it returns ErrAlreadyEnqueued and inserts nothing,
// which is how concurrent "pending" calls agree on one run per version.
func CreateRunTx(ctx context.Context, tx pgx.Tx, p NewRunParams) (*Run, []int, error) {
	def := p.Definition
	plan, err := PlanRun(ctx, tx, def.Options.ForDirection(p.Direction))
	if err != nil {
		where := def.Source
		if def.IsGo() {
			where = "Go backfill " + def.Label()
		}
		return nil, nil, &FileError{Path: where, Err: err}
	}
	if err := checkStatementTx(ctx, tx, def, p.Direction); err != nil {
		return nil, nil, err
	}
	stored, err := json.Marshal(storedDefinition{Options: def.Options, UpSQL: def.UpSQL, DownSQL: def.DownSQL, Source: def.Source})
	if err != nil {
		return nil, nil, fmt.Errorf("batches: %w", err)
	}
	run := &Run{
		Version: def.Version, RunNumber: p.RunNumber, Name: def.Name, Mode: def.Mode, Direction: p.Direction,
		State: StatePending, KeyType: plan.KeyType, Checksum: def.Checksum, Options: def.Options,
		UpSQL: def.UpSQL, DownSQL: def.DownSQL, Source: def.Source,
	}
	err = tx.QueryRow(ctx, `
INSERT INTO backfill_runs (version, run_number, name, mode, direction, checksum, definition, key_type, state, rows_estimated, enqueued_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10)
ON CONFLICT (version, run_number) DO NOTHING
RETURNING id`, def.Version, p.RunNumber, def.Name, def.Mode, p.Direction, def.Checksum, stored, plan.KeyType,
		plan.RowsEstimated, p.EnqueuedBy).Scan(&run.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, ErrAlreadyEnqueued
	}
	if err != nil {
		return nil, nil, fmt.Errorf("batches: recording run of %s: %w", def.Label(), err)
	}
	parts := make([]int, len(plan.Ranges))
	for i, kr := range plan.Ranges {
		parts[i] = i
		if _, err := tx.Exec(ctx, `INSERT INTO backfill_partitions (run_id, partition, lower_key, upper_key, cursor_key) VALUES ($1, $2, $3, $4, $3)`,
			run.ID, i, kr.Lower, kr.Upper); err != nil {
			return nil, nil, fmt.Errorf("batches: recording partitions of %s: %w", def.Label(), err)
		}
	}
	return run, parts, nil
}

// AssignJobTx hands a partition from job from (0: no owner yet) to job to:
// from then on only job to may work it. It returns ErrNotOwner when from does
// not own the partition.
func AssignJobTx(ctx context.Context, tx pgx.Tx, runID int64, partition int, from, to int64) error {
	tag, err := tx.Exec(ctx, `UPDATE backfill_partitions SET job_id = $4, updated_at = now()
WHERE run_id = $1 AND partition = $2 AND coalesce(job_id, 0) = $3`, runID, partition, from, to)
	if err != nil {
		return fmt.Errorf("batches: assigning partition %d of run %d: %w", partition, runID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotOwner
	}
	return nil
}

const runColumns = `id, version, run_number, name, mode, direction, state, key_type, checksum, definition`

func scanRun(row pgx.Row) (*Run, error) {
	var (
		r      Run
		stored storedDefinition
	)
	if err := row.Scan(&r.ID, &r.Version, &r.RunNumber, &r.Name, &r.Mode, &r.Direction, &r.State, &r.KeyType, &r.Checksum, &stored); err != nil {
		return nil, err
	}
	r.Options, r.UpSQL, r.DownSQL, r.Source = stored.Options, stored.UpSQL, stored.DownSQL, stored.Source
	return &r, nil
}

// LoadRun reads a run by id.
func LoadRun(ctx context.Context, q Querier, id int64) (*Run, error) {
	r, err := scanRun(q.QueryRow(ctx, `SELECT `+runColumns+` FROM backfill_runs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: id %d", ErrRunNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("batches: loading run %d: %w", id, err)
	}
	return r, nil
}

// LatestRun returns the newest run of a version, locked FOR UPDATE when tx is
// a transaction that must change it.
func LatestRun(ctx context.Context, q Querier, version int64, forUpdate bool) (*Run, error) {
	sql := `SELECT ` + runColumns + ` FROM backfill_runs WHERE version = $1 ORDER BY run_number DESC LIMIT 1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	r, err := scanRun(q.QueryRow(ctx, sql, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: version %d was never enqueued", ErrRunNotFound, version)
	}
	if err != nil {
		return nil, fmt.Errorf("batches: loading runs of version %d: %w", version, err)
	}
	return r, nil
}

// MarkStarted moves a pending run to running and stamps its start time; it
// reports whether this call started the run. It also forgets the run's
// throughput older than ten minutes, which status no longer shows.
func MarkStarted(ctx context.Context, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, runID int64) (bool, error) {
	// A run resumed before any worker took it is running without a start.
	tag, err := db.Exec(ctx, `UPDATE backfill_runs
SET state = CASE WHEN state = 'pending' THEN 'running' ELSE state END, started_at = coalesce(started_at, now())
WHERE id = $1 AND (state = 'pending' OR started_at IS NULL)`, runID)
	if err != nil {
		return false, fmt.Errorf("batches: starting run %d: %w", runID, err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM backfill_throughput WHERE run_id = $1 AND second < now() - interval '10 minutes'`, runID); err != nil {
		return false, fmt.Errorf("batches: pruning throughput of run %d: %w", runID, err)
	}
	return tag.RowsAffected() > 0, nil
}

// StateOf reads a run's state.
func StateOf(ctx context.Context, q Querier, runID int64) (State, error) {
	var s State
	if err := q.QueryRow(ctx, `SELECT state FROM backfill_runs WHERE id = $1`, runID).Scan(&s); err != nil {
		return "", fmt.Errorf("batches: reading the state of run %d: %w", runID, err)
	}
	return s, nil
}

// settleRunTx finishes a run whose partitions are all done or failed. It
// locks the run row first so that two partitions finishing at once cannot
// both see the other as unfinished.
func settleRunTx(ctx context.Context, tx pgx.Tx, runID int64) (State, error) {
	var state State
	if err := tx.QueryRow(ctx, `SELECT state FROM backfill_runs WHERE id = $1 FOR UPDATE`, runID).Scan(&state); err != nil {
		return "", fmt.Errorf("batches: settling run %d: %w", runID, err)
	}
	var active, failed int
	if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state IN ('pending', 'running')), count(*) FILTER (WHERE state = 'failed') FROM backfill_partitions WHERE run_id = $1`,
		runID).Scan(&active, &failed); err != nil {
		return "", fmt.Errorf("batches: settling run %d: %w", runID, err)
	}
	if active > 0 || !(state.Active() || state == StatePaused) {
		return state, nil
	}
	next := StateCompleted
	if failed > 0 {
		next = StateFailed
	}
	if _, err := tx.Exec(ctx, `UPDATE backfill_runs SET state = $2, finished_at = now(), started_at = coalesce(started_at, now()) WHERE id = $1`, runID, next); err != nil {
		return "", fmt.Errorf("batches: settling run %d: %w", runID, err)
	}
	return next, nil
}

// ReopenFailedTx puts a run's failed partitions, and those whose queue job is
// gone, back to pending with their checkpoints kept, and the run back to
// running. It returns the partitions that need a new job.
func ReopenFailedTx(ctx context.Context, tx pgx.Tx, runID int64) ([]int, error) {
	parts, err := reopenTx(ctx, tx, runID, true)
	if err != nil {
		return nil, err
	}
	if len(parts) > 0 {
		if _, err := tx.Exec(ctx, `UPDATE backfill_runs SET state = 'running', finished_at = NULL, last_error = NULL, resumed_at = now() WHERE id = $1`, runID); err != nil {
			return nil, fmt.Errorf("batches: reopening run %d: %w", runID, err)
		}
	}
	return parts, nil
}

// checkStatementTx prepares a SQL file's statement, so that a typo or a
// missing column is reported when the run is enqueued rather than by every
// batch. Nothing is executed.
func checkStatementTx(ctx context.Context, tx pgx.Tx, def *Definition, dir Direction) error {
	sql := def.UpSQL
	if dir == DirectionDown {
		sql = def.DownSQL
	}
	if sql == "" {
		return nil
	}
	rewritten, _, err := pgx.NamedArgs{"first": "", "last": ""}.RewriteQuery(ctx, tx.Conn(), sql, nil)
	if err == nil {
		_, err = tx.Conn().Prepare(ctx, "", rewritten)
	}
	if err != nil {
		return &FileError{Path: def.Source, Err: fmt.Errorf("%s statement does not prepare: %s", dir, describeError(err))}
	}
	return nil
}
