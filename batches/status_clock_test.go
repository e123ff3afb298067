package batches_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// Status is computed for the time and windows it is given: a run's speed
// and ETA at any moment come from its throughput buckets, without waiting
// for real seconds to pass.
func TestListStatusAt_SpeedAndETAForAGivenTime(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testdb.Exec(t, pool, `
INSERT INTO backfill_runs (id, version, run_number, name, mode, direction, checksum, definition, key_type, state, rows_estimated, enqueued_by, started_at)
VALUES (1, 7, 1, 'speed', 'auto', 'up', 'c', '{"options":{"table":"t","key":"id","batch":100,"partitions":1,"attempts":5,"rate":0}}', 'bigint', 'running', 12000, 'test', $1)`, start)
	testdb.Exec(t, pool, `INSERT INTO backfill_partitions (run_id, partition, state, rows_done, batches_done) VALUES (1, 0, 'running', 6000, 60)`)
	// 100 rows a second for the run's first 60 seconds.
	testdb.Exec(t, pool, `INSERT INTO backfill_throughput (run_id, partition, second, rows)
SELECT 1, 0, $1::timestamptz + g * interval '1 second', 100 FROM generate_series(0, 59) g`, start)
	version := int64(7)

	// 30 s in: the first second is the warm-up and left out, so 30 buckets
	// (1..30) over 29 s.
	at30, err := batches.ListStatusAt(ctx, pool, &version, batches.StatusClock{Now: start.Add(30 * time.Second)})
	require.NoError(t, err)
	require.InDelta(t, 3000.0/29, at30[0].RowsPerSecond, 0.01)

	// 60 s in, with a 10 s window: the last 10 whole seconds.
	at60, err := batches.ListStatusAt(ctx, pool, &version, batches.StatusClock{Now: start.Add(60 * time.Second), SpeedWindow: 10 * time.Second})
	require.NoError(t, err)
	require.InDelta(t, 100.0, at60[0].RowsPerSecond, 0.01, "buckets 50..59 over the window 50..60")
	require.NotNil(t, at60[0].ETASeconds)
	require.InDelta(t, 6000/at60[0].RowsPerSecond, *at60[0].ETASeconds, 0.01)

	// Two minutes later nothing moved: the speed is 0 and the ETA unknown.
	later, err := batches.ListStatusAt(ctx, pool, &version, batches.StatusClock{Now: start.Add(3 * time.Minute)})
	require.NoError(t, err)
	require.Zero(t, later[0].RowsPerSecond)
	require.Nil(t, later[0].ETASeconds)

	// A worker that beat 5 s ago is alive; 30 s later it is not.
	testdb.Exec(t, pool, `INSERT INTO backfill_workers (id, host, pid, concurrency, started_at, heartbeat_at) VALUES ('w1', 'h', 1, 4, $1, $1)`, start.Add(55*time.Second))
	testdb.Exec(t, pool, `INSERT INTO river_job (id, kind, args, state, scheduled_at, max_attempts, queue, priority) VALUES (100, 'backfill_batch', '{}', 'available', $1, 25, 'backfills', 1)`, start)
	testdb.Exec(t, pool, `UPDATE backfill_partitions SET job_id = 100`)
	alive, err := batches.ListStatusAt(ctx, pool, &version, batches.StatusClock{Now: start.Add(60 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, 1, alive[0].WorkersAlive)
	require.Contains(t, alive[0].HeldBack, "waiting for workers (1 of 1 partitions)")
	dead, err := batches.ListStatusAt(ctx, pool, &version, batches.StatusClock{Now: start.Add(90 * time.Second)})
	require.NoError(t, err)
	require.Zero(t, dead[0].WorkersAlive)
	require.Contains(t, dead[0].HeldBack, "no worker is alive (1 of 1 partitions waiting)")
}
