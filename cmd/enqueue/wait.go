package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/internal/cli"
)

// Exit codes of wait besides 0 (every run completed).
const (
	waitExitFailed  = 1
	waitExitTimeout = 2
)

const (
	waitProgressDefault = 5 * time.Second
	waitPollInterval    = time.Second
)

// wait blocks until the latest run of every named version has completed: the
// gate a later deploy uses before it relies on a backfill, e.g. before it
// drops the old column.
func (c *command) wait(ctx context.Context, timeout, every time.Duration) error {
	if len(c.args) == 0 {
		return cli.Usagef("wait takes one or more VERSION arguments")
	}
	if timeout < 0 {
		return cli.Usagef("wait: --timeout must not be negative, got %s", timeout)
	}
	if every <= 0 {
		return cli.Usagef("wait: --progress-every must be positive, got %s", every)
	}
	versions := make([]int64, len(c.args))
	for i, a := range c.args {
		v, err := strconv.ParseInt(a, 10, 64)
		if err != nil || v < 1 {
			return cli.Usagef("wait: VERSION must be a positive integer, got %q", a)
		}
		versions[i] = v
	}
	pool, err := c.settings.OpenPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()

	started := time.Now()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	var lastPrint time.Time
	lastStates := map[int64]batches.State{}
	poll := time.NewTicker(waitPollInterval)
	defer poll.Stop()
	for {
		var runs []batches.RunStatus
		err := c.read(ctx, pool, func(q batches.Querier) (err error) {
			runs, err = latestRuns(ctx, q, versions)
			return err
		})
		if err != nil {
			return err
		}
		completed, changed := 0, false
		for _, r := range runs {
			if lastStates[r.Version] != r.State {
				lastStates[r.Version], changed = r.State, true
			}
			switch r.State {
			case batches.StateCompleted:
				completed++
			case batches.StateFailed, batches.StateCancelled:
				printProgress(c, runs, started)
				msg := fmt.Sprintf("%d_%s run %d is %s", r.Version, r.Name, r.RunNumber, r.State)
				if r.LastError != nil {
					msg += ": " + *r.LastError
				}
				return &cli.ExitError{Code: waitExitFailed, Err: errors.New(msg)}
			}
		}
		if completed == len(runs) {
			printProgress(c, runs, started)
			return nil
		}
		if changed || time.Since(lastPrint) >= every {
			printProgress(c, runs, started)
			lastPrint = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return &cli.ExitError{Code: waitExitTimeout, Err: fmt.Errorf("timed out after %s: %s", timeout, unfinished(runs))}
		case <-poll.C:
		}
	}
}

// latestRuns returns the latest run of each version, in the order asked.
func latestRuns(ctx context.Context, q batches.Querier, versions []int64) ([]batches.RunStatus, error) {
	all, err := batches.ListStatus(ctx, q, nil)
	if err != nil {
		return nil, err
	}
	latest := map[int64]batches.RunStatus{}
	for _, r := range all { // ordered by version and run number
		latest[r.Version] = r
	}
	out := make([]batches.RunStatus, len(versions))
	for i, v := range versions {
		r, ok := latest[v]
		if !ok {
			return nil, fmt.Errorf("version %d has not been enqueued: nothing to wait for", v)
		}
		out[i] = r
	}
	return out, nil
}

func printProgress(c *command, runs []batches.RunStatus, started time.Time) {
	parts := make([]string, len(runs))
	for i, r := range runs {
		s := fmt.Sprintf("%d_%s %s %s %d/%d rows", r.Version, r.Name, r.State, percent(r), r.RowsDone, r.RowsEstimated)
		if r.ETASeconds != nil {
			s += fmt.Sprintf(", %.0f rows/s, ETA %s", r.RowsPerSecond, etaText(r))
		}
		if r.HeldBack != "" {
			s += " (" + r.HeldBack + ")"
		}
		parts[i] = s
	}
	fmt.Fprintf(c.stdout, "%6s  %s\n", time.Since(started).Round(time.Second), strings.Join(parts, " | "))
}

func unfinished(runs []batches.RunStatus) string {
	var parts []string
	for _, r := range runs {
		if r.State != batches.StateCompleted {
			parts = append(parts, fmt.Sprintf("%d_%s is %s (%s)", r.Version, r.Name, r.State, percent(r)))
		}
	}
	return strings.Join(parts, ", ")
}
