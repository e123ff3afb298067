// Command worker works the batches of enqueued backfills until it receives
// SIGTERM or SIGINT. Start more processes for more throughput.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/jobs"
)

const usage = `Usage: worker [flags]

Works the batches of enqueued backfills until SIGTERM or SIGINT, then hands
its partitions over after the batches in flight and exits 0.

Flags (flag, then environment, then default):
  --concurrency N         batches worked at once by this process (default 4)
  --database-url URL      PostgreSQL (DATABASE_URL; default ` + cli.DatabaseURLDefault + `)
  --redis-url URL         Redis, for Go backfills that need it (REDIS_URL)
  --job-timeout D         longest a job may run; it hands over after a quarter (default 1m)
  --rescue-after D        when a running job counts as lost in a crash (default job timeout + 1m)
  --shutdown-timeout D    how long SIGTERM waits for batches in flight before cancelling them (default 30s)
  --log-level LEVEL       debug (one line per batch), info, warn or error (LOG_LEVEL; default info)
  --log-format FORMAT     text or json (LOG_FORMAT; default text)

Examples:
  worker --concurrency 8
  DATABASE_URL=postgres://app@db/app REDIS_URL=redis://cache:6379 worker --log-level debug
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "worker:", err)
	}
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
	rest, err := cli.ParseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.Usagef("%v", err)
	}
	if len(rest) > 0 {
		return cli.Usagef("worker takes no arguments, got %q", rest[0])
	}
	if *concurrency < 1 {
		return cli.Usagef("--concurrency must be at least 1, got %d", *concurrency)
	}
	if *shutdownTimeout <= 0 {
		return cli.Usagef("--shutdown-timeout must be positive, got %s", *shutdownTimeout)
	}
	logger, err := s.Logger(stderr)
	if err != nil {
		return cli.Usagef("%v", err)
	}
	pool, err := s.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
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
	w, err := jobs.NewWorker(jobs.WorkerConfig{
		Pool: pool, Registry: reg, Logger: logger,
		Concurrency: *concurrency, JobTimeout: *jobTimeout, RescueAfter: *rescueAfter,
	})
	if err != nil {
		return cli.Usagef("%v", err)
	}
	// Jobs must outlive ctx: the signal only starts the graceful stop.
	if err := w.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	logger.Info("worker started", "concurrency", *concurrency, "database", cli.Redact(s.DatabaseURL))
	<-ctx.Done()
	logger.Info("stopping: handing over partitions after the batches in flight", "timeout", *shutdownTimeout)
	started := time.Now()
	if err := w.Stop(*shutdownTimeout); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	logger.Info("worker stopped", "took", time.Since(started).Round(time.Millisecond))
	return nil
}
