package batches_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// planCovers asserts that ranges tile the whole key space: the first
// starts at the beginning, the last runs to the end, and each starts where
// the one before it ends. It returns the inner bounds.
func planCovers(t *testing.T, ranges []batches.KeyRange) []string {
	t.Helper()
	require.NotEmpty(t, ranges)
	require.Nil(t, ranges[0].Lower, "the first range starts at the beginning of the key space")
	require.Nil(t, ranges[len(ranges)-1].Upper, "the last range runs to the end of the key space")
	var bounds []string
	for i := 1; i < len(ranges); i++ {
		require.NotNil(t, ranges[i-1].Upper, "range %d has no upper bound but is not the last", i-1)
		require.NotNil(t, ranges[i].Lower, "range %d has no lower bound but is not the first", i)
		require.Equal(t, *ranges[i-1].Upper, *ranges[i].Lower, "range %d must start where range %d ends", i, i-1)
		bounds = append(bounds, *ranges[i].Lower)
	}
	return bounds
}

// planAscending asserts that bounds, compared in SQL as typ, strictly
// increase.
func planAscending(t *testing.T, pool *pgxpool.Pool, typ string, bounds []string) {
	t.Helper()
	for i := 1; i < len(bounds); i++ {
		var less bool
		require.NoError(t, pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT $1::%s < $2::%s`, typ, typ), bounds[i-1], bounds[i]).Scan(&less))
		require.True(t, less, "bounds %q and %q are not ascending", bounds[i-1], bounds[i])
	}
}

// reltuples is the planner's row estimate of a table.
func planReltuples(t *testing.T, q batches.Querier, table string) int64 {
	t.Helper()
	var n float64
	require.NoError(t, q.QueryRow(context.Background(), `SELECT reltuples::float8 FROM pg_class WHERE oid = to_regclass($1)`, table).Scan(&n))
	return int64(n)
}

// planScanStats are a table's access counters of the current transaction.
type planScanStats struct{ seqScan, seqTupRead, idxScan, idxTupFetch int64 }

func planScans(t *testing.T, tx pgx.Tx, table string) planScanStats {
	t.Helper()
	var s planScanStats
	require.NoError(t, tx.QueryRow(context.Background(), `
SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0)
FROM pg_stat_xact_user_tables WHERE relid = to_regclass($1)`, table).Scan(&s.seqScan, &s.seqTupRead, &s.idxScan, &s.idxTupFetch))
	return s
}

func TestPlanRun_LargeTable(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, pool, `
CREATE TABLE big (id bigint NOT NULL, payload int);
INSERT INTO big (id) SELECT g FROM generate_series(1, 2000000) g;
ALTER TABLE big ADD PRIMARY KEY (id);
ANALYZE big;`)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	before := planScans(t, tx, "big")
	began := time.Now()
	plan, err := batches.PlanRun(ctx, tx, batches.Options{Table: "big", Key: "id", BatchSize: 1000, Partitions: 8})
	require.NoError(t, err)
	t.Logf("PlanRun on 2,000,000 rows took %s", time.Since(began)) // for the record; not asserted
	after := planScans(t, tx, "big")

	// Planning reads the table through its index only: no sequential scan,
	// and a handful of index probes however big the table is.
	require.Equal(t, before.seqScan, after.seqScan, "PlanRun scanned the table")
	require.Equal(t, before.seqTupRead, after.seqTupRead, "PlanRun scanned the table")
	require.Positive(t, after.idxScan-before.idxScan, "PlanRun should probe the key's index")
	require.LessOrEqual(t, after.idxTupFetch-before.idxTupFetch, int64(10), "PlanRun fetched too many rows")

	require.Equal(t, "bigint", plan.KeyType)
	estimate := planReltuples(t, tx, "big")
	require.Equal(t, estimate, plan.RowsEstimated, "RowsEstimated is the planner's estimate")
	require.InDelta(t, 2000000, plan.RowsEstimated, 2000000*0.05)

	require.Len(t, plan.Ranges, 8)
	bounds := planCovers(t, plan.Ranges)
	planAscending(t, pool, "bigint", bounds)
	// Evenly spread keys give even partitions.
	for i, r := range plan.Ranges {
		n := planCountRange(t, pool, `big`, `id`, "bigint", r)
		require.InDelta(t, 250000, n, 2, "range %d holds %d keys", i, n)
	}
}

// planCountRange counts a table's keys in a range (a full scan; tests only).
func planCountRange(t *testing.T, pool *pgxpool.Pool, table, key, typ string, r batches.KeyRange) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), fmt.Sprintf(
		`SELECT count(*) FROM %[1]s WHERE ($1::%[3]s IS NULL OR %[2]s > $1::%[3]s) AND ($2::%[3]s IS NULL OR %[2]s <= $2::%[3]s)`,
		table, key, typ), r.Lower, r.Upper).Scan(&n))
	return n
}

func TestPlanRun_FewRowsFewerPartitions(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	testdb.Exec(t, pool, `
CREATE TABLE small (id bigint PRIMARY KEY);
INSERT INTO small SELECT g FROM generate_series(1, 2500) g;
ANALYZE small;`)
	plan, err := batches.PlanRun(context.Background(), pool, batches.Options{Table: "small", Key: "id", BatchSize: 1000, Partitions: 8})
	require.NoError(t, err)
	require.Equal(t, int64(2500), plan.RowsEstimated)
	// No more partitions than batches: 2,500 rows are 3 batches of 1,000.
	require.Len(t, plan.Ranges, 3)
	planCovers(t, plan.Ranges)
}

func TestPlanRun_EmptyTable(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	testdb.Exec(t, pool, `CREATE TABLE empty (id bigint PRIMARY KEY)`)
	plan, err := batches.PlanRun(context.Background(), pool, batches.Options{Table: "empty", Key: "id", BatchSize: 1000, Partitions: 8})
	require.NoError(t, err)
	require.Zero(t, plan.RowsEstimated)
	require.Equal(t, []batches.KeyRange{{}}, plan.Ranges, "no keys: one range over the whole key space")
}

func TestPlanRun_MissingTableAndColumn(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	testdb.Exec(t, pool, `CREATE TABLE present (id bigint PRIMARY KEY, note text)`)

	_, err := batches.PlanRun(ctx, pool, batches.Options{Table: "absent_table", Key: "id", BatchSize: 10, Partitions: 2})
	require.ErrorContains(t, err, "absent_table")
	require.ErrorContains(t, err, "does not exist")

	_, err = batches.PlanRun(ctx, pool, batches.Options{Table: "nosuchschema.present", Key: "id", BatchSize: 10, Partitions: 2})
	require.ErrorContains(t, err, "nosuchschema")

	_, err = batches.PlanRun(ctx, pool, batches.Options{Table: "present", Key: "absent_column", BatchSize: 10, Partitions: 2})
	require.ErrorContains(t, err, "absent_column")
	require.ErrorContains(t, err, "present")

	// A column that exists but has no index is refused, naming it.
	_, err = batches.PlanRun(ctx, pool, batches.Options{Table: "present", Key: "note", BatchSize: 10, Partitions: 2})
	require.ErrorIs(t, err, batches.ErrNoIndex)
	require.ErrorContains(t, err, "note")
}

func TestPlanRun_SchemaQualified(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	// public.orders has other keys and another size: the plan must be shop's.
	testdb.Exec(t, pool, `
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id bigint PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO shop.orders (id) SELECT g FROM generate_series(1, 4000) g;
CREATE TABLE public.orders (id bigint PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO public.orders (id) SELECT 1000000 + g FROM generate_series(1, 9000) g;
CREATE TABLE shop.customers (email text PRIMARY KEY);
INSERT INTO shop.customers SELECT 'shop-' || g || '@example.com' FROM generate_series(1, 4000) g;
CREATE TABLE public.customers (email text PRIMARY KEY);
INSERT INTO public.customers SELECT 'public-' || g || '@example.com' FROM generate_series(1, 4000) g;
ANALYZE shop.orders; ANALYZE public.orders; ANALYZE shop.customers; ANALYZE public.customers;`)

	opts := batches.Options{Table: "shop.orders", Key: "id", BatchSize: 1000, Partitions: 4}
	plan, err := batches.PlanRun(ctx, pool, opts)
	require.NoError(t, err)
	require.Equal(t, int64(4000), plan.RowsEstimated)
	require.Len(t, plan.Ranges, 4)
	bounds := planCovers(t, plan.Ranges)
	planAscending(t, pool, "bigint", bounds)
	for _, b := range bounds {
		n, err := strconv.ParseInt(b, 10, 64)
		require.NoError(t, err)
		require.True(t, n >= 1 && n <= 4000, "bound %s is outside shop.orders' keys 1..4000", b)
	}
	// Batches walk shop.orders, all of it.
	walked := planWalkRun(t, pool, opts, `UPDATE shop.orders SET touched = touched + 1 WHERE id BETWEEN @first AND @last`)
	require.Equal(t, int64(4000), walked)
	require.Zero(t, planQueryInt(t, pool, `SELECT count(*) FROM shop.orders WHERE touched <> 1`))
	require.Zero(t, planQueryInt(t, pool, `SELECT count(*) FROM public.orders WHERE touched <> 0`))

	// Text keys are split by the statistics of shop.customers, not of
	// public.customers.
	plan, err = batches.PlanRun(ctx, pool, batches.Options{Table: "shop.customers", Key: "email", BatchSize: 500, Partitions: 4})
	require.NoError(t, err)
	require.Equal(t, "text", plan.KeyType)
	require.Len(t, plan.Ranges, 4)
	bounds = planCovers(t, plan.Ranges)
	planAscending(t, pool, "text", bounds)
	for _, b := range bounds {
		require.True(t, strings.HasPrefix(b, "shop-"), "bound %q is not a key of shop.customers", b)
		require.Equal(t, int64(1), planQueryInt(t, pool, `SELECT count(*) FROM shop.customers WHERE email = $1`, b))
	}
}

func TestPlanRun_ReservedWordTable(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	// A table named select whose key column is named order.
	testdb.Exec(t, pool, `
CREATE TABLE "select" ("order" bigint PRIMARY KEY, "from" int NOT NULL DEFAULT 0);
INSERT INTO "select" ("order") SELECT g FROM generate_series(1, 5000) g;
ANALYZE "select";`)

	opts := batches.Options{Table: "select", Key: "order", BatchSize: 1000, Partitions: 4}
	plan, err := batches.PlanRun(ctx, pool, opts)
	require.NoError(t, err)
	require.Equal(t, "bigint", plan.KeyType)
	require.Equal(t, int64(5000), plan.RowsEstimated)
	require.Len(t, plan.Ranges, 4)
	planAscending(t, pool, "bigint", planCovers(t, plan.Ranges))

	walked := planWalkRun(t, pool, opts, `UPDATE "select" SET "from" = "from" + 1 WHERE "order" BETWEEN @first AND @last`)
	require.Equal(t, int64(5000), walked)
	require.Zero(t, planQueryInt(t, pool, `SELECT count(*) FROM "select" WHERE "from" <> 1`))
}

func TestPlanRun_MixedCaseNames(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	// "OrderItems" with a text key "ItemKey" (split by its histogram), next
	// to an unrelated orderitems: names are used as written, quoted.
	testdb.Exec(t, pool, `
CREATE TABLE "OrderItems" ("ItemKey" text PRIMARY KEY, "Seen" int NOT NULL DEFAULT 0);
INSERT INTO "OrderItems" ("ItemKey") SELECT 'item ' || g || CASE g % 4 WHEN 0 THEN ', "quoted"' WHEN 1 THEN ' {braces}' WHEN 2 THEN E' back\\slash' ELSE '' END FROM generate_series(1, 6000) g;
CREATE TABLE orderitems (itemkey text PRIMARY KEY);
INSERT INTO orderitems SELECT 'other ' || g FROM generate_series(1, 10) g;
ANALYZE "OrderItems"; ANALYZE orderitems;`)

	opts := batches.Options{Table: "OrderItems", Key: "ItemKey", BatchSize: 1000, Partitions: 4}
	plan, err := batches.PlanRun(ctx, pool, opts)
	require.NoError(t, err)
	require.Equal(t, "text", plan.KeyType)
	require.Equal(t, int64(6000), plan.RowsEstimated)
	require.Len(t, plan.Ranges, 4, "an analysed text key is split by its histogram")
	bounds := planCovers(t, plan.Ranges)
	planAscending(t, pool, "text", bounds)
	for _, b := range bounds {
		// Keys with quotes, commas, braces and backslashes survive the
		// histogram's array text form.
		require.Equal(t, int64(1), planQueryInt(t, pool, `SELECT count(*) FROM "OrderItems" WHERE "ItemKey" = $1`, b), "bound %q is not a key", b)
	}

	walked := planWalkRun(t, pool, opts, `UPDATE "OrderItems" SET "Seen" = "Seen" + 1 WHERE "ItemKey" BETWEEN @first AND @last`)
	require.Equal(t, int64(6000), walked)
	require.Zero(t, planQueryInt(t, pool, `SELECT count(*) FROM "OrderItems" WHERE "Seen" <> 1`))
}

// planWalkRun records a run of a definition with statement and works every
// partition to its end in one transaction, through the same calls as the
// worker. It checks that the batches are contiguous and returns the rows done.
func planWalkRun(t *testing.T, pool *pgxpool.Pool, opts batches.Options, statement string) int64 {
	t.Helper()
	ctx := context.Background()
	opts = opts.WithDefaults()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck

	var (
		stepRows int64
		step     = func(ctx context.Context, tx pgx.Tx, b batches.Batch) (int64, error) {
			tag, err := tx.Exec(ctx, statement, pgx.NamedArgs{"first": b.First, "last": b.Last})
			stepRows += tag.RowsAffected()
			return tag.RowsAffected(), err
		}
		def = &batches.Definition{Version: 1, Name: "walk", Mode: batches.ModeManual, Options: opts, Source: "test", UpSQL: statement, Up: step, Checksum: "test"}
	)
	run, parts, err := batches.CreateRunTx(ctx, tx, batches.NewRunParams{Definition: def, Direction: batches.DirectionUp, RunNumber: 1, EnqueuedBy: "test"})
	require.NoError(t, err)
	var rows int64
	for _, p := range parts {
		jobID := int64(1000 + p)
		require.NoError(t, batches.AssignJobTx(ctx, tx, run.ID, p, 0, jobID))
		var (
			prevLast *string
			after    *batches.Position
		)
		for i := 0; ; i++ {
			require.Less(t, i, 1000000, "partition %d does not end", p)
			// As the worker does: each batch cut with the lock, from where
			// the last one left the partition; every third time from a wrong
			// place (the start), which must be noticed and cut again.
			if i%3 == 2 {
				after = &batches.Position{Upper: after.Upper}
			}
			res, err := batches.ProcessBatchTx(ctx, tx, batches.BatchParams{Run: run, Partition: p, JobID: jobID, Step: step, After: after})
			require.NoError(t, err)
			after = &res.Next
			if res.Batch.Rows > 0 {
				require.LessOrEqual(t, res.Batch.Rows, int64(opts.BatchSize))
				if prevLast != nil {
					var after bool
					require.NoError(t, tx.QueryRow(ctx, fmt.Sprintf(`SELECT $1::%[1]s > $2::%[1]s`, run.KeyType), res.Batch.First, *prevLast).Scan(&after))
					require.True(t, after, "batch %q..%q does not follow %q", res.Batch.First, res.Batch.Last, *prevLast)
				}
				last := res.Batch.Last
				prevLast = &last
			}
			rows += res.Batch.Rows
			if res.PartitionDone {
				break
			}
		}
	}
	require.Equal(t, rows, stepRows, "the statement changed a row outside its batch, or missed one")
	var state batches.State
	require.NoError(t, tx.QueryRow(ctx, `SELECT state FROM backfill_runs WHERE id = $1`, run.ID).Scan(&state))
	require.Equal(t, batches.StateCompleted, state)
	require.NoError(t, tx.Commit(ctx))
	return rows
}

func planQueryInt(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestPlanRun_BigintExtremes(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	// Keys at both ends of bigint: the split must not overflow.
	testdb.Exec(t, pool, `
CREATE TABLE extremes (id bigint PRIMARY KEY, seen int NOT NULL DEFAULT 0);
INSERT INTO extremes (id) VALUES (-9223372036854775808), (-1), (0), (1), (9223372036854775807);
ANALYZE extremes;`)
	opts := batches.Options{Table: "extremes", Key: "id", BatchSize: 1, Partitions: 4}
	plan, err := batches.PlanRun(context.Background(), pool, opts)
	require.NoError(t, err)
	require.Len(t, plan.Ranges, 4)
	bounds := planCovers(t, plan.Ranges)
	planAscending(t, pool, "bigint", bounds)
	for _, b := range bounds {
		_, err := strconv.ParseInt(b, 10, 64)
		require.NoError(t, err, "bound %s is not a bigint", b)
	}
	walked := planWalkRun(t, pool, opts, `UPDATE extremes SET seen = seen + 1 WHERE id BETWEEN @first AND @last`)
	require.Equal(t, int64(5), walked)
	require.Zero(t, planQueryInt(t, pool, `SELECT count(*) FROM extremes WHERE seen <> 1`))
}
