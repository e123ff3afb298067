package jobs

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// orphanPartitions counts unfinished partitions of version's latest run
// whose owner is not a live job: nobody would ever work them.
const orphanPartitions = `
SELECT count(*) FROM backfill_partitions bp
WHERE bp.run_id = (SELECT max(id) FROM backfill_runs WHERE version = $1)
	AND bp.state IN ('pending', 'running')
	AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = bp.job_id
		AND j.state IN ('available', 'pending', 'retryable', 'running', 'scheduled'))`

// 100 rounds of pause and resume with random gaps of 0-500 ms, against two
// worker processes: after every resume each unfinished partition has a live
// owner, and the run completes with every row exactly once.
func TestPauseResumeStorm_EveryPartitionKeepsOneLiveOwner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, 20000) g;
ANALYZE counters;
CREATE TABLE slow (d float8 NOT NULL);
INSERT INTO slow VALUES (0.2);`)
	// Slow batches (the pause in slow.d) during the storm; fast afterwards.
	b.writeFile(t, "9_count.sql", `-- table: counters
-- key: id
-- batch: 10
-- partitions: 8
WITH touched AS (UPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last RETURNING id)
SELECT count(*), pg_sleep((SELECT d FROM slow)) FROM touched;
`)
	enq := b.load(t)
	ctx := context.Background()
	_, err := enq.Pending(ctx)
	require.NoError(t, err)
	for range 2 {
		startWorkerProcess(t, b.url, "--concurrency", "4", "--job-timeout", "4s")
	}
	b.waitRows(t, 9, 100, 30*time.Second)

	gap := func() { time.Sleep(time.Duration(rand.IntN(501)) * time.Millisecond) }
	for round := range 100 {
		_, err := enq.Pause(ctx, 9)
		require.NoError(t, err, "round %d: pause", round)
		gap()
		_, err = enq.Resume(ctx, 9)
		require.NoError(t, err, "round %d: resume", round)
		require.Zero(t, queryInt(t, b.pool, orphanPartitions, 9), "round %d: partitions without a live owner after resume", round)
		gap()
	}
	st := latestStatus(t, b, 9)
	t.Logf("after 100 rounds: %s, %d of 20000 rows", st.State, st.RowsDone)
	require.Less(t, st.RowsDone, int64(20000), "the storm must end before the run does")

	testdb.Exec(t, b.pool, `UPDATE slow SET d = 0`)
	st = b.waitState(t, 9, batches.StateCompleted, 90*time.Second)
	require.Equal(t, int64(20000), st.RowsDone)
	require.Zero(t, st.BatchesFailed)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`), "every row exactly once")
}
