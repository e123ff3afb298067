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
	if err := batches.Migrate(ctx, pool); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "schema is up to date")
	return nil
}
