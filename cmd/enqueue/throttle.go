package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"time"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/jobs"
)

// bindThrottle registers the flags of "enqueue throttle" on fs: each one
// given sets its field of the change.
func bindThrottle(fs *flag.FlagSet) *batches.Throttle {
	var change batches.Throttle
	fs.Func("rate", "rows per second for the whole pool (0: unlimited)", func(v string) error {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("want a number of rows per second, got %q", v)
		}
		change.Rate = &r
		return nil
	})
	fs.Func("duty-cycle", "share of time batches may keep the database busy, such as 25%, or off", func(v string) error {
		d, err := batches.ParseDutyCycle(v)
		if err != nil {
			return err
		}
		change.DutyCycle = &d
		return nil
	})
	fs.Func("batch", "rows per batch", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want a whole number of rows, got %q", v)
		}
		change.BatchSize = &n
		return nil
	})
	fs.Func("batch-time", "the duration batches aim at, their size adapting (0 or off: a fixed size)", func(v string) error {
		if v == "off" {
			v = "0"
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration such as 200ms, or off, got %q", v)
		}
		change.BatchTime = &d
		return nil
	})
	limit := func(name string, set func(time.Duration)) {
		fs.Func(name, "a health limit, or off", func(v string) error {
			if v == "off" {
				set(-1)
				return nil
			}
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("want a duration such as 5s, or off, got %q", v)
			}
			set(d)
			return nil
		})
	}
	limit("max-replica-lag", func(d time.Duration) { change.MaxReplicaLag = &d })
	limit("max-transaction-age", func(d time.Duration) { change.MaxTransactionAge = &d })
	fs.Func("max-active-backends", "a health limit, or off", func(v string) error {
		n := -1
		if v != "off" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 {
				return fmt.Errorf("want a positive whole number, or off, got %q", v)
			}
		}
		change.MaxActiveBackends = &n
		return nil
	})
	fs.Func("throttle-query", `a query returning true while the run must hold ("" for none)`, func(v string) error {
		change.ThrottleQuery = &v
		return nil
	})
	fs.Func("hold-during-vacuum", "true or false", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		change.HoldDuringVacuum = &b
		return nil
	})
	return &change
}

// throttle changes the rate or batch size of VERSION's latest run.
func (c *command) throttle(ctx context.Context, change batches.Throttle) error {
	if _, err := c.version("throttle"); err != nil {
		return err
	}
	if err := change.Validate(); err != nil {
		return cli.Usagef("throttle: %v", err)
	}
	return c.onVersion(ctx, "throttle", func(enq *jobs.Enqueuer, version int64) error {
		res, err := enq.Throttle(ctx, version, change, cli.Actor())
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "throttled %s: %s (was %s); workers apply it within about a second\n", res.Run.Label(), res.After, res.Before)
		return nil
	})
}
