package main

import (
	"context"
	"fmt"

	"github.com/backfill/backfill/batches"
)

func (c *command) migrate(ctx context.Context) error {
	if err := c.noArgs("migrate"); err != nil {
		return err
	}
	pool, err := c.settings.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := batches.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if res.RiverSteps+res.EngineSteps > 0 {
		fmt.Fprintf(c.stdout, "applied %d River and %d backfill schema migration(s); ", res.RiverSteps, res.EngineSteps)
	}
	fmt.Fprintln(c.stdout, "schema is up to date")
	return nil
}
