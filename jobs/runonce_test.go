package jobs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// Run-once semantics of the Enqueuer: Pending, Run, Revert and checksums.

const (
	roAutoFile = `-- table: things
-- key: id
-- batch: 100
-- partitions: 2
UPDATE things SET touched = touched + 1 WHERE id BETWEEN @first AND @last;
`
	roRevertibleFile = `-- table: things
-- key: id
-- batch: 100
-- partitions: 2
UPDATE things SET touched = touched + 1 WHERE id BETWEEN @first AND @last;
-- down
UPDATE things SET touched = touched - 1 WHERE id BETWEEN @first AND @last;
`
)

// roSetup creates the table things with rows rows and a counter.
func roSetup(t *testing.T, rows int) *testBundle {
	t.Helper()
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE things (id bigint PRIMARY KEY, touched int NOT NULL DEFAULT 0)`)
	testdb.Exec(t, b.pool, `INSERT INTO things (id) SELECT g FROM generate_series(1, $1::int) g`, rows)
	testdb.Exec(t, b.pool, `ANALYZE things`)
	return b
}

// roStartWorker starts an in-process worker and returns a function that
// stops it; the test's end stops it too.
func roStartWorker(t *testing.T, b *testBundle) (stop func()) {
	t.Helper()
	w, err := NewWorker(WorkerConfig{Pool: b.pool, Registry: b.reg, Concurrency: 2})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	var once sync.Once
	stop = func() { once.Do(func() { require.NoError(t, w.Stop(10*time.Second)) }) }
	t.Cleanup(stop)
	return stop
}

// roRuns counts the runs of version.
func roRuns(t *testing.T, b *testBundle, version int64) int64 {
	t.Helper()
	return queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs WHERE version = $1`, version)
}

// roJobsOf counts the queue jobs of a run.
func roJobsOf(t *testing.T, b *testBundle, runID int64) int64 {
	t.Helper()
	return queryInt(t, b.pool, `SELECT count(*) FROM river_job WHERE kind = 'backfill_batch' AND (args->>'run_id')::bigint = $1`, runID)
}

// roPartitionsOf counts the partitions of a run.
func roPartitionsOf(t *testing.T, b *testBundle, runID int64) int64 {
	t.Helper()
	return queryInt(t, b.pool, `SELECT count(*) FROM backfill_partitions WHERE run_id = $1`, runID)
}

func TestRunOnce_PendingTwiceEnqueuesOnce(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "10_touch.sql", roAutoFile)
	enq := b.load(t)
	ctx := context.Background()

	first, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Len(t, first.Enqueued, 1)
	require.Zero(t, first.AlreadyEnqueued)
	require.Empty(t, first.Drifted)
	run := first.Enqueued[0]
	require.Equal(t, int64(10), run.Version)
	require.Equal(t, 1, run.RunNumber)
	require.Equal(t, batches.DirectionUp, run.Direction)
	parts := roPartitionsOf(t, b, run.ID)
	require.Equal(t, int64(2), parts)
	require.Equal(t, parts, roJobsOf(t, b, run.ID))

	second, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Empty(t, second.Enqueued)
	require.Equal(t, 1, second.AlreadyEnqueued)
	require.Empty(t, second.Drifted)

	// A new Enqueuer (another deploy of the same files) agrees.
	third, err := b.load(t).Pending(ctx)
	require.NoError(t, err)
	require.Empty(t, third.Enqueued)
	require.Equal(t, 1, third.AlreadyEnqueued)

	require.Equal(t, int64(1), roRuns(t, b, 10))
	require.Equal(t, parts, queryInt(t, b.pool, `SELECT count(*) FROM river_job`), "no jobs besides the first run's")
}

func TestRunOnce_ConcurrentPendingEnqueuesOnce(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "10_touch.sql", roAutoFile)
	b.writeFile(t, "11_touch_again.sql", roAutoFile)
	b.load(t)

	const callers = 8
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]*PendingResult, callers)
		errs    = make([]error, callers)
	)
	for i := range callers {
		enq, err := NewEnqueuer(b.pool, b.reg, "test-host")
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = enq.Pending(context.Background())
		}()
	}
	close(start)
	wg.Wait()

	enqueued := map[int64]int{}
	for i := range callers {
		require.NoError(t, errs[i], "caller %d", i)
		for _, r := range results[i].Enqueued {
			enqueued[r.Version]++
		}
		require.Equal(t, 2, len(results[i].Enqueued)+results[i].AlreadyEnqueued, "caller %d: %+v", i, results[i])
	}
	require.Equal(t, map[int64]int{10: 1, 11: 1}, enqueued, "each version enqueued by exactly one caller")
	require.Equal(t, int64(1), roRuns(t, b, 10))
	require.Equal(t, int64(1), roRuns(t, b, 11))
	require.Equal(t, int64(4), queryInt(t, b.pool, `SELECT count(*) FROM river_job`))
}

