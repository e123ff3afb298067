package batches

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// keysetQueries are a run's statements that cut the next batch after the
// checkpoint. A full batch costs one round trip of two index probes: its
// first key, and the key BatchSize-1 further on. Only the partition's last,
// partial batch needs a second query, for its last key and its size. There
// are four variants of each, so that no "$1 IS NULL OR" keeps the planner
// from using the index.
type keysetQueries struct {
	// full and partial are indexed by [hasCursor][hasUpper].
	full, partial [2][2]string
}

func newKeysetQueries(o Options) *keysetQueries {
	// t.key everywhere: ORDER BY a bare name would sort by the text output.
	table, key := quoteQualified(o.Table), "t."+pgx.Identifier{o.Key}.Sanitize()
	var q keysetQueries
	for c := 0; c < 2; c++ {
		for u := 0; u < 2; u++ {
			// Without a cursor, NULL keys must be left out explicitly: they
			// sort last and would end the partition early.
			conds := []string{key + " IS NOT NULL"}
			if c == 1 {
				conds[0] = key + " > $1"
			}
			if u == 1 {
				conds = append(conds, fmt.Sprintf("%s <= $%d", key, 1+c))
			}
			if o.Where != "" {
				conds = append(conds, "("+o.Where+"\n)") // the newline ends a trailing -- comment
			}
			where := ""
			for i, cond := range conds {
				if i == 0 {
					where = " WHERE " + cond
				} else {
					where += " AND " + cond
				}
			}
			from := fmt.Sprintf("FROM %s t%s", table, where)
			// inRange checks the keys found against the checkpoint and the
			// upper bound in the key's own order: a condition that escapes
			// them must fail the partition, not loop over the same batch.
			inRange := func(col string) string {
				check := "true"
				if c == 1 {
					check += " AND " + col + " > $1"
				}
				if u == 1 {
					check += fmt.Sprintf(" AND %s <= $%d", col, 1+c)
				}
				return check
			}
			// OFFSET 0 keeps s a subquery of its own: pulled up into the
			// outer SELECT, each use of s.l would scan the batch's keys
			// again (one InitPlan per use).
			q.full[c][u] = fmt.Sprintf(`SELECT s.f::text, s.l::text, %[4]s AND %[5]s FROM (SELECT (SELECT %[1]s %[2]s ORDER BY %[1]s LIMIT 1) f, (SELECT %[1]s %[2]s ORDER BY %[1]s OFFSET $%[3]d LIMIT 1) l OFFSET 0) s`,
				key, from, 1+c+u, inRange("s.f"), inRange("coalesce(s.l, s.f)"))
			q.partial[c][u] = fmt.Sprintf(`SELECT s.l::text, s.n, %[3]s FROM (SELECT (SELECT %[1]s %[2]s ORDER BY %[1]s DESC LIMIT 1) l, (SELECT count(*) %[2]s) n OFFSET 0) s`,
				key, from, inRange("s.l"))
		}
	}
	return &q
}

// cut is what the first query of a batch's cut found: its first key, the
// key a whole batch ends at (nil when fewer keys are left), and whether
// the keys are within the range asked for.
type cut struct {
	first, last *string
	inRange     *bool
}

// fullQuery is the first query of the cut after cursor (exclusive) up to
// upper (inclusive), and its arguments.
func (q *keysetQueries) fullQuery(batchSize int, cursor, upper *string) (string, []any) {
	c, u, args := cutArgs(cursor, upper)
	return q.full[c][u], append(args, batchSize-1)
}

func cutArgs(cursor, upper *string) (c, u int, args []any) {
	if cursor != nil {
		c, args = 1, append(args, *cursor)
	}
	if upper != nil {
		u, args = 1, append(args, *upper)
	}
	return c, u, args
}

// queueCut queues the cut's first query in b; scanned into found.
func (q *keysetQueries) queueCut(b *pgx.Batch, batchSize int, cursor, upper *string, found *cut) {
	sql, args := q.fullQuery(batchSize, cursor, upper)
	b.Queue(sql, args...).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&found.first, &found.last, &found.inRange); err != nil {
			return &cutError{err}
		}
		return nil
	})
}

// cutError is a failure of the cut's first query when it was queued with
// other statements.
type cutError struct{ err error }

func (e *cutError) Error() string { return e.err.Error() }
func (e *cutError) Unwrap() error { return e.err }

// nextBatch finds the batch after cursor (exclusive) up to upper (inclusive);
// ok is false when the range holds no more keys.
func (q *keysetQueries) nextBatch(ctx context.Context, tx pgx.Tx, batchSize int, cursor, upper *string) (first, last string, rows int64, ok bool, err error) {
	var found cut
	sql, args := q.fullQuery(batchSize, cursor, upper)
	if err := tx.QueryRow(ctx, sql, args...).Scan(&found.first, &found.last, &found.inRange); err != nil {
		return "", "", 0, false, err
	}
	return q.finishCut(ctx, tx, batchSize, cursor, upper, found)
}

// finishCut completes a cut from its first query's result: a whole batch,
// or the rest of the range (a second query counts it), or nothing left.
func (q *keysetQueries) finishCut(ctx context.Context, tx pgx.Tx, batchSize int, cursor, upper *string, found cut) (first, last string, rows int64, ok bool, err error) {
	c, u, args := cutArgs(cursor, upper)
	var (
		firstKey, lastKey = found.first, found.last
		inRange           = found.inRange
	)
	outOfRange := func(key string) error {
		return fmt.Errorf("%w: key %s is not after the checkpoint %s or beyond the partition's last key %s; check the where condition", ErrKeysOutOfRange, key, deref(cursor), deref(upper))
	}
	if firstKey == nil {
		return "", "", 0, false, nil
	}
	if inRange != nil && !*inRange {
		return "", "", 0, false, outOfRange(*firstKey)
	}
	if lastKey != nil {
		return *firstKey, *lastKey, int64(batchSize), true, nil
	}
	if err := tx.QueryRow(ctx, q.partial[c][u], args...).Scan(&lastKey, &rows, &inRange); err != nil {
		return "", "", 0, false, err
	}
	if lastKey == nil { // the keys were deleted between the two queries
		return "", "", 0, false, nil
	}
	if inRange != nil && !*inRange {
		return "", "", 0, false, outOfRange(*lastKey)
	}
	return *firstKey, *lastKey, rows, true, nil
}
