package jobs

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// batchTimes records when each batch's transaction began and ended.
type batchTimes struct {
	noObserver
	mu          sync.Mutex
	began, over []time.Time
}

func (o *batchTimes) BatchStarted(*batches.Run) func() {
	o.mu.Lock()
	o.began = append(o.began, time.Now())
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		o.over = append(o.over, time.Now())
		o.mu.Unlock()
	}
}

// gaps are the times between the end of each batch and the start of the
// next (one partition: one batch at a time).
func (o *batchTimes) gaps() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(o.began); i++ {
		out = append(out, o.began[i].Sub(o.over[i-1]))
	}
	return out
}

// A job hands its partition to a new job at the end of every slice; the
// new job starts its first batch within milliseconds, not after River's
// default fetch cooldown (100 ms, which cost a partition about 1% of its
// time at the default 10 s slice).
func TestHandOver_TheNextJobStartsWithinMilliseconds(t *testing.T) {
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE handed (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO handed (id) SELECT g FROM generate_series(1, 8000) g; ANALYZE handed;`)
	b.writeFile(t, "9_handed.sql", `-- table: handed
-- key: id
-- batch: 10
-- partitions: 1
-- duty_cycle: off
WITH pause AS (SELECT pg_sleep(0.002))
UPDATE handed SET n = n + 1 FROM pause WHERE id BETWEEN @first AND @last;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	times := &batchTimes{}
	// A job timeout of 1s is a slice of 250 ms: a hand-over every 250 ms.
	b.startWorker(t, WorkerConfig{Concurrency: 1, JobTimeout: time.Second, Observer: times})
	b.waitState(t, 9, batches.StateCompleted, time.Minute)
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM handed WHERE n <> 1`), "every row exactly once")

	handOvers := int(queryInt(t, b.pool, `SELECT count(*) FROM river_job WHERE kind = 'backfill_batch'`)) - 1
	require.GreaterOrEqual(t, handOvers, 6, "the run should outlast several slices")
	// Within a job, batches follow each other at once (no pace): the
	// longest gaps are the hand-overs.
	gaps := times.gaps()
	slices.Sort(gaps)
	slices.Reverse(gaps)
	handOverGaps := gaps[:handOvers]
	t.Logf("%d hand-overs, the next job's first batch after %v; other gaps at most %v", handOvers, handOverGaps, gaps[handOvers])
	// River's default cooldown kept one to three of seven hand-overs 40-106 ms
	// each (the new job waited for the end of a cooldown that its own
	// insertion began); one slow hand-over is allowed for a busy machine.
	require.Less(t, handOverGaps[1], 40*time.Millisecond, "the second slowest hand-over: %v", handOverGaps)
}
