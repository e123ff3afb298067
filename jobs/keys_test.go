package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// Key types: each test walks a table whose key is of another type or shape,
// with a statement that increments a counter, and checks that every row was
// processed exactly once and counted exactly once.

// ktPartition is one row of backfill_partitions.
type ktPartition struct {
	Partition   int
	Lower       *string
	Upper       *string
	State       string
	RowsDone    int64
	BatchesDone int64
}

// ktPartitions returns the partitions of version's latest run.
func ktPartitions(t *testing.T, b *testBundle, version int64) []ktPartition {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `
SELECT bp.partition, bp.lower_key, bp.upper_key, bp.state, bp.rows_done, bp.batches_done
FROM backfill_partitions bp
WHERE bp.run_id = (SELECT id FROM backfill_runs WHERE version = $1 ORDER BY run_number DESC LIMIT 1)
ORDER BY bp.partition`, version)
	require.NoError(t, err)
	parts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ktPartition])
	require.NoError(t, err)
	return parts
}

// ktComplete enqueues the directory's one automatic backfill with Pending,
// works it with an in-process worker and waits until it completed.
func ktComplete(t *testing.T, b *testBundle, version int64) batches.RunStatus {
	t.Helper()
	enq := b.load(t)
	res, err := enq.Pending(context.Background())
	require.NoError(t, err)
	require.Len(t, res.Enqueued, 1)
	require.Equal(t, version, res.Enqueued[0].Version)
	b.startWorker(t, WorkerConfig{Concurrency: 4})
	return b.waitState(t, version, batches.StateCompleted, 60*time.Second)
}

// ktCheckOnce asserts that every row of table has touched = 1, that the run
// counted each of them once, and that no partition cut an empty or a short
// batch before its last one.
func ktCheckOnce(t *testing.T, b *testBundle, table string, version int64, st batches.RunStatus, rows int64, batchSize int64) []ktPartition {
	t.Helper()
	require.Equal(t, rows, queryInt(t, b.pool, `SELECT count(*) FROM `+table), "test table size")
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM `+table+` WHERE touched <> 1`), "rows not processed exactly once")
	require.Equal(t, rows, st.RowsDone, "rows_done")
	require.Equal(t, rows, st.RowsAffected, "rows_affected")
	require.Zero(t, st.BatchesFailed)
	require.Nil(t, st.LastError)
	require.NotNil(t, st.FinishedAt)
	// The run finished when its last batch's work was done, not when that
	// batch's transaction (and its checkpoint's updated_at) began: its
	// speed counts every batch.
	require.Equal(t, int64(1), queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs r WHERE r.version = $1
AND r.finished_at > (SELECT max(p.updated_at) FROM backfill_partitions p WHERE p.run_id = r.id)`, version), "finished_at after the last checkpoint's transaction began")

	parts := ktPartitions(t, b, version)
	require.Len(t, parts, int(st.Partitions))
	var sumRows, sumBatches int64
	for _, p := range parts {
		require.Equal(t, "done", p.State, "partition %d", p.Partition)
		// Every batch but a partition's last is full, and no batch is empty.
		require.Equal(t, (p.RowsDone+batchSize-1)/batchSize, p.BatchesDone,
			"partition %d: %d rows in %d batches of %d", p.Partition, p.RowsDone, p.BatchesDone, batchSize)
		sumRows += p.RowsDone
		sumBatches += p.BatchesDone
	}
	require.Equal(t, rows, sumRows)
	require.Equal(t, st.BatchesDone, sumBatches)
	return parts
}