func TestRunOnce_ManualNotEnqueuedByPending(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "manual/20_touch_manual.sql", roAutoFile)
	enq := b.load(t)

	def, err := b.reg.Get(20)
	require.NoError(t, err)
	require.Equal(t, batches.ModeManual, def.Mode)

	res, err := enq.Pending(context.Background())
	require.NoError(t, err)
	require.Empty(t, res.Enqueued)
	require.Zero(t, res.AlreadyEnqueued)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs`))
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM river_job`))
}

func TestRunOnce_RunManual(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "manual/20_touch_manual.sql", roAutoFile)
	enq := b.load(t)
	ctx := context.Background()

	run, err := enq.Run(ctx, 20, false)
	require.NoError(t, err)
	require.Equal(t, int64(20), run.Version)
	require.Equal(t, 1, run.RunNumber)
	require.Equal(t, batches.ModeManual, run.Mode)
	require.Equal(t, roPartitionsOf(t, b, run.ID), roJobsOf(t, b, run.ID))

	// Pending leaves a manual run alone, run or not.
	res, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Empty(t, res.Enqueued)
	require.Equal(t, int64(1), roRuns(t, b, 20))

	b.startWorker(t, WorkerConfig{Concurrency: 2})
	st := b.waitState(t, 20, batches.StateCompleted, 30*time.Second)
	require.Equal(t, int64(1000), st.RowsDone)
	require.Equal(t, batches.ModeManual, st.Mode)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM things WHERE touched <> 1`))
}

func TestRunOnce_RunAgainNeedsAgain(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "10_touch.sql", roAutoFile)
	enq := b.load(t)
	ctx := context.Background()

	res, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Len(t, res.Enqueued, 1)
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	b.waitState(t, 10, batches.StateCompleted, 30*time.Second)

	_, err = enq.Run(ctx, 10, false)
	require.ErrorIs(t, err, ErrNeedsAgain)
	require.Equal(t, int64(1), roRuns(t, b, 10), "a refused run records nothing")

	run, err := enq.Run(ctx, 10, true)
	require.NoError(t, err)
	require.Equal(t, 2, run.RunNumber)
	require.Equal(t, batches.DirectionUp, run.Direction)
	require.Equal(t, roPartitionsOf(t, b, run.ID), roJobsOf(t, b, run.ID))
	b.waitState(t, 10, batches.StateCompleted, 30*time.Second)

	version := int64(10)
	history, err := batches.ListStatus(ctx, b.pool, &version)
	require.NoError(t, err)
	require.Len(t, history, 2, "status keeps run 1 next to run 2")
	require.Equal(t, 1, history[0].RunNumber)
	require.Equal(t, batches.StateCompleted, history[0].State)
	require.Equal(t, int64(1000), history[0].RowsDone)
	require.NotNil(t, history[0].FinishedAt)
	require.Equal(t, 2, history[1].RunNumber)
	require.Equal(t, batches.StateCompleted, history[1].State)
	require.Equal(t, int64(1000), history[1].RowsDone)
	// Run 2 processed every row once more.
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM things WHERE touched <> 2`))

	// Pending still counts the version as enqueued and adds nothing.
	res, err = enq.Pending(ctx)
	require.NoError(t, err)
	require.Empty(t, res.Enqueued)
	require.Equal(t, 1, res.AlreadyEnqueued)
	require.Equal(t, int64(2), roRuns(t, b, 10))
}

func TestRunOnce_RunWhilePendingIsBusy(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "10_touch.sql", roAutoFile)
	enq := b.load(t)
	ctx := context.Background()

	res, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Len(t, res.Enqueued, 1)
	jobs := queryInt(t, b.pool, `SELECT count(*) FROM river_job`)

	_, err = enq.Run(ctx, 10, false)
	require.ErrorIs(t, err, ErrBusy)
	_, err = enq.Run(ctx, 10, true)
	require.ErrorIs(t, err, ErrBusy, "again does not override a run in progress")

	require.Equal(t, int64(1), roRuns(t, b, 10))
	require.Equal(t, jobs, queryInt(t, b.pool, `SELECT count(*) FROM river_job`))
}

