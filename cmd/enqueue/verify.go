package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
)

// verifyExitDisagree is verify's exit code when some row disagrees.
const verifyExitDisagree = 1

// verify is "enqueue verify VERSION": every row of the backfill's table
// checked against its verify condition (or its where condition), at the
// pace of its latest run, with progress; the gate before a contract step.
func (c *command) verify(ctx context.Context, every time.Duration, batch int) error {
	version, err := c.version("verify")
	if err != nil {
		return err
	}
	if every <= 0 {
		return cli.Usagef("verify: --progress-every must be positive, got %s", every)
	}
	if batch < 0 || batch > batches.BatchSizeMax {
		return cli.Usagef("verify: --batch must be between 1 and %d, got %d", batches.BatchSizeMax, batch)
	}
	pool, _, reg, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	def, err := reg.Get(version)
	if err != nil {
		return err
	}
	o := def.Options
	// The pace of the latest run as in force now (an operator's throttle
	// wins), else the definition's.
	paceRate, duty := o.Rate, o.DutyCycle
	err = c.read(ctx, pool, func(q batches.Querier) error {
		runs, err := batches.ListStatus(ctx, q, &version)
		if err == nil && len(runs) > 0 {
			last := runs[len(runs)-1]
			paceRate, duty = last.Rate, last.DutyCycle
		}
		return err
	})
	if err != nil {
		return err
	}
	if batch == 0 {
		batch = o.BatchSize
	}

	started, lastPrint := time.Now(), time.Now()
	progress := func(r batches.VerifyResult) {
		if time.Since(lastPrint) < every {
			return
		}
		lastPrint = time.Now()
		fmt.Fprintf(c.stdout, "%6s  %s: %d of ~%d rows checked, %d disagree\n",
			time.Since(started).Round(time.Second), def.Label(), r.Rows, max(r.RowsEstimated, r.Rows), r.Disagree)
	}
	res, err := batches.Verify(ctx, pool, batches.VerifyParams{
		Options: o, BatchSize: batch, Timeouts: c.timeouts,
		Pace: verifyPace(paceRate, duty, batch), Progress: progress,
	})
	if err != nil {
		return err
	}
	took := time.Since(started).Round(time.Millisecond)
	if res.Disagree > 0 {
		return &cli.ExitError{Code: verifyExitDisagree, Err: fmt.Errorf("%s: %d of %d rows of %s disagree (they fail %s); first keys: %s",
			def.Label(), res.Disagree, res.Rows, o.Table, res.Condition, strings.Join(res.FirstKeys, ", "))}
	}
	fmt.Fprintf(c.stdout, "verified %s: all %d rows of %s agree (%s), in %s\n", def.Label(), res.Rows, o.Table, res.Condition, took)
	return nil
}

// verifyPace waits before each batch as the backfill's rate (rows per
// second) and duty cycle (the share of time its one connection is busy)
// allow; nil when neither limits.
func verifyPace(perSecond, duty float64, batch int) func(context.Context, int64, time.Duration) error {
	if perSecond <= 0 && duty <= 0 {
		return nil
	}
	var limiter *rate.Limiter
	if perSecond > 0 {
		limiter = rate.NewLimiter(rate.Limit(perSecond), max(batch, 1))
	}
	return func(ctx context.Context, rows int64, took time.Duration) error {
		if limiter != nil && rows > 0 {
			if err := limiter.WaitN(ctx, int(min(rows, int64(limiter.Burst())))); err != nil {
				return err
			}
		}
		if duty > 0 && duty < 1 && took > 0 {
			// Idle (1-d)/d of the time the last batch was busy.
			idle := time.Duration(float64(took) * (1 - duty) / duty)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(idle):
			}
		}
		return nil
	}
}
