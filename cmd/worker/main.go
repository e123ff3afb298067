// Command worker works the batches of enqueued backfills until it receives
// SIGTERM or SIGINT. Start more processes for more throughput.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/internal/logsummary"
	"github.com/backfill/backfill/internal/web"
	"github.com/backfill/backfill/jobs"
)

const usage = `Usage: worker [flags]

Works the batches of enqueued backfills until SIGTERM or SIGINT, then hands
its partitions over after the batches in flight and exits 0.

Flags (flag, then environment, then default):
  --concurrency N         batches worked at once by this process (default 4)
  --database-url URL      PostgreSQL (DATABASE_URL; default ` + cli.DatabaseURLDefault + `)
  --redis-url URL         Redis: holds each run's rate across the whole pool, and serves Go
                          backfills that need it (REDIS_URL). Without it, or while it does not
                          answer, each live worker takes an equal share of a run's rate
  --schema NAME           schema of the version table and River's tables (BACKFILL_SCHEMA;
                          default backfill)
  --job-timeout D         longest a job may run; it hands over after a quarter (default 1m)
  --rescue-after D        when River itself takes a running job for lost in a crash (default job timeout + 15s)
  --pool-mode MODE        session (default: statements stay prepared on each connection), or
                          transaction when DATABASE_URL points at a transaction-pooling PgBouncer:
                          statements go unnamed and River polls for jobs every 200ms instead of
                          LISTENing (DATABASE_POOL_MODE). Unset, a pooler in between counts as
                          transaction pooling for statements
  --heartbeat D           how often this worker says it is alive and looks for dead ones (default 2s)
  --dead-after D          silence after which a worker counts as dead and its partitions go to new
                          jobs (default 10s)
  --shutdown-timeout D    how long SIGTERM waits for batches in flight before cancelling them (default 30s)
  --lock-timeout D        longest a batch waits for a lock before it fails and is retried (default 2s;
                          a backfill's "lock_timeout" header wins)
  --statement-timeout D   longest one batch's statement may run (default 30s; "statement_timeout" wins)
  --idle-in-transaction-timeout D
                          the server ends a batch's session left idle in its transaction this long,
                          so a frozen worker cannot keep rows locked (default 10s)
  --log-level LEVEL       debug (one line per batch), info, warn or error (LOG_LEVEL; default info)
  --log-format FORMAT     text or json (LOG_FORMAT; default text)
  --http ADDR             serve the live page of runs, /api/runs, /metrics and /healthz on ADDR,
                          e.g. :8080 or 127.0.0.1:8080 (default: off)
  --http-token TOKEN      lets the page pause, resume, cancel and retry runs for requests that
                          carry this bearer token (HTTP_TOKEN); without it the page is read-only

  --version               print the build (module version or commit, Go version) and exit

Examples:
  worker --concurrency 8
  DATABASE_URL=postgres://app@db/app REDIS_URL=redis://cache:6379 worker --log-level debug
  HTTP_TOKEN=$(openssl rand -hex 16) worker --http :8080
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	cli.Report(os.Stderr, "worker", err, `run "worker -h"`)
	os.Exit(cli.ExitCode(err))
}

// run works jobs until ctx is cancelled (by a signal), then stops gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var s cli.Settings
	s.Bind(fs, getenv, false)
	s.BindLogging(fs, getenv)
	concurrency := fs.Int("concurrency", jobs.ConcurrencyDefault, "batches worked at once")
	jobTimeout := fs.Duration("job-timeout", jobs.JobTimeoutDefault, "longest a job may run")
	rescueAfter := fs.Duration("rescue-after", 0, "when a running job counts as lost")
	shutdownTimeout := fs.Duration("shutdown-timeout", jobs.ShutdownTimeoutDefault, "how long SIGTERM waits for batches in flight")
	poolMode := fs.String("pool-mode", cmp.Or(getenv("DATABASE_POOL_MODE"), "session"), "session, or transaction behind a transaction-pooling PgBouncer (env DATABASE_POOL_MODE)")
	heartbeat := fs.Duration("heartbeat", jobs.HeartbeatDefault, "how often the worker says it is alive")
	deadAfter := fs.Duration("dead-after", jobs.DeadAfterDefault, "silence after which a worker counts as dead")
	eventRetention := fs.Duration("event-retention", batches.EventRetentionDefault, "how long a finished run's history (events, throughput) is kept; 0 keeps it forever")
	var timeouts batches.Timeouts
	fs.DurationVar(&timeouts.Lock, "lock-timeout", batches.LockTimeoutDefault, "longest a batch waits for a lock")
	fs.DurationVar(&timeouts.Statement, "statement-timeout", batches.StatementTimeoutDefault, "longest a batch's statement may run")
	fs.DurationVar(&timeouts.IdleInTransaction, "idle-in-transaction-timeout", batches.IdleInTransactionDefault, "longest a batch's transaction may sit idle")
	httpAddr := fs.String("http", "", "serve the web page, /metrics and /healthz on this address")
	httpToken := fs.String("http-token", getenv("HTTP_TOKEN"), "bearer token that enables the page's actions (env HTTP_TOKEN)")
	version := fs.Bool("version", false, "print the build and exit")
	rest, err := cli.ParseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.Usagef("%v", err)
	}
	if *version {
		fmt.Fprintln(stdout, cli.Version("worker"))
		return nil
	}
	if len(rest) > 0 {
		return cli.Usagef("worker takes no arguments, got %q", rest[0])
	}
	if *concurrency < 1 {
		return cli.Usagef("--concurrency must be at least 1, got %d", *concurrency)
	}
	if *rescueAfter != 0 && *rescueAfter <= *jobTimeout {
		return cli.Usagef("--rescue-after (%s) must be longer than --job-timeout (%s)", *rescueAfter, *jobTimeout)
	}
	if *deadAfter < 2**heartbeat {
		return cli.Usagef("--dead-after (%s) must be at least twice --heartbeat (%s)", *deadAfter, *heartbeat)
	}
	if *poolMode != "session" && *poolMode != "transaction" {
		return cli.Usagef("--pool-mode must be session or transaction, got %q", *poolMode)
	}
	if *shutdownTimeout <= 0 {
		return cli.Usagef("--shutdown-timeout must be positive, got %s", *shutdownTimeout)
	}
	for name, d := range map[string]time.Duration{"--lock-timeout": timeouts.Lock, "--statement-timeout": timeouts.Statement, "--idle-in-transaction-timeout": timeouts.IdleInTransaction} {
		if d < 10*time.Millisecond {
			return cli.Usagef("%s must be at least 10ms, got %s", name, d)
		}
	}
	if *httpAddr != "" {
		if err := web.CheckAddr(*httpAddr); err != nil {
			return cli.Usagef("--http: %v", err)
		}
	}
	logger, err := s.Logger(stderr)
	if err != nil {
		return cli.Usagef("%v", err)
	}
	// Deferred first, so it runs last: summaries of faults during the
	// shutdown are written too.
	defer logsummary.CloseLogger(logger)
	cli.RouteRedisLogs(logger)
	s.MaxConns = jobs.ConnectionsFor(*concurrency)
	s.Statements = statementsFor(*poolMode, poolModeSet(fs, getenv))
	pool, err := s.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if s.Pooler != "" {
		logger.Warn("statements are not kept prepared: "+s.Pooler+
			"; start with --pool-mode transaction if it pools by transaction, or --pool-mode session if it pools by session (faster: see the README's Behind PgBouncer)",
			"pool_mode", *poolMode)
	}
	// A worker never works on a schema it was not built for.
	if err := batches.CheckSchema(ctx, pool); err != nil {
		return err
	}
	rdb, err := s.OpenRedis(ctx)
	if err != nil {
		return err
	}
	if rdb != nil {
		defer rdb.Close()
	}
	reg, err := jobs.NewRegistry("", rdb)
	if err != nil {
		return err
	}
	var (
		metrics  *web.Metrics
		observer jobs.Observer
	)
	if *httpAddr != "" {
		metrics = web.NewMetrics()
		observer = metrics
	}
	w, err := jobs.NewWorker(jobs.WorkerConfig{
		Pool: pool, Registry: reg, Redis: rdb, Logger: logger, Observer: observer,
		Concurrency: *concurrency, JobTimeout: *jobTimeout, RescueAfter: *rescueAfter, Timeouts: timeouts,
		Heartbeat: *heartbeat, DeadAfter: *deadAfter, PollOnly: *poolMode == "transaction",
		EventRetention: retentionOf(*eventRetention),
	})
	if err != nil {
		return cli.Usagef("%v", err)
	}
	if *httpAddr != "" {
		srv, err := serveHTTP(*httpAddr, *httpToken, pool, reg, metrics, logger)
		if err != nil {
			return err
		}
		// Deferred after pool.Close, so it runs before it: the page keeps
		// answering while the batches in flight finish.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				logger.Warn("http server shutdown", "err", err)
			}
		}()
	}
	// Jobs must outlive ctx: the signal only starts the graceful stop.
	if err := w.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	logger.Info("worker started", "concurrency", *concurrency, "max_connections", s.MaxConns, "database", cli.Redact(s.DatabaseURL))
	<-ctx.Done()
	logger.Info("stopping: handing over partitions after the batches in flight", "timeout", *shutdownTimeout)
	started := time.Now()
	if err := w.Stop(*shutdownTimeout); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	logger.Info("worker stopped", "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// serveHTTP starts the web page, API, metrics and health check on addr.
func serveHTTP(addr, token string, pool *pgxpool.Pool, reg *batches.Registry, metrics *web.Metrics, logger *slog.Logger) (*web.Server, error) {
	cfg := web.Config{Pool: pool, Metrics: metrics, Token: token, Logger: logger}
	if token != "" {
		if len(token) < 16 {
			logger.Warn("--http-token is short; use a long random one such as $(openssl rand -hex 16)")
		}
		enq, err := jobs.NewEnqueuer(pool, reg, cli.Hostname())
		if err != nil {
			return nil, err
		}
		cfg.Enqueuer = enq
	}
	h, err := web.New(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := web.Listen(addr, h, logger)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	logger.Info("http listening", "addr", srv.Addr().String(), "actions", token != "")
	return srv, nil
}

// retentionOf maps the flag's 0 ("forever") to the config's negative.
func retentionOf(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// statementsFor is how the worker sends statements in its pool mode: kept
// prepared on each connection in session mode, so that the server parses a
// batch's statements once per connection rather than every batch; unnamed
// behind a transaction-pooling PgBouncer. Unless the mode was chosen, a
// pooler in between (the server answers on another port) is taken for a
// transaction pooler.
func statementsFor(poolMode string, chosen bool) cli.Statements {
	switch {
	case poolMode == "transaction":
		return cli.StatementsUnnamed
	case chosen:
		return cli.StatementsPrepared
	}
	return cli.StatementsPreparedUnlessPooled
}

// poolModeSet says whether --pool-mode or DATABASE_POOL_MODE chose the pool
// mode.
func poolModeSet(fs *flag.FlagSet, getenv func(string) string) bool {
	set := getenv("DATABASE_POOL_MODE") != ""
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "pool-mode" })
	return set
}