func TestRunOnce_RevertBeforeCompletion(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "10_touch.sql", roRevertibleFile)
	enq := b.load(t)
	ctx := context.Background()

	// Never run: nothing to revert.
	_, err := enq.Revert(ctx, 10)
	require.ErrorIs(t, err, ErrNotRevertible)
	require.Zero(t, roRuns(t, b, 10))

	res, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Len(t, res.Enqueued, 1)

	// Enqueued but not worked yet.
	_, err = enq.Revert(ctx, 10)
	require.ErrorIs(t, err, ErrNotRevertible)
	require.Equal(t, int64(1), roRuns(t, b, 10))

	// Completed: the revert runs the down statement over every row once.
	stop := roStartWorker(t, b)
	b.waitState(t, 10, batches.StateCompleted, 30*time.Second)
	stop() // so that the revert stays pending while it is checked
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM things WHERE touched <> 1`))
	run, err := enq.Revert(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, batches.DirectionDown, run.Direction)
	require.Equal(t, 2, run.RunNumber)

	// A pending revert can be neither reverted nor run.
	_, err = enq.Revert(ctx, 10)
	require.ErrorIs(t, err, ErrNotRevertible)
	_, err = enq.Run(ctx, 10, true)
	require.ErrorIs(t, err, ErrBusy)

	roStartWorker(t, b)
	st := b.waitState(t, 10, batches.StateCompleted, 30*time.Second)
	require.Equal(t, batches.DirectionDown, st.Direction)
	require.Equal(t, int64(1000), st.RowsDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM things WHERE touched <> 0`))
	require.Equal(t, int64(2), roRuns(t, b, 10))
}

func TestRunOnce_RevertWithoutDown(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "10_touch.sql", roAutoFile)
	enq := b.load(t)
	ctx := context.Background()

	res, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Len(t, res.Enqueued, 1)
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	b.waitState(t, 10, batches.StateCompleted, 30*time.Second)

	_, err = enq.Revert(ctx, 10)
	require.ErrorIs(t, err, ErrNotRevertible)
	require.ErrorContains(t, err, "10_touch")
	require.Equal(t, int64(1), roRuns(t, b, 10))
}

func TestRunOnce_ChecksumDrift(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 1000)
	b.writeFile(t, "10_touch.sql", roAutoFile)
	enq := b.load(t)
	ctx := context.Background()

	res, err := enq.Pending(ctx)
	require.NoError(t, err)
	require.Len(t, res.Enqueued, 1)
	recorded := res.Enqueued[0].Checksum
	require.NotEmpty(t, recorded)
	jobs := queryInt(t, b.pool, `SELECT count(*) FROM river_job`)

	// The file's statement changes after its run was enqueued.
	b.writeFile(t, "10_touch.sql", `-- table: things
-- key: id
-- batch: 100
-- partitions: 2
UPDATE things SET touched = touched + 10 WHERE id BETWEEN @first AND @last;
`)
	enq = b.load(t)
	def, err := b.reg.Get(10)
	require.NoError(t, err)
	require.NotEqual(t, recorded, def.Checksum)

	res, err = enq.Pending(ctx)
	require.NoError(t, err)
	require.Empty(t, res.Enqueued, "a changed file is not enqueued again")
	require.Equal(t, 1, res.AlreadyEnqueued)
	require.Len(t, res.Drifted, 1)
	require.Equal(t, int64(10), res.Drifted[0].Definition.Version)
	require.Equal(t, recorded, res.Drifted[0].RecordedChecksum)
	require.Equal(t, def.Checksum, res.Drifted[0].Definition.Checksum)
	require.Contains(t, res.Drifted[0].String(), "10_touch")

	require.Equal(t, int64(1), roRuns(t, b, 10))
	require.Equal(t, jobs, queryInt(t, b.pool, `SELECT count(*) FROM river_job`))

	// The worker runs the statement that was enqueued, not the new one.
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	b.waitState(t, 10, batches.StateCompleted, 30*time.Second)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM things WHERE touched <> 1`))
}

func TestRunOnce_UnknownVersion(t *testing.T) {
	t.Parallel()
	b := roSetup(t, 10)
	b.writeFile(t, "10_touch.sql", roAutoFile)
	enq := b.load(t)
	ctx := context.Background()

	_, err := enq.Run(ctx, 999, false)
	require.ErrorIs(t, err, batches.ErrUnknownVersion)
	require.ErrorContains(t, err, "999")
	_, err = enq.Run(ctx, 999, true)
	require.ErrorIs(t, err, batches.ErrUnknownVersion)
	_, err = enq.Revert(ctx, 999)
	require.ErrorIs(t, err, batches.ErrUnknownVersion)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM backfill_runs`))
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM river_job`))
}
