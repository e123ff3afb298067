package jobs

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func countersTable(t *testing.T, b *testBundle, rows int) {
	t.Helper()
	testdb.Exec(t, b.pool, `CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, `+strconv.Itoa(rows)+`) g;
ANALYZE counters;`)
}

// The safety net behind the where check: a condition that escapes the key
// range (here written into the recorded run, past the file check) makes the
// next batch's keys fall at or before the checkpoint. The partition fails at
// once with a clear error instead of running its first batch forever.
func TestSafetyNet_CursorThatDoesNotAdvanceFailsThePartition(t *testing.T) {
	t.Parallel()
	b := setup(t)
	countersTable(t, b, 100)
	b.writeFile(t, "3_count.sql", "-- table: counters\n-- key: id\n-- batch: 10\n-- partitions: 1\nUPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	testdb.Exec(t, b.pool, `UPDATE backfill_runs SET definition = jsonb_set(definition, '{options,where}', '"1=1) OR (1=1"')`)

	b.startWorker(t, WorkerConfig{Concurrency: 2})
	st := b.waitState(t, 3, batches.StateFailed, 20*time.Second)
	require.NotNil(t, st.LastError)
	require.Contains(t, *st.LastError, "outside the partition's remaining range")
	require.Contains(t, *st.LastError, "where")
	require.LessOrEqual(t, st.BatchesDone, int64(1), "the first batch at most, never again")
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n > 1`))
}

// An application holding a lock on 11 rows of a 1000-row batch: the batch
// gives up after the lock timeout and rolls back (so the other 989 rows are
// free again at once), status says whose lock it waits for while it is
// retried, and the run completes once the lock is gone.
func TestBoundedWaits_BatchBehindAnApplicationLock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	countersTable(t, b, 1000)
	b.writeFile(t, "3_count.sql", "-- table: counters\n-- key: id\n-- batch: 1000\n-- partitions: 1\n-- attempts: 20\nUPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)

	ctx := context.Background()
	app, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer app.Rollback(ctx)
	var appPID int
	require.NoError(t, app.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&appPID))
	_, err = app.Exec(ctx, `UPDATE counters SET n = n WHERE id BETWEEN 500 AND 510`)
	require.NoError(t, err)

	b.startWorker(t, WorkerConfig{Concurrency: 1, Timeouts: batches.Timeouts{Lock: 300 * time.Millisecond}})
	want := "waiting on a lock held by pid " + strconv.Itoa(appPID)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := latestStatus(t, b, 3)
		if strings.Contains(st.HeldBack, want) {
			require.NotNil(t, st.LastError)
			require.Contains(t, *st.LastError, "55P03", "lock_not_available")
			break
		}
		require.True(t, time.Now().Before(deadline), "status never said %q (held back: %q)", want, st.HeldBack)
		time.Sleep(50 * time.Millisecond)
	}
	// Meanwhile another writer of a row of the same batch is never held for
	// long: at most one lock timeout.
	start := time.Now()
	testdb.Exec(t, b.pool, `UPDATE counters SET n = n WHERE id = 900`)
	waited := time.Since(start)
	t.Logf("FIGURE app-write-behind-blocked-batch waited=%s", waited.Round(time.Millisecond))
	require.Less(t, waited, 2*time.Second)

	require.NoError(t, app.Rollback(ctx))
	st := b.waitState(t, 3, batches.StateCompleted, 30*time.Second)
	require.Empty(t, st.HeldBack)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`))
}

// slowGo is a Go backfill whose batches take longer than the worker's job
// timeout, and ignore its cancellation the way a slow call elsewhere would.
type slowGo struct{}

func (slowGo) Version() int64     { return 31 }
func (slowGo) Name() string       { return "slow_go" }
func (slowGo) Mode() batches.Mode { return batches.ModeAuto }
func (slowGo) Options() batches.Options {
	return batches.Options{Table: "counters", Key: "id", BatchSize: 10, Partitions: 1, MaxAttempts: 2}
}
func (slowGo) ProcessBatch(ctx context.Context, tx pgx.Tx, b batches.Batch) (int64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// A batch that runs into the job's timeout is a failed attempt like any
// other: counted against attempts, shown with its reason, and the run ends
// failed with that error rather than in River's own hour-long retries.
func TestBoundedWaits_JobTimeoutCountsAsAFailedAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	countersTable(t, b, 100)
	b.load(t, slowGo{})
	_, err := b.enq.Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 1, JobTimeout: time.Second})
	st := b.waitState(t, 31, batches.StateFailed, 30*time.Second)
	require.NotNil(t, st.LastError)
	require.Contains(t, *st.LastError, "timeout")
	require.Equal(t, int64(1), st.BatchesFailed)
}

