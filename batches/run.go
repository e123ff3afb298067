package batches

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

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
	// Options are the definition's options with the throttle in force.
	Options Options
	UpSQL   string
	DownSQL string
	Source  string

	keyset *keysetQueries
	// defined are the options as enqueued; throttle is what an operator
	// changed since ("enqueue throttle").
	defined  Options
	throttle Throttle
	// health is the last fresh reading of its signals (nil: none).
	health *Health
}

// HeldBack returns the reading of the run's health signals when one holds
// its batches back, nil otherwise.
func (r *Run) HeldBack() *Health {
	if r.health.Holds() {
		return r.health
	}
	return nil
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
	// A conversion that loses data is refused unless the file decided.
	var loss LossReport
	if p.Direction == DirectionUp {
		if loss, err = CheckLoss(ctx, tx, def.Options); err == nil && loss.Refused() {
			err = lossError(def.Options, loss)
		}
		if err != nil {
			return nil, nil, &FileError{Path: def.Source, Err: err}
		}
	}
	stored, err := json.Marshal(storedDefinition{Options: def.Options, UpSQL: def.UpSQL, DownSQL: def.DownSQL, Source: def.Source})
	if err != nil {
		return nil, nil, fmt.Errorf("batches: %w", err)
	}
	run := &Run{
		Version: def.Version, RunNumber: p.RunNumber, Name: def.Name, Mode: def.Mode, Direction: p.Direction,
		State: StatePending, KeyType: plan.KeyType, Checksum: def.Checksum, Options: def.Options,
		UpSQL: def.UpSQL, DownSQL: def.DownSQL, Source: def.Source, defined: def.Options,
	}
	err = tx.QueryRow(ctx, inSchema(`
INSERT INTO backfill_runs (version, run_number, name, mode, direction, checksum, definition, key_type, state, rows_estimated, enqueued_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10)
ON CONFLICT (version, run_number) DO NOTHING
RETURNING id`), def.Version, p.RunNumber, def.Name, def.Mode, p.Direction, def.Checksum,
		// As text: in pgx's exec and simple_protocol modes (behind PgBouncer)
		// a []byte would be sent as bytea.
		string(stored), plan.KeyType,
		plan.RowsEstimated, p.EnqueuedBy).Scan(&run.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, ErrAlreadyEnqueued
	}
	if err != nil {
		return nil, nil, fmt.Errorf("batches: recording run of %s: %w", def.Label(), err)
	}
	actor := ActorOf(ctx, p.EnqueuedBy)
	enqueued := fmt.Sprintf(`{"direction": %q, "run_number": %d, "rows_estimated": %d, "partitions": %d}`,
		p.Direction, p.RunNumber, plan.RowsEstimated, len(plan.Ranges))
	if err := RecordEventTx(ctx, tx, run.ID, actor, "enqueue", enqueued); err != nil {
		return nil, nil, err
	}
	if def.Options.Lossy != "" && p.Direction == DirectionUp {
		if err := recordLossTx(ctx, tx, run.ID, actor, loss); err != nil {
			return nil, nil, err
		}
	}
	parts := make([]int, len(plan.Ranges))
	for i, kr := range plan.Ranges {
		parts[i] = i
		if _, err := tx.Exec(ctx, inSchema(`INSERT INTO backfill_partitions (run_id, partition, lower_key, upper_key, cursor_key) VALUES ($1, $2, $3, $4, $3)`),
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
	tag, err := tx.Exec(ctx, inSchema(`UPDATE backfill_partitions SET job_id = $4, updated_at = now()
WHERE run_id = $1 AND partition = $2 AND coalesce(job_id, 0) = $3`), runID, partition, from, to)
	if err != nil {
		return fmt.Errorf("batches: assigning partition %d of run %d: %w", partition, runID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotOwner
	}
	return nil
}

const runColumns = `id, version, run_number, name, mode, direction, state, key_type, checksum, definition, throttle`

func scanRun(row pgx.Row) (*Run, error) {
	var (
		r        Run
		stored   storedDefinition
		throttle Throttle
	)
	if err := row.Scan(&r.ID, &r.Version, &r.RunNumber, &r.Name, &r.Mode, &r.Direction, &r.State, &r.KeyType, &r.Checksum, &stored, &throttle); err != nil {
		return nil, err
	}
	r.defined, r.UpSQL, r.DownSQL, r.Source = stored.Options, stored.UpSQL, stored.DownSQL, stored.Source
	r.setThrottle(throttle)
	return &r, nil
}

// LoadRun reads a run by id.
func LoadRun(ctx context.Context, q Querier, id int64) (*Run, error) {
	r, err := scanRun(q.QueryRow(ctx, inSchema(`SELECT `+runColumns+` FROM backfill_runs WHERE id = $1`), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: id %d", ErrRunNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("batches: loading run %d: %w", id, err)
	}
	return r, nil
}

// LatestRun returns the newest run of a version, locked FOR NO KEY UPDATE
// when forUpdate is set and q is a transaction that must change it.
func LatestRun(ctx context.Context, q Querier, version int64, forUpdate bool) (*Run, error) {
	sql := `SELECT ` + runColumns + ` FROM backfill_runs WHERE version = $1 ORDER BY run_number DESC LIMIT 1`
	if forUpdate {
		sql += ` FOR NO KEY UPDATE` // see the lock order in lifecycle.go
	}
	r, err := scanRun(q.QueryRow(ctx, inSchema(sql), version))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: version %d was never enqueued", ErrRunNotFound, version)
	}
	if err != nil {
		return nil, fmt.Errorf("batches: loading runs of version %d: %w", version, err)
	}
	return r, nil
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
		return &FileError{Path: def.Source, Err: fmt.Errorf("%s statement does not prepare: %w", dir, withSQLState(err))}
	}
	return nil
}

// ActiveRuns reads the runs that are pending or running.
func ActiveRuns(ctx context.Context, q Querier) ([]*Run, error) {
	rows, err := q.Query(ctx, inSchema(`SELECT `+runColumns+` FROM backfill_runs WHERE state IN ('pending', 'running') ORDER BY id`))
	if err != nil {
		return nil, fmt.Errorf("batches: reading the active runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Run, error) { return scanRun(r) })
	if err != nil {
		return nil, fmt.Errorf("batches: reading the active runs: %w", err)
	}
	return runs, nil
}
