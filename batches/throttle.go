package batches

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Throttle holds the options an operator may change while a run works
// ("enqueue throttle"). A field left nil keeps its value; the ones set win
// over the definition's and are stored in backfill_runs.throttle, which
// every batch reads with its partition's lock, so the whole pool applies a
// change at its next batch (and a job waiting on the rate limit within a
// second).
type Throttle struct {
	// Rate is rows per second across the pool; 0 is unlimited.
	Rate *float64 `json:"rate,omitempty"`
	// BatchSize is the rows per batch (an adaptive run's next batches
	// start from it).
	BatchSize *int `json:"batch,omitempty"`
	// BatchTime is the duration batches aim at; 0 turns the adaptive size
	// off.
	BatchTime *time.Duration `json:"batch_time,omitempty"`
}

// IsZero reports whether t changes nothing.
func (t Throttle) IsZero() bool { return t.Rate == nil && t.BatchSize == nil && t.BatchTime == nil }

// apply returns o with t's fields in place of o's.
func (t Throttle) apply(o Options) Options {
	if t.Rate != nil {
		o.Rate = *t.Rate
	}
	if t.BatchSize != nil {
		o.BatchSize = *t.BatchSize
	}
	if t.BatchTime != nil {
		o.BatchTime = *t.BatchTime
	}
	return o
}

// merge returns t with change's fields in place of t's.
func (t Throttle) merge(change Throttle) Throttle {
	if change.Rate != nil {
		t.Rate = change.Rate
	}
	if change.BatchSize != nil {
		t.BatchSize = change.BatchSize
	}
	if change.BatchTime != nil {
		t.BatchTime = change.BatchTime
	}
	return t
}

// Validate checks the values against the same bounds as a file's headers.
func (t Throttle) Validate() error {
	switch {
	case t.IsZero():
		return errors.New("nothing to change: give --rate, --batch or --batch-time")
	case t.Rate != nil && !validRate(*t.Rate):
		return fmt.Errorf("rate must be 0 (unlimited) or between %d and %.0f rows per second, got %g", RateMin, RateMax, *t.Rate)
	case t.BatchSize != nil && (*t.BatchSize < 1 || *t.BatchSize > BatchSizeMax):
		return fmt.Errorf("batch must be between 1 and %d, got %d", BatchSizeMax, *t.BatchSize)
	case t.BatchTime != nil && *t.BatchTime != 0 && !within(*t.BatchTime, BatchTimeMin, BatchTimeMax):
		return fmt.Errorf("batch time must be 0 (a fixed batch size) or between %s and %s, got %s", BatchTimeMin, BatchTimeMax, *t.BatchTime)
	}
	return nil
}

// String shows t as "rate 5000 rows/s, batch 500, batch time 200ms".
func (t Throttle) String() string {
	var parts []string
	if t.Rate != nil {
		parts = append(parts, "rate "+FormatRate(*t.Rate))
	}
	if t.BatchSize != nil {
		parts = append(parts, "batch "+strconv.Itoa(*t.BatchSize))
	}
	if t.BatchTime != nil && *t.BatchTime > 0 {
		parts = append(parts, "batch time "+t.BatchTime.String())
	}
	return strings.Join(parts, ", ")
}

// FormatRate shows a rate limit: "5000 rows/s", or "unlimited" for 0.
func FormatRate(r float64) string {
	if r == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + " rows/s"
}

// ThrottleChange is what ThrottleTx did.
type ThrottleChange struct {
	Run *Run
	// Before and After are the run's rate and batch size in force.
	Before, After Throttle
}

// ThrottleTx changes the throttle of version's latest run, which must not
// be finished, and records who did it in backfill_events. It locks only the
// run row, as a batch's last step does (see the lock order in lifecycle.go).
func ThrottleTx(ctx context.Context, tx pgx.Tx, version int64, change Throttle, actor string) (*ThrottleChange, error) {
	if err := change.Validate(); err != nil {
		return nil, err
	}
	run, err := LatestRun(ctx, tx, version, true)
	if err != nil {
		return nil, err
	}
	if run.State != StatePending && run.State != StateRunning && run.State != StatePaused {
		return nil, fmt.Errorf("%w: %s is %s; only an unfinished run can be throttled (a new run takes the file's options)", ErrWrongState, run.Label(), run.State)
	}
	res := &ThrottleChange{Run: run, Before: inForce(run.Options)}
	run.throttle = run.throttle.merge(change)
	run.Options = run.throttle.apply(run.defined)
	res.After = inForce(run.Options)
	stored, err := json.Marshal(run.throttle)
	if err != nil {
		return nil, fmt.Errorf("batches: %w", err)
	}
	detail, err := json.Marshal(map[string]Throttle{"before": res.Before, "after": res.After})
	if err != nil {
		return nil, fmt.Errorf("batches: %w", err)
	}
	// As text: in pgx's exec and simple_protocol modes (behind PgBouncer)
	// a []byte would be sent as bytea.
	if _, err := tx.Exec(ctx, inSchema(`UPDATE backfill_runs SET throttle = $2::jsonb WHERE id = $1`), run.ID, string(stored)); err != nil {
		return nil, fmt.Errorf("batches: throttling %s: %w", run.Label(), err)
	}
	if err := RecordEventTx(ctx, tx, run.ID, actor, "throttle", string(detail)); err != nil {
		return nil, err
	}
	return res, nil
}

// inForce is the throttle a run works with: every field set.
func inForce(o Options) Throttle {
	rate, batch, batchTime := o.Rate, o.BatchSize, o.BatchTime
	return Throttle{Rate: &rate, BatchSize: &batch, BatchTime: &batchTime}
}

// RefreshRun reads a run's state and throttle into run, for a job that
// waits between batches.
func RefreshRun(ctx context.Context, q Querier, run *Run) error {
	var (
		state    State
		throttle Throttle
	)
	if err := q.QueryRow(ctx, inSchema(`SELECT state, throttle FROM backfill_runs WHERE id = $1`), run.ID).Scan(&state, &throttle); err != nil {
		return fmt.Errorf("batches: reading the state of run %d: %w", run.ID, err)
	}
	run.State = state
	run.setThrottle(throttle)
	return nil
}

// setThrottle puts the throttle in force on the run's options.
func (r *Run) setThrottle(t Throttle) {
	r.throttle = t
	r.Options = t.apply(r.defined)
}
