package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/backfill/backfill/batches"
)

// Defaults of WorkerConfig.
const (
	ConcurrencyDefault     = 4
	JobTimeoutDefault      = time.Minute
	ShutdownTimeoutDefault = 30 * time.Second
	// SliceMax caps how long one job works before it hands over.
	SliceMax = 10 * time.Second
)

// ConnectionsFor is the most connections a worker process of the given
// concurrency opens: one per batch, one for River's fetching, elections and
// maintenance, one for its notifier, and two for status reads and the lock
// watch of slow batches. Idle ones are closed.
func ConnectionsFor(concurrency int) int { return concurrency + 4 }

// WorkerConfig configures a worker process.
type WorkerConfig struct {
	Pool     *pgxpool.Pool
	Registry *batches.Registry
	// Redis holds runs' rates across the whole pool (one budget per run);
	// without it each live worker takes an equal share of a run's rate.
	// The worker falls back to shares while Redis does not answer.
	Redis  *redis.Client
	Logger *slog.Logger
	// Observer is told of every batch, for metrics; none when nil.
	Observer Observer
	// Concurrency is how many batches this process works at once.
	Concurrency int
	// JobTimeout bounds one job; a job works batches for a quarter of it
	// (SliceMax at most) and then hands over.
	JobTimeout time.Duration
	// RescueAfter is how long a job may look running before River takes it
	// for lost (its worker crashed) and runs it again; JobTimeout + 15s
	// when zero (River cancels a job at JobTimeout, so none runs longer).
	RescueAfter time.Duration
	// Timeouts bound each batch's lock waits, statements and idle time in
	// a transaction; zero fields take batches' defaults.
	Timeouts batches.Timeouts
	// PollOnly makes River poll for jobs instead of listening for them
	// (LISTEN needs a session of its own, which a transaction-pooling
	// PgBouncer does not give); it polls every PollInterval.
	PollOnly bool
	// Heartbeat is how often the process says it is alive and looks for
	// dead workers' partitions (HeartbeatDefault when zero); DeadAfter is
	// the silence after which a worker counts as dead (DeadAfterDefault).
	Heartbeat, DeadAfter time.Duration
	// EventRetention is how long after a run finished its history (events
	// and throughput) is kept: batches.EventRetentionDefault when zero,
	// forever when negative. The heartbeat prunes it once an hour.
	EventRetention time.Duration
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	c.Concurrency = cmp.Or(c.Concurrency, ConcurrencyDefault)
	c.JobTimeout = cmp.Or(c.JobTimeout, JobTimeoutDefault)
	c.RescueAfter = cmp.Or(c.RescueAfter, c.JobTimeout+15*time.Second)
	c.Timeouts = c.Timeouts.WithDefaults()
	c.Heartbeat = cmp.Or(c.Heartbeat, HeartbeatDefault)
	c.DeadAfter = cmp.Or(c.DeadAfter, DeadAfterDefault)
	c.EventRetention = cmp.Or(c.EventRetention, batches.EventRetentionDefault)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = noObserver{}
	}
	return c
}

func (c WorkerConfig) validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("jobs: WorkerConfig.Pool is required")
	case c.Registry == nil:
		return errors.New("jobs: WorkerConfig.Registry is required")
	case c.Concurrency < 1 || c.Concurrency > 10000:
		return fmt.Errorf("jobs: concurrency must be between 1 and 10000, got %d", c.Concurrency)
	case c.JobTimeout < time.Second:
		return fmt.Errorf("jobs: job timeout must be at least 1s, got %s", c.JobTimeout)
	case c.RescueAfter <= c.JobTimeout:
		return fmt.Errorf("jobs: RescueAfter (%s) must be longer than JobTimeout (%s)", c.RescueAfter, c.JobTimeout)
	case c.DeadAfter < 2*c.Heartbeat:
		return fmt.Errorf("jobs: DeadAfter (%s) must be at least twice Heartbeat (%s)", c.DeadAfter, c.Heartbeat)
	case c.Timeouts.Lock < 0 || c.Timeouts.Statement < 0 || c.Timeouts.IdleInTransaction < 0:
		return fmt.Errorf("jobs: timeouts must be positive, got lock %s, statement %s, idle in transaction %s",
			c.Timeouts.Lock, c.Timeouts.Statement, c.Timeouts.IdleInTransaction)
	}
	return nil
}

// Worker is a process's pool of batch workers.
type Worker struct {
	client    *river.Client[pgx.Tx]
	heartbeat *heartbeat
	limiter   *poolLimiter
	pool      *pgxpool.Pool
	stopping  chan struct{}
	logger    *slog.Logger
}