// A worker frozen mid-batch (SIGSTOP: a paused VM, a debugger) cannot keep
// the batch's rows locked: the server ends its idle transaction, and an
// application's write of one of those rows waits about that long at most.
// The run still completes with every row exactly once.
func TestBoundedWaits_FrozenWorkerReleasesItsRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	countersTable(t, b, 3000)
	b.writeFile(t, "3_count.sql", `-- table: counters
-- key: id
-- batch: 1000
-- partitions: 1
WITH touched AS (UPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last RETURNING id)
SELECT count(*), pg_sleep(0.3) FROM touched;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	w := startWorkerProcess(t, b.url, "--concurrency", "1", "--idle-in-transaction-timeout", "1s", "--job-timeout", "4s", "--rescue-after", "6s")
	// Wait until the batch's update is in: row 1 is locked by the worker.
	deadline := time.Now().Add(20 * time.Second)
	for queryInt(t, b.pool, `SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'counters' AND l.mode = 'RowExclusiveLock'`) == 0 {
		require.True(t, time.Now().Before(deadline), "the batch never started")
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGSTOP))
	start := time.Now()
	testdb.Exec(t, b.pool, `UPDATE counters SET n = n WHERE id = 1`)
	waited := time.Since(start)
	t.Logf("FIGURE app-write-behind-frozen-worker waited=%s (idle-in-transaction-timeout 1s)", waited.Round(time.Millisecond))
	require.Less(t, waited, 3*time.Second)
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGCONT))

	st := b.waitState(t, 3, batches.StateCompleted, 60*time.Second)
	require.Equal(t, int64(3000), st.RowsDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`))
}

// A never-analysed table is counted rather than estimated at 0, and a run
// that has done more rows than estimated (the table grew after it was
// enqueued) shows its total as unknown (no percentage, no ETA) instead of
// "99%, ETA 0s".
func TestEstimates_NeverAnalysedAndExhausted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE fresh (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO fresh (id) SELECT g FROM generate_series(1, 5000) g;`)
	countersTable(t, b, 100) // 100 rows when enqueued, then grown to 1000
	b.writeFile(t, "3_fresh.sql", "-- table: fresh\n-- key: id\nUPDATE fresh SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	b.writeFile(t, "4_grown.sql", "-- table: counters\n-- key: id\n-- batch: 10\n-- partitions: 1\n-- rate: 200\nUPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(100), latestStatus(t, b, 4).RowsEstimated, "a small table's rows are counted")
	testdb.Exec(t, b.pool, `INSERT INTO counters (id) SELECT g FROM generate_series(101, 1000) g`)

	fresh := latestStatus(t, b, 3)
	require.Equal(t, int64(5000), fresh.RowsEstimated, "never analysed: counted")

	b.startWorker(t, WorkerConfig{Concurrency: 1})
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := latestStatus(t, b, 4)
		if st.RowsDone > 150 && st.State == batches.StateRunning {
			require.Zero(t, st.RowsEstimated, "total unknown once the estimate is passed")
			require.Nil(t, st.ETASeconds)
			break
		}
		require.True(t, time.Now().Before(deadline), "the run never passed its estimate")
		time.Sleep(20 * time.Millisecond)
	}
	st := b.waitState(t, 4, batches.StateCompleted, 30*time.Second)
	require.Equal(t, int64(1000), st.RowsEstimated, "the truth once completed")
}

// A partition whose queue job is gone while its run is active (River
// discarded it after its own retries, or somebody deleted it) is taken over
// by a live worker on its next heartbeat, with the loss counted as an
// attempt: the run completes rather than sitting "failed" with no error.
func TestHeartbeat_OrphanedPartitionGetsANewJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	countersTable(t, b, 400)
	b.writeFile(t, "3_count.sql", "-- table: counters\n-- key: id\n-- batch: 50\n-- partitions: 4\nUPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	testdb.Exec(t, b.pool, `UPDATE river_job SET state = 'discarded', finalized_at = now()
WHERE id = (SELECT job_id FROM backfill_partitions ORDER BY partition LIMIT 1)`)
	testdb.Exec(t, b.pool, `DELETE FROM river_job WHERE id = (SELECT job_id FROM backfill_partitions ORDER BY partition OFFSET 1 LIMIT 1)`)

	b.startWorker(t, WorkerConfig{Concurrency: 4, Heartbeat: 100 * time.Millisecond, DeadAfter: time.Second})
	st := b.waitState(t, 3, batches.StateCompleted, 30*time.Second)
	require.Equal(t, int64(400), st.RowsDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`))
}
