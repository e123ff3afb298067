package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backfill/backfill/batches"
)

func TestMetrics_ObserverCallsShowUpWithLabels(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, "")
	m := NewMetrics()
	run := &batches.Run{Version: 20260301120100, Name: "orders_price_eur"}
	other := &batches.Run{Version: 7, Name: "other"}
	m.BatchDone(run, 100, 20*time.Millisecond)
	m.BatchDone(run, 50, 3*time.Second)
	m.BatchDone(other, 1, time.Millisecond)
	m.BatchFailed(run)
	m.RateLimited(run, 1500*time.Millisecond)
	m.RateLimited(run, 500*time.Millisecond)
	m.Health(run, batches.Health{Signals: []batches.Signal{
		{Name: batches.SignalReplicaLag, Value: 7.5, Limit: 5, Holds: true},
		{Name: batches.SignalActiveBackends, Value: 3, Limit: 32},
	}})

	r := call(t, f.handler(t, "", m), http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, r.code)
	require.Contains(t, r.header.Get("Content-Type"), "text/plain")
	const l = `{name="orders_price_eur",version="20260301120100"`
	for _, line := range []string{
		"# TYPE backfill_rows_done_total counter",
		"backfill_rows_done_total" + l + "} 150",
		`backfill_rows_done_total{name="other",version="7"} 1`,
		"backfill_batches_done_total" + l + "} 2",
		"backfill_batches_failed_total" + l + "} 1",
		"# TYPE backfill_batch_duration_seconds histogram",
		"backfill_batch_duration_seconds_bucket" + l + `,le="0.005"} 0`,
		"backfill_batch_duration_seconds_bucket" + l + `,le="0.025"} 1`,
		"backfill_batch_duration_seconds_bucket" + l + `,le="5"} 2`,
		"backfill_batch_duration_seconds_bucket" + l + `,le="60"} 2`,
		"backfill_batch_duration_seconds_sum" + l + "} 3.02",
		"backfill_batch_duration_seconds_count" + l + "} 2",
		"backfill_rate_limit_waits_total" + l + "} 2",
		"backfill_rate_limit_wait_seconds_total" + l + "} 2",
		"# TYPE backfill_health_signal_value gauge",
		`backfill_health_signal_value{name="orders_price_eur",signal="replica_lag",version="20260301120100"} 7.5`,
		`backfill_health_signal_limit{name="orders_price_eur",signal="replica_lag",version="20260301120100"} 5`,
		`backfill_health_signal_holds{name="orders_price_eur",signal="replica_lag",version="20260301120100"} 1`,
		`backfill_health_signal_value{name="orders_price_eur",signal="active_backends",version="20260301120100"} 3`,
		`backfill_health_signal_holds{name="orders_price_eur",signal="active_backends",version="20260301120100"} 0`,
		// The Go and process collectors.
		"# TYPE go_goroutines gauge",
		"# TYPE process_resident_memory_bytes gauge",
	} {
		require.Contains(t, r.body, line+"\n")
	}
	requireNoSecrets(t, r, f.url, "")
}

func TestMetrics_CountWhatARealWorkerDid(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1000, "-- batch: 100\n-- partitions: 2\n")
	m := NewMetrics()
	f.startWorker(t, m)
	st := f.waitState(t, batches.StateCompleted, 60*time.Second)
	require.Equal(t, int64(1000), st.RowsDone)
	const l = `{name="touch",version="9"}`

	// Two partitions: at most one partial batch each.
	require.GreaterOrEqual(t, st.BatchesDone, int64(10))
	want := []string{
		"backfill_rows_done_total" + l + " 1000\n",
		fmt.Sprintf("backfill_batches_done_total%s %d\n", l, st.BatchesDone),
		fmt.Sprintf("backfill_batch_duration_seconds_count%s %d\n", l, st.BatchesDone),
	}
	// The observer hears of a batch just after its commit, which may be
	// after the run was seen completed.
	h := f.handler(t, "", m)
	var r response
	require.Eventually(t, func() bool {
		r = call(t, h, http.MethodGet, "/metrics", "")
		for _, w := range want {
			if !strings.Contains(r.body, w) {
				return false
			}
		}
		return r.code == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond, "metrics never matched the run's counters: %v", want)
	require.NotContains(t, r.body, "backfill_batches_failed_total"+l)
}

// /metrics carries each version's latest run as gauges read from the
// version table, and the live workers: all a dashboard and alerts need.
func TestMetrics_RunGauges(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3000, "-- rate: 100\n-- batch: 10\n-- duty_cycle: off\n")
	h := f.handler(t, "", nil)
	const l = `direction="up",name="touch",run="1",version="9"`
	// Exposition sorts the labels: the extra one falls in between.
	state := func(s string) string {
		return `backfill_run_state{direction="up",name="touch",run="1",state="` + s + `",version="9"} 1`
	}
	held := func(reason string) string {
		return `backfill_run_held_back{direction="up",name="touch",reason="` + reason + `",run="1",version="9"} 1`
	}
	r := call(t, h, http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, r.code)
	for _, line := range []string{
		"backfill_run_gauges_up 1",
		"backfill_workers_alive 0",
		state("pending"),
		`backfill_run_rows_estimated{` + l + `} 3000`,
		`backfill_run_rows_done{` + l + `} 0`,
		`backfill_run_rate_limit{` + l + `} 100`,
		`backfill_run_duty_cycle{` + l + `} 0`,
		held("no worker is alive"),
	} {
		require.Contains(t, r.body, line+"\n")
	}
	require.NotContains(t, r.body, "backfill_run_eta_seconds{", "no ETA while unknown")

	// Worked: a live worker, rows done, the rate holding it back, an ETA.
	f.startWorker(t, nil)
	require.Eventually(t, func() bool {
		r = call(t, h, http.MethodGet, "/metrics", "")
		return strings.Contains(r.body, state("running")) &&
			strings.Contains(r.body, "backfill_run_eta_seconds{"+l+"}") && strings.Contains(r.body, "backfill_workers_alive 1\n")
	}, 15*time.Second, 100*time.Millisecond, "the gauges of a running run never showed")
	require.Contains(t, r.body, held("rate limit (100 rows/s)"))

	// The table gone: the scrape says so rather than failing.
	h2, err := New(Config{Pool: closedPool(t, f.url), Logger: testLogger()})
	require.NoError(t, err)
	r = call(t, h2, http.MethodGet, "/metrics", "")
	require.Equal(t, http.StatusOK, r.code)
	require.Contains(t, r.body, "backfill_run_gauges_up 0\n")
}

// closedPool is a pool on url that is already closed: every query fails.
func closedPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	pool.Close()
	return pool
}
