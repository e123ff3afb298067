package web

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/jobs"
)

// BatchDurationBuckets are the buckets of backfill_batch_duration_seconds,
// from 5 ms to a minute.
var BatchDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics is a jobs.Observer that counts what the batch workers do in a
// Prometheus registry of its own, along with the Go runtime's and the
// process's metrics. Every backfill metric is labelled with the run's
// version and name.
type Metrics struct {
	registry        *prometheus.Registry
	rowsDone        *prometheus.CounterVec
	batchesDone     *prometheus.CounterVec
	batchesFailed   *prometheus.CounterVec
	batchDuration   *prometheus.HistogramVec
	batchesInFlight *prometheus.GaugeVec
	rateLimitWaits  *prometheus.CounterVec
	rateLimitWaited *prometheus.CounterVec
	healthValue     *prometheus.GaugeVec
	healthLimit     *prometheus.GaugeVec
	healthHolds     *prometheus.GaugeVec
}

var _ jobs.Observer = (*Metrics)(nil)

// NewMetrics returns Metrics with a fresh registry.
func NewMetrics() *Metrics {
	labels := []string{"version", "name"}
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		rowsDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backfill_rows_done_total", Help: "Keys processed by committed batches.",
		}, labels),
		batchesDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backfill_batches_done_total", Help: "Batches committed.",
		}, labels),
		batchesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backfill_batches_failed_total", Help: "Batches that failed and rolled back (they may be retried).",
		}, labels),
		batchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "backfill_batch_duration_seconds", Help: "Time from a batch's start to its commit.",
			Buckets: BatchDurationBuckets,
		}, labels),
		batchesInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "backfill_batches_in_flight",
			Help: "Batches this process is working now: from before their transaction begins until it has committed or rolled back.",
		}, labels),
		rateLimitWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backfill_rate_limit_waits_total", Help: "Times a job waited for its run's rate limit.",
		}, labels),
		rateLimitWaited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backfill_rate_limit_wait_seconds_total", Help: "Time jobs waited for their run's rate limit.",
		}, labels),
	}
	signal := append(labels[:len(labels):len(labels)], "signal")
	m.healthValue = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "backfill_health_signal_value",
		Help: "A run's health signal as last read by this worker: seconds for replica_lag and transaction_age, a count for active_backends, 1 or 0 for throttle_query and vacuum.",
	}, signal)
	m.healthLimit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "backfill_health_signal_limit", Help: "The limit above which the signal holds the run back (same units).",
	}, signal)
	m.healthHolds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "backfill_health_signal_holds", Help: "1 while the signal holds the run's batches back, else 0.",
	}, signal)
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.rowsDone, m.batchesDone, m.batchesFailed, m.batchDuration, m.batchesInFlight, m.rateLimitWaits, m.rateLimitWaited,
		m.healthValue, m.healthLimit, m.healthHolds,
	)
	return m
}

// Registry is where the metrics live, for callers that add their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

func runLabels(run *batches.Run) prometheus.Labels {
	return prometheus.Labels{"version": strconv.FormatInt(run.Version, 10), "name": run.Name}
}

// BatchStarted implements jobs.Observer: the batch counts in
// backfill_batches_in_flight until done is called.
func (m *Metrics) BatchStarted(run *batches.Run) (done func()) {
	g := m.batchesInFlight.With(runLabels(run))
	g.Inc()
	return g.Dec
}

// BatchDone implements jobs.Observer.
func (m *Metrics) BatchDone(run *batches.Run, rows int64, d time.Duration) {
	l := runLabels(run)
	m.rowsDone.With(l).Add(float64(rows))
	m.batchesDone.With(l).Inc()
	m.batchDuration.With(l).Observe(d.Seconds())
}

// BatchFailed implements jobs.Observer.
func (m *Metrics) BatchFailed(run *batches.Run) {
	m.batchesFailed.With(runLabels(run)).Inc()
}

// RateLimited implements jobs.Observer.
func (m *Metrics) RateLimited(run *batches.Run, d time.Duration) {
	l := runLabels(run)
	m.rateLimitWaits.With(l).Inc()
	m.rateLimitWaited.With(l).Add(d.Seconds())
}

// Health implements jobs.Observer.
func (m *Metrics) Health(run *batches.Run, h batches.Health) {
	for _, s := range h.Signals {
		l := runLabels(run)
		l["signal"] = s.Name
		m.healthValue.With(l).Set(s.Value)
		m.healthLimit.With(l).Set(s.Limit)
		holds := 0.0
		if s.Holds {
			holds = 1
		}
		m.healthHolds.With(l).Set(holds)
	}
}
