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

// batchLog records every committed batch in order.
type batchLog struct {
	noObserver
	mu      sync.Mutex
	batches []loggedBatch
}

type loggedBatch struct {
	rows int64
	took time.Duration
}

func (l *batchLog) BatchDone(_ *batches.Run, rows int64, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, loggedBatch{rows, d})
}

// A backfill that aims its batches at 50 ms grows them from 100 rows to
// what 50 ms allows, and when the rows become about ten times as costly
// half-way through the table, shrinks them within a few batches: no batch
// after that holds its locks for long.
func TestBatchTime_SizeFollowsTheCostOfRows(t *testing.T) {
	const (
		rows   = 24000
		half   = rows / 2
		target = 50 * time.Millisecond
	)
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE costly (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO costly (id) SELECT g FROM generate_series(1, `+itoa(rows)+`) g; ANALYZE costly;`)
	// The subquery burns CPU per row, ten times as much past half-way.
	b.writeFile(t, "7_costly.sql", `-- table: costly
-- key: id
-- batch: 100
-- batch_time: 50ms
-- partitions: 1
UPDATE costly SET n = n + 1 WHERE id BETWEEN @first AND @last
	AND (SELECT count(*) FROM generate_series(1, CASE WHEN id > `+itoa(half)+` THEN 2000 ELSE 200 END)) > 0;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	log := &batchLog{}
	b.startWorker(t, WorkerConfig{Concurrency: 1, Observer: log})
	b.waitState(t, 7, batches.StateCompleted, 60*time.Second)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM costly WHERE n <> 1`))

	log.mu.Lock()
	defer log.mu.Unlock()
	var (
		done       int64
		costlyFrom = -1 // the first batch with costly rows
		sizes      []int64
		ms         []int64
	)
	for i, bt := range log.batches {
		if costlyFrom < 0 && done+bt.rows > half {
			costlyFrom = i
		}
		done += bt.rows
		sizes = append(sizes, bt.rows)
		ms = append(ms, bt.took.Milliseconds())
	}
	t.Logf("batch sizes: %v", sizes)
	t.Logf("batch times (ms): %v", ms)
	require.Equal(t, int64(rows), done)
	require.Positive(t, costlyFrom)
	near := func(d time.Duration) bool { return d >= target/2 && d <= 2*target }

	// Cheap rows: the size grows from 100 (a few ms) to the target within
	// a few batches, and stays there.
	settled := -1
	for i := 0; i < costlyFrom; i++ {
		if near(log.batches[i].took) {
			settled = i
			break
		}
	}
	require.True(t, settled >= 0 && settled <= 8, "cheap rows: batch %d is the first near 50 ms", settled)
	cheapSize := log.batches[costlyFrom-1].rows
	require.Greater(t, cheapSize, int64(500), "the size grew")

	// Costly rows: back near the target within four batches of the change.
	after := log.batches[costlyFrom:]
	back := -1
	for i, bt := range after {
		if near(bt.took) {
			back = i
			break
		}
	}
	require.True(t, back >= 0 && back <= 4, "costly rows: batch %d after the change is the first near 50 ms", back)
	costlySize := after[len(after)-2].rows // the last is the short rest
	require.Less(t, costlySize*4, cheapSize, "the size shrank with the cost")
	var onTarget int
	for _, bt := range after[back : len(after)-1] {
		if near(bt.took) {
			onTarget++
		}
	}
	require.GreaterOrEqual(t, float64(onTarget), 0.8*float64(len(after)-1-back),
		"after settling, most batches take 25-100 ms")
}

// The size moves towards the target by at most a factor of two per batch,
// stays put near it, and keeps within its bounds.
func TestNextBatchSize(t *testing.T) {
	o := batches.Options{BatchSize: 1000, BatchTime: 100 * time.Millisecond}
	require.Equal(t, 2000, o.NextBatchSize(1000, 10*time.Millisecond), "at most doubled")
	require.Equal(t, 500, o.NextBatchSize(1000, time.Second), "at most halved")
	require.Equal(t, 1250, o.NextBatchSize(1000, 80*time.Millisecond))
	require.Equal(t, 1000, o.NextBatchSize(1000, 95*time.Millisecond), "near enough")
	require.Equal(t, batches.BatchMaxDefault, o.NextBatchSize(90_000, time.Millisecond))
	require.Equal(t, batches.BatchMinDefault, o.NextBatchSize(12, time.Minute))
	o.BatchMin, o.BatchMax = 200, 3000
	require.Equal(t, 3000, o.NextBatchSize(2000, time.Millisecond))
	require.Equal(t, 200, o.NextBatchSize(300, time.Minute))
	require.Equal(t, 1000, batches.Options{BatchSize: 1000}.NextBatchSize(50, time.Second), "a fixed size stays")
}
