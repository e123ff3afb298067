package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/backfill/backfill/batches"
)

func (c *command) status(ctx context.Context, asJSON bool) error {
	var version *int64
	if len(c.args) > 0 {
		v, err := c.version("status")
		if err != nil {
			return err
		}
		version = &v
	}
	pool, _, reg, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	runs, err := batches.ListStatus(ctx, pool, version)
	if err != nil {
		return err
	}
	if version != nil && len(runs) == 0 {
		if _, err := reg.Get(*version); err != nil {
			return fmt.Errorf("no backfill has version %d (not in %s, not in Go, never enqueued)", *version, c.settings.Dir)
		}
	}
	for i := range runs {
		r := &runs[i]
		if def, err := reg.Get(r.Version); err == nil && def.Checksum != r.Checksum {
			r.Drift = fmt.Sprintf("%s changed since this run was enqueued (checksum %s, recorded %s)", def.Source, def.Checksum, r.Checksum)
			if !asJSON {
				fmt.Fprintf(c.stderr, "warning: %d_%s run %d: %s\n", r.Version, r.Name, r.RunNumber, r.Drift)
			}
		}
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(runs)
	}
	if len(runs) == 0 {
		if version != nil {
			fmt.Fprintf(c.stdout, "version %d has not been enqueued yet\n", *version)
		} else {
			fmt.Fprintln(c.stdout, "no backfill has been enqueued yet")
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tMODE\tRUN\tSTATE\tPROGRESS\tROWS\tBATCHES\tFAILED\tSTARTED\tFINISHED\tLAST ERROR")
	for _, r := range runs {
		run := fmt.Sprint(r.RunNumber)
		if r.Direction == batches.DirectionDown {
			run += " revert"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d/~%d\t%d\t%d\t%s\t%s\t%s\n",
			r.Version, r.Name, r.Mode, run, r.State, percent(r), r.RowsDone, r.RowsEstimated,
			r.BatchesDone, r.BatchesFailed, when(r.StartedAt), when(r.FinishedAt), oneLine(r.LastError, 80))
	}
	return tw.Flush()
}

func percent(r batches.RunStatus) string {
	if r.State == batches.StateCompleted {
		return "100%"
	}
	if r.RowsEstimated == 0 {
		return "-"
	}
	return fmt.Sprintf("%d%%", min(99, r.RowsDone*100/r.RowsEstimated))
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func oneLine(s *string, max int) string {
	if s == nil {
		return ""
	}
	v := strings.Join(strings.Fields(*s), " ")
	if len(v) > max {
		v = v[:max-1] + "…"
	}
	return v
}
