package main

import (
	"context"
	"fmt"

	"github.com/backfill/backfill/internal/cli"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/jobs"
)

// control runs pause, resume or cancel on VERSION's latest run.
func (c *command) control(ctx context.Context, name string, act func(*jobs.Enqueuer, context.Context, int64) (*batches.Run, error), done string) error {
	return c.onVersion(ctx, name, func(enq *jobs.Enqueuer, version int64) error {
		r, err := act(enq, ctx, version)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s %s\n", done, r.Label())
		return nil
	})
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
