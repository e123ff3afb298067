package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/backfill/backfill/jobs"
)

// onVersion parses the VERSION argument of cmd, connects, and calls do.
func (c *command) onVersion(ctx context.Context, cmd string, do func(*jobs.Enqueuer, int64) error) error {
	version, err := c.version(cmd)
	if err != nil {
		return err
	}
	pool, enq, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	return do(enq, version)
}

func (c *command) runVersion(ctx context.Context, again bool) error {
	return c.onVersion(ctx, "run", func(enq *jobs.Enqueuer, version int64) error {
		r, err := enq.Run(ctx, version, again)
		if errors.Is(err, jobs.ErrNeedsAgain) {
			return fmt.Errorf("%w; pass --again to run it again", err)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "enqueued %s\n", r.Label())
		return nil
	})
}

func (c *command) revert(ctx context.Context) error {
	return c.onVersion(ctx, "revert", func(enq *jobs.Enqueuer, version int64) error {
		r, err := enq.Revert(ctx, version)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "enqueued %s\n", r.Label())
		return nil
	})
}

func (c *command) retry(ctx context.Context) error {
	return c.onVersion(ctx, "retry", func(enq *jobs.Enqueuer, version int64) error {
		r, n, err := enq.Retry(ctx, version)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "resumed %d failed partition(s) of %s from their checkpoints\n", n, r.Label())
		return nil
	})
}
