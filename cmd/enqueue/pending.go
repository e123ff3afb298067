package main

import (
	"context"
	"fmt"
)

func (c *command) pending(ctx context.Context) error {
	if err := c.noArgs("pending"); err != nil {
		return err
	}
	pool, enq, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := enq.Pending(ctx)
	if err != nil {
		return err
	}
	for _, d := range res.Drifted {
		fmt.Fprintln(c.stderr, "warning:", d)
	}
	for _, r := range res.Enqueued {
		fmt.Fprintf(c.stdout, "enqueued %s\n", r.Label())
	}
	fmt.Fprintf(c.stdout, "%d enqueued, %d already enqueued before\n", len(res.Enqueued), res.AlreadyEnqueued)
	return nil
}
