package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/backfill/backfill/batches"
	"github.com/backfill/backfill/jobs"
)

// dryRun is "run VERSION --dry-run": the plan and the first batch, rolled
// back.
func (c *command) dryRun(ctx context.Context) error {
	return c.onVersion(ctx, "run", func(enq *jobs.Enqueuer, version int64) error {
		d, err := enq.DryRun(ctx, version)
		if err != nil {
			return err
		}
		printDryRun(c, d)
		return nil
	})
}

func printDryRun(c *command, d *batches.DryRun) {
	o := d.Options
	if l := d.Loss; l != nil {
		verdict := "a run may be recorded"
		if l.Refused() {
			verdict = `a run would be refused until the file sets "-- on_loss: null" or those rows are fixed`
		}
		fmt.Fprintf(c.stdout, "loss check of %s: %s; %s\n", d.Definition.Label(), l, verdict)
	}
	where := ""
	if o.Where != "" {
		where = " matching where"
	}
	if !d.Ran {
		fmt.Fprintf(c.stdout, "dry run of %s: %s has no keys%s, so a run would finish at once; nothing was recorded or changed\n",
			d.Definition.Label(), o.Table, where)
		return
	}
	fmt.Fprintf(c.stdout, "dry run of %s: the first batch ran and was rolled back; nothing was recorded or changed\n", d.Definition.Label())
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	row := func(label, format string, args ...any) {
		fmt.Fprintf(tw, "  %s\t%s\n", label, fmt.Sprintf(format, args...))
	}
	b := d.Batch
	row("partition", "%d (of partitions 0..%d)", b.Partition, len(d.Plan.Ranges)-1)
	row("first key", "%s", b.First)
	row("last key", "%s", b.Last)
	row("keys covered", "%d", b.Rows)
	row("rows affected", "%d", d.RowsAffected)
	row("duration", "%s", roughly(d.Duration))
	row("estimated", "%d rows%s in %d batches of up to %d (%d of %d partitions have keys)",
		d.RowsEstimated(), where, d.BatchesEstimated(), o.BatchSize, d.PartitionsWithRows, len(d.Plan.Ranges))
	fromBatch := "at one batch at a time: " + roughly(d.ETAFromBatch(1))
	if n := d.PartitionsWithRows; n > 1 {
		fromBatch = fmt.Sprintf("at one batch at a time: %s; with %d batches in parallel (one per partition): %s",
			roughly(d.ETAFromBatch(1)), n, roughly(d.ETAFromBatch(n)))
	}
	if eta, ok := d.ETAAtRate(); ok {
		row("ETA", "%s at the configured rate of %s rows/s", roughly(eta), strconv.FormatFloat(o.Rate, 'f', -1, 64))
		row("", "(from this batch's duration, %s)", fromBatch)
	} else {
		row("ETA", "%s (from this batch's duration; no rate is set)", fromBatch)
	}
	_ = tw.Flush()
}

// longETA is where roughly stops counting: an estimate that long (or one
// that reached the largest Duration) says the settings are wrong.
const longETA = 100 * 365 * 24 * time.Hour

// roughly rounds a duration for people, to three significant digits (whole
// seconds from a minute on, whole minutes from an hour on).
func roughly(d time.Duration) string {
	if d > longETA {
		return "more than 100 years"
	}
	unit := time.Duration(1)
	for d/unit >= 1000 {
		unit *= 10
	}
	d = d.Round(unit)
	switch {
	case d >= time.Hour:
		d = d.Round(time.Minute)
	case d >= time.Minute:
		d = d.Round(time.Second)
	}
	return d.String()
}
