package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

func ptr[T any](v T) *T { return &v }

// rowsBetween counts the rows a run did in the whole seconds from from to
// to, as its throughput buckets recorded them: the stored ones and its
// partitions' tallies of the second under way.
func rowsBetween(t *testing.T, b *testBundle, runID int64, from, to time.Time) int64 {
	t.Helper()
	return queryInt(t, b.pool, `SELECT coalesce(sum(rows), 0)::bigint FROM (
	SELECT run_id, second, rows FROM backfill_throughput
	UNION ALL SELECT run_id, tally_second, tally_rows FROM backfill_partitions WHERE tally_second IS NOT NULL) t
WHERE run_id = $1 AND second >= $2 AND second < $3`, runID, from, to)
}

// A new rate reaches every worker of the pool within two seconds: two
// worker processes' worth of workers, sharing one budget in Redis, move
// from 1000 to 4000 rows/s.
func TestThrottle_NewRateAcrossThePoolWithinTwoSeconds(t *testing.T) {
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE paced (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO paced (id) SELECT g FROM generate_series(1, 200000) g; ANALYZE paced;`)
	b.writeFile(t, "5_paced.sql", "-- table: paced\n-- key: id\n-- batch: 100\n-- partitions: 8\n-- rate: 1000\n-- duty_cycle: off\nUPDATE paced SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	for range 2 {
		b.startWorker(t, WorkerConfig{Concurrency: 4, Redis: newRedis(t)})
	}
	runID := queryInt(t, b.pool, `SELECT id FROM backfill_runs WHERE version = 5`)
	b.waitRows(t, 5, 1, 30*time.Second)

	// Two whole seconds at the old rate, then the change.
	start := serverNow(t, b)
	waitServerTime(t, b, start.Truncate(time.Second).Add(3*time.Second))
	res, err := b.enq.Throttle(context.Background(), 5, batches.Throttle{Rate: ptr(4000.0)}, "ann@ops1")
	require.NoError(t, err)
	require.Equal(t, 1000.0, *res.Before.Rate)
	require.Equal(t, 4000.0, *res.After.Rate)
	changed := eventTime(t, b, runID)
	before := rowsBetween(t, b, runID, changed.Truncate(time.Second).Add(-2*time.Second), changed.Truncate(time.Second))
	// From two seconds after the change: the new rate.
	from := changed.Truncate(time.Second).Add(3 * time.Second)
	waitServerTime(t, b, from.Add(2*time.Second))
	after := rowsBetween(t, b, runID, from, from.Add(2*time.Second))
	t.Logf("rows/s before the throttle: %.0f; from 2 s after it: %.0f", float64(before)/2, float64(after)/2)
	require.InDelta(t, 2000, before, 400, "1000 rows/s before")
	require.InDelta(t, 8000, after, 1200, "4000 rows/s after")

	st := b.status(t, 5)
	require.Equal(t, 4000.0, st.Rate)
	require.Equal(t, "ann@ops1", *st.ThrottledBy)
	require.Equal(t, batches.RateLimitRedis, st.RateLimit)
}

// A job waiting on the rate limit applies a new throttle within a second
// or two; the batch size changes with it, and the change is recorded with
// who made it.
func TestThrottle_WaitingJobAppliesItAndTheChangeIsRecorded(t *testing.T) {
	b := setup(t)
	testdb.Exec(t, b.pool, `CREATE TABLE slow (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
INSERT INTO slow (id) SELECT g FROM generate_series(1, 3000) g; ANALYZE slow;`)
	// 100-row batches at 20 rows/s: a burst of two batches, then five
	// seconds between batches.
	b.writeFile(t, "6_slow.sql", "-- table: slow\n-- key: id\n-- batch: 100\n-- partitions: 1\n-- rate: 20\nUPDATE slow SET n = n + 1 WHERE id BETWEEN @first AND @last;\n")
	_, err := b.load(t).Pending(context.Background())
	require.NoError(t, err)
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	b.startWorker(t, WorkerConfig{Concurrency: 2})
	b.waitRows(t, 6, 200, 30*time.Second)
	time.Sleep(500 * time.Millisecond) // well inside the five-second wait
	require.Equal(t, int64(200), b.status(t, 6).RowsDone, "the job is waiting on the rate limit")

	changed := time.Now()
	_, err = b.enq.Throttle(context.Background(), 6, batches.Throttle{Rate: ptr(0.0), BatchSize: ptr(10)}, "bob@laptop")
	require.NoError(t, err)
	b.waitRows(t, 6, 210, 30*time.Second)
	took := time.Since(changed)
	t.Logf("first batch after the throttle: %s", took.Round(time.Millisecond))
	require.Less(t, took, 2*time.Second)

	st := b.waitState(t, 6, batches.StateCompleted, 30*time.Second)
	require.Equal(t, int64(2+280), st.BatchesDone, "two batches of 100, then 2800 rows in batches of 10")
	require.Zero(t, queryInt(t, b.pool, `SELECT count(*) FROM slow WHERE n <> 1`))

	runID := queryInt(t, b.pool, `SELECT id FROM backfill_runs WHERE version = 6`)
	all, err := batches.RunEvents(context.Background(), b.pool, runID)
	require.NoError(t, err)
	var events []batches.Event
	for _, e := range all {
		if e.Action == "throttle" {
			events = append(events, e)
		}
	}
	require.Len(t, events, 1)
	require.Equal(t, "bob@laptop", events[0].Actor)
	require.Equal(t, "throttle", events[0].Action)
	require.WithinDuration(t, changed, events[0].At, 5*time.Second)
	var detail map[string]map[string]float64
	require.NoError(t, json.Unmarshal([]byte(events[0].Detail), &detail))
	require.Equal(t, map[string]map[string]float64{"before": {"rate": 20, "batch": 100}, "after": {"rate": 0, "batch": 10}}, detail)

	// A finished run keeps its options; bad values are refused.
	_, err = b.enq.Throttle(context.Background(), 6, batches.Throttle{Rate: ptr(5.0)}, "bob@laptop")
	require.True(t, errors.Is(err, batches.ErrWrongState), "got %v", err)
	for _, bad := range []batches.Throttle{{}, {Rate: ptr(-1.0)}, {Rate: ptr(0.5)}, {BatchSize: ptr(0)}, {BatchSize: ptr(batches.BatchSizeMax + 1)}} {
		require.Error(t, bad.Validate(), "%+v", bad)
	}
}

func (b *testBundle) status(t *testing.T, version int64) batches.RunStatus {
	t.Helper()
	runs, err := batches.ListStatus(context.Background(), b.pool, &version)
	require.NoError(t, err)
	require.NotEmpty(t, runs)
	return runs[len(runs)-1]
}

func serverNow(t *testing.T, b *testBundle) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT now()`).Scan(&now))
	return now
}

// waitServerTime waits until the server's clock reaches at.
func waitServerTime(t *testing.T, b *testBundle, at time.Time) {
	t.Helper()
	for {
		d := at.Sub(serverNow(t, b))
		if d <= 0 {
			return
		}
		time.Sleep(min(d, 100*time.Millisecond))
	}
}

func eventTime(t *testing.T, b *testBundle, runID int64) time.Time {
	t.Helper()
	var at time.Time
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT max(at) FROM backfill_events WHERE run_id = $1 AND action = 'throttle'`, runID).Scan(&at))
	return at
}
