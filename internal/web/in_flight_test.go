package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
)

// waitMetrics scrapes h until its body holds every line, and returns it.
func waitMetrics(t *testing.T, h http.Handler, what string, lines ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := call(t, h, http.MethodGet, "/metrics", "")
		missing := ""
		for _, l := range lines {
			if !strings.Contains(r.body, l+"\n") {
				missing = l
				break
			}
		}
		if r.code == http.StatusOK && missing == "" {
			return r.body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /metrics never showed %q after 20s; backfill lines:\n%s", what, missing, backfillLines(r.body))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// backfillLines is the backfill_ samples of a scrape, for messages.
func backfillLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "backfill_") && !strings.HasPrefix(l, "backfill_batch_duration_seconds_bucket") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// backfill_batches_in_flight of a real worker: the batches of two
// partitions that wait for rows the test holds locked read 2; failed (their
// statements cancelled), they leave it at 0; retried without the lock, the
// run completes and it is 0 again.
func TestMetrics_BatchesInFlight(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100, "-- batch: 10\n-- partitions: 2\n-- duty_cycle: off\n-- attempts: 1\n-- lock_timeout: 1m\n")
	m := NewMetrics()
	h := f.handler(t, "", m)
	ctx := context.Background()

	// An application holds every row.
	app, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = app.Rollback(ctx) }()
	var appPID int
	require.NoError(t, app.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&appPID))
	_, err = app.Exec(ctx, `SELECT id FROM items FOR UPDATE`)
	require.NoError(t, err)

	const l = `{name="touch",version="9"}`
	inFlight := func(n string) string { return "backfill_batches_in_flight" + l + " " + n }
	f.startWorker(t, m)
	waitMetrics(t, h, "both partitions' batches wait for the lock", inFlight("2"))
	require.Eventually(t, func() bool {
		return queryCount(t, f, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, appPID) == 2
	}, 10*time.Second, 10*time.Millisecond, "two batches blocked by the test's transaction")

	// Their statements cancelled: both batches fail for good (attempts: 1).
	_, err = f.pool.Exec(ctx, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, appPID)
	require.NoError(t, err)
	f.waitState(t, batches.StateFailed, 20*time.Second)
	body := waitMetrics(t, h, "the failed batches leave the gauge", "backfill_batches_failed_total"+l+" 2", inFlight("0"))
	require.NotContains(t, body, "backfill_batches_done_total"+l)

	// Retried without the lock: the run completes, nothing left in flight.
	require.NoError(t, app.Rollback(ctx))
	_, n, err := f.enq.Retry(ctx, testVersion)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	f.waitState(t, batches.StateCompleted, 30*time.Second)
	body = waitMetrics(t, h, "the completed run", "backfill_rows_done_total"+l+" 100", inFlight("0"))
	require.Contains(t, body, "# TYPE backfill_batches_in_flight gauge\n")
}

// queryCount runs a query returning one number on the fixture's database.
func queryCount(t *testing.T, f *fixture, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, f.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}
