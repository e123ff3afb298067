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
// second). Each field's JSON key is the Options field's own.
type Throttle struct {
	// Rate is rows per second across the pool; 0 is unlimited.
	Rate *float64 `json:"rate,omitempty"`
	// DutyCycle is the share of time batches may keep the database busy
	// (DutyCycleOff: no limit).
	DutyCycle *float64 `json:"duty_cycle,omitempty"`
	// BatchSize is the rows per batch (an adaptive run's next batches
	// start from it).
	BatchSize *int `json:"batch,omitempty"`
	// BatchTime is the duration batches aim at; 0 (or negative) turns
	// the adaptive size off.
	BatchTime *time.Duration `json:"batch_time,omitempty"`
	// The health signals' limits (negative: off) and the throttle query
	// ("" : none).
	MaxReplicaLag     *time.Duration `json:"max_replica_lag,omitempty"`
	MaxActiveBackends *int           `json:"max_active_backends,omitempty"`
	MaxTransactionAge *time.Duration `json:"max_transaction_age,omitempty"`
	ThrottleQuery     *string        `json:"throttle_query,omitempty"`
	HoldDuringVacuum  *bool          `json:"hold_during_vacuum,omitempty"`
}

// IsZero reports whether t changes nothing.
func (t Throttle) IsZero() bool { return t == Throttle{} }

// apply returns o with t's fields in place of o's: t's JSON, whose keys are
// the options' own, laid over them.
func (t Throttle) apply(o Options) Options {
	if t.IsZero() {
		return o // every batch of a run nobody throttled: nothing to decode
	}
	overlay(t, &o)
	return o
}

// merge returns t with change's fields in place of t's.
func (t Throttle) merge(change Throttle) Throttle {
	overlay(change, &t)
	return t
}

// overlay decodes from's JSON into to, which keeps the fields from leaves
// out. Both are plain structs, so neither step can fail.
func overlay(from any, to any) {
	b, err := json.Marshal(from)
	if err == nil {
		err = json.Unmarshal(b, to)
	}
	if err != nil {
		panic(fmt.Sprintf("batches: overlaying a throttle: %v", err))
	}
}

// Validate checks the values against the same bounds as a file's headers.
func (t Throttle) Validate() error {
	switch {
	case t.IsZero():
		return errors.New("nothing to change: give --rate, --duty-cycle, --batch, --batch-time or a health limit")
	case t.Rate != nil && !validRate(*t.Rate):
		return fmt.Errorf("rate must be 0 (unlimited) or between %d and %.0f rows per second, got %g", RateMin, RateMax, *t.Rate)
	case t.BatchSize != nil && (*t.BatchSize < 1 || *t.BatchSize > BatchSizeMax):
		return fmt.Errorf("batch must be between 1 and %d, got %d", BatchSizeMax, *t.BatchSize)
	case t.BatchTime != nil && *t.BatchTime > 0 && !within(*t.BatchTime, BatchTimeMin, BatchTimeMax):
		return fmt.Errorf("batch time must be 0 (a fixed batch size) or between %s and %s, got %s", BatchTimeMin, BatchTimeMax, *t.BatchTime)
	case t.DutyCycle != nil && !validDutyCycle(*t.DutyCycle):
		return fmt.Errorf("duty cycle must be off or between %s and %s, got %g", FormatDutyCycle(DutyCycleMin), FormatDutyCycle(DutyCycleMax), *t.DutyCycle)
	case t.MaxActiveBackends != nil && (*t.MaxActiveBackends == 0 || *t.MaxActiveBackends > 100_000):
		return fmt.Errorf("max active backends must be off or between 1 and 100000, got %d", *t.MaxActiveBackends)
	}
	for _, l := range []struct {
		name string
		d    *time.Duration
	}{{"max replica lag", t.MaxReplicaLag}, {"max transaction age", t.MaxTransactionAge}} {
		if l.d != nil && *l.d >= 0 && !within(*l.d, HealthLimitMin, HealthLimitMax) {
			return fmt.Errorf("%s must be off or between %s and %s, got %s", l.name, HealthLimitMin, HealthLimitMax, *l.d)
		}
	}
	if t.ThrottleQuery != nil && *t.ThrottleQuery != "" {
		if err := CheckThrottleQuery(*t.ThrottleQuery); err != nil {
			return fmt.Errorf("throttle query: %w", err)
		}
	}
	return nil
}

