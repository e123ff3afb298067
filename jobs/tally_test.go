package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// Every key a batch checkpointed is in exactly one per-second bucket, at any
// moment of a run: its partition's tally of the second under way or a
// stored second. Two partitions at 1,500 rows/s over about three seconds,
// read every few milliseconds in one snapshot; at the end nothing is left
// pending and every partition has at most one bucket a second.
func TestThroughput_EveryKeyIsInOneBucketAtAnyMoment(t *testing.T) {
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE tallied (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO tallied (id) SELECT g FROM generate_series(1, 4500) g; ANALYZE tallied;`)
	b.writeFile(t, "5_tallied.sql", "-- table: tallied\n-- key: id\n-- batch: 50\n-- partitions: 2\n-- rate: 1500\n-- duty_cycle: off\nUPDATE tallied SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 2})

	const counts = `SELECT coalesce((SELECT sum(rows_done) FROM backfill_partitions), 0)::bigint,
	coalesce((SELECT sum(rows) FROM backfill_throughput), 0)::bigint,
	coalesce((SELECT sum(tally_rows) FROM backfill_partitions WHERE tally_second IS NOT NULL), 0)::bigint,
	(SELECT count(*) FROM backfill_partitions WHERE tally_second IS NOT NULL),
	(SELECT count(*) FROM backfill_partitions WHERE state <> 'done')`
	var reads, pendingSeen int
	deadline := time.Now().Add(30 * time.Second)
	for {
		var done, stored, pending, tallies, unfinished int64
		require.NoError(t, b.pool.QueryRow(context.Background(), counts).Scan(&done, &stored, &pending, &tallies, &unfinished))
		require.Equal(t, done, stored+pending, "keys checkpointed against keys in buckets (%d stored, %d pending)", stored, pending)
		reads++
		if tallies > 0 {
			pendingSeen++
		}
		if done == 4500 && unfinished == 0 {
			require.Zero(t, tallies, "a finished partition leaves nothing pending")
			break
		}
		require.True(t, time.Now().Before(deadline), "the run did not finish: %d of 4500 keys", done)
		time.Sleep(3 * time.Millisecond)
	}
	t.Logf("%d reads, %d with tallies pending", reads, pendingSeen)
	require.Greater(t, pendingSeen, reads/2, "partitions hold the second under way")
	b.waitState(t, 5, batches.StateCompleted, 10*time.Second)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM (SELECT partition, date_trunc('second', second) FROM backfill_throughput GROUP BY 1, 2 HAVING count(*) > 1) d`))
	require.GreaterOrEqual(t, queryInt(t, b.pool, `SELECT count(DISTINCT second) FROM backfill_throughput`), int64(3), "the run's seconds")
}
