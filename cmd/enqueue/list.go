package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/backfill/backfill/batches"
)

// listEntry is one definition as "list --json" prints it.
type listEntry struct {
	Version    int64          `json:"version"`
	Name       string         `json:"name"`
	Mode       batches.Mode   `json:"mode"`
	Source     string         `json:"source"`
	Revertible bool           `json:"revertible"`
	State      *batches.State `json:"state"`
	Drifted    bool           `json:"drifted"`

	direction batches.Direction
	run       int
}

func (c *command) list(ctx context.Context, asJSON bool) error {
	if err := c.noArgs("list"); err != nil {
		return err
	}
	pool, _, reg, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	var latest map[int64]batches.LatestRunInfo
	if err := c.read(ctx, pool, func(q batches.Querier) (err error) {
		latest, err = batches.LatestRuns(ctx, q)
		return err
	}); err != nil {
		return err
	}
	entries := []listEntry{} // [] rather than null when there is nothing
	for _, def := range reg.All() {
		e := listEntry{Version: def.Version, Name: def.Name, Mode: def.Mode, Source: def.Source, Revertible: def.Down != nil}
		if r, ok := latest[def.Version]; ok {
			state := r.State
			e.State, e.Drifted, e.direction, e.run = &state, r.Checksum != def.Checksum, r.Direction, r.RunNumber
		}
		entries = append(entries, e)
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		fmt.Fprintf(c.stdout, "no backfills: none in %s, none in Go\n", c.settings.Dir)
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tMODE\tSOURCE\tDOWN\tSTATE\tDRIFT")
	for _, e := range entries {
		state := "not enqueued"
		if e.State != nil {
			state = fmt.Sprintf("%s (run %d", *e.State, e.run)
			if e.direction == batches.DirectionDown {
				state += ", revert"
			}
			state += ")"
		}
		// "file" or "go": the file's path (in the JSON) follows from the
		// version, name and mode, and would not fit a terminal.
		source := "file"
		if e.Source == batches.SourceGo {
			source = "go"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Version, e.Name, e.Mode, source,
			yesNo(e.Revertible, "yes", "no"), state, yesNo(e.Drifted, "changed", "-"))
	}
	return tw.Flush()
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
