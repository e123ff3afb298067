package batches_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// The status query leaves the first second of a run, and the first second
// after a resume, out of its speed: every partition's first batch runs then
// before it pays the duty cycle. Computed for given times on recorded
// throughput: a run with a duty cycle of 30% that does 1,200 rows a second
// after a first second of 1,600.
func TestListStatusAt_TheWarmUpIsLeftOut(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	started := t0.Add(300 * time.Millisecond)
	testdb.Exec(t, pool, `
INSERT INTO backfill_runs (id, version, run_number, name, mode, direction, checksum, definition, key_type, state, rows_estimated, enqueued_by, started_at)
VALUES (1, 9, 1, 'warm', 'auto', 'up', 'c', '{"options":{"table":"t","key":"id","batch":100,"partitions":8,"attempts":5,"duty_cycle":0.3}}', 'bigint', 'running', 30000, 'test', $1)`, started)
	// A worker of 8 slots, alive at every time status is computed for.
	testdb.Exec(t, pool, `INSERT INTO backfill_workers (id, host, pid, concurrency, started_at, heartbeat_at) VALUES ('w1', 'h', 1, 8, $1, $2)`, t0, t0.Add(15*time.Second))
	// The warm-up second: 16 batches of 100 rows, 25 ms each; then 12
	// batches a second.
	testdb.Exec(t, pool, `INSERT INTO backfill_throughput (run_id, partition, second, rows, busy_seconds) VALUES (1, 0, $1, 1600, 0.4)`, t0)
	testdb.Exec(t, pool, `INSERT INTO backfill_throughput (run_id, partition, second, rows, busy_seconds)
SELECT 1, 0, $1::timestamptz + g * interval '1 second', 1200, 0.3 FROM generate_series(1, 9) g`, t0)
	version := int64(9)
	at := func(d time.Duration, rowsDone int64) batches.RunStatus {
		t.Helper()
		testdb.Exec(t, pool, `INSERT INTO backfill_partitions (run_id, partition, state, rows_done, batches_done) VALUES (1, 0, 'running', $1::bigint, $1::bigint / 100)
ON CONFLICT (run_id, partition) DO UPDATE SET rows_done = excluded.rows_done, batches_done = excluded.batches_done`, rowsDone)
		// Just before the second d: its bucket is not done yet.
		runs, err := batches.ListStatusAt(ctx, pool, &version, batches.StatusClock{Now: t0.Add(d - time.Millisecond)})
		require.NoError(t, err)
		require.Len(t, runs, 1)
		st := runs[0]
		require.NotNil(t, st.ETASeconds)
		t.Logf("%s in: %5d rows, %6.1f rows/s, busy %.2f, ETA %.2fs (%.2fs to %.2fs)", d-300*time.Millisecond, st.RowsDone,
			st.RowsPerSecond, st.BusyShare, *st.ETASeconds, *st.ETALowSeconds, *st.ETAHighSeconds)
		// The range holds the time the rest takes at 1,200 rows/s.
		left := float64(st.RowsEstimated-st.RowsDone) / 1200
		require.Less(t, *st.ETALowSeconds, left)
		require.Greater(t, *st.ETAHighSeconds, left)
		return st
	}

	// 0.7 s in, only the warm-up done: the speed so far would be 2,286 rows/s
	// (an ETA of 12.4 s instead of 23.7 s); the duty cycle allows 30% of
	// 4,000 rows per busy second.
	warm := at(time.Second, 1600)
	require.InDelta(t, 1200, warm.RowsPerSecond, 1)
	require.InDelta(t, (30000-1600)/1200.0, *warm.ETASeconds, 0.01)

	// 3.7 s in: the 3 s after the warm-up.
	st := at(4*time.Second, 5200)
	require.InDelta(t, 1200, st.RowsPerSecond, 1, "not 5,200 rows over 3.7 s")
	require.InDelta(t, (0.4+3*0.3)/3.7, st.BusyShare, 1e-3, "over the whole window")
	require.Less(t, *st.ETAHighSeconds-*st.ETALowSeconds, *warm.ETAHighSeconds-*warm.ETALowSeconds, "narrower")

	// 9.7 s in: narrower still.
	later := at(10*time.Second, 12400)
	require.InDelta(t, 1200, later.RowsPerSecond, 1)
	require.Less(t, (*later.ETAHighSeconds-*later.ETALowSeconds) / *later.ETASeconds, (*st.ETAHighSeconds-*st.ETALowSeconds) / *st.ETASeconds)

	// Paused at 10 s and resumed at 20.5 s: the first second after the
	// resume is a warm-up again.
	testdb.Exec(t, pool, `UPDATE backfill_runs SET resumed_at = $1`, t0.Add(20500*time.Millisecond))
	testdb.Exec(t, pool, `INSERT INTO backfill_throughput (run_id, partition, second, rows, busy_seconds) VALUES (1, 0, $1, 1000, 0.25)`, t0.Add(20*time.Second))
	testdb.Exec(t, pool, `INSERT INTO backfill_throughput (run_id, partition, second, rows, busy_seconds)
SELECT 1, 0, $1::timestamptz + g * interval '1 second', 1200, 0.3 FROM generate_series(21, 22) g`, t0)
	resumed := at(23*time.Second, 15800)
	require.InDelta(t, 1200, resumed.RowsPerSecond, 1, "not 3,400 rows over 3 s")
}
