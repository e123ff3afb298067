package batches_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/testdb"
)

// A partition keeps its throughput of the second under way in its own row
// until a later second begins. Status and the run's chart count those
// tallies as if they were stored: two partitions, 600 rows a second each,
// one with its last second pending and one that stopped a second earlier
// with its own last second pending, read the same as with every second
// stored, and differently without the tallies.
func TestThroughput_PartitionTalliesCountLikeStoredSeconds(t *testing.T) {
	t.Parallel()
	_, pool := testdb.New(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testdb.Exec(t, pool, `
INSERT INTO backfill_runs (id, version, run_number, name, mode, direction, checksum, definition, key_type, state, rows_estimated, enqueued_by, started_at)
VALUES (1, 9, 1, 'tally', 'auto', 'up', 'c', '{"options":{"table":"t","key":"id","batch":100,"partitions":2,"attempts":5,"duty_cycle":0.3}}', 'bigint', 'running', 30000, 'test', $1)`, t0)
	testdb.Exec(t, pool, `INSERT INTO backfill_workers (id, host, pid, concurrency, started_at, heartbeat_at) VALUES ('w1', 'h', 1, 2, $1, $2)`, t0, t0.Add(10*time.Second))
	// Stored: partition 0's seconds 0-8, partition 1's 0-7. Pending:
	// partition 0's second 9, partition 1's second 8.
	testdb.Exec(t, pool, `INSERT INTO backfill_throughput (run_id, partition, second, rows, busy_seconds)
SELECT 1, p, $1::timestamptz + g * interval '1 second', 600, 0.15 FROM generate_series(0, 1) p, generate_series(0, 8 - p) g`, t0)
	testdb.Exec(t, pool, `INSERT INTO backfill_partitions (run_id, partition, state, rows_done, batches_done, tally_second, tally_rows, tally_busy_seconds)
VALUES (1, 0, 'running', 6000, 60, $1::timestamptz + interval '9 seconds', 600, 0.15), (1, 1, 'running', 5400, 54, $1::timestamptz + interval '8 seconds', 600, 0.15)`, t0)

	version := int64(9)
	read := func() (batches.RunStatus, []batches.ThroughputPoint) {
		t.Helper()
		runs, err := batches.ListStatusAt(ctx, pool, &version, batches.StatusClock{Now: t0.Add(9900 * time.Millisecond)})
		require.NoError(t, err)
		require.Len(t, runs, 1)
		d, err := batches.LoadRunDetail(ctx, pool, 9, 1)
		require.NoError(t, err)
		return runs[0], d.Throughput
	}
	pending, pendingChart := read()
	t.Logf("tallies pending: %.1f rows/s, busy %.3f, ETA %.2fs, %d chart points", pending.RowsPerSecond, pending.BusyShare, *pending.ETASeconds, len(pendingChart))

	// The tallies stored, as the partitions' next batches would.
	testdb.Exec(t, pool, `INSERT INTO backfill_throughput (run_id, partition, second, rows, busy_seconds)
SELECT run_id, partition, tally_second, tally_rows, tally_busy_seconds FROM backfill_partitions`)
	testdb.Exec(t, pool, `UPDATE backfill_partitions SET tally_second = NULL, tally_rows = 0, tally_busy_seconds = 0`)
	stored, storedChart := read()
	t.Logf("all stored:      %.1f rows/s, busy %.3f, ETA %.2fs", stored.RowsPerSecond, stored.BusyShare, *stored.ETASeconds)
	require.Equal(t, stored.RowsPerSecond, pending.RowsPerSecond)
	require.Equal(t, stored.BusyShare, pending.BusyShare)
	require.Equal(t, *stored.ETASeconds, *pending.ETASeconds)
	require.Equal(t, storedChart, pendingChart)

	// Without the tallies the figures differ: the comparison above can fail.
	testdb.Exec(t, pool, `DELETE FROM backfill_throughput WHERE (partition = 0 AND second = $1::timestamptz + interval '9 seconds') OR (partition = 1 AND second = $1::timestamptz + interval '8 seconds')`, t0)
	lost, lostChart := read()
	t.Logf("tallies lost:    %.1f rows/s, busy %.3f", lost.RowsPerSecond, lost.BusyShare)
	require.NotEqual(t, stored.BusyShare, lost.BusyShare)
	require.NotEqual(t, storedChart, lostChart)
}