func TestKeys_SparseBigint(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// 10,000 distinct random keys spread over 1..1,000,000,000.
	testdb.Exec(t, b.pool, `
CREATE TABLE accounts (id bigint PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO accounts (id)
SELECT k FROM (SELECT DISTINCT 1 + floor(random() * 999999999)::bigint AS k FROM generate_series(1, 12000)) s
LIMIT 10000;
ANALYZE accounts;`)
	require.Equal(t, int64(10000), queryInt(t, b.pool, `SELECT count(*) FROM accounts`))
	require.Less(t, queryInt(t, b.pool, `SELECT min(id) FROM accounts`), int64(10000000))
	require.Greater(t, queryInt(t, b.pool, `SELECT max(id) FROM accounts`), int64(990000000))

	b.writeFile(t, "10_touch_accounts.sql", `-- table: accounts
-- key: id
-- batch: 1000
-- partitions: 4
UPDATE accounts SET touched = touched + 1 WHERE id BETWEEN @first AND @last;
`)
	st := ktComplete(t, b, 10)
	ktCheckOnce(t, b, "accounts", 10, st, 10000, 1000)

	require.Equal(t, int64(4), st.Partitions)
	// At most one partial batch per partition ...
	require.LessOrEqual(t, st.BatchesDone, int64(10000/1000+4))
	// ... and no empty ones.
	require.GreaterOrEqual(t, st.BatchesDone*1000, st.RowsDone)
}

func TestKeys_Integer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// int4 keys from -5000 to 4999, with gaps: negative bounds must split too.
	testdb.Exec(t, b.pool, `
CREATE TABLE items (id integer PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO items (id) SELECT g * 3 FROM generate_series(-5000, 4999) g;
ANALYZE items;`)
	b.writeFile(t, "20_touch_items.sql", `-- table: items
-- key: id
-- batch: 700
-- partitions: 4
UPDATE items SET touched = touched + 1 WHERE id BETWEEN @first AND @last;
`)
	st := ktComplete(t, b, 20)
	parts := ktCheckOnce(t, b, "items", 20, st, 10000, 700)

	require.Equal(t, int64(4), st.Partitions)
	for _, p := range parts {
		require.Positive(t, p.RowsDone, "partition %d got no rows", p.Partition)
	}
	require.Equal(t, "integer", ktKeyType(t, b, 20))
}

func TestKeys_UUID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE sessions (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), touched int NOT NULL DEFAULT 0);
INSERT INTO sessions (touched) SELECT 0 FROM generate_series(1, 5000);
ANALYZE sessions;`)
	b.writeFile(t, "30_touch_sessions.sql", `-- table: sessions
-- key: id
-- batch: 500
-- partitions: 4
UPDATE sessions SET touched = touched + 1 WHERE id BETWEEN @first AND @last;
`)
	st := ktComplete(t, b, 30)
	parts := ktCheckOnce(t, b, "sessions", 30, st, 5000, 500)

	require.Greater(t, st.Partitions, int64(1), "a uuid key space must be split")
	require.Equal(t, int64(4), st.Partitions)
	for _, p := range parts {
		// Random UUIDs spread over the whole space: every quarter has keys.
		require.Positive(t, p.RowsDone, "partition %d got no rows", p.Partition)
	}
	require.Equal(t, "uuid", ktKeyType(t, b, 30))
}

func TestKeys_Text(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE users (handle text PRIMARY KEY, touched int NOT NULL DEFAULT 0);
INSERT INTO users (handle) SELECT 'user-' || g FROM generate_series(1, 10000) g;
ANALYZE users;`)
	b.writeFile(t, "40_touch_users.sql", `-- table: users
-- key: handle
-- batch: 1000
-- partitions: 4
UPDATE users SET touched = touched + 1 WHERE handle BETWEEN @first AND @last;
`)
	st := ktComplete(t, b, 40)
	parts := ktCheckOnce(t, b, "users", 40, st, 10000, 1000)

	require.Greater(t, st.Partitions, int64(1), "an analysed text key must be split by its histogram")
	for i, p := range parts {
		require.Positive(t, p.RowsDone, "partition %d got no rows", p.Partition)
		// Each bound is a key of the table (it comes from the histogram).
		if p.Upper != nil {
			require.Equal(t, int64(1), queryInt(t, b.pool, `SELECT count(*) FROM users WHERE handle = $1`, *p.Upper))
		}
		if i > 0 {
			require.Equal(t, parts[i-1].Upper, p.Lower)
		}
	}
	require.Equal(t, "text", ktKeyType(t, b, 40))
}

