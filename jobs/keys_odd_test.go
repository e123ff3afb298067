package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// nullKeyTables creates a table per key type whose key column is unique but
// nullable, with 200 keyed rows and 5 rows without a key.
var nullKeyTables = map[string]string{
	"bigint": `CREATE TABLE t (k bigint UNIQUE, n int NOT NULL DEFAULT 0);
INSERT INTO t (k) SELECT g FROM generate_series(1, 200) g;`,
	"uuid": `CREATE TABLE t (k uuid UNIQUE, n int NOT NULL DEFAULT 0);
INSERT INTO t (k) SELECT gen_random_uuid() FROM generate_series(1, 200) g;`,
	"text": `CREATE TABLE t (k text UNIQUE, n int NOT NULL DEFAULT 0);
INSERT INTO t (k) SELECT 'key-' || lpad(g::text, 4, '0') FROM generate_series(1, 200) g;`,
}

const nullKeyFile = "-- table: t\n-- key: k\n-- batch: 25\n-- partitions: %d\n%sUPDATE t SET n = n + 1 WHERE k BETWEEN @first AND @last;\n"

// A key that is NULL in some rows cannot be cut into batches (k BETWEEN
// @first AND @last never matches them): enqueuing such a backfill is refused
// with an error that names the file, for every key type, with one partition
// or many, and nothing is recorded.
func TestKeys_NullKeysAreRefusedAtEnqueue(t *testing.T) {
	t.Parallel()
	for keyType, ddl := range nullKeyTables {
		for _, parts := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/%d", keyType, parts), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				testdb.Exec(t, b.pool, ddl+"\nINSERT INTO t (k) SELECT NULL FROM generate_series(1, 5); ANALYZE t;")
				b.writeFile(t, "5_fill.sql", fmt.Sprintf(nullKeyFile, parts, ""))
				_, err := b.load(t).Pending(context.Background())
				require.ErrorIs(t, err, batches.ErrNullKeys)
				require.ErrorContains(t, err, "5_fill.sql")
				require.ErrorContains(t, err, `"k"`)
				require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs`), "nothing may be recorded")
				require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM river_job`))
			})
		}
	}
}

// A where that leaves the NULL keys out makes the run cover only keyed
// rows: it completes with each of them done once and the others untouched.
func TestKeys_NullKeysLeftOutByWhere(t *testing.T) {
	t.Parallel()
	for keyType, ddl := range nullKeyTables {
		t.Run(keyType, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			testdb.Exec(t, b.pool, ddl+"\nINSERT INTO t (k) SELECT NULL FROM generate_series(1, 5); ANALYZE t;")
			b.writeFile(t, "5_fill.sql", fmt.Sprintf(nullKeyFile, 4, "-- where: k IS NOT NULL\n"))
			_, err := b.load(t).Pending(context.Background())
			require.NoError(t, err)
			b.startWorker(t, WorkerConfig{Concurrency: 4})
			st := b.waitState(t, 5, batches.StateCompleted, 30*time.Second)
			require.Equal(t, int64(200), st.RowsDone)
			require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM t WHERE k IS NOT NULL AND n <> 1`))
			require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM t WHERE k IS NULL AND n <> 0`))
		})
	}
}

// Rows given a NULL key after the run was enqueued are never visited: the
// run must not say completed. Every keyed row is still done exactly once
// (the NULLs sort last and must not hide the partition's last keys).
func TestKeys_NullKeysAppearingMidRunFailTheRun(t *testing.T) {
	t.Parallel()
	for keyType, ddl := range nullKeyTables {
		for _, parts := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/%d", keyType, parts), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				testdb.Exec(t, b.pool, ddl+"\nANALYZE t;")
				b.writeFile(t, "5_fill.sql", fmt.Sprintf(nullKeyFile, parts, ""))
				_, err := b.load(t).Pending(context.Background())
				require.NoError(t, err)
				testdb.Exec(t, b.pool, `INSERT INTO t (k) SELECT NULL FROM generate_series(1, 5)`)
				b.startWorker(t, WorkerConfig{Concurrency: 4})
				st := b.waitState(t, 5, batches.StateFailed, 30*time.Second)
				require.NotNil(t, st.LastError)
				require.Contains(t, *st.LastError, "5 rows")
				require.Contains(t, *st.LastError, "NULL")
				require.Equal(t, int64(200), st.RowsDone)
				require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM t WHERE k IS NOT NULL AND n <> 1`))
			})
		}
	}
}

// Batches are cut on distinct key values: a key with duplicates would make
// a batch of 10 hold any number of rows, and its counts would be wrong. A key
// without a unique index on it alone is refused, naming the file.
func TestKeys_KeyMustBeUnique(t *testing.T) {
	t.Parallel()
	for name, ddl := range map[string]string{
		"plain index":          `CREATE TABLE t (k bigint NOT NULL, n int NOT NULL DEFAULT 0); CREATE INDEX ON t (k);`,
		"unique on two":        `CREATE TABLE t (k bigint NOT NULL, j serial, n int NOT NULL DEFAULT 0); CREATE UNIQUE INDEX ON t (k, j);`,
		"partial unique":       `CREATE TABLE t (k bigint NOT NULL, n int NOT NULL DEFAULT 0); CREATE INDEX ON t (k); CREATE UNIQUE INDEX ON t (k) WHERE n > 0;`,
		"unique on expression": `CREATE TABLE t (k bigint NOT NULL, j serial, n int NOT NULL DEFAULT 0); CREATE INDEX ON t (k); CREATE UNIQUE INDEX ON t ((k * 100000 + j));`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			testdb.Exec(t, b.pool, ddl+"\nINSERT INTO t (k) SELECT g / 50 FROM generate_series(1, 1000) g; ANALYZE t;")
			b.writeFile(t, "5_fill.sql", fmt.Sprintf(nullKeyFile, 4, ""))
			_, err := b.load(t).Pending(context.Background())
			require.ErrorIs(t, err, batches.ErrKeyNotUnique)
			require.ErrorContains(t, err, "5_fill.sql")
			require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs`), "nothing may be recorded")
		})
	}
}
