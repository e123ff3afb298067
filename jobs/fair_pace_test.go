package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// The duty cycle holds for the pool, and serves every partition in turn
// however long its batches are: partition k's batches of 10 rows take
// (k+1)*10 ms, eight partitions work at once, and at 50% busy a round of
// one batch each takes about 0.7 s. Before, the limiter allowed or refused,
// with a burst of twice the request: a partition of long batches, allowed
// further ahead of the budget, kept getting batches while those of short
// ones waited.
func TestDutyCycle_EveryPartitionInTurnWithinTheShare(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		redis   bool
	}{
		{"one worker", 1, false},
		{"two workers and Redis", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const partitions, rowsPerPartition = 8, 50
			b := setup(t)
			testdb.Exec(t, b.pool, fmt.Sprintf(`CREATE TABLE costly (id bigint PRIMARY KEY, cost_ms int NOT NULL DEFAULT 0, done_at timestamptz);
INSERT INTO costly (id) SELECT g FROM generate_series(1, %d) g; ANALYZE costly;`, partitions*rowsPerPartition))
			b.writeFile(t, "9_costly.sql", fmt.Sprintf(`-- table: costly
-- key: id
-- partitions: %d
-- batch: 10
-- batch_time: 50ms
-- batch_min: 10
-- batch_max: 10
-- duty_cycle: 50%%
WITH pause AS (SELECT pg_sleep(sum(cost_ms) / 1000.0) FROM costly WHERE id BETWEEN @first AND @last)
UPDATE costly SET done_at = statement_timestamp() FROM pause WHERE id BETWEEN @first AND @last;
`, partitions))
			_, err := b.load(t).Pending(context.Background())
			require.NoError(t, err)
			// Partition k's rows cost k+1 ms each.
			testdb.Exec(t, b.pool, `UPDATE costly c SET cost_ms = p.partition + 1
FROM backfill_partitions p
WHERE c.id > coalesce(p.lower_key::bigint, 0) AND (p.upper_key IS NULL OR c.id <= p.upper_key::bigint)`)
			require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM costly WHERE cost_ms = 0`))

			log := &batchLog{}
			for range tc.workers {
				cfg := WorkerConfig{Concurrency: partitions / tc.workers, Observer: log}
				if tc.redis {
					cfg.Redis = newRedis(t)
				}
				b.startWorker(t, cfg)
			}
			st := b.waitState(t, 9, batches.StateCompleted, 60*time.Second)
			require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM costly WHERE done_at IS NULL`))

			log.mu.Lock()
			var busy time.Duration
			for _, bt := range log.batches {
				busy += bt.took
			}
			log.mu.Unlock()
			elapsed := st.FinishedAt.Sub(*st.StartedAt)
			share := busy.Seconds() / elapsed.Seconds()

			// When each partition's batches started, from the run's start: the
			// longest wait of a partition for its first batch or its next.
			rows, err := b.pool.Query(context.Background(), `SELECT p.partition, extract(epoch FROM c.done_at - $1)::float8
FROM costly c JOIN backfill_partitions p ON c.id > coalesce(p.lower_key::bigint, 0) AND (p.upper_key IS NULL OR c.id <= p.upper_key::bigint)
GROUP BY p.partition, c.done_at ORDER BY p.partition, c.done_at`, *st.StartedAt)
			require.NoError(t, err)
			starts := map[int][]float64{}
			for rows.Next() {
				var (
					p int
					s float64
				)
				require.NoError(t, rows.Scan(&p, &s))
				starts[p] = append(starts[p], s)
			}
			require.NoError(t, rows.Err())
			require.Len(t, starts, partitions)
			var longest float64
			for p, s := range starts {
				prev := 0.0
				for _, at := range s {
					longest = max(longest, at-prev)
					prev = at
				}
				t.Logf("partition %d: batches at %.2f s", p, s)
			}
			t.Logf("busy %s in %s: %.2f of the time; the longest wait of a partition for its batch: %.2f s",
				busy.Round(time.Millisecond), elapsed.Round(time.Millisecond), share, longest)
			require.LessOrEqual(t, share, 0.55, "the pool keeps within its duty cycle")
			require.GreaterOrEqual(t, share, 0.35, "and uses most of it")
			// A round of one batch each takes about 0.7 s, the second round
			// twice that (a partition's first batch, whose time is not known
			// yet, pays with its second): served in turn, no partition waits
			// much longer than that for its next batch (3.7 s before).
			require.Less(t, longest, 3.0, "a partition waited %.2f s for its batch", longest)
		})
	}
}