// NewWorker builds a worker; Start runs it.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	shares := &runShares{}
	limiter := newPoolLimiter(cfg.Redis, shares, cfg.Logger)
	w := &Worker{stopping: make(chan struct{}), logger: cfg.Logger, limiter: limiter, pool: cfg.Pool}
	workers := river.NewWorkers()
	river.AddWorker(workers, &BatchWorker{
		Pool: cfg.Pool, Registry: cfg.Registry, Limiter: limiter, Logger: cfg.Logger, Observer: cfg.Observer,
		Slice: min(cfg.JobTimeout/4, SliceMax), Stopping: w.stopping, Timeouts: cfg.Timeouts,
	})
	host, _ := os.Hostname()
	client, err := river.NewClient(riverpgxv5.New(cfg.Pool), &river.Config{
		// Unique per process (and per Worker in one process): the heartbeat
		// and River's attempted_by name the worker by it.
		ID:                   clientID(host),
		Schema:               batches.SchemaName(),
		Queues:               map[string]river.QueueConfig{QueueName: {MaxWorkers: cfg.Concurrency}},
		PollOnly:             cfg.PollOnly,
		FetchPollInterval:    pollInterval(cfg.PollOnly),
		FetchCooldown:        fetchCooldown,
		Workers:              workers,
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
		// River logs only its own trouble; batch logs come from BatchWorker.
		Logger: slog.New(newLevelFloor(cfg.Logger.Handler(), slog.LevelWarn)),
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: creating the River client: %w", err)
	}
	w.client = client
	w.heartbeat = &heartbeat{
		pool: cfg.Pool, client: client, every: cfg.Heartbeat, deadAfter: cfg.DeadAfter, logger: cfg.Logger,
		limiter: limiter, shares: shares, observer: cfg.Observer, retention: cfg.EventRetention,
		appName: cfg.Pool.Config().ConnConfig.RuntimeParams["application_name"],
		info:    batches.WorkerInfo{ID: client.ID(), Host: host, PID: os.Getpid(), Concurrency: cfg.Concurrency},
	}
	return w, nil
}

// rateKeyPrefix names the Redis keys of runs' rate budgets apart from those
// of other clusters, databases and schemas that use the same Redis, the same
// whichever way a worker connects (directly or through PgBouncer).
func rateKeyPrefix(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var database, cluster string
	if err := pool.QueryRow(ctx, `SELECT current_database()`).Scan(&database); err != nil {
		return "", fmt.Errorf("jobs: identifying the database for the rate limiter: %w", err)
	}
	// A managed server may refuse pg_control_system; the name must do then.
	if err := pool.QueryRow(ctx, `SELECT system_identifier::text FROM pg_control_system()`).Scan(&cluster); err != nil {
		cluster = "unknown"
	}
	return fmt.Sprintf("backfill:%s:%s:%s", cluster, database, batches.SchemaName()), nil
}

// PollInterval is how often a poll-only worker looks for jobs: a partition
// handed over between two jobs waits at most that long.
const PollInterval = 200 * time.Millisecond

// fetchCooldown is how soon after a fetch River may fetch jobs again. A
// partition's next job is inserted by the job it replaces, so the fetch its
// insertion triggers finds the slot still taken, and the fetch that follows
// the slot's release waits out the cooldown: River's default, 100 ms, cost
// a partition about 1% of its time at the 10 s slice. Jobs last seconds, so
// fetches stay rare.
const fetchCooldown = 10 * time.Millisecond

// pollInterval is River's fetch interval: PollInterval when polling is the
// only way jobs are found, River's default otherwise.
func pollInterval(pollOnly bool) time.Duration {
	if pollOnly {
		return PollInterval
	}
	return 0
}

// clientID names this worker: its host, pid and a random part.
func clientID(host string) string {
	if len(host) > 60 {
		host = host[:60]
	}
	return fmt.Sprintf("%s_%d_%08x", cmp.Or(host, "unknown_host"), os.Getpid(), rand.Uint32())
}

// Start begins fetching and working jobs, and the heartbeat; it returns at
// once.
func (w *Worker) Start(ctx context.Context) error {
	prefix, err := rateKeyPrefix(ctx, w.pool)
	if err != nil {
		return err
	}
	w.limiter.keyPrefix = prefix
	if err := w.client.Start(ctx); err != nil {
		return err
	}
	w.heartbeat.start()
	return nil
}

// Stop shuts down gracefully: jobs hand over after the batch in flight, and
// after timeout the ones still running are cancelled, which rolls their
// batches back. Nothing is lost either way; the work continues elsewhere.
func (w *Worker) Stop(timeout time.Duration) error {
	close(w.stopping)
	defer w.heartbeat.stop()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := w.client.Stop(ctx); err == nil {
		return nil
	}
	w.logger.Warn("jobs still running after the shutdown timeout; cancelling them", "timeout", timeout)
	hard, cancelHard := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelHard()
	return w.client.StopAndCancel(hard)
}

// levelFloor drops records below a level; it lets River log warnings while
// the process logs at debug.
type levelFloor struct {
	slog.Handler
	floor slog.Level
}

func newLevelFloor(h slog.Handler, floor slog.Level) slog.Handler { return &levelFloor{h, floor} }

func (h *levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.floor && h.Handler.Enabled(ctx, l)
}

func (h *levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return &levelFloor{h.Handler.WithAttrs(a), h.floor}
}
func (h *levelFloor) WithGroup(n string) slog.Handler {
	return &levelFloor{h.Handler.WithGroup(n), h.floor}
}
