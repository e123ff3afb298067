package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// A worker runs --concurrency batches at once (pgx's default pool of
// max(4, CPUs) used to cap it at 4), never opens more than ConnectionsFor
// its concurrency, and gives its connections back once it is idle. The
// duty cycle is off: at the default 20% only the partitions' first batches
// ran together, and a job that started a little late made it 5-7 at once.
func TestWorkerProcess_ConnectionBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, 1600) g;
ANALYZE counters;`)
	b.writeFile(t, "9_count.sql", `-- table: counters
-- key: id
-- batch: 20
-- partitions: 8
-- duty_cycle: off
WITH touched AS (UPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last RETURNING id)
SELECT count(*), pg_sleep(0.1) FROM touched;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	startWorkerProcess(t, b.url+"&application_name=budget_worker", "--concurrency", "8")

	var maxBatches, maxConns int64
	deadline := time.Now().Add(60 * time.Second)
	for latestStatus(t, b, 9).State != batches.StateCompleted {
		require.True(t, time.Now().Before(deadline), "the run did not complete")
		maxBatches = max(maxBatches, queryInt(t, b.pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'budget_worker' AND state = 'active' AND query LIKE '%pg_sleep%'`))
		maxConns = max(maxConns, queryInt(t, b.pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'budget_worker'`))
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("FIGURE connections concurrency=8 max_batches_at_once=%d max_connections=%d budget=%d", maxBatches, maxConns, ConnectionsFor(8))
	require.Equal(t, int64(8), maxBatches, "eight batches at once")
	require.LessOrEqual(t, maxConns, int64(ConnectionsFor(8)))

	// Idle, it keeps only what River's polling needs.
	deadline = time.Now().Add(40 * time.Second)
	for {
		n := queryInt(t, b.pool, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'budget_worker'`)
		if n <= 3 {
			t.Logf("FIGURE connections idle=%d", n)
			break
		}
		require.True(t, time.Now().Before(deadline), "an idle worker still holds %d connections", n)
		time.Sleep(200 * time.Millisecond)
	}
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`))
}
