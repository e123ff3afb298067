package batches

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// keysetQueries are a run's statements that cut the next batch: the first
// and last of the next BatchSize keys after the checkpoint, and their count,
// found in one index range scan. Four variants, so that no "$1 IS NULL OR"
// keeps the planner from using the index.
type keysetQueries struct {
	// byBounds is indexed by [hasCursor][hasUpper].
	byBounds [2][2]string
}

func newKeysetQueries(o Options) *keysetQueries {
	table, key := quoteQualified(o.Table), pgx.Identifier{o.Key}.Sanitize()
	var q keysetQueries
	for c := 0; c < 2; c++ {
		for u := 0; u < 2; u++ {
			conds := ""
			add := func(cond string) {
				if conds == "" {
					conds = " WHERE " + cond
				} else {
					conds += " AND " + cond
				}
			}
			if c == 1 {
				add(key + " > $2")
			}
			if u == 1 {
				add(fmt.Sprintf("%s <= $%d", key, 2+c))
			}
			if o.Where != "" {
				add("(" + o.Where + "\n)") // the newline ends a trailing -- comment
			}
			q.byBounds[c][u] = fmt.Sprintf(`SELECT k::text, n FROM (
	SELECT k, row_number() OVER (ORDER BY k) AS i, count(*) OVER () AS n
	FROM (SELECT %[1]s AS k FROM %[2]s%[3]s ORDER BY %[1]s LIMIT $1) keys
) ends WHERE i = 1 OR i = n ORDER BY i`, key, table, conds)
		}
	}
	return &q
}

// nextBatch finds the batch after cursor (exclusive) up to upper (inclusive);
// ok is false when the range holds no more keys.
func (q *keysetQueries) nextBatch(ctx context.Context, tx pgx.Tx, batchSize int, cursor, upper *string) (first, last string, rows int64, ok bool, err error) {
	c, u := 0, 0
	args := []any{batchSize}
	if cursor != nil {
		c, args = 1, append(args, *cursor)
	}
	if upper != nil {
		u, args = 1, append(args, *upper)
	}
	result, err := tx.Query(ctx, q.byBounds[c][u], args...)
	if err != nil {
		return "", "", 0, false, err
	}
	type batchEnd struct {
		key  string
		keys int64
	}
	ends, err := pgx.CollectRows(result, func(r pgx.CollectableRow) (batchEnd, error) {
		var e batchEnd
		err := r.Scan(&e.key, &e.keys)
		return e, err
	})
	if err != nil || len(ends) == 0 {
		return "", "", 0, false, err
	}
	return ends[0].key, ends[len(ends)-1].key, ends[0].keys, true, nil
}
