package batches

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier is what planning and status need of a connection, pool or transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// KeyRange is one partition's share of the key space: keys greater than Lower
// (nil: from the start) up to and including Upper (nil: to the end).
type KeyRange struct {
	Lower, Upper *string
}

// Plan is how a run will walk a table.
type Plan struct {
	KeyType       string
	RowsEstimated int64
	Ranges        []KeyRange
}

// Errors of PlanRun about the key column.
var (
	// ErrNoIndex: the key column has no index to walk.
	ErrNoIndex = errors.New("batches: key column has no index")
	// ErrKeyNotUnique: batches are cut on distinct key values, so a key with
	// duplicates would give batches of any size and wrong counts.
	ErrKeyNotUnique = errors.New("batches: key column is not unique")
	// ErrNullKeys: rows whose key is NULL can never be in a batch.
	ErrNullKeys = errors.New("batches: key column is NULL in some rows")
)

// PlanRun splits a table's key space into partitions without scanning it: it
// reads the key's type, the planner's row estimate, and the smallest and
// largest key through the key's index. It costs a few index probes whatever
// the table's size; in a transaction, it also counts the rows of a small
// table exactly (countRows).
func PlanRun(ctx context.Context, q Querier, o Options) (*Plan, error) {
	table := quoteQualified(o.Table)
	var (
		keyType   string
		estimate  float64
		hasIndex  bool
		unique    bool
		notNull   bool
		schema    string
		tableName string
	)
	// unique: a valid unique index on the key alone, without a predicate
	// (a primary key is one).
	err := q.QueryRow(ctx, `
SELECT format_type(a.atttypid, a.atttypmod), c.reltuples::float8, n.nspname, c.relname, a.attnotnull,
	EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisvalid AND i.indkey[0] = a.attnum),
	EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisvalid AND i.indisunique
		AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped
WHERE c.oid = to_regclass($1)`, table, o.Key).Scan(&keyType, &estimate, &schema, &tableName, &notNull, &hasIndex, &unique)
	if errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
			return nil, fmt.Errorf("batches: planning %s: %w", o.Table, err)
		}
		if !exists {
			return nil, fmt.Errorf("batches: table %s does not exist", table)
		}
		return nil, fmt.Errorf("batches: table %s has no column %s", table, pgx.Identifier{o.Key}.Sanitize())
	}
	if err != nil {
		return nil, fmt.Errorf("batches: planning %s: %w", o.Table, err)
	}
	key := pgx.Identifier{o.Key}.Sanitize()
	if !hasIndex {
		return nil, fmt.Errorf("%w: %s.%s needs an index whose first column it is, or every batch would scan the table", ErrNoIndex, table, key)
	}
	if !unique {
		return nil, fmt.Errorf("%w: %s.%s needs a primary key or a unique index on it alone, because batches are cut on distinct key values", ErrKeyNotUnique, table, key)
	}
	if !notNull {
		if err := checkNoNullKeys(ctx, q, o); err != nil {
			return nil, err
		}
	}
	plan := &Plan{KeyType: keyType, RowsEstimated: max(int64(estimate), 0)}
	// A table never analysed has no row count (-1); the planner's own guess
	// from its size on disk is far better than none.
	if o.Where != "" || estimate < 0 {
		// The planner's estimate of the matching rows: honest progress for
		// filtered runs, and the condition is checked before anything runs.
		var explained []struct {
			Plan struct {
				Rows float64 `json:"Plan Rows"`
			}
		}
		if err := q.QueryRow(ctx, fmt.Sprintf("EXPLAIN (FORMAT JSON) SELECT 1 FROM %s t WHERE (%s\n)", table, cmp.Or(o.Where, "true"))).Scan(&explained); err != nil {
			return nil, fmt.Errorf("batches: the where condition of %s does not work: %w", o.Table, withSQLState(err))
		}
		if len(explained) == 1 {
			plan.RowsEstimated = int64(explained[0].Plan.Rows)
		}
	}

	var lo, hi *string
	// t.key, not key: ORDER BY a bare name would sort by the text output
	// column. NULLs sort last, so the largest key must exclude them.
	err = q.QueryRow(ctx, fmt.Sprintf(`SELECT (SELECT t.%[1]s::text FROM %[2]s t WHERE t.%[1]s IS NOT NULL ORDER BY t.%[1]s LIMIT 1), (SELECT t.%[1]s::text FROM %[2]s t WHERE t.%[1]s IS NOT NULL ORDER BY t.%[1]s DESC LIMIT 1)`, key, table)).Scan(&lo, &hi)
	if err != nil {
		return nil, fmt.Errorf("batches: reading the key range of %s: %w", table, err)
	}
	if lo == nil {
		// No keys at all: the planner's guess for a table never vacuumed
		// assumes ten pages, but there is nothing to do.
		plan.RowsEstimated = 0
	} else if tx, ok := q.(pgx.Tx); ok && estimate <= exactCountRows {
		// In a transaction (enqueuing, a dry run), a small table's rows
		// are counted exactly.
		if err := countRows(ctx, tx, o, plan); err != nil {
			return nil, fmt.Errorf("batches: counting the rows of %s: %w", table, err)
		}
		estimate = float64(plan.RowsEstimated)
	}
	n := o.Partitions
	if estimate >= 0 { // -1 means never analysed: trust the option
		n = min(n, max(1, int((plan.RowsEstimated+int64(o.BatchSize)-1)/int64(o.BatchSize))))
	}
	var bounds []string
	if lo != nil && hi != nil && n > 1 {
		switch keyType {
		case "smallint", "integer", "bigint":
			bounds = splitIntegers(*lo, *hi, n)
		case "uuid":
			bounds = splitUUIDs(*lo, *hi, n)
		default:
			bounds, err = histogramBounds(ctx, q, schema, tableName, o.Key, n)
			if err != nil {
				return nil, err
			}
		}
	}
	var lower *string
	for _, b := range bounds {
		upper := b
		plan.Ranges = append(plan.Ranges, KeyRange{Lower: lower, Upper: &upper})
		lower = &upper
	}
	plan.Ranges = append(plan.Ranges, KeyRange{Lower: lower})
	return plan, nil
}