// String shows t as "rate 5000 rows/s, batch 500, batch time 200ms".
func (t Throttle) String() string {
	var parts []string
	if t.Rate != nil {
		parts = append(parts, "rate "+FormatRate(*t.Rate))
	}
	if t.DutyCycle != nil {
		parts = append(parts, "duty cycle "+FormatDutyCycle(*t.DutyCycle))
	}
	if t.BatchSize != nil {
		parts = append(parts, "batch "+strconv.Itoa(*t.BatchSize))
	}
	// add shows a field that is set: its value, or "off".
	add := func(name string, off bool, value string) {
		if off {
			value = "off"
		}
		parts = append(parts, name+" "+value)
	}
	if d := t.BatchTime; d != nil {
		add("batch time", *d <= 0, d.String())
	}
	if d := t.MaxReplicaLag; d != nil {
		add("max replica lag", *d < 0, d.String())
	}
	if n := t.MaxActiveBackends; n != nil {
		add("max active backends", *n < 0, strconv.Itoa(*n))
	}
	if d := t.MaxTransactionAge; d != nil {
		add("max transaction age", *d < 0, d.String())
	}
	if q := t.ThrottleQuery; q != nil {
		add("throttle query", *q == "", strconv.Quote(*q))
	}
	if v := t.HoldDuringVacuum; v != nil {
		add("hold during vacuum", !*v, "on")
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
	// Before and After are the values in force of the fields changed.
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
	res := &ThrottleChange{Run: run, Before: inForce(run.Options).only(change)}
	run.throttle = run.throttle.merge(change)
	run.Options = run.throttle.apply(run.defined)
	res.After = inForce(run.Options).only(change)
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

// only returns t's fields that are set in keys.
func (t Throttle) only(keys Throttle) Throttle {
	var all, wanted map[string]json.RawMessage
	b, _ := json.Marshal(t)
	_ = json.Unmarshal(b, &all)
	b, _ = json.Marshal(keys)
	_ = json.Unmarshal(b, &wanted)
	for k := range all {
		if _, ok := wanted[k]; !ok {
			delete(all, k)
		}
	}
	var out Throttle
	overlay(all, &out)
	return out
}

// inForce is the throttle a run works with: every field set, health limits
// with their defaults.
func inForce(o Options) Throttle {
	l := o.HealthLimits()
	return Throttle{
		Rate: &o.Rate, DutyCycle: &o.DutyCycle, BatchSize: &o.BatchSize, BatchTime: &o.BatchTime,
		MaxReplicaLag: &l.MaxReplicaLag, MaxActiveBackends: &l.MaxActiveBackends, MaxTransactionAge: &l.MaxTransactionAge,
		ThrottleQuery: &l.ThrottleQuery, HoldDuringVacuum: &l.HoldDuringVacuum,
	}
}

// RefreshRun reads a run's state, throttle and health into run, for a job
// that waits between batches.
func RefreshRun(ctx context.Context, q Querier, run *Run) error {
	var (
		state    State
		throttle Throttle
		health   *Health
	)
	if err := q.QueryRow(ctx, inSchema(`SELECT r.state, r.throttle, `+freshHealth+` FROM backfill_runs r WHERE r.id = $1`), run.ID).
		Scan(&state, &throttle, &health); err != nil {
		return fmt.Errorf("batches: reading the state of run %d: %w", run.ID, err)
	}
	run.State = state
	run.setThrottle(throttle)
	run.health = health
	return nil
}

// setThrottle puts the throttle in force on the run's options.
func (r *Run) setThrottle(t Throttle) {
	r.throttle = t
	r.Options = t.apply(r.defined)
}
