package main

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/testdb"
)

// dbState is what a dry run must leave alone: the version table, the queue,
// and the data.
type dbState struct {
	runs, partitions, jobs int64
	data                   string
}

func stateOf(t *testing.T, pool *pgxpool.Pool, table string) dbState {
	t.Helper()
	var s dbState
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT
	(SELECT count(*) FROM backfill_runs), (SELECT count(*) FROM backfill_partitions), (SELECT count(*) FROM river_job),
	(SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM `+table+` t)`).Scan(&s.runs, &s.partitions, &s.jobs, &s.data))
	return s
}

// field returns the value printed after label in a dry run's output.
func field(t *testing.T, out, label string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(label) + `\s{2,}(.*)$`).FindStringSubmatch(out)
	require.NotNil(t, m, "no %q in:\n%s", label, out)
	return m[1]
}

func setupOrders(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	url, pool := testdb.New(t)
	testdb.Exec(t, pool, `
CREATE TABLE orders (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO orders (id) SELECT g FROM generate_series(1, 10000) g;
ANALYZE orders;`)
	return url, pool
}

func TestDryRun_RunsTheFirstBatchAndChangesNothing(t *testing.T) {
	t.Parallel()
	url, pool := setupOrders(t)
	dir := t.TempDir()
	// The statement changes every third row of a batch: rows affected and
	// keys covered differ.
	writeBackfill(t, dir, "20260101000001_fill_orders.sql", `-- table: orders
-- key: id
-- batch: 1000
-- partitions: 4
UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last AND id % 3 = 0;
`)
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	before := stateOf(t, pool, "orders")

	out, _, err := runCLI(t, env, "run", "20260101000001", "--dry-run")
	require.NoError(t, err)
	t.Logf("dry run:\n%s", out)
	require.Contains(t, out, "dry run of 20260101000001_fill_orders")
	require.Contains(t, out, "nothing was recorded or changed")
	require.Equal(t, "0 (of partitions 0..3)", field(t, out, "partition"))
	require.Equal(t, "1", field(t, out, "first key"))
	require.Equal(t, "1000", field(t, out, "last key"))
	require.Equal(t, "1000", field(t, out, "keys covered"))
	require.Equal(t, "333", field(t, out, "rows affected"))
	d, err := time.ParseDuration(field(t, out, "duration"))
	require.NoError(t, err)
	require.Greater(t, d, time.Duration(0))
	require.Equal(t, "10000 rows in 10 batches of up to 1000 (4 of 4 partitions have keys)", field(t, out, "estimated"))
	require.Regexp(t, `^at one batch at a time: \S+; with 4 batches in parallel \(one per partition\): \S+ \(from this batch's duration; no rate is set\)$`, field(t, out, "ETA"))

	require.Equal(t, before, stateOf(t, pool, "orders"), "no run, no partition, no job, no change to the data")

	// The version can still be enqueued and runs as if no dry run had happened.
	out, _, err = runCLI(t, env, "pending")
	require.NoError(t, err)
	require.Contains(t, out, "enqueued 20260101000001_fill_orders run 1")
}

func TestDryRun_ETAAtTheConfiguredRate(t *testing.T) {
	t.Parallel()
	url, pool := setupOrders(t)
	dir := t.TempDir()
	writeBackfill(t, dir, "manual/20260101000002_slow.sql", `-- table: orders
-- key: id
-- batch: 3000
-- rate: 2000
-- partitions: 2
UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	before := stateOf(t, pool, "orders")
	out, _, err := runCLI(t, env, "run", "20260101000002", "--dry-run")
	require.NoError(t, err)
	t.Logf("dry run:\n%s", out)
	require.Equal(t, "3000", field(t, out, "rows affected"))
	require.Equal(t, "0 (of partitions 0..1)", field(t, out, "partition"))
	require.Equal(t, "1", field(t, out, "first key"))
	require.Equal(t, "3000", field(t, out, "last key"))
	// 10,000 rows in batches of 3,000 over two partitions of 5,000 keys
	// each: ceil(10000/3000) = 4.
	require.Equal(t, "10000 rows in 4 batches of up to 3000 (2 of 2 partitions have keys)", field(t, out, "estimated"))
	require.Equal(t, "5s at the configured rate of 2000 rows/s", field(t, out, "ETA"), "10,000 rows at 2,000 rows/s")
	require.Regexp(t, `(?m)^\s+\(from this batch's duration, at one batch at a time: \S+; with 2 batches in parallel \(one per partition\): \S+\)$`, out)
	require.Equal(t, before, stateOf(t, pool, "orders"))
}

// With a where condition, partitions without matching keys are skipped: the
// first batch comes from the first partition that has any, and the estimate
// counts only the partitions that have keys.
func TestDryRun_WhereSkipsEmptyPartitions(t *testing.T) {
	t.Parallel()
	url, pool := setupOrders(t)
	testdb.Exec(t, pool, `UPDATE orders SET n = 1 WHERE id <= 5000 OR id > 7500; ANALYZE orders;`)
	dir := t.TempDir()
	writeBackfill(t, dir, "20260101000003_rest.sql", `-- table: orders
-- key: id
-- batch: 100
-- partitions: 4
-- where: n = 0
UPDATE orders SET n = 1 WHERE id BETWEEN @first AND @last AND n = 0;
`)
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	before := stateOf(t, pool, "orders")
	out, _, err := runCLI(t, env, "run", "20260101000003", "--dry-run")
	require.NoError(t, err)
	t.Logf("dry run:\n%s", out)
	// Partitions split 1..10000 in four: only the third (5000..7500] has n = 0.
	require.Equal(t, "2 (of partitions 0..3)", field(t, out, "partition"))
	require.Equal(t, "5001", field(t, out, "first key"))
	require.Equal(t, "5100", field(t, out, "last key"))
	require.Equal(t, "100", field(t, out, "keys covered"))
	require.Equal(t, "100", field(t, out, "rows affected"))
	require.Regexp(t, `^\d+ rows matching where in \d+ batches of up to 100 \(1 of 4 partitions have keys\)$`, field(t, out, "estimated"))
	require.Regexp(t, `^at one batch at a time: \S+ \(from this batch's duration; no rate is set\)$`, field(t, out, "ETA"))
	require.Equal(t, before, stateOf(t, pool, "orders"))

	// Nothing matching: nothing runs.
	testdb.Exec(t, pool, `UPDATE orders SET n = 1`)
	out, _, err = runCLI(t, env, "run", "20260101000003", "--dry-run")
	require.NoError(t, err)
	require.Contains(t, out, "orders has no keys matching where, so a run would finish at once")
	require.NotContains(t, out, "rows affected")
}

// A dry run only plans: it works with --again and while the version has a
// run in progress, and adds no run or job to the ones there are.
func TestDryRun_AllowedWhileEnqueuedAndWithAgain(t *testing.T) {
	t.Parallel()
	url, pool := setupOrders(t)
	dir := t.TempDir()
	writeBackfill(t, dir, "20260101000004_fill.sql", `-- table: orders
-- key: id
-- batch: 500
UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	_, _, err := runCLI(t, env, "pending")
	require.NoError(t, err)
	before := stateOf(t, pool, "orders")
	require.Equal(t, int64(1), before.runs)
	require.Positive(t, before.jobs)

	// A real run is refused while the first is pending; a dry run is not.
	_, _, err = runCLI(t, env, "run", "20260101000004")
	require.Error(t, err)
	for _, args := range [][]string{
		{"run", "20260101000004", "--dry-run"},
		{"run", "--dry-run", "--again", "20260101000004"},
	} {
		out, _, err := runCLI(t, env, args...)
		require.NoError(t, err, "%v", args)
		require.Equal(t, "500", field(t, out, "rows affected"), "%v", args)
		require.Equal(t, before, stateOf(t, pool, "orders"), "%v", args)
	}
}

func TestDryRun_Refusals(t *testing.T) {
	t.Parallel()
	url, pool := setupOrders(t)
	testdb.Exec(t, pool, `CREATE TABLE feature_flags (id bigint PRIMARY KEY, name text NOT NULL, enabled bool NOT NULL);
INSERT INTO feature_flags VALUES (1, 'pagination', true);`)
	dir := t.TempDir()
	writeBackfill(t, dir, "20260101000005_typo.sql", `-- table: orders
-- key: id
UPDATE orders SET no_such_column = 1 WHERE id BETWEEN @first AND @last;
`)
	writeBackfill(t, dir, "20260101000006_fails.sql", `-- table: orders
-- key: id
UPDATE orders SET n = n / (id - id) WHERE id BETWEEN @first AND @last;
`)
	env := map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}
	before := stateOf(t, pool, "orders")
	for _, tc := range []struct {
		name    string
		version int64
		want    []string
	}{
		{"go backfill", 20260301120200, []string{"dry run works for SQL backfills only", "a Go backfill may have effects outside the database that a rollback cannot undo"}},
		{"statement does not prepare", 20260101000005, []string{"does not prepare", "42703", "no_such_column"}},
		{"batch fails", 20260101000006, []string{"batch 1..1000 of partition 0", "22012"}},
		{"unknown version", 20990101000000, []string{"unknown backfill version", "20990101000000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, env, "run", strconv.FormatInt(tc.version, 10), "--dry-run")
			require.Error(t, err)
			require.Equal(t, 1, cli.ExitCode(err), "%v", err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.Empty(t, out)
			require.Equal(t, before, stateOf(t, pool, "orders"))
		})
	}
}

func TestRoughly(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		1234 * time.Nanosecond:                "1.23µs",
		338560 * time.Microsecond:             "339ms",
		13540 * time.Microsecond:              "13.5ms",
		2712 * time.Millisecond:               "2.71s",
		5 * time.Second:                       "5s",
		83*time.Second + 400*time.Millisecond: "1m23s",
		2*time.Hour + 13*time.Minute + 9*time.Second: "2h13m0s",
		100 * 365 * 24 * time.Hour:                   "875000h0m0s", // three digits
		100*365*24*time.Hour + time.Hour:             "more than 100 years",
		time.Duration(1<<63 - 1):                     "more than 100 years",
	} {
		require.Equal(t, want, roughly(d), "%v", int64(d))
	}
}

// A table the planner believes huge, at the lowest rate: the ETA is
// reported as more than 100 years, not as a duration that wrapped around.
func TestDryRun_ETABeyondADuration(t *testing.T) {
	t.Parallel()
	url, pool := setupOrders(t)
	// The planner scales reltuples to the table's current size.
	testdb.Exec(t, pool, `UPDATE pg_class SET reltuples = 1e15 WHERE oid = 'orders'::regclass`)
	dir := t.TempDir()
	writeBackfill(t, dir, "manual/20260101000003_crawl.sql", `-- table: orders
-- key: id
-- batch: 1000000
-- rate: 1
UPDATE orders SET n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	out, _, err := runCLI(t, map[string]string{"DATABASE_URL": url, "BACKFILL_DIR": dir}, "run", "20260101000003", "--dry-run")
	require.NoError(t, err)
	t.Logf("dry run:\n%s", out)
	require.Equal(t, "more than 100 years at the configured rate of 1 rows/s", field(t, out, "ETA"))
	require.NotContains(t, out, "-")
}