// checkNoNullKeys refuses a run over rows whose key is NULL: no batch can
// hold them (the statement compares the key with @first and @last), so the
// run would end without visiting them. A where that leaves them out is fine.
// One probe of the key's index.
func checkNoNullKeys(ctx context.Context, q Querier, o Options) error {
	n, err := nullKeyRows(ctx, q, o, 1)
	if err != nil {
		return err
	}
	if n > 0 {
		key := pgx.Identifier{o.Key}.Sanitize()
		return fmt.Errorf("%w: %s.%s is NULL in rows the backfill covers, and no batch can hold them; give them keys, make the column NOT NULL, or leave them out with \"where: %s IS NOT NULL\"",
			ErrNullKeys, quoteQualified(o.Table), key, key)
	}
	return nil
}

// nullKeyRows counts up to limit rows that match o.Where and have a NULL key.
func nullKeyRows(ctx context.Context, q Querier, o Options, limit int) (int64, error) {
	cond := "t." + pgx.Identifier{o.Key}.Sanitize() + " IS NULL"
	if o.Where != "" {
		cond += " AND (" + o.Where + "\n)"
	}
	var n int64
	err := q.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s t WHERE %s LIMIT %d) x`, quoteQualified(o.Table), cond, limit)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("batches: looking for NULL keys in %s: %w", o.Table, err)
	}
	return n, nil
}

// splitIntegers returns n-1 ascending inner bounds between lo and hi.
func splitIntegers(lo, hi string, n int) []string {
	a, ok1 := new(big.Int).SetString(lo, 10)
	b, ok2 := new(big.Int).SetString(hi, 10)
	if !ok1 || !ok2 {
		return nil
	}
	return splitBig(a, b, n, func(x *big.Int) string { return x.String() })
}

// splitUUIDs treats UUIDs as 128-bit numbers; random (v4) and time-ordered
// (v7) UUIDs both spread evenly enough between the smallest and largest.
func splitUUIDs(lo, hi string, n int) []string {
	a, ok1 := new(big.Int).SetString(strings.ReplaceAll(lo, "-", ""), 16)
	b, ok2 := new(big.Int).SetString(strings.ReplaceAll(hi, "-", ""), 16)
	if !ok1 || !ok2 {
		return nil
	}
	return splitBig(a, b, n, func(x *big.Int) string {
		h := fmt.Sprintf("%032x", x)
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	})
}

func splitBig(lo, hi *big.Int, n int, format func(*big.Int) string) []string {
	width := new(big.Int).Sub(hi, lo)
	var out []string
	last := ""
	for i := 1; i < n; i++ {
		x := new(big.Int).Mul(width, big.NewInt(int64(i)))
		x.Div(x, big.NewInt(int64(n)))
		x.Add(x, lo)
		if s := format(x); s != last { // narrow ranges give fewer partitions
			out = append(out, s)
			last = s
		}
	}
	return out
}

// histogramBounds picks n-1 bounds from the planner's statistics of the key
// column, for key types that are not numbers (text and others). Without
// statistics the run has one partition.
func histogramBounds(ctx context.Context, q Querier, schema, table, column string, n int) ([]string, error) {
	var hist []string
	err := q.QueryRow(ctx, `SELECT histogram_bounds::text::text[] FROM pg_stats WHERE schemaname = $1 AND tablename = $2 AND attname = $3`,
		schema, table, column).Scan(&hist)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("batches: reading statistics of %s.%s: %w", table, column, err)
	}
	if len(hist) < 2 {
		return nil, nil
	}
	var out []string
	for i := 1; i < n; i++ {
		b := hist[i*(len(hist)-1)/n]
		if len(out) == 0 || out[len(out)-1] != b {
			out = append(out, b)
		}
	}
	return out, nil
}

// quoteQualified quotes "schema.table" or "table" for use in SQL.
func quoteQualified(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

// Counting a run's rows exactly: the planner's estimate is often far off
// just when a run starts, because the previous run changed the very rows a
// condition selects (a revert's down_where matched 1 row by the statistics
// of a table whose rows all matched; a run again counted 249,089 rows of a
// 100,000-row table full of dead versions). Tables the statistics put at
// most at exactCountRows (or that were never analysed) are counted, for at
// most exactCountBound; a count that takes longer leaves the estimate.
// Larger tables are planned from the index and the statistics alone, so
// that enqueuing never scans a big table.
const (
	exactCountRows  = 1_000_000
	exactCountBound = time.Second
)

// countRows replaces plan's estimate by the exact count of o's rows (those
// o.Where selects) when that is quick, in a savepoint of tx that a count
// cut short by its bound rolls back.
func countRows(ctx context.Context, tx pgx.Tx, o Options, plan *Plan) error {
	if _, err := tx.Exec(ctx, `SAVEPOINT backfill_count`); err != nil {
		return err
	}
	var (
		n    int64
		prev string
	)
	err := tx.QueryRow(ctx, `SELECT current_setting('statement_timeout'), set_config('statement_timeout', $1, true)`,
		strconv.FormatInt(exactCountBound.Milliseconds(), 10)).Scan(&prev, nil)
	if err == nil {
		err = tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s t WHERE (%s\n)", quoteQualified(o.Table), cmp.Or(o.Where, "true"))).Scan(&n)
	}
	if err != nil {
		// Too slow: the estimate stays, and the savepoint undoes the bound.
		_, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT backfill_count`)
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', $1, true)`, prev); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `RELEASE SAVEPOINT backfill_count`); err != nil {
		return err
	}
	plan.RowsEstimated = n
	return nil
}
