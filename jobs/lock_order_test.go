package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// deadlocksOf reads pg_stat_database's deadlock count of the test database.
// Backends report their counts when they go idle or exit, so it waits until
// the number stops moving.
func deadlocksOf(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	last := int64(-1)
	for range 20 {
		n := queryInt(t, pool, `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`)
		if n == last {
			return n
		}
		last = n
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// countingObserver counts failed batches.
type countingObserver struct {
	noObserver
	failed chan struct{}
}

func (o countingObserver) BatchFailed(*batches.Run) { o.failed <- struct{}{} }

// Many one-batch partitions of two runs finishing at the same moment across
// six workers: the batch's throughput row share-locks the run row through its
// foreign key, and the run's settlement locks it too. Locks taken in one
// order everywhere mean no deadlock, no failed batch, and every run completes.
func TestLockOrder_ManyPartitionsFinishingTogetherNeverDeadlock(t *testing.T) {
	b := setup(t)
	for _, table := range []string{"a", "b"} {
		testdb.Exec(t, b.pool, fmt.Sprintf(`CREATE TABLE %[1]s (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO %[1]s (id) SELECT g FROM generate_series(1, 780) g;`, table))
	}
	// 780 rows counted at enqueue, batch 25: 32 partitions of 24 or 25 rows,
	// each done in one batch that records its throughput and, when partial,
	// settles the run in the same transaction.
	b.writeFile(t, "1_a.sql", "-- table: a\n-- key: id\n-- batch: 25\n-- partitions: 32\nUPDATE a SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	b.writeFile(t, "2_b.sql", "-- table: b\n-- key: id\n-- batch: 25\n-- partitions: 32\nUPDATE b SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	enq := b.load(t)
	ctx := context.Background()
	before := deadlocksOf(t, b.pool)

	failed := make(chan struct{}, 10000)
	const rounds = 4
	for round := 1; round <= rounds; round++ {
		if round == 1 {
			res, err := enq.Pending(ctx)
			require.NoError(t, err)
			require.Len(t, res.Enqueued, 2)
		} else {
			for _, v := range []int64{1, 2} {
				_, err := enq.Run(ctx, v, true)
				require.NoError(t, err)
			}
		}
		require.Equal(t, int64(64), queryInt(t, b.pool, `SELECT count(*) FROM river_job WHERE state = 'available'`))
		// Six workers start together on 64 ready one-batch partitions.
		var (
			workers []*Worker
			pools   []*pgxpool.Pool
		)
		for range 6 {
			pool, err := pgxpool.New(ctx, b.url+"&pool_max_conns=6")
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			pools = append(pools, pool)
			w, err := NewWorker(WorkerConfig{Pool: pool, Registry: b.reg, Concurrency: 4, Observer: countingObserver{failed: failed}})
			require.NoError(t, err)
			workers = append(workers, w)
		}
		for _, w := range workers {
			require.NoError(t, w.Start(ctx))
		}
		for _, v := range []int64{1, 2} {
			st := b.waitState(t, v, batches.StateCompleted, 60*time.Second)
			require.Equal(t, int64(780), st.RowsDone)
			require.Equal(t, round, st.RunNumber)
		}
		for i, w := range workers {
			require.NoError(t, w.Stop(10*time.Second))
			pools[i].Close()
		}
	}
	require.Zero(t, len(failed), "failed batches")
	require.Zero(t, deadlocksOf(t, b.pool)-before, "deadlocks in pg_stat_database")
	for _, table := range []string{"a", "b"} {
		require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM `+table+` WHERE n <> `+itoa(rounds)), "every row once per run")
	}
}
