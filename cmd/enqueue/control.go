package main

import (
	"context"
	"fmt"

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
