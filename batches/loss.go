package batches

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The loss check of a type change. A backfill that converts values (float
// to integer, text to a shorter varchar) says which rows would lose data
// with a lossy condition; before a run is recorded, and in a dry run, those
// rows are counted over the whole table, and a run is refused while any
// exists unless the file decides what becomes of them (on_loss). The
// decision and what it cost are recorded with the run as an event.

// What a backfill decides for rows whose value does not survive (on_loss).
const (
	// OnLossFail refuses the run while such rows exist (also the default).
	OnLossFail = "fail"
	// OnLossNull accepts that their copy is NULL: the conversion gives
	// NULL for a value that does not survive.
	OnLossNull = "null"
)

// LossKeysShown is how many keys of lossy rows a loss report keeps.
const LossKeysShown = 10

// ErrLossy: rows would lose data and the backfill does not accept it.
var ErrLossy = errors.New("rows would lose data in the conversion")

// LossReport is what the loss check found.
type LossReport struct {
	// Rows would lose data; FirstKeys are the first of them in key order.
	Rows      int64    `json:"lossy_rows"`
	FirstKeys []string `json:"first_keys"`
	// OnLoss is the backfill's decision ("" when it made none).
	OnLoss string `json:"on_loss"`
}

// Refused reports whether the report stops a run from being recorded.
func (r LossReport) Refused() bool { return r.Rows > 0 && r.OnLoss != OnLossNull }

// String says what was found and decided.
func (r LossReport) String() string {
	if r.Rows == 0 {
		return "no row loses data in the conversion"
	}
	s := fmt.Sprintf("%d rows would lose data in the conversion (first keys: %s)", r.Rows, strings.Join(r.FirstKeys, ", "))
	if r.OnLoss == OnLossNull {
		s += "; on_loss: null, so their copies are NULL"
	}
	return s
}

// checkOnLoss validates an on_loss value.
func checkOnLoss(v string) error {
	switch v {
	case "", OnLossFail, OnLossNull:
		return nil
	}
	return fmt.Errorf("on_loss: want fail or null, got %q", v)
}

// CheckLoss counts the rows of o's table that o's lossy condition selects,
// whatever o's where says (a lossy row may already look done). Without a
// lossy condition it reports nothing.
func CheckLoss(ctx context.Context, q Querier, o Options) (LossReport, error) {
	r := LossReport{OnLoss: o.OnLoss, FirstKeys: []string{}}
	if o.Lossy == "" {
		return r, nil
	}
	key := "t." + pgx.Identifier{o.Key}.Sanitize()
	err := q.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), coalesce((array_agg(d.k))[1:%d], '{}') FROM (
	SELECT %[2]s::text AS k FROM %[3]s t WHERE (%[4]s
) ORDER BY %[2]s) d`, LossKeysShown, key, quoteQualified(o.Table), o.Lossy)).Scan(&r.Rows, &r.FirstKeys)
	if err != nil {
		return r, fmt.Errorf("the lossy condition of %s does not work: %w", o.Table, withSQLState(err))
	}
	return r, nil
}

// lossError is the refusal of a run whose rows would lose data.
func lossError(o Options, r LossReport) error {
	how := `set "-- on_loss: null" to accept NULL copies of them, or fix those rows first`
	if r.OnLoss == OnLossFail {
		how = "on_loss is fail; fix those rows first, or set on_loss: null to accept NULL copies"
	}
	return fmt.Errorf("%w: %d rows of %s (lossy: %s); first keys: %s; %s",
		ErrLossy, r.Rows, o.Table, o.Lossy, strings.Join(r.FirstKeys, ", "), how)
}

// recordLossTx records the loss check's report and decision with a run.
func recordLossTx(ctx context.Context, tx pgx.Tx, runID int64, actor string, r LossReport) error {
	detail, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("batches: %w", err)
	}
	return RecordEventTx(ctx, tx, runID, actor, "loss_check", string(detail))
}
