package web

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/jobs"
)

// The gauges of every version's latest run and of the pool, read from the
// version table when /metrics is scraped: what a dashboard and alerts need
// besides the counters of this process. Every worker serves the same
// values, so a dashboard takes max() over the workers rather than sum().

// runGaugeTimeout bounds the read a scrape makes.
const runGaugeTimeout = 2 * time.Second

var (
	runLabels4 = []string{"version", "name", "run", "direction"}
	runGauge   = func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(runLabels4[:len(runLabels4):len(runLabels4)], extra...), nil)
	}
	runRowsDoneDesc      = runGauge("backfill_run_rows_done", "Keys the run has processed.")
	runRowsEstimatedDesc = runGauge("backfill_run_rows_estimated", "The run's rows: counted or estimated when it was enqueued, exact once completed; 0 while unknown.")
	runStateDesc         = runGauge("backfill_run_state", "1 for the run's state.", "state")
	runETADesc           = runGauge("backfill_run_eta_seconds", "Seconds left at the measured speed; absent while unknown.")
	runSpeedDesc         = runGauge("backfill_run_rows_per_second", "Rows per second over the last minute (0 while paused).")
	runRateDesc          = runGauge("backfill_run_rate_limit", "The rate in force, rows per second across the pool; 0 for none.")
	runDutyDesc          = runGauge("backfill_run_duty_cycle", "The duty cycle in force, as a share of time; 0 for none.")
	runBusyDesc          = runGauge("backfill_run_busy_share", "The share of the last minute the run's batches kept the database busy.")
	runHeldDesc          = runGauge("backfill_run_held_back", "1 while something holds the run back, with why.", "reason")
	runFailedDesc        = runGauge("backfill_run_batches_failed", "The run's failed batches.")
	workersAliveDesc     = prometheus.NewDesc("backfill_workers_alive", "Live worker processes (heard from within their dead-after time).", nil, nil)
	gaugesUpDesc         = prometheus.NewDesc("backfill_run_gauges_up", "1 when the last scrape read the version table, 0 when it could not.", nil, nil)
)

// runGauges is the collector.
type runGauges struct{ pool *pgxpool.Pool }

func (runGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{runRowsDoneDesc, runRowsEstimatedDesc, runStateDesc, runETADesc, runSpeedDesc, runRateDesc,
		runDutyDesc, runBusyDesc, runHeldDesc, runFailedDesc, workersAliveDesc, gaugesUpDesc} {
		ch <- d
	}
}

func (g runGauges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), runGaugeTimeout)
	defer cancel()
	runs, err := batches.ListStatus(ctx, g.pool, nil)
	var counts *batches.RunWorkerCounts
	if err == nil {
		counts, err = batches.CountRunWorkers(ctx, g.pool, "", jobs.DeadAfterDefault)
	}
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(gaugesUpDesc, prometheus.GaugeValue, up)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(workersAliveDesc, prometheus.GaugeValue, float64(counts.Live))
	latest := map[int64]batches.RunStatus{}
	for _, r := range runs { // in version and run order
		latest[r.Version] = r
	}
	for _, r := range latest {
		l := []string{strconv.FormatInt(r.Version, 10), r.Name, strconv.Itoa(r.RunNumber), string(r.Direction)}
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(l[:len(l):len(l)], extra...)...)
		}
		gauge(runRowsDoneDesc, float64(r.RowsDone))
		gauge(runRowsEstimatedDesc, float64(r.RowsEstimated))
		gauge(runStateDesc, 1, string(r.State))
		if r.ETASeconds != nil {
			gauge(runETADesc, *r.ETASeconds)
		}
		gauge(runSpeedDesc, r.RowsPerSecond)
		gauge(runRateDesc, r.Rate)
		gauge(runDutyDesc, r.DutyCycle)
		gauge(runBusyDesc, r.BusyShare)
		held, reason := 0.0, ""
		if r.HeldBack != "" {
			held, reason = 1, r.HeldBack
		}
		gauge(runHeldDesc, held, reason)
		gauge(runFailedDesc, float64(r.BatchesFailed))
	}
}
