package main

import (
	"context"
	"fmt"
)

func (c *command) runVersion(ctx context.Context, again bool) error {
	version, err := c.version("run")
	if err != nil {
		return err
	}
	pool, enq, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	r, err := enq.Run(ctx, version, again)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "enqueued %s\n", r.Label())
	return nil
}

func (c *command) revert(ctx context.Context) error {
	version, err := c.version("revert")
	if err != nil {
		return err
	}
	pool, enq, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	r, err := enq.Revert(ctx, version)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "enqueued %s\n", r.Label())
	return nil
}

func (c *command) retry(ctx context.Context) error {
	version, err := c.version("retry")
	if err != nil {
		return err
	}
	pool, enq, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	r, n, err := enq.Retry(ctx, version)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "resumed %d failed partition(s) of %s from their checkpoints\n", n, r.Label())
	return nil
}