func TestKeys_WhereFilter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE invoices (id bigint PRIMARY KEY, kind text NOT NULL, touched int NOT NULL DEFAULT 0);
INSERT INTO invoices (id, kind) SELECT g, CASE g % 3 WHEN 0 THEN 'b' ELSE 'a' END FROM generate_series(1, 10000) g;
ANALYZE invoices;`)
	matching := queryInt(t, b.pool, `SELECT count(*) FROM invoices WHERE kind = 'b'`)
	require.Equal(t, int64(3333), matching)

	// The statement repeats the condition: "where" only decides which keys
	// batches are cut from.
	b.writeFile(t, "50_touch_b_invoices.sql", `-- table: invoices
-- key: id
-- where: kind = 'b'
-- batch: 250
-- partitions: 4
UPDATE invoices SET touched = touched + 1 WHERE id BETWEEN @first AND @last AND kind = 'b';
`)
	st := ktComplete(t, b, 50)

	require.Equal(t, matching, st.RowsDone, "rows_done counts only rows matching where")
	require.Equal(t, matching, st.RowsAffected)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM invoices WHERE kind = 'b' AND touched <> 1`))
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM invoices WHERE kind <> 'b' AND touched <> 0`))

	// Batches hold matching rows only: 250 of them, so with 3,333 matching
	// rows in 4 partitions there are at most 14 + 4 batches, each partition's
	// full but its last.
	var batchesDone int64
	for _, p := range ktPartitions(t, b, 50) {
		require.Equal(t, (p.RowsDone+249)/250, p.BatchesDone, "partition %d", p.Partition)
		batchesDone += p.BatchesDone
	}
	require.Equal(t, st.BatchesDone, batchesDone)
	require.LessOrEqual(t, st.BatchesDone, (matching+249)/250+st.Partitions)
}

func TestKeys_EmptyTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE nothing (id bigint PRIMARY KEY, touched int NOT NULL DEFAULT 0);`)
	b.writeFile(t, "60_touch_nothing.sql", `-- table: nothing
-- key: id
-- batch: 100
-- partitions: 4
UPDATE nothing SET touched = touched + 1 WHERE id BETWEEN @first AND @last;
`)
	st := ktComplete(t, b, 60)
	require.Zero(t, st.RowsDone)
	require.Zero(t, st.RowsAffected)
	require.Zero(t, st.BatchesDone)
	require.Zero(t, st.BatchesFailed)
	require.Equal(t, int64(1), st.Partitions, "an empty key space is one partition")
	require.NotNil(t, st.FinishedAt)
}

func TestKeys_KeyWithoutIndex(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE ledger (account_ref bigint NOT NULL, touched int NOT NULL DEFAULT 0);
INSERT INTO ledger (account_ref) SELECT g FROM generate_series(1, 100) g;`)
	b.writeFile(t, "70_touch_ledger.sql", `-- table: ledger
-- key: account_ref
UPDATE ledger SET touched = touched + 1 WHERE account_ref BETWEEN @first AND @last;
`)
	enq := b.load(t)
	res, err := enq.Pending(context.Background())
	require.Error(t, err)
	require.Nil(t, res)
	require.ErrorIs(t, err, batches.ErrNoIndex)
	require.ErrorContains(t, err, "account_ref")
	require.ErrorContains(t, err, "ledger")

	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs`), "nothing may be recorded")
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_partitions`))
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM river_job`), "no job may be queued")

	// Asking again fails the same way rather than finding a half-made run.
	_, err = enq.Pending(context.Background())
	require.ErrorIs(t, err, batches.ErrNoIndex)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs`))
}

// ktKeyType returns the key type recorded with version's latest run.
func ktKeyType(t *testing.T, b *testBundle, version int64) string {
	t.Helper()
	var kt string
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT key_type FROM backfill_runs WHERE version = $1 ORDER BY run_number DESC LIMIT 1`, version).Scan(&kt))
	return kt
}
