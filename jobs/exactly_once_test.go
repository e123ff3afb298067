package jobs

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// flakyCounter increments a per-row counter and then, for a share of its
// batches, fails after the rows were written: the worst moment, since the
// batch's effects exist in the transaction and must be rolled back.
type flakyCounter struct {
	failShare float64
	failures  atomic.Int64
}

func (*flakyCounter) Version() int64     { return 77 }
func (*flakyCounter) Name() string       { return "flaky_counter" }
func (*flakyCounter) Mode() batches.Mode { return batches.ModeAuto }
func (*flakyCounter) Options() batches.Options {
	return batches.Options{Table: "counters", Key: "id", BatchSize: 200, Partitions: 4, MaxAttempts: 25}
}

func (f *flakyCounter) ProcessBatch(ctx context.Context, tx pgx.Tx, b batches.Batch) (int64, error) {
	tag, err := tx.Exec(ctx, `UPDATE counters SET n = n + 1 WHERE id BETWEEN $1 AND $2`, b.First, b.Last)
	if err != nil {
		return 0, err
	}
	if rand.Float64() < f.failShare {
		f.failures.Add(1)
		return 0, errors.New("injected failure after the batch's writes")
	}
	return tag.RowsAffected(), nil
}

func TestExactlyOnce_InjectedErrorsTwoWorkers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, 20000) g;
ANALYZE counters;`)
	flaky := &flakyCounter{failShare: 0.2}
	enq := b.load(t, flaky)
	_, err := enq.Pending(context.Background())
	require.NoError(t, err)

	// Two workers on one database stand for two processes of the pool.
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	st := b.waitState(t, 77, batches.StateCompleted, 120*time.Second)

	require.Greater(t, flaky.failures.Load(), int64(10), "the test must really inject failures")
	require.Equal(t, int64(20000), st.RowsDone)
	require.Equal(t, int64(100), st.BatchesDone)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 1`), "every row must be counted exactly once")
}

func TestExactlyOnce_StaleJobCannotApplyABatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testdb.Exec(t, b.pool, `
CREATE TABLE counters (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO counters (id) SELECT g FROM generate_series(1, 1000) g;`)
	b.writeFile(t, "5_count.sql", "-- table: counters\n-- key: id\n-- batch: 100\n-- partitions: 1\nUPDATE counters SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	enq := b.load(t)
	res, err := enq.Pending(context.Background())
	require.NoError(t, err)
	run := res.Enqueued[0]
	owner := queryInt(t, b.pool, `SELECT job_id FROM backfill_partitions WHERE run_id = $1`, run.ID)

	// A job that is not the partition's owner (a rescued duplicate, say)
	// must neither run the statement nor move the checkpoint.
	ctx := context.Background()
	err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := batches.ProcessBatchTx(ctx, tx, batches.BatchParams{Run: run, Partition: 0, JobID: owner + 1000, Step: run.Step()})
		return err
	})
	require.ErrorIs(t, err, batches.ErrNotOwner)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n <> 0`))

	// The owner applies batches in order from the checkpoint.
	for i := 0; i < 3; i++ {
		require.NoError(t, pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			_, err := batches.ProcessBatchTx(ctx, tx, batches.BatchParams{Run: run, Partition: 0, JobID: owner, Step: run.Step()})
			return err
		}))
	}
	// A batch whose transaction rolls back leaves neither effects nor checkpoint.
	_ = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := batches.ProcessBatchTx(ctx, tx, batches.BatchParams{Run: run, Partition: 0, JobID: owner, Step: run.Step()})
		require.NoError(t, err)
		return errors.New("roll back")
	})
	require.Equal(t, int64(300), queryInt(t, b.pool, `SELECT count(*) FROM counters WHERE n = 1`))
	require.Equal(t, int64(300), queryInt(t, b.pool, `SELECT cursor_key::bigint FROM backfill_partitions WHERE run_id = $1`, run.ID))
}
