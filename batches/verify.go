package batches

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Verify checks a backfill's work row by row: it walks the table's whole key
// space in batches, each in a read-only transaction of its own, and counts
// the rows that disagree. A row disagrees when the backfill's verify
// condition is not true for it, or, for a backfill without one, when its
// where condition still selects it (work left to do). Deploy pipelines run
// it, after "enqueue wait", as the gate before a contract step drops what
// the backfill copied from.

// VerifyKeysShown is how many keys of disagreeing rows Verify keeps.
const VerifyKeysShown = 10

// ErrNothingToVerify: the backfill has neither a verify nor a where
// condition, so no row can be told to disagree.
var ErrNothingToVerify = errors.New("batches: nothing to verify: the backfill has no verify condition and no where condition")

// VerifyParams say what Verify checks and how it paces itself.
type VerifyParams struct {
	// Options are the backfill's: table, key, verify (or where), batch.
	Options Options
	// BatchSize is the rows per batch (Options.BatchSize when 0).
	BatchSize int
	// Timeouts bound each batch's statements (the worker's defaults when zero).
	Timeouts Timeouts
	// Pace, when set, is called before every batch with the rows the last
	// one read and how long it took, and may wait (the backfill's rate and
	// duty cycle); its error stops Verify.
	Pace func(ctx context.Context, rows int64, took time.Duration) error
	// Progress, when set, is called after every batch.
	Progress func(VerifyResult)
}

// VerifyResult is what Verify found so far.
type VerifyResult struct {
	// Condition is what a row must satisfy to agree.
	Condition string
	// RowsEstimated is the planner's estimate of the table's rows.
	RowsEstimated int64
	// Rows were checked, Disagree of them disagree; FirstKeys are the keys
	// of the first VerifyKeysShown of those, in key order.
	Rows      int64
	Disagree  int64
	FirstKeys []string
}

// Verify walks o's table and returns the rows that disagree.
func Verify(ctx context.Context, db Beginner, p VerifyParams) (VerifyResult, error) {
	o := p.Options
	agree, res := verifyCondition(o)
	if agree == "" {
		return res, ErrNothingToVerify
	}
	walk := o
	walk.Where = "" // every row of the table, not only those left to do
	plan, err := planOnce(ctx, db, walk)
	if err != nil {
		return res, err
	}
	res.RowsEstimated = plan.RowsEstimated
	size := p.BatchSize
	if size <= 0 {
		size = o.BatchSize
	}
	keyset := newKeysetQueries(walk)
	check := fmt.Sprintf(`SELECT count(*), coalesce((array_agg(d.k))[1:%d], '{}') FROM (
	SELECT t.%[2]s::text AS k FROM %[3]s t
	WHERE t.%[2]s >= $1 AND t.%[2]s <= $2 AND (%[4]s
) IS NOT TRUE
	ORDER BY t.%[2]s) d`, VerifyKeysShown, pgx.Identifier{o.Key}.Sanitize(), quoteQualified(o.Table), agree)
	var (
		cursor *string
		last   int64
		took   time.Duration
	)
	for {
		if p.Pace != nil {
			if err := p.Pace(ctx, last, took); err != nil {
				return res, err
			}
		}
		started := time.Now()
		var (
			first, lastKey string
			n, disagree    int64
			keys           []string
			ok             bool
		)
		err := readOnly(ctx, db, p.Timeouts, func(tx pgx.Tx) error {
			var err error
			first, lastKey, n, ok, err = keyset.nextBatch(ctx, tx, size, cursor, nil)
			if err != nil || !ok {
				return err
			}
			return tx.QueryRow(ctx, check, first, lastKey).Scan(&disagree, &keys)
		})
		if err != nil {
			return res, fmt.Errorf("batches: verifying %s after key %s: %w", o.Table, deref(cursor), withSQLState(err))
		}
		if !ok {
			return res, nil
		}
		res.Rows += n
		res.Disagree += disagree
		if room := VerifyKeysShown - len(res.FirstKeys); room > 0 {
			res.FirstKeys = append(res.FirstKeys, keys[:min(room, len(keys))]...)
		}
		cursor, last, took = &lastKey, n, time.Since(started)
		if p.Progress != nil {
			p.Progress(res)
		}
	}
}

// verifyCondition is the SQL condition a row must satisfy to agree, and a
// result that says which it is.
func verifyCondition(o Options) (string, VerifyResult) {
	switch {
	case o.Verify != "":
		return o.Verify, VerifyResult{Condition: o.Verify}
	case o.Where != "":
		// Rows the where condition still selects are work left to do.
		return "NOT coalesce((" + o.Where + "\n), false)", VerifyResult{Condition: "NOT (" + o.Where + ")"}
	}
	return "", VerifyResult{}
}

// planOnce plans the walk in a read-only transaction.
func planOnce(ctx context.Context, db Beginner, o Options) (*Plan, error) {
	var plan *Plan
	err := readOnly(ctx, db, Timeouts{}, func(tx pgx.Tx) error {
		var err error
		plan, err = PlanRun(ctx, tx, o)
		return err
	})
	return plan, err
}

// readOnly runs fn in a read-only transaction bounded by t: a verify
// condition cannot write, whatever it calls.
func readOnly(ctx context.Context, db Beginner, t Timeouts, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var pid int32
		b := &pgx.Batch{}
		b.Queue(`SET TRANSACTION READ ONLY`)
		t.WithDefaults().queue(b, &pid)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		return fn(tx)
	})
}
