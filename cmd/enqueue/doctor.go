package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
	"github.com/backfill/backfill/jobs"
)

// doctorExitProblem is doctor's exit code when a check failed.
const doctorExitProblem = 1

// doctor is "enqueue doctor": every check, one line each with what to do.
func (c *command) doctor(ctx context.Context, asJSON bool, idleLimit, lookAtWaits time.Duration) error {
	if err := c.noArgs("doctor"); err != nil {
		return err
	}
	pool, err := c.settings.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	var findings []batches.Finding
	err = c.read(ctx, pool, func(q batches.Querier) (err error) {
		findings, err = batches.Doctor(ctx, q, batches.DoctorParams{
			URLPort: urlPort(pool), DeadAfter: jobs.DeadAfterDefault, IdleLimit: idleLimit, JobKind: jobs.BatchArgs{}.Kind(),
			LookAtWaits: lookAtWaits,
		})
		return err
	})
	if err != nil {
		return err
	}
	problems := 0
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return err
		}
	}
	for _, f := range findings {
		if f.Status == batches.FindingFail {
			problems++
		}
		if asJSON {
			continue
		}
		fmt.Fprintf(c.stdout, "%-4s  %-10s  %s\n", f.Status, f.Check, f.Detail)
		if f.Advice != "" {
			fmt.Fprintf(c.stdout, "%-4s  %-10s  -> %s\n", "", "", f.Advice)
		}
	}
	if problems > 0 {
		return &cli.ExitError{Code: doctorExitProblem, Err: fmt.Errorf("doctor: %d checks failed", problems)}
	}
	return nil
}

// urlPort is the port the pool connects to.
func urlPort(pool *pgxpool.Pool) int {
	return int(pool.Config().ConnConfig.Port)
}
