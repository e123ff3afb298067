package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/backfill/backfill/batches"
)

func (c *command) migrate(ctx context.Context, status bool) error {
	if err := c.noArgs("migrate"); err != nil {
		return err
	}
	pool, err := c.settings.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if status {
		return c.migrateStatus(ctx, pool)
	}
	res, err := batches.Migrate(ctx, pool, batches.MigrateOptions{
		OnWait: func(holder string, expires time.Time) {
			fmt.Fprintf(c.stderr, "waiting for the migration lock held by %s (its lease runs until %s)\n", holder, expires.Format(time.RFC3339))
		},
	})
	if res != nil {
		for _, m := range res.Applied {
			fmt.Fprintf(c.stdout, "applied %04d_%s\n", m.Version, m.Name)
		}
	}
	if err != nil {
		return err
	}
	if res.RiverSteps+len(res.Applied) > 0 {
		fmt.Fprintf(c.stdout, "applied %d River and %d backfill schema migration(s); ", res.RiverSteps, len(res.Applied))
	}
	fmt.Fprintln(c.stdout, "schema is up to date")
	return nil
}

// migrateStatus lists the engine's migrations: applied (when, checksum) or
// not yet, and any the database has that this binary does not know.
func (c *command) migrateStatus(ctx context.Context, pool batches.Querier) error {
	applied, err := batches.AppliedMigrations(ctx, pool)
	if err != nil {
		return err
	}
	known := batches.Migrations()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tCHECKSUM\tAPPLIED")
	for i := range max(len(applied), len(known)) {
		switch {
		case i >= len(known):
			a := applied[i]
			fmt.Fprintf(tw, "%04d\t%s\t%s\t%s (unknown to this binary)\n", a.Version, a.Name, a.Checksum, a.AppliedAt.Format(time.RFC3339))
		case i >= len(applied):
			k := known[i]
			fmt.Fprintf(tw, "%04d\t%s\t%s\tnot applied\n", k.Version, k.Name, k.Checksum)
		default:
			k, a := known[i], applied[i]
			note := a.AppliedAt.Format(time.RFC3339)
			if a.Checksum != "" && a.Checksum != k.Checksum {
				note += fmt.Sprintf(" (recorded checksum %s differs)", a.Checksum)
			}
			fmt.Fprintf(tw, "%04d\t%s\t%s\t%s\n", k.Version, k.Name, k.Checksum, note)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := batches.CheckSchema(ctx, pool); err != nil {
		fmt.Fprintln(c.stdout, err)
		return nil
	}
	fmt.Fprintf(c.stdout, "schema version %d: up to date\n", len(known))
	return nil
}