// Batches that ran while the run had no duty cycle owe it nothing: turned
// on later, it paces the next batch by that batch's time alone.
func TestDutyCycle_TurnedOnLaterOwesNothingForTheBatchesBefore(t *testing.T) {
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE owed (id bigint PRIMARY KEY, done_at timestamptz);
INSERT INTO owed (id) SELECT g FROM generate_series(1, 100000) g; ANALYZE owed;`)
	b.writeFile(t, "10_owed.sql", `-- table: owed
-- key: id
-- batch: 10
-- partitions: 1
-- duty_cycle: off
WITH pause AS (SELECT pg_sleep(0.02))
UPDATE owed SET done_at = statement_timestamp() FROM pause WHERE id BETWEEN @first AND @last;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 1})
	// About 1.5 s of batches with no duty cycle: 1.5 s that would be owed.
	require.Eventually(t, func() bool {
		return queryInt(t, b.pool, `SELECT count(*) FROM owed WHERE done_at IS NOT NULL`) >= 600
	}, 20*time.Second, 20*time.Millisecond)
	_, err = b.enq.Throttle(context.Background(), 10, batches.Throttle{DutyCycle: ptr(0.5)}, "ann@ops1")
	require.NoError(t, err)
	changed := time.Now()
	// At 50%, a batch of 20 ms is followed by the next within about 40 ms
	// (owing the 1.5 s would hold it 3 s).
	time.Sleep(time.Second)
	n := queryInt(t, b.pool, `SELECT count(*) FROM owed WHERE done_at > $1`, changed.Add(500*time.Millisecond))
	t.Logf("rows of batches started 0.5-1 s after the duty cycle was turned on: %d", n)
	require.Positive(t, n, "the run went on within half a second")
}

// What a batch paid and did not take goes back to the budget: batches of
// one partition alternate between 100 ms and 10 ms, so each short one
// reserves the long one's time before it. Given back, the run still keeps
// the database busy about its share (50%: 0.51 measured); lost, 0.29.
func TestDutyCycle_WhatABatchDidNotTakeGoesBack(t *testing.T) {
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE uneven (id bigint PRIMARY KEY, cost_ms int NOT NULL, done_at timestamptz);
INSERT INTO uneven (id, cost_ms) SELECT g, CASE WHEN ((g - 1) / 10) % 2 = 0 THEN 10 ELSE 1 END FROM generate_series(1, 400) g;
ANALYZE uneven;`)
	b.writeFile(t, "11_uneven.sql", `-- table: uneven
-- key: id
-- batch: 10
-- partitions: 1
-- duty_cycle: 50%
WITH pause AS (SELECT pg_sleep(sum(cost_ms) / 1000.0) FROM uneven WHERE id BETWEEN @first AND @last)
UPDATE uneven SET done_at = statement_timestamp() FROM pause WHERE id BETWEEN @first AND @last;
`)
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	log := &batchLog{}
	b.startWorker(t, WorkerConfig{Concurrency: 1, Observer: log})
	st := b.waitState(t, 11, batches.StateCompleted, 60*time.Second)
	log.mu.Lock()
	var busy time.Duration
	for _, bt := range log.batches {
		busy += bt.took
	}
	n := len(log.batches)
	log.mu.Unlock()
	elapsed := st.FinishedAt.Sub(*st.StartedAt)
	share := busy.Seconds() / elapsed.Seconds()
	t.Logf("%d batches busy %s in %s: %.2f of the time", n, busy.Round(time.Millisecond), elapsed.Round(time.Millisecond), share)
	require.Equal(t, 40, n)
	require.InDelta(t, 0.5, share, 0.1)
}
