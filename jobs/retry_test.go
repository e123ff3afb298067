package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func TestRetry_FailedBatchResumesFromItsCheckpointOnceFixed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Rows 1..1000 in 4 partitions of 250; rows 610..612 divide by zero.
	testdb.Exec(t, b.pool, `
CREATE TABLE shares (id bigint PRIMARY KEY, total int NOT NULL, parts int NOT NULL, share int, n int NOT NULL DEFAULT 0);
INSERT INTO shares (id, total, parts) SELECT g, 100, CASE WHEN g BETWEEN 610 AND 612 THEN 0 ELSE 4 END FROM generate_series(1, 1000) g;
ANALYZE shares;`)
	b.writeFile(t, "3_split_shares.sql", `-- table: shares
-- key: id
-- batch: 50
-- partitions: 4
-- attempts: 2
UPDATE shares SET share = total / parts, n = n + 1 WHERE id BETWEEN @first AND @last;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 4})

	st := b.waitState(t, 3, batches.StateFailed, 60*time.Second)
	require.Equal(t, int64(1), st.BatchesFailed)
	require.NotNil(t, st.LastError)
	require.Contains(t, *st.LastError, "SQLSTATE 22012")
	require.Contains(t, *st.LastError, "division by zero")
	require.Contains(t, *st.LastError, "batch 601..650 of partition 2")
	// The other partitions went on meanwhile; the failed one stopped at its
	// checkpoint, before the failing batch.
	require.Equal(t, int64(850), st.RowsDone)
	require.Equal(t, int64(850), queryInt(t, b.pool, `SELECT count(*) FROM shares WHERE n = 1`))
	require.Equal(t, "600", queryString(t, b, `SELECT cursor_key FROM backfill_partitions WHERE state = 'failed'`))
	require.Equal(t, "601", queryString(t, b, `SELECT failed_first FROM backfill_partitions WHERE state = 'failed'`))

	// Retry before the fix: the batch fails again and the run is failed again.
	run, n, err := b.enq.Retry(context.Background(), 3)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, 1, run.RunNumber)
	b.waitState(t, 3, batches.StateFailed, 60*time.Second)

	// Fix the data, retry: the run goes back to running and completes, and
	// no row was applied twice.
	testdb.Exec(t, b.pool, `UPDATE shares SET parts = 4 WHERE parts = 0`)
	_, _, err = b.enq.Retry(context.Background(), 3)
	require.NoError(t, err)
	st = b.waitState(t, 3, batches.StateCompleted, 60*time.Second)
	require.Equal(t, int64(1000), st.RowsDone)
	require.Zero(t, st.BatchesFailed)
	require.Nil(t, st.LastError)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM shares WHERE n <> 1 OR share <> 25`))

	// Nothing left to retry.
	_, _, err = b.enq.Retry(context.Background(), 3)
	require.ErrorIs(t, err, ErrNothingToRetry)
}

func queryString(t *testing.T, b *testBundle, sql string, args ...any) string {
	t.Helper()
	var s string
	require.NoError(t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&s))
	return s
}
