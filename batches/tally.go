package batches

import (
	"time"

	"github.com/jackc/pgx/v5"
)

// tally is a partition's throughput in the second under way, kept in its
// row (backfill_partitions.tally_*), which every batch updates anyway. It
// moves to backfill_throughput when a batch of a later second checkpoints,
// or with the partition's last batch: one insert a second per partition
// instead of an upsert with every batch.
type tally struct {
	Second *time.Time // nil: nothing pending
	Rows   int64
	Busy   float64 // seconds
}

// add counts a batch of rows that took busy and checkpoints in the
// transaction that started in second now. It returns the partition's tally
// afterwards and the buckets to store in backfill_throughput: the tally of
// an earlier second, and everything when the partition is done, so that a
// finished partition leaves nothing pending.
func (t tally) add(now time.Time, rows int64, busy float64, done bool) (next tally, store []tally) {
	if t.Second != nil && !t.Second.Equal(now) {
		store = append(store, t)
		t = tally{}
	}
	if rows > 0 {
		t = tally{Second: &now, Rows: t.Rows + rows, Busy: t.Busy + busy}
	}
	if done && t.Second != nil {
		store = append(store, t)
		t = tally{}
	}
	return t, store
}

// queueStore adds to b the statement that stores a second's bucket of a
// partition in backfill_throughput. A bucket of that second may be there
// already (two transactions of the partition begun in one second may
// checkpoint in either order), so they add up.
func (t tally) queueStore(b *pgx.Batch, runID int64, partition int) {
	b.Queue(inSchema(`
INSERT INTO backfill_throughput (run_id, partition, second, rows, busy_seconds) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (run_id, partition, second) DO UPDATE
SET rows = backfill_throughput.rows + excluded.rows, busy_seconds = backfill_throughput.busy_seconds + excluded.busy_seconds`),
		runID, partition, *t.Second, t.Rows, t.Busy)
}

// throughputBuckets is every per-second bucket of every run, as a table
// with backfill_throughput's columns: the stored ones and each partition's
// tally of the second under way. Readers of the speed read this, never
// backfill_throughput alone.
const throughputBuckets = `(SELECT run_id, partition, second, rows, busy_seconds FROM backfill_throughput
	UNION ALL SELECT run_id, partition, tally_second, tally_rows, tally_busy_seconds FROM backfill_partitions WHERE tally_second IS NOT NULL)`
