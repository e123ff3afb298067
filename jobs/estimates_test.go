package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// A run's row estimate is exact for a small table, even when the previous
// run left the statistics wrong: a revert started at "0/1 rows" and a run
// again at "0/249089 rows" of a 100,000-row table before. A paused run shows
// no speed and no ETA, rather than a speed that decays as time passes.
func TestEstimates_HonestAfterARunAndWhilePaused(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	testdb.Exec(t, b.pool, `CREATE TABLE accounts (id bigint PRIMARY KEY, status text NOT NULL);
INSERT INTO accounts (id, status) SELECT g, 'enabled' FROM generate_series(1, 20000) g;
ANALYZE accounts;`)
	b.writeFile(t, "9_rename_status.sql", `-- table: accounts
-- key: id
-- batch: 500
-- duty_cycle: off
-- where: status = 'enabled'
-- down_where: status = 'active'
UPDATE accounts SET status = 'active' WHERE id BETWEEN @first AND @last AND status = 'enabled';
-- down
UPDATE accounts SET status = 'enabled' WHERE id BETWEEN @first AND @last AND status = 'active';
`)
	enq := b.load(t)
	_, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(20000), latestStatus(t, b, 9).RowsEstimated)
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	b.waitState(t, 9, batches.StateCompleted, 30*time.Second)

	// The statistics still say no row is 'active': the planner expects one.
	_, err = enq.Revert(ctx, 9)
	require.NoError(t, err)
	st := latestStatus(t, b, 9)
	require.Equal(t, int64(20000), st.RowsEstimated, "the revert's rows, counted")
	require.Greater(t, st.Partitions, int64(1), "and planned in parallel, not as the one row the statistics expected")
	b.waitState(t, 9, batches.StateCompleted, 30*time.Second)

	// Again, over a table full of dead row versions.
	_, err = enq.Run(ctx, 9, true)
	require.NoError(t, err)
	require.Equal(t, int64(20000), latestStatus(t, b, 9).RowsEstimated)
	b.waitState(t, 9, batches.StateCompleted, 30*time.Second)

	// A paused run: no speed, no ETA.
	testdb.Exec(t, b.pool, `UPDATE accounts SET status = 'enabled'`)
	b.writeFile(t, "10_slow.sql", "-- table: accounts\n-- key: id\n-- batch: 100\n-- rate: 2000\n-- duty_cycle: off\n-- where: status = 'enabled'\n"+
		"UPDATE accounts SET status = 'active' WHERE id BETWEEN @first AND @last AND status = 'enabled';\n")
	enq = b.load(t)
	_, err = enq.Pending(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return latestStatus(t, b, 10).RowsDone >= 2000 }, 20*time.Second, 50*time.Millisecond)
	running := latestStatus(t, b, 10)
	require.Positive(t, running.RowsPerSecond)
	require.LessOrEqual(t, running.RowsPerSecond, 2000.0, "never above the rate in force")
	_, err = enq.Pause(ctx, 10)
	require.NoError(t, err)
	paused := latestStatus(t, b, 10)
	require.Equal(t, batches.StatePaused, paused.State)
	require.Zero(t, paused.RowsPerSecond)
	require.Nil(t, paused.ETASeconds)
	require.Equal(t, "paused", paused.HeldBack)
}
